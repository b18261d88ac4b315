"""The paper's recipe on FERPlus (section 3.1): A-MobileNet, 224x224, Adam 1e-4 with
Keras decay 1e-5, batch 64, 100 epochs, dropout 0.5, softmax + center loss, minority
classes oversampled with augmentation (rotation up to 20 degrees, crop up to 0.2,
translation, flip).

    python -m amobilenet_jax.main --config configs/ferplus.py --workdir runs/ferplus \\
        --config.data.dir=/data/ferplus

Develop on Valid (``eval_split``); FER2013Test is the split papers report:
``--mode eval --config.eval_split=test``. ``:runlocal`` shrinks everything for a CPU
check (a few steps, 48x48, width 0.25).
"""

from amobilenet_jax.config import base_config


def get_config(variant=None):
    c = base_config()
    c.model.name = "amobilenet"
    c.data.name = "ferplus"
    c.data.label_mode = "majority"
    c.data.image_size = 224
    c.data.balance = "oversample"
    c.eval_split = "valid"
    c.loss.center_weight = 0.01
    c.loss.center_update_rate = 0.5
    c.optimizer.learning_rate = 1e-4
    c.optimizer.decay = 1e-5
    c.train.batch_size = 64
    c.train.num_epochs = 100
    c.train.log_every_steps = 100
    c.train.checkpoint_every_steps = 2000
    if variant == "runlocal":
        c.model.width = 0.25
        c.data.image_size = 48
        c.optimizer.learning_rate = 1e-3
        c.train.batch_size = 32
        c.train.num_steps = 20
        c.train.log_every_steps = 5
        c.train.checkpoint_every_steps = 10
    elif variant is not None:
        raise ValueError(f"unknown variant {variant!r} of configs/ferplus.py (known: runlocal)")
    return c
