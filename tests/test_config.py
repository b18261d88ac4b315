"""The config (amobilenet_jax/config.py): every shipped config and variant validates, and the
resume rule tells the same experiment from another."""

import json
import os

from amobilenet_jax.config import config_differences
from tests.conftest import REPO


def test_cosine_runs_may_not_change_their_length_on_resume(tiny_config):

    saved = json.loads(tiny_config.to_json())
    longer = tiny_config.copy_and_resolve_references()
    longer.train.num_epochs = 5
    assert config_differences(saved, json.loads(longer.to_json())) == []  # Keras decay: free
    saved["optimizer"]["schedule"] = "cosine"
    longer.optimizer.schedule = "cosine"
    assert config_differences(saved, json.loads(longer.to_json())) == ["train.num_epochs (2 -> 5)"]


def test_every_shipped_config_and_variant_passes_validation():
    """A config file in configs/ that sets a misspelt or out-of-range field fails here, not in a user's run."""
    import glob

    from amobilenet_jax.config import load_config_file, validate

    checked = []
    for path in sorted(glob.glob(os.path.join(REPO, "configs", "*.py"))):
        for variant in (None, "tiny", "diverge", "synthetic", "cpu", "runlocal"):
            try:
                config = load_config_file(path + (f":{variant}" if variant else ""))
            except ValueError as e:
                assert "unknown variant" in str(e)
                continue
            validate(config)
            checked.append(os.path.basename(path) + (f":{variant}" if variant else ""))
    assert {
        "ferplus_cpu.py",
        "quickstart.py:diverge",
        "ablation_cbam.py:synthetic",
        "ablation_lambda.py:cpu",
        "baselines.py:cpu",
    } <= set(checked)
