"""One-file weights: a trained model's float32 parameters and batch statistics, beside its config.json.

A finished run writes ``weights.msgpack`` into its directory; ``python -m amobilenet_jax.ship``
writes one from any checkpoint, or a shipped model. The file is Flax's msgpack serialisation
(``flax.serialization``: msgpack with numpy arrays as typed bytes; no pickle anywhere) of
``{"params": ..., "batch_stats": ...}``. Together with the run's ``config.json`` it is enough
to rebuild the model: ``--mode eval --workdir DIR`` uses it when DIR has no Orbax checkpoint,
so a shipped model needs no optimizer state.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from flax import serialization

from amobilenet_jax import files
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
    files.write_atomic(path, data)
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
