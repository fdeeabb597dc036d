"""Shared fixtures: a real redis-server per test session, flushed before each test,
and settings wired to it with one generic account."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from bot.config import Settings, load_settings
from bot.redis import Keys
from tests.support.redis_server import RedisServer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

GENERIC_SECRET = "test-signing-secret"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
def keys() -> Keys:
    return Keys("rd")


def make_settings(redis_url: str, tmp_path: Any = None, **overrides: Any) -> Settings:
    """Settings for tests: the given Redis, one generic account 'acme', fast timeouts."""
    data: dict[str, Any] = {
        "worker.visibility_timeout_s": 1.0,
        "worker.claim_interval_s": 0.2,
        "worker.block_ms": 100,
        "worker.max_attempts": 3,
        # The real brain loads a trained NLU; tests opt in with dialog.pipeline="brain".
        "dialog.pipeline": "pass-through",
        "accounts": [
            {
                "id": "acme",
                "platform": "generic",
                "user_id": "1000",
                "handle": "acme",
                "secrets": {"signing_secret": GENERIC_SECRET},
            }
        ],
    }
    if tmp_path is not None:
        data["redis.data_dir"] = str(tmp_path)
    data.update(overrides)
    return load_settings(env={"REDIS_URL": redis_url}, overrides=data, config_file=os.devnull)


@pytest.fixture
def settings(redis_server: RedisServer, redis: aioredis.Redis, tmp_path: Any) -> Settings:
    return make_settings(redis_server.url, tmp_path)
