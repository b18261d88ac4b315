"""A study's report (amobilenet_jax/report.py): table columns and their renderings. The report of
trained points, from the command line, is checked in test_sweep.py."""

from amobilenet_jax import report


def test_baselines_table_carries_the_papers_numbers():
    row = {
        "name": "name=amobilenet", "overrides": {"model.name": "amobilenet"}, "split": "valid", "model": "amobilenet",
        "dataset": "ferplus", "accuracy_mean": 0.8, "accuracy_std": 0.01, "mean_class_accuracy": 0.6,
        "per_class_accuracy": {"neutral": 0.9}, "params": 3422820, "flops": 1.1e9, "train_time_s": 10.0,
        "seeds": 3, "best": True,
    }  # fmt: skip
    header, cells, raw = report.table_columns([row], paper=True)
    assert header[-2:] == ["paper acc (%)", "paper params"]
    assert cells[0][-2:] == ["88.11", "3.4M"] and raw[0]["paper_accuracy"] == 88.11


def test_renderings_carry_the_same_cells():
    header, cells = ["run", "acc (%)"], [["center_weight=0.1", "80.00 ± 1.00"]]
    md = report.render_markdown(header, cells, "a caption")
    assert "| run | acc (%) |" in md and "| center_weight=0.1 | 80.00 ± 1.00 |" in md and "a caption" in md
    tex = report.render_latex(header, cells, "a caption")
    assert r"center\_weight=0.1" in tex and r"\toprule" in tex
