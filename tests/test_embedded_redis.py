"""The embedded Redis of the default run keeps its data across restarts."""

from __future__ import annotations

from bot.config import RedisConfig
from bot.redis import open_redis


async def test_embedded_redis_persists_across_restart(tmp_path):
    cfg = RedisConfig(url=None, data_dir=str(tmp_path / "var"))
    async with open_redis(cfg) as r:
        await r.xadd("rd:inbound", {"event": "{}"})
        await r.set("k", "v")
    assert any((tmp_path / "var").glob("*.aof")) or any((tmp_path / "var").glob("appendonly*"))
    async with open_redis(cfg) as r:
        assert await r.get("k") == b"v"
        assert await r.xlen("rd:inbound") == 1
