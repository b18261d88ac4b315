"""The recipes and the helpers that list and name a study's points (amobilenet_jax/recipes.py)."""

from amobilenet_jax import recipes
from amobilenet_jax.config import base_config, validate


def test_expansion_and_names():
    points = recipes.with_seeds(recipes.product({"model.cbam": [True, False], "model.cbam_blocks": [(4, 13)]}), (0, 1))
    assert [recipes.point_name(p) for p in points] == [
        "cbam=True,cbam_blocks=4-13,seed=0",
        "cbam=True,cbam_blocks=4-13,seed=1",
        "cbam=False,cbam_blocks=4-13,seed=0",
        "cbam=False,cbam_blocks=4-13,seed=1",
    ]
    assert recipes.point_name({"model.dropout": 0.1, "data.dropout": 0.2}) == "model.dropout=0.1,data.dropout=0.2"
    # Paths (distillation teachers) name a run by their last part: a run directory is one level.
    teachers = {"loss.distill_from": ("runs/teachers/run_c", "assets/seed1/")}
    assert recipes.point_name(teachers) == "distill_from=run_c-seed1"
    assert recipes.group_key(points[1]) == {"model.cbam": True, "model.cbam_blocks": (4, 13)}
    # seeds_first: every point's first seed before any point's second.
    assert [p["seed"] for p in recipes.seeds_first([{"a": 1}, {"a": 2}], (0, 1))] == [0, 0, 1, 1]


def test_each_recipe_changes_the_base_and_validates():
    base = base_config()
    cpu = recipes.ferplus_cpu_recipe()
    validate(cpu)
    assert (cpu.data.name, cpu.model.stem_stride, cpu.data.label_mode) == ("ferplus", 1, "distribution")
    paper = recipes.paper_recipe("rafdb")
    validate(paper)
    assert (paper.data.image_size, paper.data.balance, base.data.image_size) == (224, "oversample", 48)
    study = recipes.cpu_study(recipes.ferplus_cpu_recipe())
    assert (study.model.stem_stride, study.train.num_epochs) == (None, 4)
