"""Redis down: a 503 with Retry-After for every page and API, instead of a 500.

Webhooks answer their own 503 (bot/ingest.py: the platform must retry the delivery);
this middleware covers the rest: the agent API and console, the sandbox, the ops API.
A request that fails because Redis cannot be reached changed nothing that matters, and
the client may simply try again; a traceback per request would only bury the one line
an operator needs, so that line is logged at most once per ``LOG_EVERY_S``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from redis.exceptions import BusyLoadingError, OutOfMemoryError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = structlog.get_logger(__name__)

RETRY_AFTER_S = 5
LOG_EVERY_S = 30.0
MESSAGE = "storage is temporarily unavailable; try again in a few seconds"
_last_logged = [float("-inf")]
# What a request meets when Redis cannot be reached (redis-py has already retried).
UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, BusyLoadingError)

# Redis reachable but refusing writes (maxmemory reached under noeviction): as unusable
# for storing as a Redis that is away, and as temporary for the caller.
CANNOT_STORE = (*UNAVAILABLE, OutOfMemoryError)


class OutageLog:
    """The log of one loop's (or the webhooks') Redis outage: one warning when it starts,
    a reminder every ``LOG_EVERY_S`` while it lasts, one info line with its length once
    Redis answers again; instead of a line (or a traceback) per failed call, which at a
    few calls a second buries everything else."""

    def __init__(self, part: str, **context: Any) -> None:
        self.part = part
        self.context = context
        self._since: float | None = None
        self._last = 0.0
        self._failures = 0

    @property
    def down(self) -> bool:
        return self._since is not None

    @property
    def failures(self) -> int:
        """Failed calls in the current outage."""
        return self._failures

    def failed(self, e: BaseException) -> None:
        now = time.monotonic()
        self._failures += 1
        if self._since is None:
            self._since = self._last = now
            log.warning("redis_unavailable", part=self.part, error=_what(e), **self.context)
        elif now - self._last >= LOG_EVERY_S:
            self._last = now
            log.warning(
                "redis_still_unavailable",
                part=self.part,
                error=_what(e),
                down_s=round(now - self._since),
                failures=self._failures,
                **self.context,
            )

    def ok(self) -> None:
        if self._since is None:
            return
        down_s = round(time.monotonic() - self._since, 1)
        log.info(
            "redis_recovered",
            part=self.part,
            down_s=down_s,
            failures=self._failures,
            **self.context,
        )
        self._since, self._failures = None, 0


def round_failed(outage: OutageLog, event: str, e: BaseException, **context: Any) -> None:
    """A periodic loop's call failed: Redis away (or full) is ``outage``'s line; anything
    else is logged as ``event`` each time, since it is not expected to come and go."""
    if isinstance(e, CANNOT_STORE):
        outage.failed(e)
    else:
        log.warning(event, error=type(e).__name__, **context)


def _what(e: BaseException) -> str:
    return "OutOfMemoryError (maxmemory)" if isinstance(e, OutOfMemoryError) else type(e).__name__


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def storage_down(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except CANNOT_STORE as e:
        now = time.monotonic()
        if now - _last_logged[0] >= LOG_EVERY_S:
            _last_logged[0] = now
            log.warning("redis_unavailable", part="web", path=request.path, error=_what(e))
        headers = {"Retry-After": str(RETRY_AFTER_S)}
        if request.path.startswith("/api/"):
            body = {"error": {"code": "unavailable", "message": MESSAGE}}
            return web.json_response(body, status=503, headers=headers)
        return web.Response(text=MESSAGE, status=503, headers=headers)
