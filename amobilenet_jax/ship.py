"""A run's checkpoint as a weights file, and a shipped model: weights, config and results.

    python -m amobilenet_jax.ship --workdir runs/x            # writes runs/x/weights.msgpack
    python -m amobilenet_jax.ship --workdir runs/x --ship DIR # a shipped model: DIR/ alone evaluates and predicts
    python -m amobilenet_jax.ship --workdir runs/x --ship DIR --eval_crops 5  # ... voting over 5 crops too

A finished run writes its own ``weights.msgpack``; this reads the newest Orbax checkpoint of
any run (an unfinished one too). The format is ``amobilenet_jax.weights``'s.
"""

from __future__ import annotations

import os
import sys

import jax

from amobilenet_jax import checkpoints, files, weights
from amobilenet_jax.config import from_json
from amobilenet_jax.errors import RunNotFoundError
from amobilenet_jax.steps import evaluated_params, state_without_data


def restore_run_state(workdir: str):
    """``(config, state)`` of the newest checkpoint of run ``workdir``."""
    config_path = os.path.join(workdir, "config.json")
    saved = files.read_json(config_path)
    if saved is None:
        raise RunNotFoundError(f"{workdir}: not a run directory (no config.json)")
    config = from_json(saved, config_path)
    if not os.path.isdir(os.path.join(workdir, checkpoints.CHECKPOINT_DIR)):
        raise RunNotFoundError(f"{workdir}: no {checkpoints.CHECKPOINT_DIR}/ and no {weights.WEIGHTS_FILE}")
    mngr = checkpoints.run_manager(workdir, config, writer=False)
    try:
        if mngr.latest_step() is None:
            raise RunNotFoundError(f"{os.path.join(workdir, checkpoints.CHECKPOINT_DIR)}: no checkpoint")
        on_one_device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        target = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=on_one_device),
            state_without_data(config, abstract=True),
        )
        state, _ = checkpoints.restore_run(mngr, target, config)
    finally:
        mngr.close()
    return config, state


def export_run(workdir: str, out: str | None = None) -> str:
    """Writes the newest checkpoint of run ``workdir`` as a weights file; returns its path."""
    _, state = restore_run_state(workdir)
    out = out or os.path.join(workdir, weights.WEIGHTS_FILE)
    size = weights.save(out, evaluated_params(state), state.batch_stats)  # the moving average, if the run keeps one
    print(f"wrote {out} ({size / 1e6:.1f} MB, step {int(jax.device_get(state.step))})")
    return out


SHIPPED_FILES = ("results.json", "training_curves.png", "confusion_matrix.png")
# Where the data and its cache were on the training machine: the user of a shipped model
# passes their own (--config.data.dir=DIR); both are FREE_FIELDS.
MACHINE_FIELDS = ("dir", "cache_dir")


def ship(workdir: str, out_dir: str, eval_crops: int | None = None) -> str:
    """A shipped model in ``out_dir``: the weights file, config.json without this machine's data
    paths, and the run's results and figures. ``--mode eval --workdir out_dir`` evaluates it.

    ``eval_crops`` (a free field: how the model is evaluated, not how it trained) sets the
    test-time crops its evaluation, ``predict``, ``export`` and ``visualize`` vote over."""
    import shutil

    from amobilenet_jax.config import validate

    config = files.read_json(os.path.join(workdir, "config.json"))
    if config is None:
        raise RunNotFoundError(f"{workdir}: not a run directory (no config.json)")
    if eval_crops is not None:
        config["eval_crops"] = eval_crops
        validate(from_json(config, os.path.join(workdir, "config.json")))

    os.makedirs(out_dir, exist_ok=True)
    export_run(workdir, os.path.join(out_dir, weights.WEIGHTS_FILE))
    for field in MACHINE_FIELDS:
        config["data"][field] = ""
    files.write_json_atomic(os.path.join(out_dir, "config.json"), config)
    for name in SHIPPED_FILES:
        if os.path.exists(os.path.join(workdir, name)):
            shutil.copyfile(os.path.join(workdir, name), os.path.join(out_dir, name))
    return out_dir


def main(argv: list[str] | None = None) -> None:
    import argparse

    from amobilenet_jax.errors import UserError

    parser = argparse.ArgumentParser(prog="python -m amobilenet_jax.ship", description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True, help="a run directory with config.json and checkpoints/")
    parser.add_argument("--out", default=None, help=f"the weights file (default: WORKDIR/{weights.WEIGHTS_FILE})")
    parser.add_argument("--ship", default=None, help="write a shipped model (weights, config.json, results) here")
    parser.add_argument(
        "--eval_crops",
        type=int,
        default=None,
        help="with --ship: the model votes over this many test-time crops (0, 5)",
    )
    args = parser.parse_args(argv)
    try:
        if args.ship:
            ship(args.workdir, args.ship, args.eval_crops)
        elif args.eval_crops is not None:
            raise UserError("--eval_crops sets a shipped model's config: give it with --ship DIR")
        else:
            export_run(args.workdir, args.out)
    except UserError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
