"""Ingest benchmark: durable webhook ingest vs a bare aiohttp handler, same session.

    .venv/bin/python -m bench.ingest [--seconds 10] [--runs 3] [--write]

Throughput: wrk (closed loop, 1 thread, 64 connections) against one server process
pinned to CPU 0 (wrk and redis-server on CPU 1), each target run ``--runs`` times,
median reported. Every request carries a distinct, correctly signed generic event,
so the durable server really verifies, dedupes and writes each one.
Latency: an open-loop Python client at a fixed 1,000 requests/s (on CPU 1, its garbage
collector paused during the run), p50/p99 of the ack.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bot.platforms.generic import SIGNATURE_HEADER, sign
from tests.support.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret"
PATH = "/webhooks/generic/bench"


def bodies(n: int, prefix: str) -> list[tuple[bytes, str]]:
    out = []
    for i in range(n):
        body = json.dumps(
            {
                "type": "dm",
                "id": f"{prefix}-{i}",
                "author": {"id": str(10_000 + i % 5000), "handle": f"user{i % 5000}"},
                "text": "Hi, where is my order #A12345? It was due yesterday.",
            }
        ).encode()
        out.append((body, sign(SECRET, body)))
    return out


def wrk_script(path: Path, items: list[tuple[bytes, str]]) -> None:
    """A wrk Lua script cycling through pre-signed requests."""
    lines = ["local reqs = {}"]
    for body, sig in items:
        b = body.decode().replace("\\", "\\\\").replace('"', '\\"')
        lines.append(
            f'reqs[#reqs+1] = wrk.format("POST", "{PATH}", '
            f'{{["Host"]="127.0.0.1", ["Content-Type"]="application/json", ["{SIGNATURE_HEADER}"]="{sig}"}}, "{b}")'
        )
    lines += [
        "local i = 0",
        "request = function()",
        "  i = i % #reqs + 1",
        "  return reqs[i]",
        "end",
        "response = function(status, headers, body)",
        "  if status ~= 200 and not shown then shown = true; io.stderr:write(status .. ' ' .. body .. '\\n') end",
        "end",
    ]
    path.write_text("\n".join(lines) + "\n")


def config_file(tmp: Path, redis_url: str) -> Path:
    cfg = tmp / "bench.yml"
    cfg.write_text(
        "accounts:\n"
        "  - id: bench\n    platform: generic\n    user_id: '1'\n"
        f"    secrets: {{signing_secret: {SECRET}}}\n"
        f"redis:\n  url: {redis_url}\n"
        "log_level: warning\n"
    )
    return cfg


def start(cmd: list[str], port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        ["taskset", "-c", "0", *cmd],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            subprocess.run(
                ["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{port}/"],
                check=True,
                timeout=1,
            )
            return proc
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server on {port} did not start")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (and its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(port: int, script: Path, seconds: int, pid: int) -> tuple[float, float, float, float]:
    """(requests/s, p50 ms, p99 ms, server CPU µs per request)."""
    cpu0 = cpu_seconds(pid)
    proc = subprocess.run(
        [
            "taskset",
            "-c",
            "1",
            "wrk",
            "-t1",
            "-c64",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    out = proc.stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"failed requests, first: {proc.stderr[:300]}\n{out}")
    cpu = cpu_seconds(pid) - cpu0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"{non2xx.group(1)} failed requests:\n{out}")

    def pct(p: str) -> float:
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        assert m, out
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v

    return rps, pct("50"), pct("99"), cpu / total * 1e6


async def fixed_rate(
    port: int, items: list[tuple[bytes, str]], rate: int, seconds: int
) -> tuple[float, float, int]:
    url = f"http://127.0.0.1:{port}{PATH}"
    lat: list[float] = []
    errors = 0
    conn = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=conn) as http:

        async def one(body: bytes, sig: str) -> None:
            nonlocal errors
            t0 = time.perf_counter()
            async with http.post(
                url, data=body, headers={SIGNATURE_HEADER: sig, "Content-Type": "application/json"}
            ) as r:
                await r.read()
                if r.status != 200:
                    errors += 1
            lat.append((time.perf_counter() - t0) * 1000)

        tasks = []
        start_t = time.perf_counter()
        for i in range(rate * seconds):
            due = start_t + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            body, sig = items[i % len(items)]
            tasks.append(asyncio.create_task(one(body, sig)))
        await asyncio.gather(*tasks)
    lat.sort()
    return lat[len(lat) // 2], lat[int(len(lat) * 0.99) - 1], errors


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rate", type=int, default=1000)
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench.ingest needs wrk: apt-get install -y wrk")
    tmp = Path(tempfile.mkdtemp(prefix="replydesk-bench-"))
    results: dict[str, list[tuple[float, float, float, float]]] = {"bare": [], "durable": []}
    with RedisServer(appendfsync="everysec") as server:
        env = {**os.environ, "REPLYDESK_CONFIG": str(config_file(tmp, server.url))}
        for run in range(args.runs):
            for target in ("bare", "durable"):
                port = free_port()
                script = tmp / f"{target}-{run}.lua"
                wrk_script(script, bodies(20_000, f"{target}{run}"))
                cmd = (
                    [sys.executable, "bench/_bare_server.py", str(port)]
                    if target == "bare"
                    else [
                        sys.executable,
                        "-m",
                        "bot.cli",
                        "serve",
                        "--role",
                        "web",
                        "--port",
                        str(port),
                    ]
                )
                proc = start(cmd, port, env)
                try:
                    results[target].append(run_wrk(port, script, args.seconds, proc.pid))
                finally:
                    proc.terminate()
                    proc.wait(10)
                print(
                    f"run {run + 1} {target}: {results[target][-1][0]:.0f} req/s", file=sys.stderr
                )
        port = free_port()
        proc = start(
            [sys.executable, "-m", "bot.cli", "serve", "--role", "web", "--port", str(port)],
            port,
            env,
        )
        try:
            # The client on the other core, its collector paused: we measure the server.
            os.sched_setaffinity(0, {1})
            gc.collect()
            gc.disable()
            p50, p99, errors = asyncio.run(
                fixed_rate(port, bodies(args.rate * 10, "fixed"), args.rate, 10)
            )
        finally:
            proc.terminate()
            proc.wait(10)
        stored = server_len(server.url)
    med = {t: tuple(statistics.median(r[i] for r in results[t]) for i in range(4)) for t in results}
    ratio = med["durable"][0] / med["bare"][0]
    cpu_ratio = med["bare"][3] / med["durable"][3]
    print(f"| target | req/s (median of {args.runs}) | p50 ms | p99 ms | server CPU µs/request |")
    print("|---|---|---|---|---|")
    for t in ("bare", "durable"):
        print(f"| {t} | {med[t][0]:.0f} | {med[t][1]:.2f} | {med[t][2]:.2f} | {med[t][3]:.0f} |")
    print(
        f"\ndurable / bare throughput: {ratio:.0%} (wall clock), {cpu_ratio:.0%} (by server CPU per request)"
    )
    print(
        f"fixed {args.rate} req/s for 10 s (durable, open loop): p50 {p50:.2f} ms, p99 {p99:.2f} ms, errors {errors}"
    )
    print(f"events stored in Redis during the session: {stored}")
    shutil.rmtree(tmp, ignore_errors=True)


def server_len(url: str) -> int:
    import redis

    r = redis.Redis.from_url(url)
    try:
        return int(r.xlen("rd:inbound"))
    finally:
        r.close()


if __name__ == "__main__":
    main()
