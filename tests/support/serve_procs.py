"""Real ``replydesk serve --role ...`` processes on one Redis, for the scale-out tests and
the chaos benchmark (bench/chaos.py): start one with its log in a file, wait for its
/readyz, read the consumer groups, stop them all."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bot.redis import Keys
from tests.conftest import GENERIC_SECRET
from tests.support.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
KEYS = Keys("{rd}")  # the hash-tagged prefix a Redis Cluster deployment uses


class Proc:
    def __init__(
        self, name: str, role: str, port: int, proc: asyncio.subprocess.Process, log: Path
    ) -> None:
        self.name, self.role, self.port, self.proc, self.log = name, role, port, proc, log

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def start(name: str, role: str, config: Path, tmp: Path, module: str) -> Proc:
    """``python -m module --config config serve --role role`` (module: ``bot.cli``, or
    tests.support.scale_proc for the echo pipeline), its output appended to tmp/name.log."""
    port = free_port()
    log = tmp / f"{name}.log"
    env = {**os.environ, "SCALE_DELAY_S": "0.1", "PYTHONPATH": str(ROOT)}
    env.pop("REDIS_URL", None)
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, "--config", str(config),
            "serve", "--role", role, "--host", "127.0.0.1", "--port", str(port),
            cwd=ROOT, env=env, stdout=out, stderr=out,
        )  # fmt: skip
    return Proc(name, role, port, proc, log)


async def ready(http: aiohttp.ClientSession, p: Proc) -> bool:
    assert p.proc.returncode is None, f"{p.name} exited:\n{p.log.read_text()[-3000:]}"
    try:
        async with http.get(p.url + "/readyz") as r:
            return r.status == 200
    except aiohttp.ClientError:
        return False


async def group(redis: Any, stream: str, name: bytes) -> dict[str, Any]:
    for g in await redis.xinfo_groups(stream):
        if g["name"] == name:
            return dict(g)
    return {"pending": 0, "lag": 0, "entries-read": 0}


async def acked(redis: Any) -> int:
    g = await group(redis, KEYS.inbound, b"workers")
    return int(g.get("entries-read") or 0) - int(g["pending"])


async def held(redis: Any, pid: int) -> tuple[int, int]:
    """(inbound, outbox) entries the process's consumers (named ...-<pid>-...) hold."""
    out = []
    for stream, grp in ((KEYS.inbound, "workers"), (KEYS.outbox, "senders")):
        consumers = await redis.xinfo_consumers(stream, grp)
        out.append(sum(int(c["pending"]) for c in consumers if f"-{pid}-" in c["name"].decode()))
    return out[0], out[1]


async def pending_of(redis: Any, pid: int) -> int:
    """Entries the process's consumers hold, inbound and outbox together."""
    return sum(await held(redis, pid))


def rss_mb(p: Proc) -> float:
    """The process's resident memory now, in MB (Linux /proc)."""
    for line in Path(f"/proc/{p.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {p.name}")


def write_config(path: Path, redis_url: str, api_base: str, extra: dict[str, Any]) -> None:
    """One generic account on ``api_base``, fast reclaims; ``extra``: dotted keys to set
    (``accounts`` replaces the account list)."""
    cfg: dict[str, Any] = {
        "log_level": "info",
        "redis": {"url": redis_url, "data_dir": str(path.parent / "var"), "key_prefix": "{rd}"},
        "worker": {
            "concurrency": 8,
            "visibility_timeout_s": 1.0,
            "claim_interval_s": 0.2,
            "block_ms": 100,
            "max_attempts": 5,
        },
        "dialog": {"pipeline": "pass-through"},
        "accounts": [
            {
                "id": "acme",
                "platform": "generic",
                "user_id": "1000",
                "handle": "acme",
                "api_base": api_base,
                "secrets": {"signing_secret": GENERIC_SECRET},
            }
        ],
    }
    for dotted, value in extra.items():
        node = cfg
        *parents, leaf = dotted.split(".")
        for k in parents:
            node = node.setdefault(k, {})
        node[leaf] = value
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True))


async def stop_all(procs: list[Proc]) -> list[int | None]:
    """SIGTERM every process still running; SIGKILL what has not exited after 30 s."""
    for p in procs:
        if p.proc.returncode is None:
            p.proc.send_signal(signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(p.proc.wait() for p in procs)), timeout=30)
    codes = [p.proc.returncode for p in procs]
    for p in procs:
        if p.proc.returncode is None:
            p.proc.send_signal(signal.SIGUSR1)  # scale_proc prints its tasks' stacks
            await asyncio.sleep(1.0)
            p.proc.kill()
            await p.proc.wait()
            with p.log.open("a") as f:
                f.write("\n[test] did not exit within 30 s of SIGTERM\n")
    return codes
