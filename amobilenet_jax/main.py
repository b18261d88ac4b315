"""Command line: flags only; the work is in importable functions.

python -m amobilenet_jax.main --config configs/quickstart.py --workdir runs/qs
python -m amobilenet_jax.main --workdir runs/qs --mode eval        # the run's own config.json
python -m amobilenet_jax.main --config configs/quickstart.py --mode summary

A mistake the user can fix (a config value, bad data, another experiment's checkpoint, a
signal that stopped the run) ends in one line on stderr, ``error: ...``, and a non-zero
exit; a traceback means a bug in this codebase.
"""

from __future__ import annotations

import json
import sys
import warnings

from absl import app, flags, logging
from ml_collections import config_flags

from amobilenet_jax.config import VECTORIZE_CHOICES

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file, optionally with ':variant'.", lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory: checkpoints, TensorBoard events, results.")
flags.DEFINE_enum(
    "mode",
    "train",
    ["train", "eval", "summary", "list", "table"],
    "train | eval | summary; for a config with a sweep also list (one command per point) | table (aggregate only).",
)
flags.DEFINE_list(
    "ensemble",
    None,
    "--mode eval: more run directories (or shipped models) to evaluate with --workdir's as one model, their "
    "test-time views' logits summed (DIR,DIR,...).",
)
flags.DEFINE_list(
    "sweep_index", None, "Run only this point of the config's sweep, or these (I,J,...: one vectorised group)."
)
flags.DEFINE_string(
    "points_dir",
    None,
    "A study's point runs live here (default: --workdir); studies that share it run their common points once.",
)
flags.DEFINE_enum(
    "vectorize",
    "auto",
    list(VECTORIZE_CHOICES),
    "Train sweep points that differ only in seed/lr/lambda/alpha as one vmapped program: "
    "true | false | auto (off-CPU only).",
)
flags.DEFINE_enum(
    "launch",
    "none",
    ["none", "local", "slurm"],
    "Train a study as one task per point (or vectorised group) through submitit: none (in this process) | "
    "local (tasks on this machine, then the tables) | slurm (an array job, then a table job).",
)
flags.DEFINE_string("partition", None, "--launch=slurm: the Slurm partition (default: the cluster's).")
flags.DEFINE_integer("time_min", 240, "--launch: a task's time limit in minutes (preempted tasks resume).")
flags.DEFINE_integer("gpus_per_task", 1, "--launch=slurm: GPUs per task (0: CPU nodes).")
flags.DEFINE_integer("cpus_per_task", None, "--launch=slurm: CPU cores per task.")
flags.DEFINE_integer("launch_parallel", None, "--launch: tasks running at once (local default 1, Slurm default 256).")
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
    "On CPU: run programs on the calling thread and keep freed memory for reuse (see amobilenet_jax/runtime.py).",
)


def main(argv):
    """Runs the command; a ``UserError`` becomes one line on stderr and a non-zero exit."""
    from amobilenet_jax.errors import Interrupted, UserError, one_line

    try:
        run(argv)
    except Interrupted as e:
        sys.stderr.write(f"error: {e}\n")
        sys.exit(e.exit_code)
    except UserError as e:
        sys.exit(f"error: {one_line(e)}")
    except KeyboardInterrupt:
        sys.exit("error: interrupted before training started; nothing was saved")


def run(argv):
    from amobilenet_jax import runtime
    from amobilenet_jax.config import validate
    from amobilenet_jax.errors import warning_line

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # keep library INFO chatter out of the progress lines
    warnings.formatwarning = warning_line
    config = FLAGS.config
    if config is None:
        raise app.UsageError("--config is required, unless --workdir names a run that has a config.json")
    validate(config)
    if FLAGS.cpu_tuning:
        runtime.configure()
    try:
        runtime.initialize_distributed(
            FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id, FLAGS.distributed
        )
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    runtime.enable_compilation_cache()
    if FLAGS.mode == "summary":
        from amobilenet_jax.summary import model_summary

        table, info = model_summary(config)
        print(table)
        print(json.dumps(info))
        return
    if not FLAGS.workdir:
        raise app.UsageError(f"--workdir is required for --mode {FLAGS.mode}")
    from amobilenet_jax import evaluate, sweep, train

    spec = config_flags.get_config_filename(FLAGS["config"])
    points = sweep.load_sweep(spec)
    sweep_index = _sweep_index(FLAGS.sweep_index)
    if FLAGS.ensemble and (FLAGS.mode != "eval" or points is not None):
        raise app.UsageError("--ensemble evaluates several runs as one: --mode eval of one run, not a study")
    if FLAGS.launch != "none" and (points is None or FLAGS.mode != "train" or sweep_index is not None):
        raise app.UsageError("--launch trains a whole study: a config with a sweep, --mode train, no --sweep_index")
    if points is not None:
        extra = config_overrides(sys.argv)
        extra += [] if FLAGS.cpu_tuning else ["--nocpu_tuning"]
        study = sweep.Study(config, spec, points, FLAGS.workdir, FLAGS.points_dir, extra)
        if FLAGS.launch != "none":
            from amobilenet_jax import launch

            resources = launch.Resources(FLAGS.partition, FLAGS.time_min, FLAGS.gpus_per_task, FLAGS.cpus_per_task,
                                         FLAGS.launch_parallel)  # fmt: skip
            launch.launch(FLAGS.launch, study, FLAGS.vectorize, resources)
            return
        sweep.run(study, FLAGS.mode, sweep_index, FLAGS.vectorize)
    elif FLAGS.mode in ("list", "table") or sweep_index is not None:
        raise app.UsageError(f"{spec} defines no sweep (get_sweep): --mode {FLAGS.mode} needs one")
    elif FLAGS.mode == "train":
        train.train_and_evaluate(config, FLAGS.workdir)
    elif FLAGS.ensemble:
        result = evaluate.evaluate_ensemble(config, FLAGS.workdir, FLAGS.ensemble)
        print(json.dumps({k: result[k] for k in ("split", "members", "accuracy", "mean_class_accuracy")}))
    else:
        result = evaluate.evaluate_checkpoint(config, FLAGS.workdir)
        print(json.dumps({k: result[k] for k in ("split", "step", "accuracy", "mean_class_accuracy")}))


def config_overrides(argv: list[str], flag_values: flags.FlagValues = FLAGS) -> list[str]:
    """The ``--config.*`` overrides of a parsed ``argv``, each one token as absl read it, for a point's
    own command: ``--config.f V`` becomes ``--config.f=V`` (a boolean ``--config.f``/``--noconfig.f``
    stays bare)."""
    overrides = []
    tokens = iter(flag_values.read_flags_from_files(argv[1:], force_gnu=False))
    for token in tokens:
        if token == "--":
            break
        if not token.startswith("-"):
            continue
        name, equals, value = token.lstrip("-").partition("=")
        flag = flag_values[name] if name in flag_values else None
        if not equals and flag is not None and not flag.boolean:  # its value is the next token
            token = f"--{name}={next(tokens, '')}"
        if name.removeprefix("no").startswith("config."):
            overrides.append(token)
    return overrides


def _sweep_index(values: list[str] | None) -> list[int] | None:
    if values is None:
        return None
    try:
        return [int(v) for v in values]
    except ValueError:
        raise app.UsageError(f"--sweep_index takes point numbers (I or I,J,...), got {','.join(values)!r}") from None


def parse_flags(argv: list[str]) -> list[str]:
    """absl's parsing, with a one-line error for a bad flag, config file or --config.* override;
    without --config, a run directory's own config.json (``config.with_run_config``)."""
    from amobilenet_jax.config import with_run_config
    from amobilenet_jax.errors import bad_config_line, one_line

    argv = with_run_config(argv)
    try:
        remaining = FLAGS(argv)
        if FLAGS.config is not None:
            FLAGS.config.keys()  # config_flags defers a missing file's error to first use
        return remaining
    except flags.Error as e:
        sys.exit(f"error: {one_line(e)}")
    except (AttributeError, KeyError, TypeError, ValueError, OSError) as e:
        sys.exit(bad_config_line(e, argv))


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
