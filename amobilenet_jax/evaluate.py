"""``--mode eval``: a run's newest checkpoint, or a shipped model's weights file, on one split.

Only the split that is evaluated is prepared and read: a data directory that holds nothing
but the held-out split evaluates a shipped model.
"""

from __future__ import annotations

import os

import jax
import ml_collections

from amobilenet_jax import checkpoints, files
from amobilenet_jax.errors import RunNotFoundError
from amobilenet_jax.steps import with_evaluated_params
from amobilenet_jax.train import Experiment


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str, split: str | None = None) -> dict:
    """``--mode eval``: the newest checkpoint in ``workdir`` on ``split`` (default ``eval_split``)."""
    if not os.path.isdir(os.path.join(workdir, checkpoints.CHECKPOINT_DIR)):
        from amobilenet_jax import weights

        if os.path.isfile(os.path.join(workdir, weights.WEIGHTS_FILE)):
            return _evaluate_weights(config, workdir, os.path.join(workdir, weights.WEIGHTS_FILE), split)
        raise RunNotFoundError(
            f"{workdir}: not a run directory (no {checkpoints.CHECKPOINT_DIR}/ or {weights.WEIGHTS_FILE} to evaluate)"
        )
    checkpoints.check_workdir(workdir, config)
    mngr = checkpoints.run_manager(workdir, config, writer=False)
    try:
        if mngr.latest_step() is None:
            raise RunNotFoundError(f"{os.path.join(workdir, checkpoints.CHECKPOINT_DIR)}: no checkpoint to evaluate")
        exp = Experiment.for_evaluation(config, split)  # a missing split is an error before the model is built
        split = exp.default_eval_split
        state, _ = checkpoints.restore_run(mngr, exp.init_state(), config)
        step = int(jax.device_get(state.step))
        print(f"evaluating {split} ({len(exp.dataset.split(split))} images) at step {step}{_views(config)}", flush=True)
        result = exp.evaluate(state, split, progress=True)
    finally:
        mngr.close()
    return _record_eval(workdir, result, split=split, step=step)


def _views(config: ml_collections.ConfigDict) -> str:
    from amobilenet_jax.train import views_line

    return f", {views_line(config)}" if config.eval_crops else ""


def _record_eval(workdir: str, result: dict, **fields) -> dict:
    """``result`` without the attention maps, plus ``fields``, written to ``eval_<split>.json``."""
    result.pop("attention")
    result.update(fields)
    if jax.process_index() == 0:
        files.write_json_atomic(os.path.join(workdir, f"eval_{result['split']}.json"), result)
    return result


def _evaluate_weights(config: ml_collections.ConfigDict, workdir: str, path: str, split: str | None) -> dict:
    """``--mode eval`` of a shipped model: a weights file and its config.json, no checkpoint."""
    from amobilenet_jax import weights

    exp = Experiment.for_evaluation(config, split)
    split = exp.default_eval_split
    state = weights.restore_into(exp.init_state(), path)
    state = with_evaluated_params(state, state.params)  # where the config keeps a weight average, it is the file's too
    print(f"evaluating {split} ({len(exp.dataset.split(split))} images) with {path}{_views(config)}", flush=True)
    result = exp.evaluate(state, split, progress=True)
    return _record_eval(workdir, result, split=split, step=None, weights=path)
