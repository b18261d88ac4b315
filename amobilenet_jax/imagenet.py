"""ImageNet initialisation (the paper's setup): Keras Applications' MobileNet weights for the backbone.

    python -m amobilenet_jax.imagenet --h5 mobilenet_1_0_224_tf.h5 --out imagenet_mobilenet_v1.msgpack
    python -m amobilenet_jax.main --config configs/ferplus.py --workdir runs/x \\
        --config.model.init_from=imagenet_mobilenet_v1.msgpack

The converter reads the ImageNet weights of ``keras.applications.MobileNet(alpha=1.0)`` (the
Keras 2 HDF5 files ``mobilenet_1_0_224_tf.h5`` and ``mobilenet_1_0_224_tf_no_top.h5``, written
by ``model.save_weights`` or ``model.save``) with h5py and writes once, in the project's weights
format (``amobilenet_jax.weights``: msgpack, no pickle), the backbone tensors of the
``mobilenet_v1`` and ``amobilenet`` models at ``model.width=1.0``:

    conv1            -> stem/conv/kernel                 (3, 3, 3, 32)
    conv1_bn         -> stem/bn/{scale, bias} and batch_stats stem/bn/{mean, var}
    conv_dw_i        -> block{i}_dw/dw/kernel            (3, 3, C, 1) transposed to (3, 3, 1, C)
    conv_dw_i_bn     -> block{i}_dw/bn
    conv_pw_i        -> block{i}_pw/conv/kernel          (1, 1, Cin, Cout)
    conv_pw_i_bn     -> block{i}_pw/bn                   gamma, beta, moving_mean, moving_variance

The classifier (``conv_preds``, ImageNet's 1000 classes) is not converted, and Keras' MobileNet
has no CBAM: both stay as initialised. BatchNorm's epsilon is Keras' 1e-3 in both.

Padding: Keras pads its stride-2 convolutions asymmetrically (``ZeroPadding2D(((0, 1), (0, 1)))``
then 'valid'), this project symmetrically (k // 2 on each side, like the paper's model and
PyTorch). The weights map one to one; the activations at the image borders differ slightly,
which fine-tuning absorbs.

``model.init_from`` (``amobilenet_jax.train``) copies these tensors into a fresh run's state;
a resumed run keeps its checkpoint's. It also accepts the ``.h5`` itself (converted in memory).
"""

from __future__ import annotations

import os
import sys

import numpy as np

from amobilenet_jax.errors import CheckpointError, DataNotFoundError
from amobilenet_jax.models import IMAGENET_INIT_MODELS as ARCHITECTURES  # the models whose backbone this is

# (pointwise output channels, stride) of the 13 blocks; the same table as the model's.
from amobilenet_jax.models.mobilenet_v1 import BLOCKS

NEEDED = "the ImageNet weights of keras.applications.MobileNet with alpha 1.0 (MobileNet v1) are needed"
_BN = (("gamma", "params", "scale"), ("beta", "params", "bias"),
       ("moving_mean", "batch_stats", "mean"), ("moving_variance", "batch_stats", "var"))  # fmt: skip
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def keras_layers() -> list[tuple[str, str, tuple[int, ...], str]]:
    """``(keras_layer, kind, weight_shape, module)`` of the backbone, in network order.

    ``kind`` is ``conv``, ``dw`` or ``bn``; ``weight_shape`` the Keras kernel's shape (alpha
    1.0), or ``(C,)`` for a BatchNorm; ``module`` the project's ConvBN module name.
    """
    layers = [("conv1", "conv", (3, 3, 3, 32), "stem"), ("conv1_bn", "bn", (32,), "stem")]
    cin = 32
    for i, (cout, _) in enumerate(BLOCKS, start=1):
        layers += [
            (f"conv_dw_{i}", "dw", (3, 3, cin, 1), f"block{i}_dw"),
            (f"conv_dw_{i}_bn", "bn", (cin,), f"block{i}_dw"),
            (f"conv_pw_{i}", "conv", (1, 1, cin, cout), f"block{i}_pw"),
            (f"conv_pw_{i}_bn", "bn", (cout,), f"block{i}_pw"),
        ]
        cin = cout
    return layers


def backbone_modules() -> tuple[str, ...]:
    """The model's top-level modules that the ImageNet weights fill: stem, block{i}_dw, block{i}_pw."""
    return tuple(dict.fromkeys(module for *_, module in keras_layers()))


def backbone_keys() -> list[tuple[str, ...]]:
    """Every backbone tensor as ``(collection, module, submodule, name)``, e.g. ``("params", "stem", "bn", "bias")``."""
    keys = []
    for _, kind, _, module in keras_layers():
        if kind == "bn":
            keys += [(collection, module, "bn", name) for _, collection, name in _BN]
        else:
            keys.append(("params", module, "dw" if kind == "dw" else "conv", "kernel"))
    return keys


# ---------------------------------------------------------------- reading Keras' HDF5


def _decode(values) -> list[str]:
    """An HDF5 attribute holding names (bytes, str, or an empty array) as a list of str."""
    if isinstance(values, (bytes, str)):
        values = [values]
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in np.asarray(values).ravel().tolist()]


def _names_attribute(group, name: str) -> list[str] | None:
    """Keras' ``load_attributes_from_hdf5_group``: ``name``, or its chunks ``name0``, ``name1``... ."""
    if name in group.attrs:
        return _decode(group.attrs[name])
    if f"{name}0" not in group.attrs:
        return None
    values, chunk = [], 0
    while f"{name}{chunk}" in group.attrs:
        values += _decode(group.attrs[f"{name}{chunk}"])
        chunk += 1
    return values


def _short(weight_name: str) -> str:
    """``conv_dw_1/depthwise_kernel:0`` -> ``depthwise_kernel``."""
    return weight_name.rsplit("/", 1)[-1].split(":", 1)[0]


def read_keras_h5(h5_path: str) -> dict[str, dict[str, np.ndarray]]:
    """``{layer: {weight: array}}`` of every layer with weights in a Keras 2 HDF5 file
    (``save_weights``' layout, or ``save``'s with the same under ``model_weights``)."""
    try:
        import h5py
    except ImportError:
        raise CheckpointError(f"{h5_path}: reading a Keras .h5 needs h5py (pip install 'h5py>=3.10')") from None

    if not os.path.isfile(h5_path):
        raise DataNotFoundError(f"{h5_path}: no such file")
    if not h5py.is_hdf5(h5_path):
        raise CheckpointError(f"{h5_path}: not an HDF5 file; {NEEDED} (e.g. mobilenet_1_0_224_tf.h5)")
    try:
        with h5py.File(h5_path, "r") as f:
            group = f["model_weights"] if "model_weights" in f else f
            layer_names = _names_attribute(group, "layer_names")
            if layer_names is None:
                raise CheckpointError(
                    f"{h5_path}: not a Keras 2 HDF5 weights file (no layer_names attribute); {NEEDED}"
                )
            layers = {}
            for layer in layer_names:
                if layer not in group:
                    raise CheckpointError(f"{h5_path}: layer {layer} is listed but has no group; a damaged file?")
                weight_names = _names_attribute(group[layer], "weight_names") or []
                weights = {}
                for weight_name in weight_names:
                    if weight_name not in group[layer]:
                        raise CheckpointError(f"{h5_path}: {layer}/{weight_name} is listed but missing; damaged?")
                    weights[_short(weight_name)] = np.asarray(group[layer][weight_name], dtype=np.float32)
                if weights:
                    layers[layer] = weights
            return layers
    except CheckpointError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as e:
        detail = " ".join(str(e).split())[:200]
        raise CheckpointError(f"{h5_path}: unreadable HDF5 file ({type(e).__name__}: {detail})") from None


def _looks_like(layer_names) -> str:
    names = set(layer_names)
    if {"Conv1", "expanded_conv_project", "block_1_expand"} & names:
        return " (its layers are MobileNetV2's)"
    if any(n.startswith("expanded_conv") for n in names):
        return " (its layers are MobileNetV3's)"
    shown = ", ".join(list(layer_names)[:6])
    return f" (its layers: {shown}{', ...' if len(names) > 6 else ''})" if names else " (it has no weights)"


def backbone_from_keras(layers: dict[str, dict[str, np.ndarray]], h5_path: str) -> dict:
    """The project's ``{"params": ..., "batch_stats": ...}`` backbone from ``read_keras_h5``'s layers.

    A file of another architecture or width is a one-line ``CheckpointError`` naming the
    layer (and shape) that does not match.
    """
    expected = keras_layers()
    if not any(name in layers for name, *_ in expected):
        raise CheckpointError(f"{h5_path}: not Keras' MobileNet (v1): no layer conv1, conv_dw_1, conv_pw_1..."
                              f"{_looks_like(layers)}; {NEEDED}")  # fmt: skip
    missing = [name for name, *_ in expected if name not in layers]
    if missing:
        shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        raise CheckpointError(f"{h5_path}: missing layers {shown}; {NEEDED}")
    tree: dict = {"params": {}, "batch_stats": {}}
    for layer, kind, shape, module in expected:
        weights = layers[layer]
        names = [name for name, *_ in _BN] if kind == "bn" else ["depthwise_kernel" if kind == "dw" else "kernel"]
        if sorted(weights) != sorted(names):
            raise CheckpointError(
                f"{h5_path}: layer {layer} has weights {', '.join(sorted(weights))}, MobileNet v1's has "
                f"{', '.join(names)}; {NEEDED}"
            )
        for name in names:
            if weights[name].shape != shape:
                alpha = ""
                if shape[-1] != weights[name].shape[-1] and kind != "dw":
                    alpha = f" (alpha {weights[name].shape[-1] / shape[-1]:g}?)"
                raise CheckpointError(
                    f"{h5_path}: {layer}/{name} has shape {weights[name].shape}, MobileNet v1 alpha 1.0 has "
                    f"{shape}{alpha}; {NEEDED}"
                )
        if kind == "bn":
            for name, collection, ours in _BN:
                tree[collection].setdefault(module, {}).setdefault("bn", {})[ours] = weights[name]
        elif kind == "dw":  # Keras (k, k, C, 1) -> ours (k, k, 1, C)
            tree["params"].setdefault(module, {})["dw"] = {"kernel": np.transpose(weights[names[0]], (0, 1, 3, 2))}
        else:
            tree["params"].setdefault(module, {})["conv"] = {"kernel": weights[names[0]]}
    return tree


def _leaves(tree: dict, prefix: tuple = ()) -> dict[tuple[str, ...], np.ndarray]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_leaves(value, (*prefix, key)))
        else:
            flat[(*prefix, key)] = value
    return flat


def convert(h5_path: str, out_path: str) -> dict:
    """Writes the backbone of a Keras MobileNet (alpha 1.0) ``.h5`` as a weights file; returns a summary."""
    from amobilenet_jax import weights

    layers = read_keras_h5(h5_path)
    tree = backbone_from_keras(layers, h5_path)
    out_dir = os.path.dirname(os.path.abspath(out_path))
    if not os.path.isdir(out_dir):
        raise DataNotFoundError(f"{out_path}: no such directory {out_dir}")
    size = weights.save(out_path, tree["params"], tree["batch_stats"])
    leaves = _leaves(tree)
    used = {name for name, *_ in keras_layers()}
    return {
        "out": out_path,
        "tensors": len(leaves),
        "parameters": int(sum(v.size for k, v in leaves.items() if k[0] == "params")),
        "bytes": size,
        "skipped_layers": sorted(set(layers) - used),
    }


# ---------------------------------------------------------------- model.init_from


def load_backbone(path: str) -> dict:
    """The backbone tensors of ``path``: a converted weights file, or a Keras ``.h5`` (converted in memory)."""
    from amobilenet_jax import weights

    if not os.path.isfile(path):
        raise DataNotFoundError(f"{path}: no such file (model.init_from)")
    with open(path, "rb") as f:
        is_hdf5 = f.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE
    if is_hdf5:
        return backbone_from_keras(read_keras_h5(path), path)
    return weights.load(path)


def _key(where) -> tuple[str, ...]:
    """A pytree key path (dict keys) as a tuple of names."""
    return tuple(str(getattr(p, "key", getattr(p, "name", p))) for p in where)


def init_backbone(variables: dict, path: str) -> tuple[dict, int, int]:
    """``variables`` (``{"params", "batch_stats"}`` of a mobilenet_v1/amobilenet model) with
    the backbone tensors of ``path``; every other leaf (CBAM, classifier) is kept as it is.

    Returns ``(variables, tensors, parameters)``; replaced leaves are float32 numpy arrays.
    A file without the whole backbone, or whose shapes differ from the model's (a width
    other than 1.0), is a one-line ``CheckpointError``.
    """
    import jax

    loaded = _leaves(load_backbone(path))
    wanted = backbone_keys()
    missing = [k for k in wanted if k not in loaded]
    if missing:
        raise CheckpointError(
            f"{path}: holds no {'/'.join(missing[0])} ({len(missing)} backbone tensors missing): not MobileNet v1 "
            "backbone weights; convert the Keras .h5 with python -m amobilenet_jax.imagenet"
        )
    model = {_key(where): leaf for where, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]}
    for key in wanted:  # network order: the first layer that does not fit is the one named
        if key not in model:
            raise CheckpointError(
                f"{path}: the config's model has no {'/'.join(key)}: model.init_from needs "
                f"model.name {' or '.join(ARCHITECTURES)}"
            )
        if np.shape(loaded[key]) != np.shape(model[key]):
            raise CheckpointError(
                f"{path}: {'/'.join(key)} has shape {np.shape(loaded[key])}, the config's model "
                f"{np.shape(model[key])}; ImageNet MobileNet weights need model.width=1.0"
            )
    replace = set(wanted)

    def pick(where, leaf):
        key = _key(where)
        return np.asarray(loaded[key], np.float32) if key in replace else leaf

    out = jax.tree_util.tree_map_with_path(pick, variables)
    count = int(sum(np.size(loaded[k]) for k in wanted if k[0] == "params"))
    return out, len(wanted), count


def main(argv: list[str] | None = None) -> None:
    import argparse

    from amobilenet_jax.errors import UserError

    parser = argparse.ArgumentParser(prog="python -m amobilenet_jax.imagenet", description=__doc__.split("\n")[0])
    parser.add_argument("--h5", required=True, help="Keras' MobileNet alpha 1.0 weights, e.g. mobilenet_1_0_224_tf.h5")
    parser.add_argument("--out", required=True, help="the weights file to write (for --config.model.init_from)")
    args = parser.parse_args(argv)
    try:
        summary = convert(args.h5, args.out)
    except UserError as e:
        sys.exit(f"error: {' '.join(str(e).split())}")
    skipped = f"; skipped {', '.join(summary['skipped_layers'])}" if summary["skipped_layers"] else ""
    print(
        f"wrote {summary['tensors']} backbone tensors ({summary['parameters']:,} parameters) of MobileNet v1 "
        f"alpha 1.0 to {summary['out']}{skipped}",
        flush=True,
    )


if __name__ == "__main__":
    main()


def init_from_file(state, path: str) -> tuple[object, str]:
    """``state`` with the backbone of ``model.init_from`` (``amobilenet_jax.imagenet``) in its
    params and batch statistics, CBAM and classifier as initialised; and the line that says so.

    For a fresh run only: a resumed run's checkpoint is never overwritten.
    """
    import jax

    variables = {"params": state.params, "batch_stats": state.batch_stats}
    loaded, tensors, count = init_backbone(variables, path)
    placed = jax.tree.map(
        lambda old, new: old if new is old else jax.device_put(np.asarray(new, old.dtype), old.sharding),
        variables,
        loaded,
    )
    backbone = set(backbone_modules())
    fresh = {"CBAM" if "_cbam" in name else name for name in state.params if name not in backbone}
    fresh_line = " and ".join(sorted(fresh, key=lambda n: (n != "CBAM", n))) or "nothing"
    line = f"initialised {tensors} backbone tensors ({count / 1e6:.1f}M parameters) from {path}; {fresh_line} fresh"
    return state.replace(params=placed["params"], batch_stats=placed["batch_stats"]), line
