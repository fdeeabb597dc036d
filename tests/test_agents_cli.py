"""`replydesk agents add|list|revoke` against a real Redis; tokens printed once, stored hashed."""

from __future__ import annotations

import hashlib
import json
import subprocess
from typing import Any

from escalation.agents import AgentStore
from tests.support.cli import replydesk_cli
from tests.support.redis_server import env_with_redis


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return replydesk_cli("agents", *args, env=env_with_redis(url))


async def test_add_list_revoke(redis: Any, keys: Any, redis_server: Any) -> None:
    out = cli(redis_server.url, "add", "sue", "--role", "supervisor")
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    assert token.startswith("rdk_") and "shown only once" in out.stderr
    store = AgentStore(redis, keys)
    sue = await store.by_token(token)
    assert sue is not None and sue.role == "supervisor"
    raw = json.loads(await redis.hget(keys.ns("agents"), "sue"))
    assert raw["token_sha256"] == hashlib.sha256(
        token.encode()
    ).hexdigest() and token not in json.dumps(raw)

    # README: data and usage errors exit 2 (these exited 1)
    assert cli(redis_server.url, "add", "sue").returncode == 2  # exists
    assert cli(redis_server.url, "add", "bad name!").returncode == 2
    rows = [json.loads(line) for line in cli(redis_server.url, "list").stdout.splitlines()]
    assert rows == [
        {"name": "sue", "role": "supervisor", "created_at": rows[0]["created_at"], "revoked": False}
    ]

    assert cli(redis_server.url, "revoke", "sue").returncode == 0
    assert await store.by_token(token) is None
    assert cli(redis_server.url, "revoke", "nobody").returncode == 2
