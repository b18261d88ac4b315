"""Each tracked face's expression over time: the series from predict's video records, and the
figure ``predict --timeline`` writes (one panel a track, one line a class)."""

from __future__ import annotations

import numpy as np

from amobilenet_jax import files


def series(records: list[dict]) -> list[dict]:
    """One entry a tracked face, in order of first appearance: its file, track id, the times and
    the probabilities per class (as the records carry them, smoothed when ``--smooth_s`` says)."""
    tracks: dict[tuple[str, int], dict] = {}
    for record in records:
        if record.get("track") is None or record.get("time_s") is None or "probabilities" not in record:
            continue
        key = (record["file"], record["track"])
        entry = tracks.setdefault(key, {"file": key[0], "track": key[1], "time_s": [], "probabilities": {}})
        entry["time_s"].append(record["time_s"])
        for name, p in record["probabilities"].items():
            entry["probabilities"].setdefault(name, []).append(p)
    return list(tracks.values())


def draw(records: list[dict], path: str, smooth_s: float = 0.0) -> int:
    """Writes the timeline figure to ``path`` (whole or not at all); returns the number of panels.
    A video with no tracked face gives one empty panel saying so."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tracks = series(records)
    panels = max(len(tracks), 1)
    fig, axes = plt.subplots(panels, 1, figsize=(9, 1.9 * panels + 0.6), sharex=True, squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, track in zip(axes[:, 0], tracks):
        times = np.asarray(track["time_s"])
        for i, (name, values) in enumerate(track["probabilities"].items()):
            ax.plot(times, values, label=name, color=colors(i % 10), linewidth=1.4)
        ax.set_ylim(0, 1)
        ax.set_ylabel("probability")
        ax.set_title(f"{track['file']}: face track {track['track']}", fontsize=9, loc="left")
        ax.grid(alpha=0.3)
    if not tracks:
        axes[0, 0].text(0.5, 0.5, "no face tracked", ha="center", va="center", transform=axes[0, 0].transAxes)
    smoothing = f", each averaged over {smooth_s:g} s" if smooth_s > 0 else ""
    axes[-1, 0].set_xlabel(f"time (s){smoothing}")
    legend = 0.0
    if tracks:  # the classes once, under the panels
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 8), fontsize=8, frameon=False)
        legend = 0.45 / fig.get_figheight()
    fig.tight_layout(rect=(0, legend, 1, 1))
    with files.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format=path.rsplit(".", 1)[-1].lower() if "." in path else "png")
    plt.close(fig)
    return len(tracks)
