"""Ablation: ReLU6 after the depthwise conv (MobileNetV1) vs a linear output (A-MobileNet).

python -m amobilenet_jax.main --config configs/ablation_linear_dw.py --workdir runs/linear_dw --config.data.dir=/data/ferplus
python -m amobilenet_jax.main --config configs/ablation_linear_dw.py:cpu --workdir runs/linear_dw_cpu --config.data.dir=/data/ferplus
python -m amobilenet_jax.main --config configs/ablation_linear_dw.py:converged --workdir runs/converged/linear_dw --points_dir runs/converged/points --config.data.dir=/data/ferplus
python -m amobilenet_jax.main --config configs/ablation_linear_dw.py:synthetic --workdir runs/linear_dw_synthetic

Three seeds on real data and at ``:converged`` (real FERPlus trained to a flat Valid curve),
two at CPU scale (``:cpu`` on real FERPlus, ``:synthetic``).
"""

from amobilenet_jax.recipes import product, seeds_first, study_config, with_seeds


def get_config(variant=None):
    return study_config(variant, "configs/ablation_linear_dw.py")


def get_reference(variant=None):
    """The paper's model (a linear depthwise output): every row is compared with it."""

    return {"model.linear_depthwise": True}


def get_sweep(variant=None):
    points = product({"model.linear_depthwise": [True, False]})
    if variant == "converged":
        return seeds_first(points, (0, 1, 2))
    return with_seeds(points, (0, 1) if variant in ("synthetic", "cpu") else (0, 1, 2))
