"""Metrics from a confusion matrix, and the confusion-matrix figure."""

from __future__ import annotations

import io

import numpy as np


def confusion_metrics(confusion_KxK: np.ndarray, class_names: tuple[str, ...]) -> dict:
    """Accuracy and per-class accuracy (recall) from counts; rows are true classes."""
    cm = np.asarray(confusion_KxK, dtype=np.int64)
    total = int(cm.sum())
    support = cm.sum(axis=1)
    per_class = np.divide(np.diag(cm), support, out=np.full(len(cm), np.nan), where=support > 0)
    return {
        "accuracy": float(np.trace(cm) / total) if total else float("nan"),
        "per_class_accuracy": {name: (None if np.isnan(a) else float(a)) for name, a in zip(class_names, per_class)},
        "mean_class_accuracy": float(np.nanmean(per_class)) if np.any(support > 0) else float("nan"),
        "confusion_matrix": cm.tolist(),
        "num_examples": total,
    }


def confusion_figure_png(confusion_KxK: np.ndarray, class_names: tuple[str, ...], title: str = "") -> bytes:
    """Row-normalised confusion matrix as PNG bytes (counts in each cell)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(confusion_KxK, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * k, 0.8 + 0.7 * k), dpi=100)
    ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    for i in range(k):
        for j in range(k):
            color = "white" if norm[i, j] > 0.5 else "black"
            ax.text(j, i, f"{norm[i, j]:.2f}\n({int(cm[i, j])})", ha="center", va="center", fontsize=7, color=color)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def png_to_array(png: bytes) -> np.ndarray:
    """PNG bytes -> uint8 ``[H, W, 3]`` for TensorBoard."""
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def upsample(images_NxHxWxC: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of float images to ``size`` x ``size`` on the host, for display."""
    from PIL import Image

    out = [
        np.stack(
            [np.asarray(Image.fromarray(im[..., c]).resize((size, size), Image.BILINEAR)) for c in range(im.shape[-1])],
            axis=-1,
        )
        for im in np.asarray(images_NxHxWxC, np.float32)
    ]
    return np.stack(out)


def training_curves_png(scalars: dict[str, list[tuple[int, float]]], title: str = "") -> bytes:
    """Loss (total, softmax, center) and accuracy (train, eval) against step, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=100)
    for tag in ("train/loss", "train/softmax_loss", "train/center_loss"):
        if tag in scalars:
            steps, values = zip(*scalars[tag])
            ax_loss.plot(steps, values, label=tag.split("/")[1])
    for tag in sorted(
        t for t in scalars if t == "train/accuracy" or (t.startswith("eval/") and t.endswith("_accuracy"))
    ):
        steps, values = zip(*scalars[tag])
        ax_acc.plot(steps, values, marker="o" if tag.startswith("eval/") else None, label=tag)
    for ax, name in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        ax.set_xlabel("step")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
