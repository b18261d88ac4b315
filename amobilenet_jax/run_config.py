"""A run directory's own config as a config file: ``--config amobilenet_jax/run_config.py:RUN/config.json``.

``main`` uses it when ``--mode eval`` or a resumed ``--mode train`` is given ``--workdir`` of an
existing run and no ``--config``: the run directory is the source of truth, and ``--config.*``
overrides still apply on top (``--config.data.dir=...``, ``--config.eval_split=test``).
"""

import json

from amobilenet_jax.config import from_json
from amobilenet_jax.errors import ConfigError


def get_config(path=None):
    if not path:
        raise ConfigError("run_config.py needs the path of a run's config.json after ':'")
    try:
        with open(path) as f:
            tree = json.load(f)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot read the run's config: {e}") from None
    return from_json(tree, path)
