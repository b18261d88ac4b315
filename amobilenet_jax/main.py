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
import os
import re
import sys
import warnings

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
flags.DEFINE_string(
    "points_dir",
    None,
    "A study's point runs live here (default: --workdir); studies that share it run their common points once.",
)
flags.DEFINE_enum(
    "vectorize",
    "auto",
    ["auto", "true", "false"],
    "Train sweep points that differ only in seed/lr/lambda/alpha as one vmapped program: "
    "true | false | auto (off-CPU only).",
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
    """Runs the command; a ``UserError`` becomes one line on stderr and a non-zero exit."""
    from amobilenet_jax.errors import Interrupted, UserError

    try:
        run(argv)
    except Interrupted as e:
        sys.stderr.write(f"error: {e}\n")
        sys.exit(e.exit_code)
    except UserError as e:
        sys.exit(f"error: {_one_line(e)}")
    except KeyboardInterrupt:
        sys.exit("error: interrupted before training started; nothing was saved")


def run(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # keep library INFO chatter out of the progress lines
    warnings.formatwarning = _one_line_warning
    config = FLAGS.config
    if config is None:
        raise app.UsageError("--config is required, unless --workdir names a run that has a config.json")
    from amobilenet_jax.config import validate

    validate(config)
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
            print(json.dumps({k: result[k] for k in ("split", "step", "accuracy", "mean_class_accuracy")}))
        return
    extra = [a for a in sys.argv[1:] if a.startswith("--config.")]
    sweep.run(
        config, spec, points, FLAGS.mode, FLAGS.workdir, FLAGS.sweep_index, FLAGS.vectorize, extra, FLAGS.points_dir
    )


def _one_line(error: BaseException) -> str:
    """First and last line of an error's text (config_flags embeds a whole traceback); an
    unknown config field as ``no config field 'x' (did you mean "y"?)``."""
    text = str(error)
    if len(text) > 1 and text[0] == text[-1] == "'":  # a KeyError's repr inside an AttributeError
        text = text[1:-1].replace("\\n", "\n").replace("\\'", "'")
    if isinstance(error, (AttributeError, KeyError)):
        name = re.search(r'Key "(\w+)" does not exist', text) or re.match(r"""^["'\\]*(\w+)["'\\]*(\s|$)""", text)
        if name:
            hint = re.search(r'Did you mean "(\w+)"', text)
            return f"no config field '{name.group(1)}'" + (f' (did you mean "{hint.group(1)}"?)' if hint else "")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    return lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1]}"


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """A warning as the user reads it: ``warning: <text>``, without this codebase's file and line."""
    return f"warning: {' '.join(str(message).split())}\n"


def _flag_value(argv: list[str], name: str) -> str | None:
    """The value of ``--name=V`` or ``--name V`` in ``argv`` (the last one wins), else None."""
    value = None
    for i, arg in enumerate(argv):
        if arg.startswith(f"--{name}="):
            value = arg.split("=", 1)[1]
        elif arg == f"--{name}" and i + 1 < len(argv):
            value = argv[i + 1]
    return value


def with_run_config(argv: list[str]) -> list[str]:
    """``argv`` with ``--config`` pointing at the run's own ``config.json`` when it names none
    and ``--workdir`` is a run that has one: the run directory is the source of truth."""
    if _flag_value(argv, "config") is not None:
        return argv
    workdir = _flag_value(argv, "workdir")
    if not workdir or not os.path.isfile(os.path.join(workdir, "config.json")):
        return argv
    from amobilenet_jax.config import run_config_spec

    return [argv[0], f"--config={run_config_spec(workdir)}", *argv[1:]]


def parse_flags(argv: list[str]) -> list[str]:
    """absl's parsing, with a one-line error for a bad flag, config file or --config.* override.

    ml_collections raises plain Python errors (a misspelt field is an AttributeError
    saying 'Did you mean ...'), which absl would print as a traceback.
    """
    argv = with_run_config(argv)
    try:
        remaining = FLAGS(argv)
        if FLAGS.config is not None:
            FLAGS.config.keys()  # config_flags defers a missing file's error to first use
        return remaining
    except flags.Error as e:
        sys.exit(f"error: {_one_line(e)}")
    except (AttributeError, KeyError, TypeError, ValueError, OSError) as e:
        detail = _one_line(e)
        field = re.search(r"no config field '(\w+)'", detail) or re.match(r"'?(\w+)'?", detail)
        overrides = [a for a in argv[1:] if a.startswith("--config.")]
        culprit = next((a for a in overrides if field and f".{field.group(1)}" in a), None)
        where = f" in {culprit}" if culprit else ""
        kind = "" if detail.startswith("no config field") else f"{type(e).__name__}: "
        sys.exit(f"error: bad config{where}: {kind}{detail}")


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
