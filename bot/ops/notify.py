"""Outgoing notifications (crisis and SLA alerts) to a Slack-compatible incoming webhook.

Raising an alert only queues the notification in Redis (``ops:notify`` list), so the hot
path does no HTTP and the one process that raised it need not be the one that posts.
A background task in every worker takes items and POSTs ``{"text": ..., "replydesk": {...}}``
to ``settings.secrets["notify_webhook_url"]``. One Redis script takes each item, so no two
workers post the same one at once. A failed post is retried by time, not by count: the
item waits in ``ops:notify:retry`` (a zset by its next attempt) from 2 s, doubling to
5 min, and is dropped only an hour after its first failure, so an alert outlives a
webhook outage or deploy. Delivery is at most once per take: a process killed mid-POST
can lose one notification (the alert itself, its metric and console banner are already
recorded).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any, cast

import aiohttp
import structlog

from bot import metrics
from bot.config import Secret
from bot.redis import Keys, Redis
from bot.storage_down import OutageLog, round_failed

log = structlog.get_logger(__name__)

MAX_QUEUED = 1000


@dataclass(frozen=True)
class Backoff:
    """When a failed notification is tried again: ``first_s`` after its first failure,
    doubling up to ``max_s``; dropped once ``give_up_s`` have passed since that failure."""

    first_s: float = 2.0
    max_s: float = 300.0
    give_up_s: float = 3600.0

    def delay(self, attempts: int) -> float:
        return min(self.max_s, self.first_s * 2 ** (attempts - 1))


RETRY = Backoff()


def queue_key(keys: Keys) -> str:
    return keys.ns("ops", "notify")


def retry_key(keys: Keys) -> str:
    return keys.ns("ops", "notify", "retry")


# One item per call, atomically, so two workers never post the same item: a retry that is
# due first (the older notification), else the oldest new one.
_TAKE_LUA = """
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 1)
if due[1] then
  redis.call('ZREM', KEYS[2], due[1])
  return due[1]
end
return redis.call('LPOP', KEYS[1])
"""

# Bounded like the queue: past MAX_QUEUED waiting retries, the new one is dropped.
_RETRY_LUA = """
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


def queue_in(pipe: Any, keys: Keys, *, kind: str, text: str, data: dict[str, Any]) -> None:
    """Add the queueing commands to ``pipe``: a caller's MULTI can then record an alert and
    its notification together (escalation.tickets does, for SLA alerts). The crisis-alert
    script in bot.ops.spikes writes the same item shape from Lua."""
    item = json.dumps({"kind": kind, "text": text, "data": data, "attempts": 0}, ensure_ascii=False)
    pipe.rpush(queue_key(keys), item)
    pipe.ltrim(queue_key(keys), -MAX_QUEUED, -1)


async def enqueue(redis: Redis, keys: Keys, *, kind: str, text: str, data: dict[str, Any]) -> None:
    tx = redis.pipeline(transaction=True)
    queue_in(tx, keys, kind=kind, text=text, data=data)
    await tx.execute()


async def deliver_pending(
    redis: Redis,
    keys: Keys,
    http: aiohttp.ClientSession,
    url: Secret | None,
    *,
    timeout_s: float = 5.0,
    max_items: int = 50,
    now: float | None = None,
    backoff: Backoff = RETRY,
) -> int:
    """POST queued notifications that are due (at ``now``, default the wall clock, which
    every worker shares); returns how many were delivered."""
    delivered = 0
    for _ in range(max_items):
        at = time.time() if now is None else now
        raw = await redis.eval(_TAKE_LUA, 2, queue_key(keys), retry_key(keys), repr(at))
        if raw is None:
            break
        item = json.loads(cast(bytes, raw))
        kind = str(item.get("kind", "crisis"))
        if url is None or not url.get():
            metrics.NOTIFICATIONS.labels(kind, "disabled").inc()
            continue
        try:
            await _post(http, url.get(), item, timeout_s)
        except (aiohttp.ClientError, TimeoutError, _HttpError) as e:
            await _retry_later(redis, keys, item, e, at, backoff)
            break  # the endpoint is unwell: try again on the next round
        metrics.NOTIFICATIONS.labels(kind, "ok").inc()
        delivered += 1
    return delivered


async def _retry_later(
    redis: Redis, keys: Keys, item: dict[str, Any], e: Exception, now: float, backoff: Backoff
) -> None:
    kind = str(item.get("kind", "crisis"))
    item["attempts"] = int(item.get("attempts", 0)) + 1
    first = float(item.setdefault("first_failed_at", now))
    # The type and HTTP status only: aiohttp's messages can carry the URL, a secret.
    log.warning(
        "notification_failed",
        kind=kind,
        attempt=item["attempts"],
        error=type(e).__name__,
        status=getattr(e, "status", None),
    )
    if now - first < backoff.give_up_s:
        item.setdefault("id", secrets.token_hex(8))  # equal notifications stay two members
        item["next_at"] = now + backoff.delay(item["attempts"])
        member = json.dumps(item, ensure_ascii=False)
        if await redis.eval(
            _RETRY_LUA, 1, retry_key(keys), repr(item["next_at"]), member, MAX_QUEUED
        ):
            metrics.NOTIFICATIONS.labels(kind, "error").inc()
            return
    metrics.NOTIFICATIONS.labels(kind, "dropped").inc()
    log.warning("notification_dropped", kind=kind, attempts=item["attempts"])


class _HttpError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


async def _post(
    http: aiohttp.ClientSession, url: str, item: dict[str, Any], timeout_s: float
) -> None:
    body = {"text": item["text"], "replydesk": {**item.get("data", {}), "kind": item["kind"]}}
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with http.post(url, json=body, timeout=timeout) as resp:
        if resp.status >= 300:
            raise _HttpError(resp.status)


async def run(
    redis: Redis,
    keys: Keys,
    http: aiohttp.ClientSession,
    url: Secret | None,
    stop: asyncio.Event,
    *,
    interval_s: float = 1.0,
    timeout_s: float = 5.0,
    backoff: Backoff = RETRY,
) -> None:
    outage = OutageLog("notifications")  # one line per Redis outage, not one a second
    while not stop.is_set():
        started = time.monotonic()
        try:
            await deliver_pending(redis, keys, http, url, timeout_s=timeout_s, backoff=backoff)
            outage.ok()
        except Exception as e:  # Redis hiccup: keep the loop alive
            round_failed(outage, "notification_loop_failed", e)
        wait = max(0.05, interval_s - (time.monotonic() - started))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=wait)
