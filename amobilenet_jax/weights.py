"""One-file weights: a trained model's float32 parameters and batch statistics, beside its config.json.

    python -m amobilenet_jax.weights --workdir runs/x            # writes runs/x/weights.msgpack
    python -m amobilenet_jax.weights --workdir runs/x --ship DIR # a shipped model: DIR/ alone evaluates

The file is Flax's msgpack serialisation (``flax.serialization``: msgpack with numpy arrays
as typed bytes; no pickle anywhere) of ``{"params": ..., "batch_stats": ...}``. Together with
the run's ``config.json`` it is enough to rebuild the model: ``--mode eval --workdir DIR``
uses it when DIR has no Orbax checkpoint, so a shipped model needs no optimizer state.
"""

from __future__ import annotations

import os
import sys

import jax
import numpy as np
from flax import serialization

from amobilenet_jax import checkpoints
from amobilenet_jax.errors import CheckpointError, RunNotFoundError

WEIGHTS_FILE = "weights.msgpack"


def to_bytes(params, batch_stats) -> bytes:
    """The msgpack bytes of float32 host copies of ``params`` and ``batch_stats``."""
    tree = {"params": params, "batch_stats": batch_stats}
    host = jax.tree.map(lambda x: np.asarray(jax.device_get(x), dtype=np.float32), tree)
    return serialization.msgpack_serialize(serialization.to_state_dict(host))


def save(path: str, params, batch_stats) -> int:
    """Writes the weights file atomically; returns its size in bytes."""
    data = to_bytes(params, batch_stats)
    checkpoints.write_atomic(path, data)
    return len(data)


def load(path: str) -> dict:
    """``{"params": ..., "batch_stats": ...}`` as nested dicts of float32 numpy arrays."""
    if not os.path.isfile(path):
        raise RunNotFoundError(f"{path}: no such weights file")
    with open(path, "rb") as f:
        data = f.read()
    try:
        tree = serialization.msgpack_restore(data)
    except Exception as e:  # noqa: BLE001 - msgpack raises several types for a damaged file
        raise CheckpointError(f"{path}: not a weights file ({type(e).__name__}: {e})") from None
    if not isinstance(tree, dict) or set(tree) != {"params", "batch_stats"}:
        raise CheckpointError(f"{path}: not a weights file (expected params and batch_stats)")
    return tree


def restore_into(state, path: str):
    """``state`` with the file's parameters and batch statistics, checked leaf by leaf."""
    expected = {"params": state.params, "batch_stats": state.batch_stats}
    restored = fit(expected, path)
    restored = jax.tree.map(lambda want, got: jax.device_put(np.asarray(got, want.dtype), want.sharding),
                            expected, restored)  # fmt: skip
    return state.replace(params=restored["params"], batch_stats=restored["batch_stats"])


def fit(expected, path: str) -> dict:
    """The file's ``{"params", "batch_stats"}`` in the structure of ``expected`` (arrays or
    shape structs), checked leaf by leaf: a file of another model is a one-line error."""
    tree = load(path)
    try:
        restored = serialization.from_state_dict(expected, tree)
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: does not fit the config's model ({' '.join(str(e).split())[:200]})") from None
    for (where, want), got in zip(jax.tree_util.tree_leaves_with_path(expected), jax.tree.leaves(restored)):
        if np.shape(got) != np.shape(want):
            name = jax.tree_util.keystr(where)
            raise CheckpointError(f"{path}: {name} has shape {np.shape(got)}, the config's model {np.shape(want)}")
    return restored


def restore_run_state(workdir: str):
    """``(config, state)`` of the newest checkpoint of run ``workdir``."""
    from amobilenet_jax import train
    from amobilenet_jax.config import from_json

    config_path = os.path.join(workdir, "config.json")
    saved = checkpoints.read_json(config_path)
    if saved is None:
        raise RunNotFoundError(f"{workdir}: not a run directory (no config.json)")
    config = from_json(saved, config_path)
    if not os.path.isdir(os.path.join(workdir, checkpoints.CHECKPOINT_DIR)):
        raise RunNotFoundError(f"{workdir}: no {checkpoints.CHECKPOINT_DIR}/ and no {WEIGHTS_FILE}")
    mngr = checkpoints.run_manager(workdir, config)
    try:
        if mngr.latest_step() is None:
            raise RunNotFoundError(f"{os.path.join(workdir, checkpoints.CHECKPOINT_DIR)}: no checkpoint")
        state, _ = checkpoints.restore_run(mngr, train.state_without_data(config), config)
    finally:
        mngr.close()
    return config, state


def export_run(workdir: str, out: str | None = None) -> str:
    """Writes the newest checkpoint of run ``workdir`` as a weights file; returns its path."""
    _, state = restore_run_state(workdir)
    out = out or os.path.join(workdir, WEIGHTS_FILE)
    size = save(out, state.params, state.batch_stats)
    print(f"wrote {out} ({size / 1e6:.1f} MB, step {int(jax.device_get(state.step))})")
    return out


SHIPPED_FILES = ("results.json", "training_curves.png", "confusion_matrix.png")
# Where the data and its cache were on the training machine: the user of a shipped model
# passes their own (--config.data.dir=DIR); both are FREE_FIELDS.
MACHINE_FIELDS = ("dir", "cache_dir")


def ship(workdir: str, out_dir: str) -> str:
    """A shipped model in ``out_dir``: the weights file, config.json without this machine's data
    paths, and the run's results and figures. ``--mode eval --workdir out_dir`` evaluates it."""
    import shutil

    os.makedirs(out_dir, exist_ok=True)
    export_run(workdir, os.path.join(out_dir, WEIGHTS_FILE))
    config = checkpoints.read_json(os.path.join(workdir, "config.json"))
    for field in MACHINE_FIELDS:
        config["data"][field] = ""
    checkpoints.write_json_atomic(os.path.join(out_dir, "config.json"), config)
    for name in SHIPPED_FILES:
        if os.path.exists(os.path.join(workdir, name)):
            shutil.copyfile(os.path.join(workdir, name), os.path.join(out_dir, name))
    return out_dir


def main(argv: list[str] | None = None) -> None:
    import argparse

    from amobilenet_jax.errors import UserError

    parser = argparse.ArgumentParser(prog="python -m amobilenet_jax.weights", description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True, help="a run directory with config.json and checkpoints/")
    parser.add_argument("--out", default=None, help=f"the weights file (default: WORKDIR/{WEIGHTS_FILE})")
    parser.add_argument("--ship", default=None, help="write a shipped model (weights, config.json, results) here")
    args = parser.parse_args(argv)
    try:
        if args.ship:
            ship(args.workdir, args.ship)
        else:
            export_run(args.workdir, args.out)
    except UserError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
