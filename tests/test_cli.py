"""The dead-letter commands against a real Redis."""

from __future__ import annotations

import json
import subprocess

from tests.support.cli import replydesk_cli
from tests.support.redis_server import env_with_redis


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return replydesk_cli(*args, env=env_with_redis(url))


async def test_dead_list_and_replay(redis, keys, redis_server):
    await redis.xadd(keys.dead, {"event": '{"x":1}', "source": "inbound", "stream_id": "1-0",
                                 "error": "RuntimeError: boom", "attempts": "3", "failed_at": "1.0"})
    out = cli(redis_server.url, "dead", "list")
    assert out.returncode == 0, out.stderr
    [row] = [json.loads(line) for line in out.stdout.splitlines()]
    assert row["error"] == "RuntimeError: boom" and row["attempts"] == 3

    rep = cli(redis_server.url, "dead", "replay", row["id"])
    assert rep.returncode == 0, rep.stderr
    assert await redis.xlen(keys.dead) == 0
    [(_, fields)] = await redis.xrange(keys.inbound)
    assert fields == {b"event": b'{"x":1}'}

    missing = cli(redis_server.url, "dead", "replay", "9-9")
    assert missing.returncode == 1 and "no dead entry 9-9" in missing.stderr
