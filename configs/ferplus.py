"""The paper's recipe on FERPlus (section 3.1): A-MobileNet, 224x224, Adam 1e-4 with
Keras decay 1e-5, batch 64, 100 epochs, dropout 0.5, softmax + center loss, minority
classes oversampled with augmentation (rotation up to 20 degrees, crop up to 0.2,
translation, flip).

    python -m amobilenet_jax.main --config configs/ferplus.py --workdir runs/ferplus \\
        --config.data.dir=/data/ferplus

Develop on Valid (``eval_split``); FER2013Test is the split papers report:
``--mode eval --config.eval_split=test``. ``:runlocal`` shrinks everything for a CPU
check (a few steps, 48x48, width 0.25, 4 blocks).
"""

from amobilenet_jax.recipes import paper_recipe, runlocal


def get_config(variant=None):
    c = paper_recipe("ferplus")
    c.data.label_mode = "majority"
    if variant == "runlocal":
        runlocal(c)
    elif variant is not None:
        raise ValueError(f"unknown variant {variant!r} of configs/ferplus.py (known: runlocal)")
    return c
