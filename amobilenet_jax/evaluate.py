"""``--mode eval``: a run's newest checkpoint, or a shipped model's weights file, on one split;
with ``--ensemble``, several such models as one (their test-time views' logits summed).

Only the split that is evaluated is prepared and read: a data directory that holds nothing
but the held-out split evaluates a shipped model.
"""

from __future__ import annotations

import functools
import os

import jax
import ml_collections
import numpy as np

from amobilenet_jax import checkpoints, evaluation, files
from amobilenet_jax.errors import ConfigError, RunNotFoundError
from amobilenet_jax.steps import make_logits_step, with_evaluated_params
from amobilenet_jax.train import Experiment


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str, split: str | None = None) -> dict:
    """``--mode eval``: the newest checkpoint in ``workdir`` (else its weights file, a shipped model)
    on ``split`` (default ``eval_split``)."""
    _check_run(config, workdir)
    exp = Experiment.for_evaluation(config, split)  # a missing split is an error before the model is built
    split = exp.default_eval_split
    state, source = _state(config, workdir, exp)
    print(f"evaluating {split} ({len(exp.dataset.split(split))} images) {source}{_views(config)}", flush=True)
    result = exp.evaluate(state, split, progress=True)
    result.pop("attention")
    if source.startswith("at step"):
        result.update(split=split, step=int(jax.device_get(state.step)))
    else:
        result.update(split=split, step=None, weights=source.removeprefix("with "))
    if jax.process_index() == 0:
        files.write_json_atomic(os.path.join(workdir, f"eval_{split}.json"), result)
    return result


def _views(config: ml_collections.ConfigDict) -> str:
    from amobilenet_jax.train import views_line

    return f", {views_line(config)}" if config.eval_crops else ""


def _check_run(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Before any data is read: ``workdir`` holds a checkpoint of this experiment or a weights file."""
    from amobilenet_jax import weights

    if os.path.isdir(os.path.join(workdir, checkpoints.CHECKPOINT_DIR)):
        checkpoints.check_workdir(workdir, config)
    elif not os.path.isfile(os.path.join(workdir, weights.WEIGHTS_FILE)):
        raise RunNotFoundError(
            f"{workdir}: not a run directory (no {checkpoints.CHECKPOINT_DIR}/ or {weights.WEIGHTS_FILE} to evaluate)"
        )


def _state(config: ml_collections.ConfigDict, workdir: str, exp: Experiment):
    """``(state, source)``: ``workdir``'s model in ``exp``'s train state, from its newest checkpoint
    (``at step N``), else from its weights file (``with PATH``)."""
    from amobilenet_jax import weights

    _check_run(config, workdir)
    if os.path.isdir(os.path.join(workdir, checkpoints.CHECKPOINT_DIR)):
        mngr = checkpoints.run_manager(workdir, config, writer=False)
        try:
            if mngr.latest_step() is None:
                raise RunNotFoundError(
                    f"{os.path.join(workdir, checkpoints.CHECKPOINT_DIR)}: no checkpoint to evaluate"
                )
            state, _ = checkpoints.restore_run(mngr, exp.abstract_state(), config)
        finally:
            mngr.close()
        return state, f"at step {int(jax.device_get(state.step))}"
    path = os.path.join(workdir, weights.WEIGHTS_FILE)
    state = weights.restore_into(exp.init_state(), path)
    # where the config keeps a weight average, it is the file's too
    return with_evaluated_params(state, state.params), f"with {path}"


# What members of an ensemble must share: they vote on the same images, prepared the same way.
SHARED_DATA_FIELDS = ("name", "image_size", "normalize_mean", "normalize_std")


def member_config(config: ml_collections.ConfigDict, member: str) -> ml_collections.ConfigDict:
    """A member's own config (its ``config.json``) with the ensemble's test-time views."""
    from amobilenet_jax.config import from_json

    saved = files.read_json(os.path.join(member, "config.json"))
    if not isinstance(saved, dict):
        raise RunNotFoundError(f"--ensemble: {member}: not a run directory (no config.json)")
    own = from_json(saved, os.path.join(member, "config.json"))
    for field in SHARED_DATA_FIELDS:
        if own.data[field] != config.data[field]:
            raise ConfigError(
                f"--ensemble: {member}: data.{field}={own.data[field]!r}, the first model's is {config.data[field]!r}"
            )
    for field in ("eval_flip", "eval_crops", "eval_crop_zoom", "eval_split"):
        own[field] = config[field]
    own.data.dir, own.data.cache_dir = config.data.dir, config.data.cache_dir
    return own


def ensemble_confusion(logit_fns, batches, num_classes: int) -> np.ndarray:
    """Confusion counts (rows: true class) of the argmax of the summed ``fn(images)`` over
    ``logit_fns``, over ``batches`` of ``image``, ``label`` and ``mask`` (padding rows off)."""
    confusion = np.zeros((num_classes, num_classes), np.int64)
    for batch in batches:
        logits = sum(np.asarray(fn(batch["image"]), np.float64) for fn in logit_fns)
        mask = np.asarray(batch["mask"], bool)
        np.add.at(confusion, (np.asarray(batch["label"])[mask], logits.argmax(-1)[mask]), 1)
    return confusion


def evaluate_ensemble(config: ml_collections.ConfigDict, workdir: str, members: list[str], split=None) -> dict:
    """``--mode eval --ensemble``: ``workdir``'s model and each member's as one model: on every image
    the logits of all their test-time views (``config``'s) are summed before the argmax. Members
    may differ in anything but the data they read; written to ``workdir/eval_<split>_ensemble.json``."""
    exp = Experiment.for_evaluation(config, split)
    split = exp.default_eval_split
    runs = [(config, workdir, exp)]
    for member in members:
        own = member_config(config, member)
        runs.append((own, member, Experiment(own, exp.dataset, training=False)))
    models = [(jax.jit(make_logits_step(own)), _state(own, where, member_exp)[0]) for own, where, member_exp in runs]
    names = [where for _, where, _ in runs]
    print(f"evaluating {split} ({len(exp.dataset.split(split))} images) with an ensemble of {len(names)} models "
          f"({', '.join(names)}){_views(config)}", flush=True)  # fmt: skip
    batches = exp.eval_split(split).eval_batches(config.train.eval_batch_size)
    confusion = ensemble_confusion([functools.partial(step, state) for step, state in models], batches, exp.num_classes)
    result = evaluation.confusion_metrics(confusion, exp.dataset.class_names)
    result.update({"split": split, "members": names})
    if jax.process_index() == 0:
        files.write_json_atomic(os.path.join(workdir, f"eval_{split}_ensemble.json"), result)
    return result
