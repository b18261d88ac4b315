"""The paper's Tables 3 and 4: MobileNetV1, V2, V3-small and A-MobileNet.

    python -m amobilenet_jax.main --config configs/baselines.py --workdir runs/baselines --config.data.dir=/data/ferplus
    python -m amobilenet_jax.main --config configs/baselines.py --workdir runs/baselines_raf \\
        --config.data.name=rafdb --config.data.dir=/data/RAF-DB
    python -m amobilenet_jax.main --config configs/baselines.py:converged --workdir runs/converged/baselines --points_dir runs/converged/points --config.data.dir=/data/ferplus
    python -m amobilenet_jax.main --config configs/baselines.py:synthetic --workdir runs/baselines_synthetic

The table carries the paper's reported accuracy and parameters beside the measured ones.
Each architecture takes its own defaults (MobileNetV1: ReLU6 depthwise, no CBAM).
"""

from amobilenet_jax.recipes import product, seeds_first, study_config, with_seeds

MODELS = ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small", "amobilenet"]


def get_config(variant=None):
    c = study_config(variant, "configs/baselines.py")
    c.paper_table = True  # the table carries the paper's Tables 3/4 beside the measured numbers
    return c


def get_reference(variant=None):
    """A-MobileNet: every baseline is compared with it."""
    return {"model.name": "amobilenet"}


def get_sweep(variant=None):
    if variant == "converged":  # the paper's model shares its three seeds with the ablations' runs
        return seeds_first(product({"model.name": MODELS[::-1]}), (0, 1, 2))
    return with_seeds(product({"model.name": MODELS}), (0, 1) if variant in ("synthetic", "cpu") else (0, 1, 2))
