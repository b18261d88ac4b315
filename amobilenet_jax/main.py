"""Command line: flags only; the work is in importable functions.

python -m amobilenet_jax.main --config configs/quickstart.py --workdir runs/qs
python -m amobilenet_jax.main --config configs/quickstart.py --workdir runs/qs --mode eval
python -m amobilenet_jax.main --config configs/quickstart.py --mode summary
"""

from __future__ import annotations

import json
import os
import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file, optionally with ':variant'.", lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory: checkpoints, TensorBoard events, results.")
flags.DEFINE_enum(
    "mode",
    "train",
    ["train", "eval", "summary", "list", "table"],
    "train | eval | summary; for a config with a sweep also list (one command per point) | table (aggregate only).",
)
flags.DEFINE_integer("sweep_index", None, "Run only this point of the config's sweep (for array jobs).")
flags.DEFINE_bool(
    "vectorize", True, "Train sweep points that differ only in seed/lr/lambda/alpha as one vmapped program."
)
flags.DEFINE_string(
    "coordinator_address",
    None,
    "Multi-host: host:port of process 0; with --num_processes and --process_id starts jax.distributed.",
)
flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes (one per host).")
flags.DEFINE_integer("process_id", None, "Multi-host: this process's index, 0..num_processes-1.")
flags.DEFINE_bool(
    "distributed",
    False,
    "Multi-host: start jax.distributed from the cluster's environment (SLURM, Open MPI, Kubernetes, Cloud TPU).",
)
flags.DEFINE_bool(
    "cpu_tuning",
    True,
    "On CPU: run programs on the calling thread and keep freed memory for reuse (see amobilenet_jax/cpu_runtime.py).",
)
flags.mark_flags_as_required(["config"])


def maybe_initialize_distributed() -> None:
    """Joins the processes of a multi-host run before any device is touched."""
    import jax

    explicit = (FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    if any(v is not None for v in explicit):
        if any(v is None for v in explicit):
            raise app.UsageError("--coordinator_address, --num_processes and --process_id go together")
        jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    elif FLAGS.distributed:
        jax.distributed.initialize()


def enable_compilation_cache() -> None:
    """Reuses compiled programs across runs (resumes, sweep points of equal shapes).

    ``AMOBILENET_JAX_CACHE`` names the directory; set it empty to switch the cache off.
    """
    import jax

    path = os.environ.get("AMOBILENET_JAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "amobilenet_jax"))
    if path:
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # keep library INFO chatter out of the progress lines
    config = FLAGS.config
    if FLAGS.cpu_tuning:
        from amobilenet_jax import cpu_runtime

        cpu_runtime.configure()
    maybe_initialize_distributed()
    enable_compilation_cache()
    if FLAGS.mode == "summary":
        from amobilenet_jax.summary import model_summary

        table, info = model_summary(config)
        print(table)
        print(json.dumps(info))
        return
    if not FLAGS.workdir:
        raise app.UsageError(f"--workdir is required for --mode {FLAGS.mode}")
    from amobilenet_jax import sweep, train

    spec = config_flags.get_config_filename(FLAGS["config"])
    points = sweep.load_sweep(spec)
    if points is None:
        if FLAGS.mode in ("list", "table") or FLAGS.sweep_index is not None:
            raise app.UsageError(f"{spec} defines no sweep (get_sweep): --mode {FLAGS.mode} needs one")
        if FLAGS.mode == "train":
            train.train_and_evaluate(config, FLAGS.workdir)
        else:
            result = train.evaluate_checkpoint(config, FLAGS.workdir)
            print(json.dumps({k: result[k] for k in ("split", "step", "accuracy", "per_class_accuracy")}))
        return
    title = os.path.basename(spec.partition(":")[0])[:-3]
    paper = title == "baselines"
    if FLAGS.mode == "list":
        extra = [a for a in sys.argv[1:] if a.startswith("--config.")]
        print("\n".join(sweep.list_commands(spec, FLAGS.workdir, points, extra)))
        return
    if FLAGS.mode == "train":
        import jax

        vectorize = FLAGS.vectorize == "true" or (FLAGS.vectorize == "auto" and jax.default_backend() != "cpu")
        sweep.run_sweep(config, points, FLAGS.workdir, FLAGS.sweep_index, vectorize)
    elif FLAGS.mode == "eval":
        for overrides in points:
            run_dir = os.path.join(FLAGS.workdir, sweep.point_name(overrides))
            result = train.evaluate_checkpoint(sweep.apply_overrides(config, overrides), run_dir)
            print(
                json.dumps(
                    {"run": sweep.point_name(overrides), "split": result["split"], "accuracy": result["accuracy"]}
                )
            )
        return
    if FLAGS.sweep_index is None:  # one array job does not tabulate the others
        sweep.write_tables(FLAGS.workdir, points, title, paper)
        print(open(os.path.join(FLAGS.workdir, "ablation.md")).read())


def _one_line(error: BaseException) -> str:
    """First and last line of an error's text (config_flags embeds a whole traceback)."""
    text = str(error)
    if len(text) > 1 and text[0] == text[-1] == "'":  # a KeyError's repr inside an AttributeError
        text = text[1:-1].replace("\\n", "\n").replace("\\'", "'")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    return lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1]}"


def parse_flags(argv: list[str]) -> list[str]:
    """absl's parsing, with a one-line error for a bad flag, config file or --config.* override.

    ml_collections raises plain Python errors (a misspelt field is an AttributeError
    saying 'Did you mean ...'), which absl would print as a traceback.
    """
    try:
        remaining = FLAGS(argv)
        FLAGS.config.keys()  # config_flags defers a missing file's error to first use
        return remaining
    except flags.Error as e:
        sys.exit(f"error: {_one_line(e)}")
    except (AttributeError, KeyError, TypeError, ValueError, OSError) as e:
        detail = _one_line(e)
        field = re.match(r"'?(\w+)'?", detail)
        overrides = [a for a in argv[1:] if a.startswith("--config.")]
        culprit = next((a for a in overrides if field and f".{field.group(1)}" in a), None)
        where = f" in {culprit}" if culprit else ""
        sys.exit(f"error: bad config{where}: {type(e).__name__}: {detail}")


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
