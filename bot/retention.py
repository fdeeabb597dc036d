"""Stream retention: drop acknowledged entries of the inbound and outbox streams once
they are older than ``worker.stream_retention_s``, and dead letters once they are older
than ``worker.dead_retention_s``, so Redis memory stays bounded and customers' messages
are not kept forever.

An inbound or outbox entry is only removed when every consumer group is past it: below
the group's last delivered id and below its oldest pending (delivered, unacknowledged)
entry. New and in-flight events are never touched, whatever their age; a stream without
a group is left alone. Dead letters keep their own copy of the event
(bot.streams.move_to_dead), so a replay never needs the trimmed original; the dead stream
has no group (a human reads it) and is trimmed by age alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping

import structlog
from redis.exceptions import ResponseError

from bot.redis import Keys, Redis
from bot.streams import StreamId, parse_stream_id

log = structlog.get_logger(__name__)


async def safe_trim_point(redis: Redis, stream: str, older_than_ms: int) -> StreamId | None:
    """The lowest id any group still needs, capped by the age cut-off; None: keep all."""
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:  # no such stream yet (a lost connection is the caller's to log)
        return None
    if not groups:
        return None
    point: StreamId = (older_than_ms, 0)
    for g in groups:
        ms, seq = parse_stream_id(g["last-delivered-id"])
        point = min(point, (ms, seq + 1))  # everything up to and including it was delivered
        if int(g["pending"]):
            summary = await redis.xpending(stream, g["name"])
            point = min(point, parse_stream_id(summary["min"]))
    return point


async def trim_stream(redis: Redis, stream: str, *, keep_s: float, now: float) -> int:
    """Trim ``stream`` below its safe point; returns how many entries were removed."""
    point = await safe_trim_point(redis, stream, int((now - keep_s) * 1000))
    if point is None or point <= (0, 0):
        return 0
    return int(await redis.xtrim(stream, minid=f"{point[0]}-{point[1]}", approximate=False))


async def trim_by_age(redis: Redis, stream: str, *, keep_s: float, now: float) -> int:
    """Trim every entry of ``stream`` older than ``keep_s``; returns how many."""
    return int(
        await redis.xtrim(stream, minid=f"{int((now - keep_s) * 1000)}-0", approximate=False)
    )


Purge = Callable[[float], Awaitable[int]]  # now -> how many records it deleted


async def run(
    redis: Redis,
    keys: Keys,
    keep_s: float,
    stop: asyncio.Event,
    interval_s: float = 600.0,
    *,
    dead_keep_s: float = 0.0,
    purges: Mapping[str, Purge] | None = None,
) -> None:
    """Trim every ``interval_s``: inbound and outbox after ``keep_s``, dead letters after
    ``dead_keep_s`` (0: that one is kept whole); and run each of ``purges`` (records
    outside the streams, e.g. resolved tickets: ``TicketStore.purge_resolved``)."""
    trims = [
        (keys.inbound, keep_s, trim_stream),
        (keys.outbox, keep_s, trim_stream),
        (keys.dead, dead_keep_s, trim_by_age),
    ]
    while not stop.is_set():
        for stream, keep, trim in trims:
            if keep <= 0:
                continue
            try:
                removed = await trim(redis, stream, keep_s=keep, now=time.time())
                if removed:
                    log.info("stream_trimmed", stream=stream, removed=removed)
            except Exception as e:  # Redis hiccup: try again next round
                log.warning("stream_trim_failed", stream=stream, error=type(e).__name__)
        for what, purge in (purges or {}).items():
            try:
                removed = await purge(time.time())
                if removed:
                    log.info("records_purged", what=what, removed=removed)
            except Exception as e:
                log.warning("purge_failed", what=what, error=type(e).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
