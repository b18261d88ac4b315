"""run_config.py: a run directory's config.json read back as the config it was written from."""

import json

import pytest

from amobilenet_jax import run_config
from amobilenet_jax.config import from_json
from amobilenet_jax.errors import ConfigError


def test_a_runs_config_json_reads_back_as_its_config(tiny_config, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(tiny_config.to_json())
    config = run_config.get_config(str(path))
    assert json.loads(config.to_json()) == json.loads(tiny_config.to_json())
    assert config.to_dict() == from_json(json.loads(tiny_config.to_json()), str(path)).to_dict()


def test_a_missing_or_unreadable_config_json_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="needs the path of a run's config.json"):
        run_config.get_config(None)
    with pytest.raises(ConfigError, match="cannot read the run's config"):
        run_config.get_config(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json: cannot read the run's config"):
        run_config.get_config(str(tmp_path / "bad.json"))
