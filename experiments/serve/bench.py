"""``python -m amobilenet_jax.serve`` on loopback: throughput and p50/p99 latency at 1, 4 and 16
concurrent clients, batched (the default flags) against one request at a time (``--max_batch
1``), then a soak: 16 clients for 60 s against the batched server, counting errors and sampling
the server's resident memory after a warm-up and at the end.

    python experiments/serve/bench.py --out experiments/serve/bench_cpu.json

Each client posts the astronaut photo (one face; ``--image`` another) as a raw JPEG body, again
and again; a level's first ``--warmup_s`` are left out. The clients run in this process (asyncio
and httpx), so on a small machine they take CPU from the server: the figures are the pair's.
``requests_per_call`` is the server's own count (``/healthz``): requests answered per model call.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import io
import json
import os
import socket
import subprocess
import sys
import time

import httpx
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from amobilenet_jax.runtime import machine  # noqa: E402


def photo(path: str | None) -> bytes:
    if path:
        with open(path, "rb") as f:
            return f.read()
    from PIL import Image
    from skimage import data

    buffer = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(flags: list[str]) -> tuple[subprocess.Popen, int, list[str]]:
    """The server as a user starts it, on a free port; returns once ``/healthz`` answers."""
    port = free_port()
    command = [sys.executable, "-m", "amobilenet_jax.serve", "--port", str(port), *flags]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))}
    server = subprocess.Popen(command, cwd=REPO, env=env)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"bench: the server ended with status {server.returncode}: {' '.join(command)}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return server, port, command
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.kill()
    raise SystemExit("bench: the server did not answer /healthz in 600 s")


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def rss_mb(pid: int) -> float:
    """Resident memory of a process (Linux: /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return kb / 1024


def health(port: int) -> dict:
    return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).json()


async def load(port: int, body: bytes, clients: int, seconds: float, on_tick=None) -> dict:
    """``clients`` clients posting ``body`` back to back for ``seconds``: latencies of the
    answered requests, and errors (a status other than 200, or no answer)."""
    url = f"http://127.0.0.1:{port}/v1/predict"
    headers = {"content-type": "image/jpeg"}
    latencies, errors, statuses = [], 0, {}
    deadline = time.perf_counter() + seconds

    async def client(http):
        nonlocal errors
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                answer = await http.post(url, content=body, headers=headers)
                status = answer.status_code
            except httpx.HTTPError as e:
                status = type(e).__name__
            if status == 200:
                latencies.append(time.perf_counter() - start)
            else:
                errors += 1
                statuses[str(status)] = statuses.get(str(status), 0) + 1

    async def ticker():
        while on_tick is not None and time.perf_counter() < deadline:
            on_tick()
            await asyncio.sleep(1.0)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    started = time.perf_counter()
    async with httpx.AsyncClient(limits=limits, timeout=120) as http:
        await asyncio.gather(ticker(), *(client(http) for _ in range(clients)))
    elapsed = time.perf_counter() - started
    ms = np.asarray(latencies) * 1000
    return {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "requests": len(latencies),
        "errors": errors,
        "error_statuses": statuses,
        "requests_per_s": round(len(latencies) / elapsed, 2),
        "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None,
    }


def level(port: int, body: bytes, clients: int, seconds: float, warmup_s: float) -> dict:
    asyncio.run(load(port, body, clients, warmup_s))
    before = health(port)
    row = asyncio.run(load(port, body, clients, seconds))
    after = health(port)
    calls = after["model_calls"] - before["model_calls"]
    row["requests_per_call"] = round((after["requests"] - before["requests"]) / calls, 2) if calls else None
    return row


def soak(flags: list[str], body: bytes, clients: int, seconds: float, warmup_s: float) -> dict:
    server, port, command = start_server(flags)
    try:
        asyncio.run(load(port, body, clients, warmup_s))
        start_mb = rss_mb(server.pid)
        samples = []
        row = asyncio.run(load(port, body, clients, seconds, on_tick=lambda: samples.append(rss_mb(server.pid))))
        end_mb = rss_mb(server.pid)
        alive = server.poll() is None and health(port)["status"] == "ok"
    finally:
        stop_server(server)
    return {
        "command": " ".join(command[1:]),
        **row,
        "rss_after_warmup_mb": round(start_mb, 1),
        "rss_end_mb": round(end_mb, 1),
        "rss_max_mb": round(max(samples + [end_mb]), 1),
        "rss_growth_percent": round(100 * (end_mb - start_mb) / start_mb, 2),
        "server_alive_after": alive,
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| server | clients | requests/s | p50 ms | p99 ms | requests per model call | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['clients']} | {r['requests_per_s']} | {r['p50_ms']} | {r['p99_ms']} | "
            f"{r['requests_per_call']} | {r['errors']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1,4,16", help="concurrent clients of each level")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds a level")
    parser.add_argument("--warmup_s", type=float, default=3.0, help="seconds of load before each level, left out")
    parser.add_argument("--soak_s", type=float, default=60.0, help="the soak's measured seconds (0: no soak)")
    parser.add_argument("--soak_clients", type=int, default=16)
    parser.add_argument("--soak_warmup_s", type=float, default=10.0, help="load before the first memory sample")
    parser.add_argument("--image", help="the photo each client posts (default: the astronaut, one face)")
    parser.add_argument("--server_flags", default="", help="more flags for both servers, e.g. '--no_crops'")
    parser.add_argument("--out", help="write the results here as JSON")
    args = parser.parse_args()
    body = photo(args.image)
    extra = args.server_flags.split()
    modes = {"batched": extra, "one at a time": [*extra, "--max_batch", "1"]}
    rows, commands = [], {}
    for mode, flags in modes.items():
        server, port, command = start_server(flags)
        commands[mode] = " ".join(command[1:])
        try:
            for clients in (int(c) for c in args.clients.split(",")):
                rows.append({"mode": mode, **level(port, body, clients, args.seconds, args.warmup_s)})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        finally:
            stop_server(server)
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "image_bytes": len(body),
        "commands": commands,
        "levels": rows,
    }
    print(table(rows))
    if args.soak_s > 0:
        result["soak"] = soak(modes["batched"], body, args.soak_clients, args.soak_s, args.soak_warmup_s)
        s = result["soak"]
        print(
            f"\nsoak: {s['clients']} clients, {s['seconds']} s: {s['requests']} requests, {s['errors']} errors; "
            f"resident memory {s['rss_after_warmup_mb']} MB after warm-up, {s['rss_end_mb']} MB at the end "
            f"({s['rss_growth_percent']:+.2f}%), at most {s['rss_max_mb']} MB"
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
