"""Ablation: what does CBAM buy, and where should it sit?

    python -m amobilenet_jax.main --config configs/ablation_cbam.py --workdir runs/cbam --config.data.dir=/data/ferplus
    python -m amobilenet_jax.main --config configs/ablation_cbam.py:cpu --workdir runs/cbam_cpu --config.data.dir=/data/ferplus
    python -m amobilenet_jax.main --config configs/ablation_cbam.py:converged --workdir runs/converged/cbam --points_dir runs/converged/points --config.data.dir=/data/ferplus
    python -m amobilenet_jax.main --config configs/ablation_cbam.py:synthetic --workdir runs/cbam_synthetic

Points: no CBAM; CBAM after blocks 4, 6, 11, 13 (the paper); CBAM after the two last
blocks only. Three seeds each on real data; ``:cpu`` (real FERPlus at CPU scale, a few
minutes a point on 2 cores) keeps the paper's two points with two seeds; ``:converged`` the
same two points trained to a flat Valid curve (about 20 minutes a point) with three seeds;
``:synthetic`` runs all three points with two seeds. The converged studies share one
``--points_dir``, so the paper's model runs once for all of them.
"""

from amobilenet_jax.recipes import seeds_first, study_config, with_seeds


def get_config(variant=None):
    return study_config(variant, "configs/ablation_cbam.py")


def get_reference(variant=None):
    """The paper's model: every row is compared with it."""
    return {"model.cbam": True} if variant == "converged" else {"model.cbam": True, "model.cbam_blocks": (4, 6, 11, 13)}


def get_sweep(variant=None):
    points = [
        {"model.cbam": False},
        {"model.cbam": True, "model.cbam_blocks": (4, 6, 11, 13)},
        {"model.cbam": True, "model.cbam_blocks": (11, 13)},
    ]
    if variant == "cpu":
        return with_seeds(points[:2], (0, 1))
    if variant == "converged":
        return seeds_first([{"model.cbam": True}, {"model.cbam": False}], (0, 1, 2))
    return with_seeds(points, (0, 1) if variant == "synthetic" else (0, 1, 2))
