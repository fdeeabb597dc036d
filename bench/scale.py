"""Scale-out benchmark: one vs two worker processes behind one web process, one Redis.

    .venv/bin/python -m bench.scale [--pipeline brain|echo] [--events N] [--rate R] [--write]

For each worker count (1, then 2) on a fresh Redis (AOF, appendfsync everysec as in
docker/compose.yml):

* **throughput**: ``--events`` signed generic webhooks are posted as fast as the web
  process takes them (a backlog), and the clock runs until every event is handled (the
  consumer group has nothing left undelivered or pending): events per second, median
  of ``--runs``; plus the CPU each process used per event;
* **latency**: an open-loop client posts at a fixed ``--rate`` for ``--seconds``; the
  time from posting an event to its reply arriving at the fake platform API (both
  stamps taken in this process), p50 / p95 / p99 over events that got a reply.

``brain`` runs the real pipeline (NLU, handlers, escalation) through unmodified
``replydesk serve --role worker`` processes, with the NLU artifact shared by the tests
(tests/support/trained_nlu.py; trained first if missing). ``echo``
(tests/support/scale_proc.py, no delay) measures the transport alone. ``--write``
replaces this pipeline's part of the "## Scale-out" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from bot.platforms.generic import SIGNATURE_HEADER, sign
from bot.redis import Keys, connect
from tests.support.redis_server import RedisServer, free_port
from tests.support.trained_nlu import nlu_data_dir

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret"
KEYS = Keys("{rd}")
# Questions the FAQ bank answers, so the brain replies to most events.
TEXTS = [
    "hi there",
    "what is your return policy?",
    "how long does shipping take?",
    "do you ship internationally?",
    "how do I reset my password?",
    "你们的退货政策是什么？",
]


class Platform:
    def __init__(self) -> None:
        self.received: dict[str, float] = {}

    async def replies(self, request: web.Request) -> web.Response:
        self.received.setdefault(request.headers["Idempotency-Key"], time.monotonic())
        await request.read()
        return web.json_response({"id": request.headers["Idempotency-Key"]})


def config(tmp: Path, redis_url: str, api_base: str, pipeline: str) -> Path:
    path = tmp / "replydesk.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "log_level": "warning",
                "redis": {
                    "url": redis_url,
                    "data_dir": nlu_data_dir(),
                    "key_prefix": "{rd}",
                },
                "dialog": {"pipeline": "brain" if pipeline == "brain" else "pass-through"},
                "nlu": {"train_on_start": False},
                "accounts": [
                    {
                        "id": "bench",
                        "platform": "generic",
                        "user_id": "1",
                        "api_base": api_base,
                        "secrets": {"signing_secret": SECRET},
                    }
                ],
            }
        )
    )
    return path


async def train_once() -> None:
    from bot.config import NluConfig
    from bot.nlu import build_service

    svc = build_service(NluConfig(), data_dir=nlu_data_dir(), nlu_data_dir=str(ROOT / "nlu_data"))
    await svc.start()
    await svc.close()


async def spawn(role: str, cfg: Path, pipeline: str) -> tuple[asyncio.subprocess.Process, int]:
    port = free_port()
    module = "bot.cli" if role == "web" or pipeline == "brain" else "tests.support.scale_proc"
    env = {**os.environ, "SCALE_DELAY_S": "0", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    env.pop("REDIS_URL", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, "--config", str(cfg), "serve", "--role", role,
        "--host", "127.0.0.1", "--port", str(port),
        cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    return proc, port


async def wait_ready(
    http: aiohttp.ClientSession, port: int, proc: asyncio.subprocess.Process
) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise SystemExit(f"process on port {port} exited with {proc.returncode}")
        try:
            async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit(f"process on port {port} not ready")


def event(i: int, tag: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {
            "type": "dm",
            "id": f"{tag}{i}",
            "author": {"id": f"{tag}{i}", "handle": f"u{i}"},
            "text": TEXTS[i % len(TEXTS)],
        }
    ).encode()
    return body, {SIGNATURE_HEADER: sign(SECRET, body), "Content-Type": "application/json"}


async def drained(redis: Any, stream: str, group: bytes, total: int | None = None) -> bool:
    """The group has nothing undelivered or pending (and the stream holds ``total``)."""
    if total is not None and await redis.xlen(stream) < total:
        return False
    for g in await redis.xinfo_groups(stream):
        if g["name"] == group:
            return int(g["pending"]) == 0 and int(g.get("lag") or 0) == 0
    return False


async def poll(pred: Any) -> None:
    while not await pred():  # noqa: ASYNC110 - the condition lives in Redis
        await asyncio.sleep(0.01)


async def throughput(http: aiohttp.ClientSession, url: str, redis: Any, n: int, tag: str) -> float:
    sem = asyncio.Semaphore(64)
    total = await redis.xlen(KEYS.inbound) + n

    async def post(i: int) -> None:
        body, headers = event(i, tag)
        async with sem, http.post(url, data=body, headers=headers) as r:
            assert r.status == 200

    t0 = time.monotonic()
    await asyncio.gather(*(post(i) for i in range(n)))
    await poll(lambda: drained(redis, KEYS.inbound, b"workers", total))
    return n / (time.monotonic() - t0)


async def latency(
    http: aiohttp.ClientSession, url: str, plat: Platform, rate: float, seconds: float
) -> tuple[list[float], int]:
    sent: dict[str, float] = {}
    tasks = []

    async def post(i: int) -> None:
        body, headers = event(i, "l")
        sent[f"generic:bench:l{i}:0"] = time.monotonic()
        async with http.post(url, data=body, headers=headers) as r:
            assert r.status == 200

    t0 = time.monotonic()
    n = int(rate * seconds)
    for i in range(n):
        await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
        tasks.append(asyncio.create_task(post(i)))
    await asyncio.gather(*tasks)
    await asyncio.sleep(3.0)  # stragglers
    lat = [plat.received[k] - t for k, t in sent.items() if k in plat.received]
    return sorted(lat), n


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(v: list[float], q: float) -> float:
    return v[min(len(v) - 1, max(0, round(q * len(v)) - 1))] * 1000 if v else float("nan")


async def one_setup(workers: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    plat = Platform()
    app = web.Application()
    app.router.add_post("/replies", plat.replies)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    api_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", api_port).start()
    with RedisServer(appendfsync="everysec") as rs:
        cfg = config(tmp, rs.url, f"http://127.0.0.1:{api_port}", args.pipeline)
        procs = [await spawn("web", cfg, args.pipeline)]
        procs += [await spawn("worker", cfg, args.pipeline) for _ in range(workers)]
        redis = connect(rs.url)
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
                for proc, port in procs:
                    await wait_ready(http, port, proc)
                url = f"http://127.0.0.1:{procs[0][1]}/webhooks/generic/bench"
                await throughput(http, url, redis, 50, "w")  # warm-up: model caches, connections
                pids = {"web": [procs[0][0].pid], "workers": [p.pid for p, _ in procs[1:]]}
                pids["redis"] = [rs.proc.pid] if rs.proc else []
                before = {k: sum(cpu_s(p) for p in v) for k, v in pids.items()}
                here = time.process_time()
                runs = [
                    await throughput(http, url, redis, args.events, f"t{r}_")
                    for r in range(args.runs)
                ]
                total = args.events * args.runs
                cpu_ms = {
                    k: (sum(cpu_s(p) for p in v) - before[k]) * 1000 / total
                    for k, v in pids.items()
                }
                cpu_ms["bench"] = (time.process_time() - here) * 1000 / total
                eps = statistics.median(runs)
                # Let the replies of the backlog go out before measuring latency.
                await poll(lambda: drained(redis, KEYS.outbox, b"senders"))
                lat, n = await latency(http, url, plat, args.rate, args.seconds)
        finally:
            await redis.aclose()
            for proc, _ in procs:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
            for proc, _ in procs:
                await proc.wait()
    await runner.cleanup()
    return {
        "workers": workers,
        "events_per_s": eps,
        "p50_ms": pct(lat, 0.5),
        "p95_ms": pct(lat, 0.95),
        "p99_ms": pct(lat, 0.99),
        "replied": len(lat),
        "sent": n,
        "runs": runs,
        "cpu_ms": cpu_ms,
    }


def table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    base = rows[0]["events_per_s"]
    lines = [
        "| worker processes | throughput (events/s) | speed-up | reply latency p50 | p95 | p99 "
        "| replied | CPU ms/event: web / workers / redis / client+fake API |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['workers']} | {r['events_per_s']:.0f} | {r['events_per_s'] / base:.2f}x | "
            f"{r['p50_ms']:.0f} ms | {r['p95_ms']:.0f} ms | {r['p99_ms']:.0f} ms | "
            f"{r['replied']}/{r['sent']} | "
            + " / ".join(f"{r['cpu_ms'][k]:.2f}" for k in ("web", "workers", "redis", "bench"))
            + " |"
        )
    return "\n".join(lines)


TITLES = {
    "brain": "### Real pipeline (NLU, handlers, escalation)",
    "echo": "### Transport only (echo pipeline: ingest, streams, sender)",
}
INTRO = """## Scale-out

`python -m bench.scale --pipeline brain|echo --write` (bench/scale.py): one web process,
one or two worker processes (`replydesk serve --role worker`; for `echo` the same CLI
with tests/support/scale_proc.py's one-line echo pipeline), one Redis (AOF,
`appendfsync everysec`), a fake platform API and the load generator, all on this machine.
Throughput: a backlog of events posted as fast as the web process acknowledges them,
until the consumer group has nothing left undelivered or pending (median of the runs).
Latency: an open-loop client at a fixed rate, from posting an event to its reply
reaching the platform API (events the pipeline answers). CPU: per event, from /proc.

How to read it: a second worker adds throughput only when there is a free core for it.
On the 2-CPU development machine the web process, Redis, the load generator and (during
these runs) other jobs share the same two cores, so the speed-up stays far below 2x and
the load average is printed with each table. The CPU column is the portable figure:
one worker process handles about 1000 / (workers' CPU ms per event) events per second
per core it gets; the web process and Redis need a small fraction of that.
"""


def write_section(pipeline: str, text: str) -> None:
    """Replace this pipeline's subsection of "## Scale-out" in docs/benchmarks.md."""
    path = ROOT / "docs" / "benchmarks.md"
    doc = path.read_text() if path.exists() else "# Benchmarks\n"
    start = doc.find("\n## Scale-out")
    if start == -1:
        doc = doc.rstrip("\n") + "\n\n" + INTRO
        start = doc.find("\n## Scale-out")
    end = doc.find("\n## ", start + 1)
    end = len(doc) if end == -1 else end
    block = doc[start + 1 : end]
    subs = {k: "" for k in TITLES}
    for k, title in TITLES.items():
        i = block.find(title)
        if i != -1:
            j = block.find("\n### ", i + 1)
            subs[k] = block[i : j + 1 if j != -1 else len(block)].rstrip("\n") + "\n"
    subs[pipeline] = text
    new = INTRO + "".join("\n" + subs[k] for k in TITLES if subs[k])
    doc = doc[: start + 1] + new + doc[end:]
    path.write_text(doc if doc.endswith("\n") else doc + "\n")


def main() -> None:
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pipeline", choices=["brain", "echo"], default="brain")
    ap.add_argument("--events", type=int, default=None, help="backlog size (brain 300, echo 2000)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--rate", type=float, default=None, help="latency run, events/s (brain 5, echo 50)"
    )
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = ap.parse_args()
    brain = args.pipeline == "brain"
    args.events = args.events or (300 if brain else 2000)
    args.rate = args.rate or (5.0 if brain else 50.0)

    async def run() -> list[dict[str, Any]]:
        if brain:
            await train_once()
        with tempfile.TemporaryDirectory() as tmp:
            return [await one_setup(w, args, Path(tmp)) for w in (1, 2)]

    rows = asyncio.run(run())
    out = table(rows, args)
    print(out)
    for r in rows:
        print(f"{r['workers']} worker(s): runs {', '.join(f'{x:.0f}' for x in r['runs'])} events/s")
    if args.write:
        write_section(args.pipeline, section(out, args))


def section(tbl: str, args: argparse.Namespace) -> str:
    cpu = platform.processor() or platform.machine()
    load = os.getloadavg()[0]
    return f"""{TITLES[args.pipeline]}

`--events {args.events} --runs {args.runs} --rate {args.rate:g} --seconds {args.seconds:g}`;
{os.cpu_count()} CPUs ({cpu}), load average {load:.1f} at the end of the run.

{tbl}
"""


if __name__ == "__main__":
    main()
