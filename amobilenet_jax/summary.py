"""``--mode summary``: parameter table and size of a configured model, without data."""

from __future__ import annotations

import jax
import ml_collections
from clu import parameter_overview

from amobilenet_jax.data import class_names
from amobilenet_jax.models import build_model, count_params, forward_flops, init_variables


def model_summary(config: ml_collections.ConfigDict) -> tuple[str, dict]:
    """Returns (parameter table, {model, num_classes, image_size, params, flops})."""
    num_classes = len(class_names(config.data.name))
    model = build_model(config.model, num_classes)
    size = config.data.image_size
    variables = init_variables(model, size, jax.random.PRNGKey(0))
    table = parameter_overview.get_parameter_overview(variables["params"], include_stats=False)
    info = {
        "model": config.model.name,
        "num_classes": num_classes,
        "image_size": size,
        "params": count_params(variables["params"]),
        "flops": forward_flops(model, variables, size),
    }
    return table, info
