"""Outgoing notifications (crisis and SLA alerts) to a Slack-compatible incoming webhook.

Raising an alert only queues the notification in Redis (``ops:notify`` list), so the hot
path does no HTTP and the one process that raised it need not be the one that posts.
A background task in every worker pops and POSTs ``{"text": ..., "replydesk": {...}}`` to
``settings.secrets["notify_webhook_url"]``. Delivery is at most once per pop with a few
retries: a process killed mid-POST can lose one notification (the alert itself, its
metric and console banner are already recorded).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any, cast

import aiohttp
import structlog

from bot import metrics
from bot.config import Secret
from bot.redis import Keys, Redis

log = structlog.get_logger(__name__)

MAX_QUEUED = 1000
MAX_ATTEMPTS = 3


def queue_key(keys: Keys) -> str:
    return keys.ns("ops", "notify")


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
) -> int:
    """POST queued notifications; returns how many were delivered."""
    delivered = 0
    for _ in range(max_items):
        raw = await redis.lpop(queue_key(keys))
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
            item["attempts"] = int(item.get("attempts", 0)) + 1
            log.warning("notification_failed", kind=kind, attempt=item["attempts"], error=str(e))
            if item["attempts"] >= MAX_ATTEMPTS:
                metrics.NOTIFICATIONS.labels(kind, "dropped").inc()
            else:
                metrics.NOTIFICATIONS.labels(kind, "error").inc()
                await redis.rpush(queue_key(keys), json.dumps(item, ensure_ascii=False))
            break  # the endpoint is unwell: try again on the next round
        metrics.NOTIFICATIONS.labels(kind, "ok").inc()
        delivered += 1
    return delivered


class _HttpError(Exception):
    pass


async def _post(
    http: aiohttp.ClientSession, url: str, item: dict[str, Any], timeout_s: float
) -> None:
    body = {"text": item["text"], "replydesk": {**item.get("data", {}), "kind": item["kind"]}}
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with http.post(url, json=body, timeout=timeout) as resp:
        if resp.status >= 300:
            raise _HttpError(f"HTTP {resp.status}")


async def run(
    redis: Redis,
    keys: Keys,
    http: aiohttp.ClientSession,
    url: Secret | None,
    stop: asyncio.Event,
    *,
    interval_s: float = 1.0,
    timeout_s: float = 5.0,
) -> None:
    while not stop.is_set():
        started = time.monotonic()
        try:
            await deliver_pending(redis, keys, http, url, timeout_s=timeout_s)
        except Exception as e:  # Redis hiccup: keep the loop alive
            log.warning("notification_loop_failed", error=type(e).__name__)
        wait = max(0.05, interval_s - (time.monotonic() - started))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=wait)
