"""Ablation: the center-loss weight lambda (Eq. 10), and the center update rate alpha (Eq. 9).

    python -m amobilenet_jax.main --config configs/ablation_lambda.py --workdir runs/lambda --config.data.dir=/data/ferplus
    python -m amobilenet_jax.main --config configs/ablation_lambda.py:cpu --workdir runs/lambda_cpu --config.data.dir=/data/ferplus
    python -m amobilenet_jax.main --config configs/ablation_lambda.py:converged --workdir runs/converged/lambda --points_dir runs/converged/points --config.data.dir=/data/ferplus
    python -m amobilenet_jax.main --config configs/ablation_lambda.py:synthetic --workdir runs/lambda_synthetic

lambda = 0 is softmax alone. ``:cpu`` (real FERPlus at CPU scale) runs lambda 0, 0.01 (the
paper's) and 0.03 at alpha 0.5 with two seeds; ``:converged`` lambda 0.01, 0 and 0.1 trained to a
flat Valid curve with three seeds. Every point has the same shapes, so with vectorised
training all of them (seeds included) run as one compiled program.
"""

from amobilenet_jax.recipes import seeds_first, study_config, with_seeds

LAMBDAS = (0.0, 0.001, 0.003, 0.01, 0.03, 0.1)
ALPHAS = (0.1, 0.9)  # beside the recipe's 0.5, at lambda = 0.01
CPU_LAMBDAS = (0.0, 0.01, 0.03)
CONVERGED_LAMBDAS = (0.01, 0.0, 0.1)  # the paper's first: the row the others are compared with


def get_config(variant=None):
    return study_config(variant, "configs/ablation_lambda.py")


def get_reference(variant=None):
    """The paper's lambda (0.01, at alpha 0.5): every row is compared with it."""

    if variant == "converged":
        return {"loss.center_weight": 0.01}
    return {"loss.center_weight": 0.01, "loss.center_update_rate": 0.5}


def get_sweep(variant=None):
    if variant == "converged":
        return seeds_first([{"loss.center_weight": lam} for lam in CONVERGED_LAMBDAS], (0, 1, 2))
    if variant == "cpu":
        points = [{"loss.center_weight": lam, "loss.center_update_rate": 0.5} for lam in CPU_LAMBDAS]
        return with_seeds(points, (0, 1))
    points = [{"loss.center_weight": lam, "loss.center_update_rate": 0.5} for lam in LAMBDAS]
    points += [{"loss.center_weight": 0.01, "loss.center_update_rate": alpha} for alpha in ALPHAS]
    return with_seeds(points, (0, 1) if variant == "synthetic" else (0, 1, 2))
