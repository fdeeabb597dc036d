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

import structlog
from aiohttp import web
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = structlog.get_logger(__name__)

RETRY_AFTER_S = 5
LOG_EVERY_S = 30.0
MESSAGE = "storage is temporarily unavailable; try again in a few seconds"
_last_logged = [float("-inf")]
# What a request meets when Redis cannot be reached (redis-py has already retried).
UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, BusyLoadingError)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def storage_down(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except UNAVAILABLE as e:
        now = time.monotonic()
        if now - _last_logged[0] >= LOG_EVERY_S:
            _last_logged[0] = now
            log.warning("redis_unavailable", path=request.path, error=type(e).__name__)
        headers = {"Retry-After": str(RETRY_AFTER_S)}
        if request.path.startswith("/api/"):
            body = {"error": {"code": "unavailable", "message": MESSAGE}}
            return web.json_response(body, status=503, headers=headers)
        return web.Response(text=MESSAGE, status=503, headers=headers)
