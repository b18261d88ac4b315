"""A-MobileNet on the built-in synthetic expression set: a few CPU minutes.

    python -m amobilenet_jax.main --config configs/quickstart.py --workdir runs/quickstart

`:tiny` is the test-size variant (a handful of steps, a narrow model of 4 blocks instead of the
paper's 13, with CBAM after blocks 2 and 4: it compiles in a fraction of the time); `:diverge` is `:tiny`
with a learning rate that blows up within a few steps, to show the non-finite guard.
"""

from amobilenet_jax.config import base_config
from amobilenet_jax.recipes import SMALL_BODY


def get_config(variant=None):
    c = base_config()
    c.model.name = "amobilenet"
    c.model.width = 0.25  # a quarter of the channels: CPU minutes, not hours
    c.data.name = "synthetic"
    c.data.image_size = 48
    c.data.num_train = 8000
    c.data.num_test = 2000
    c.data.difficulty = 0.75  # less pose/expression jitter than the default 1.0
    # The synthetic faces already vary in pose, scale and position: lighter augmentation.
    c.data.augment.rotation = 10.0
    c.data.augment.crop = 0.1
    c.data.augment.translate = 0.05
    c.optimizer.learning_rate = 3e-3  # the paper's 1e-4 needs its 100 epochs
    c.optimizer.decay = 2e-3  # lr falls to 1/3.5 by the last step
    c.train.batch_size = 64
    c.train.num_epochs = 10
    c.train.log_every_steps = 50
    c.train.checkpoint_every_steps = 250
    if variant in ("tiny", "diverge"):
        c.model.width = 0.25
        c.model.update(SMALL_BODY)
        c.data.image_size = 32
        c.data.num_train = 128
        c.data.num_test = 64
        c.train.batch_size = 16
        c.train.num_epochs = 2
        c.train.log_every_steps = 4
        c.train.checkpoint_every_steps = 4
        c.train.eval_batch_size = 32
    if variant == "diverge":
        c.optimizer.learning_rate = 1e30  # finite after step 1, overflowing after that
        c.train.checkpoint_every_steps = 1
        c.train.log_every_steps = 8
    elif variant not in (None, "tiny"):
        raise ValueError(f"unknown variant {variant!r} of configs/quickstart.py (known: tiny, diverge)")
    return c
