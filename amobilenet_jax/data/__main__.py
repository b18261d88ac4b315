"""Prepare a data set once (ArrayRecord, via TFDS, no TensorFlow) and print its class counts.

python -m amobilenet_jax.data --dataset ferplus --data_dir ~/data/ferplus
python -m amobilenet_jax.data --dataset ferplus --data_dir ~/data/ferplus --label_mode distribution \
    --cache_dir /tmp/tfds
python -m amobilenet_jax.data --dataset rafdb --data_dir ~/data/rafdb --on_error skip

The last line of stdout is JSON, ``{"train": {"NE": n, ...}, "valid": {...}}``, with only the
splits present, for scripts and tests to read. Bad data (a file that is not there, a bad image or
row) exits non-zero with one line on stderr, ``error: <file>:<row>: <what is wrong>``; with
``--on_error skip`` bad images and rows are left out and listed instead.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
from absl import app, flags, logging

from amobilenet_jax.data.bad_items import ON_ERROR
from amobilenet_jax.data.dataset import Dataset
from amobilenet_jax.errors import UserError

FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", None, ["ferplus", "rafdb", "fer2013"], "Data set to prepare.")
flags.DEFINE_string("data_dir", None, "The data set in its official layout.")
flags.DEFINE_enum("label_mode", "majority", ["majority", "distribution"], "FERPlus train labels (load-time choice).")
flags.DEFINE_string("cache_dir", None, "Where prepared data sets live (default: <data_dir>/.tfds).")
flags.DEFINE_enum(
    "on_error", "raise", list(ON_ERROR), "A bad image or row: raise (one line naming file and row) or skip (and list)."
)
flags.mark_flags_as_required(["dataset", "data_dir"])


def class_counts(dataset: Dataset, abbreviations: tuple[str, ...]) -> dict[str, dict[str, int]]:
    """``{split: {abbreviation: count}}`` of the hard labels, every class listed (zeros too)."""
    counts = {}
    for split_name, split in dataset.splits.items():
        per_class = np.bincount(split.labels, minlength=len(abbreviations))
        counts[split_name] = {abbr: int(n) for abbr, n in zip(abbreviations, per_class)}
    return counts


def format_table(counts: dict[str, dict[str, int]], abbreviations: tuple[str, ...]) -> str:
    """Splits as rows, classes as columns, plus a total column."""
    width = max(6, *(len(str(sum(c.values()))) + 1 for c in counts.values())) if counts else 6
    header = f"{'split':<8}" + "".join(f"{a:>{width}}" for a in abbreviations) + f"{'total':>{width + 2}}"
    rows = [header, "-" * len(header)]
    for split_name, per_class in counts.items():
        cells = "".join(f"{per_class[a]:>{width}}" for a in abbreviations)
        rows.append(f"{split_name:<8}{cells}{sum(per_class.values()):>{width + 2}}")
    return "\n".join(rows)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # keep TFDS's INFO chatter out of the table
    try:
        prepare_and_report()
    except UserError as e:  # the user's to fix: one line, no traceback
        sys.exit(f"error: {e}")


def prepare_and_report() -> None:
    """Prepares ``--dataset`` (if needed), loads it back, prints the timings, the class table and the JSON."""
    # Imported here: TFDS only when the command actually runs.
    from amobilenet_jax.data import tfds_builders

    start = time.perf_counter()
    prepared_dir = tfds_builders.prepare(FLAGS.dataset, FLAGS.data_dir, FLAGS.cache_dir, on_error=FLAGS.on_error)
    prepared_s = time.perf_counter() - start
    start = time.perf_counter()
    dataset = tfds_builders.load_prepared(
        FLAGS.dataset,
        FLAGS.data_dir,
        label_mode=FLAGS.label_mode,
        cache_dir=FLAGS.cache_dir,
        on_error=FLAGS.on_error,
    )
    load_s = time.perf_counter() - start
    abbreviations = tfds_builders.class_abbreviations(FLAGS.dataset)
    counts = class_counts(dataset, abbreviations)
    mode = f", train labels: {FLAGS.label_mode}" if FLAGS.dataset == "ferplus" else ""
    print(f"{FLAGS.dataset}{mode}: prepared at {prepared_dir} ({prepared_s:.1f} s), loaded in {load_s:.1f} s")
    print(format_table(counts, abbreviations))
    print(json.dumps(counts))


if __name__ == "__main__":
    app.run(main)
