"""Runs every fault of experiments/reliability/README.md for real and prints what the command line did.

    python experiments/reliability/reliability_matrix.py   # prints the "Observed" table of its README.md

Each row starts `python -m amobilenet_jax.main` (or `python -m amobilenet_jax.data`) in a
subprocess on the tiny synthetic config or a tiny generated FERPlus tree, injects the fault,
and records the exit code and the line the user sees. The tests that assert the same
behaviour are named in experiments/reliability/README.md; this script only shows it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
MAIN = [sys.executable, "-m", "amobilenet_jax.main"]
RUN = ["--config", "configs/quickstart.py:tiny", "--config.train.num_epochs=4"]
ROWS: list[tuple[str, str, str]] = []


ROOT = ""  # the temporary directory of this run, shown as RUN_ROOT


def shown(proc) -> str:
    """What the user sees at the end: the error line, else the warning and the last stdout line."""
    err = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    warn = [line.strip() for line in proc.stderr.splitlines() if line.startswith("warning: ")]
    skip = [line.strip() for line in proc.stdout.splitlines() if "bad item" in line]
    out = proc.stdout.strip().splitlines()
    text = err[-1] if err else " / ".join(warn[-1:] + skip[:1] + out[-1:])
    return text.replace(ROOT, "RUN_ROOT").replace(REPO, ".")


def row(fault: str, proc, note: str = "") -> None:
    text = shown(proc).replace("|", "\\|")
    ROWS.append((fault, f"exit {proc.returncode}", f"`{text}`" + (f" {note}" if note else "")))
    print(f"{fault}: exit {proc.returncode}: {text} {note}", file=sys.stderr, flush=True)


def run(*args, env=None):
    return subprocess.run([*MAIN, *args], cwd=REPO, capture_output=True, text=True, env=env, timeout=900)


def fingerprint(workdir: str) -> str:
    with open(os.path.join(workdir, "results.json")) as f:
        return json.load(f)["params_fingerprint"]


def main() -> None:
    from tests import fixtures
    from tests.test_reliability import KILL_IN_WRITE, run_until

    global ROOT
    root = ROOT = tempfile.mkdtemp(prefix="reliability-")
    ref = os.path.join(root, "reference")
    run(*RUN, "--workdir", ref)
    expected = fingerprint(ref)

    work = os.path.join(root, "run")
    args = [*RUN, "--workdir", work]
    row("SIGTERM at step 8 (preemption)", run_until(args, "step 8/32", signal.SIGTERM))
    killed = run_until(args, "step 16/32", signal.SIGKILL)
    row("kill -9 after step 16 (checkpoint possibly in flight)", killed)
    env = {**os.environ, "KILL_AT_STEP": "24"}
    in_write = subprocess.run(
        [sys.executable, "-c", KILL_IN_WRITE, *args], cwd=REPO, capture_output=True, text=True, env=env, timeout=900
    )
    left = sorted(os.listdir(os.path.join(work, "checkpoints")))
    row("kill -9 inside the write of checkpoint 24", in_write, f"(checkpoints/ then held {left})")
    row("Ctrl-C (SIGINT) at step 28", run_until(args, "step 28/32", signal.SIGINT))
    final = run(*args)
    same = fingerprint(work) == expected
    row("the same command after all four", final, f"(params_fingerprint equal to the uninterrupted run: {same})")

    row("NaN: configs/quickstart.py:diverge (lr 1e30)", run("--config", "configs/quickstart.py:diverge",
                                                            "--workdir", os.path.join(root, "nan")))  # fmt: skip

    def corrupt(name: str, damage) -> None:
        broken = os.path.join(root, name.replace(" ", "_").replace("'", ""))
        subprocess.run(["cp", "-r", ref, broken], check=True)
        os.remove(os.path.join(broken, "results.json"))
        damage(os.path.join(broken, "checkpoints"))
        row(name, run(*RUN, "--workdir", broken))
        return broken

    def truncate_newest(ckpts):
        state = os.path.join(ckpts, "32", "state")
        for dirpath, _, files in os.walk(state):
            for f in files:
                path = os.path.join(dirpath, f)
                if os.path.getsize(path) > 1000:
                    with open(path, "r+b") as fh:
                        fh.truncate(100)

    def delete_array(ckpts):
        data = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(ckpts, "32", "state")) for f in fs]
        os.remove(max(data, key=os.path.getsize))

    def garble_all(ckpts):
        for step in os.listdir(ckpts):
            if step.isdigit():
                for d, _, fs in os.walk(os.path.join(ckpts, step, "state")):
                    for f in fs:
                        with open(os.path.join(d, f), "wb") as fh:
                            fh.write(b"garbage")

    corrupt("newest checkpoint truncated", truncate_newest)
    corrupt("newest checkpoint's largest array file deleted", delete_array)
    corrupt("every checkpoint unreadable", garble_all)

    row("eval with the run dir alone", run("--workdir", ref, "--mode", "eval"))
    row("eval, data.cache_dir and eval_split changed", run("--workdir", ref, "--mode", "eval",
        f"--config.data.cache_dir={root}/elsewhere", "--config.eval_split=train"))  # fmt: skip
    row("eval with another model width and seed", run("--workdir", ref, "--mode", "eval",
        "--config.model.width=0.5", "--config.seed=3"))  # fmt: skip

    for override in ["--config.train.batch_sise=8", "--config.train.batch_size=8.5", "--config.model.name=resnet",
                     "--config.data.name=affectnet", "--config.model.depthwise_impl=fast",
                     "--config.data.balance=undersample"]:  # fmt: skip
        row(f"config mistake `{override}`", run(*RUN, "--workdir", os.path.join(root, "never"), override))

    # Bad data, through the data-preparation command.
    def data_case(name: str, damage, *extra) -> None:
        data = os.path.join(root, name.replace(" ", "_"))
        info = fixtures.write_ferplus_folders(data, sizes={"train": 8, "valid": 8})["splits"]["train"]
        keep = [i for i, m in enumerate(info["majority"]) if m >= 0][0]
        damage(info, os.path.join(info["dir"], info["names"][keep]), keep)
        cache = os.path.join(root, "cache_" + name.replace(" ", "_"))
        cmd = [sys.executable, "-m", "amobilenet_jax.data", "--dataset", "ferplus", "--data_dir", data,
               "--cache_dir", cache, *extra]  # fmt: skip
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
        left = sorted(os.listdir(cache)) if os.path.isdir(cache) else []
        ROWS.append((f"data: {name}", f"exit {proc.returncode}", f"`{shown(proc)}` (cache left: {left})"))

    def truncate(info, png, i):
        with open(png, "r+b") as f:
            f.truncate(30)

    def wrong_size(info, png, i):
        from PIL import Image

        Image.new("L", (40, 40)).save(png)

    def not_an_image(info, png, i):
        with open(png, "w") as f:
            f.write("not a png")

    def empty_csv(info, png, i):
        open(os.path.join(info["dir"], "label.csv"), "w").close()

    def short_row(info, png, i):
        path = os.path.join(info["dir"], "label.csv")
        lines = open(path).read().splitlines()
        lines[i] = lines[i].rsplit(",", 3)[0]
        open(path, "w").write("\n".join(lines) + "\n")

    def negative_vote(info, png, i):
        path = os.path.join(info["dir"], "label.csv")
        lines = open(path).read().splitlines()
        lines[i] = lines[i].rsplit(",", 1)[0] + ",-3"
        open(path, "w").write("\n".join(lines) + "\n")

    def missing(info, png, i):
        os.remove(png)

    data_case("truncated PNG", truncate)
    data_case("PNG of the wrong size", wrong_size)
    data_case("non-image file named .png", not_an_image)
    data_case("empty label.csv", empty_csv)
    data_case("row with too few vote columns", short_row)
    data_case("negative vote", negative_vote)
    data_case("missing image file", missing)
    data_case("truncated PNG with --on_error skip", truncate, "--on_error", "skip")

    print(f"Measured {time.strftime('%Y-%m-%d')}, `python experiments/reliability/reliability_matrix.py`.\n")
    print("| fault | exit | what the user sees |\n|---|---|---|")
    for fault, code, text in ROWS:
        print(f"| {fault} | {code} | {text} |")


if __name__ == "__main__":
    main()
