"""Test-time views beyond the mirror image: does voting over crops lift a trained model on Valid?

A lever that costs no training time: evaluation today sums the logits of each image and of
its mirror image (``eval_flip``). This script evaluates trained models on FERPlus Valid with
more views (zoom-in crops at the centre and the four corners, several zooms), each view one
affine map through the same bilinear warp, resize and normalisation that training and
evaluation use (``data.augment``), and reports accuracy and mean per-class accuracy of each
set of views (logits summed, as ``eval_flip`` sums them).

    python experiments/ferplus_cpu/tta.py --data /data/ferplus \\
        --model "run C=amobilenet_jax/assets/ferplus_amobilenet" --model "seed 1=runs/x" \\
        --out experiments/ferplus_cpu/tta_valid.json

A model is a run directory or a shipped directory (``weights.msgpack`` and ``config.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from amobilenet_jax import data, evaluation, inference, runtime
from amobilenet_jax.data import augment

BATCH = 256


def views(zoom: float = 0.9) -> dict[str, tuple[float, float, float, bool]]:
    """Named views ``(scale, shift y, shift x, mirrored)``: the source window is ``scale`` of
    the side, moved by the shift in [-1, 1] image coordinates (corners stay inside)."""
    m = 1.0 - zoom
    out = {}
    for mirrored in (False, True):
        tag = " mirrored" if mirrored else ""
        out["whole" + tag] = (1.0, 0.0, 0.0, mirrored)
        out["zoom 0.95 centre" + tag] = (0.95, 0.0, 0.0, mirrored)
        out[f"zoom {zoom} centre" + tag] = (zoom, 0.0, 0.0, mirrored)
        corners = (("top-left", -m, -m), ("top-right", -m, m), ("bottom-left", m, -m), ("bottom-right", m, m))
        for name, dy, dx in corners:
            out[f"zoom {zoom} {name}" + tag] = (zoom, dy, dx, mirrored)
    return out


def view_sets(zoom: float = 0.9) -> dict[str, list[str]]:
    both = lambda names: [n + t for n in names for t in ("", " mirrored")]  # noqa: E731
    corners = [f"zoom {zoom} {c}" for c in ("centre", "top-left", "top-right", "bottom-left", "bottom-right")]
    return {
        "1 view (whole image)": ["whole"],
        "2 views (whole + mirror; today's eval_flip)": both(["whole"]),
        f"10 views (5 crops at zoom {zoom} + mirrors)": both(corners),
        f"12 views (whole + 5 crops at zoom {zoom}, + mirrors)": both(["whole", *corners]),
        f"6 views (zoom 1, 0.95, {zoom} centred + mirrors)": both(["whole", "zoom 0.95 centre", f"zoom {zoom} centre"]),
    }


def make_forward(model: inference.Model):
    """One compiled forward pass for every view: ``forward(variables, batch, matrix, shift)``
    (the view's affine map is an argument, so a new view does not recompile)."""
    config, module = model.config, model.module

    @jax.jit
    def forward(variables, batch, matrix, shift):
        size = config.data.image_size
        x = jax.vmap(lambda im: augment._warp(im, matrix, shift, size))(batch)
        x = augment.normalize(x, config.data.normalize_mean, config.data.normalize_std)
        return module.apply(variables, x, train=False)[0]

    return forward


def view_logits(model: inference.Model, forward, images: np.ndarray, view) -> np.ndarray:
    """Logits ``[N, K]`` of one view of uint8 ``images`` ``[N, H, W, C]``."""
    scale, dy, dx, mirrored = view
    x_sign = -1.0 if mirrored else 1.0
    matrix = jnp.array([[scale, 0.0], [0.0, scale * x_sign]], jnp.float32)
    shift = jnp.array([dy, dx], jnp.float32)
    out = []
    for start in range(0, len(images), BATCH):
        chunk = images[start : start + BATCH]
        padded = np.zeros((BATCH, *chunk.shape[1:]), np.uint8)
        padded[: len(chunk)] = chunk
        out.append(np.asarray(forward(model.variables, jnp.asarray(padded), matrix, shift))[: len(chunk)])
    return np.concatenate(out)


def scores(logits: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...]) -> dict:
    """Accuracy, images right and mean per-class accuracy, by the project's own metric."""
    k = len(class_names)
    confusion = np.zeros((k, k), np.int64)
    np.add.at(confusion, (labels, logits.argmax(-1)), 1)
    metrics = evaluation.confusion_metrics(confusion, class_names)
    return {
        "accuracy": metrics["accuracy"],
        "correct": int(np.trace(confusion)),
        "mean_class_accuracy": metrics["mean_class_accuracy"],
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="FERPlus directory in its official layout")
    parser.add_argument("--cache_dir", default=None, help="prepared-data cache (default: data's own)")
    parser.add_argument("--model", action="append", required=True, help="NAME=DIR (repeatable)")
    parser.add_argument("--zoom", type=float, default=0.9)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    runtime.configure()
    runtime.enable_compilation_cache()

    given = sys.argv[1:] if argv is None else argv
    argv_shown = [{args.data: "DATA", args.cache_dir: "CACHE"}.get(a, a) for a in given]
    results = {"command": " ".join(["python", "experiments/ferplus_cpu/tta.py", *argv_shown]), "models": {}}
    valid = None
    for spec in args.model:
        name, _, path = spec.partition("=")
        if not path:
            parser.error(f"--model {spec!r}: give NAME=DIR")
        model = inference.load_model(workdir=path)
        if valid is None:
            data_config = model.config.data.copy_and_resolve_references()
            data_config.dir = args.data
            if args.cache_dir:
                data_config.cache_dir = args.cache_dir
            valid = data.load_dataset(data_config, ["valid"]).split("valid")
        t0 = time.perf_counter()
        forward = make_forward(model)
        logits = {v: view_logits(model, forward, valid.images, spec_) for v, spec_ in views(args.zoom).items()}
        seconds = time.perf_counter() - t0
        table = {}
        for set_name, members in view_sets(args.zoom).items():
            table[set_name] = scores(sum(logits[m] for m in members), valid.labels, model.class_names)
            print(
                f"{name:>12} | {set_name:<52} | {100 * table[set_name]['accuracy']:.2f} | "
                f"{100 * table[set_name]['mean_class_accuracy']:.2f}",
                flush=True,
            )
        single = {v: scores(lg, valid.labels, model.class_names)["accuracy"] for v, lg in logits.items()}
        results["models"][name] = {
            "sets": table,
            "single_view_accuracy": single,
            "seconds_for_all_views": round(seconds, 1),
            "views": len(logits),
        }
    results["num_images"] = int(len(valid))
    with open(args.out + ".tmp", "w") as f:
        json.dump(results, f, indent=1)
    os.replace(args.out + ".tmp", args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
