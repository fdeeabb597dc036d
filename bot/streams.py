"""Consumer-group plumbing shared by the inbound worker and the outbox sender:
group creation, reclaiming stalled entries, attempt counting and the dead stream.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from contextvars import ContextVar
from typing import Any

from redis.exceptions import ResponseError

from bot import metrics
from bot.models import InboundEvent
from bot.pipeline import Outcome
from bot.redis import Keys, Redis, as_str

StreamId = tuple[int, int]

# The inbound entry the current task handles (set by the worker for each entry's task):
# the brain finds the event's place in its conversation's order by it, without the
# Pipeline seam carrying transport details.
INBOUND_ENTRY: ContextVar[str | None] = ContextVar("inbound_entry", default=None)


def parse_stream_id(raw: str | bytes) -> StreamId:
    """A stream id ("1700000000000-3") as (milliseconds, sequence), to compare ids."""
    ms, _, seq = as_str(raw).partition("-")
    return int(ms), int(seq or 0)


def consumer_name(role: str) -> str:
    """Unique per process: a restarted process never inherits a dead one's entries
    directly; they are reclaimed after the visibility timeout instead."""
    return f"{role}-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


async def ensure_group(redis: Redis, stream: str, group: str) -> bool:
    """Create ``group`` (and the stream) unless it exists; True when it was created here."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise
        return False
    return True


def is_nogroup(e: BaseException) -> bool:
    """Redis answered that the stream or its consumer group does not exist."""
    return isinstance(e, ResponseError) and str(e).startswith("NOGROUP")


# Renew this consumer's claim on entries it is still handling: XCLAIM ... JUSTID resets
# an entry's idle time (without counting a delivery), but only where the entry is still
# pending to this consumer; one taken over meanwhile is reported, never taken back.
_RENEW_LUA = """
local lost = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p > 0 then
    if p[1][2] == ARGV[2] then
      redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    else
      table.insert(lost, ARGV[i])
    end
  end
end
return lost
"""


async def renew_leases(
    redis: Redis, stream: str, group: str, consumer: str, msg_ids: list[str]
) -> list[str]:
    """Reset the idle time of ``msg_ids`` still pending to ``consumer``, so no other
    consumer reclaims an entry whose handler is slow but alive. Returns the ids another
    consumer holds now (acknowledged ones are simply skipped)."""
    if not msg_ids:
        return []
    lost = await redis.eval(_RENEW_LUA, 1, stream, group, consumer, *msg_ids)
    return [as_str(m) for m in lost]


async def count_attempt(redis: Redis, keys: Keys, msg_id: str) -> int:
    """Count one delivery of ``msg_id``; the count survives crashes and reclaims."""
    key = keys.attempts(msg_id)
    tx = redis.pipeline(transaction=True)
    tx.hincrby(key, "n", 1)
    tx.expire(key, 7 * 24 * 3600)
    n, _ = await tx.execute()
    return int(n)


async def finish_inbound(
    redis: Redis, keys: Keys, msg_id: str, event: InboundEvent, outcome: Outcome, ttl_s: int
) -> None:
    """Store the event's outcome, acknowledge its entry and take it off its conversation's
    order list, in one transaction: an acknowledged event always has its outcome, and a
    done one is never waited for."""
    tx = redis.pipeline(transaction=True)
    tx.set(keys.outcome(event.key), outcome.to_json(), ex=ttl_s)
    tx.xack(keys.inbound, keys.WORKERS, msg_id)
    tx.delete(keys.attempts(msg_id))
    if event.is_message:
        tx.lrem(keys.conv_order(event.platform, event.account, event.author.id), 0, msg_id)
    await tx.execute()


async def note_failure(redis: Redis, keys: Keys, msg_id: str, error: str) -> None:
    await redis.hset(keys.attempts(msg_id), "error", error[:500])


async def last_error(redis: Redis, keys: Keys, msg_id: str) -> str:
    v = await redis.hget(keys.attempts(msg_id), "error")
    return as_str(v) if v is not None else ""


async def move_to_dead(
    redis: Redis,
    keys: Keys,
    *,
    source: str,
    stream: str,
    group: str,
    msg_id: str,
    fields: dict[str, str],
    error: str,
    attempts: int,
) -> str:
    """Park an entry in the dead stream and acknowledge it, in one transaction."""
    entry: dict[Any, Any] = {
        **fields,
        "source": source,
        "stream_id": msg_id,
        "error": error[:1000],
        "attempts": str(attempts),
        "failed_at": f"{time.time():.3f}",
    }
    tx = redis.pipeline(transaction=True)
    tx.xadd(keys.dead, entry)
    tx.xack(stream, group, msg_id)
    tx.delete(keys.attempts(msg_id))
    dead_id, *_ = await tx.execute()
    metrics.DEAD_LETTERS.labels(source).inc()
    return as_str(dead_id)


async def list_dead(redis: Redis, keys: Keys, count: int = 100) -> list[tuple[str, dict[str, str]]]:
    rows: Any = await redis.xrange(keys.dead, count=count)
    return [(as_str(i), {as_str(k): as_str(v) for k, v in f.items()}) for i, f in rows]


_REPLAY_TARGET = {"inbound": ("inbound", "event"), "outbox": ("outbox", "reply")}


async def replay_dead(redis: Redis, keys: Keys, dead_id: str) -> str:
    """Put a dead entry back on its stream (fresh attempt count); returns the new id."""
    rows: Any = await redis.xrange(keys.dead, min=dead_id, max=dead_id)
    if not rows:
        raise KeyError(dead_id)
    fields = {as_str(k): as_str(v) for k, v in rows[0][1].items()}
    stream_attr, field = _REPLAY_TARGET.get(fields.get("source", ""), (None, None))
    if stream_attr is None or field not in fields:
        raise ValueError(f"dead entry {dead_id} has no replayable payload")
    tx = redis.pipeline(transaction=True)
    tx.xadd(getattr(keys, stream_attr), {field: fields[field]})
    tx.xdel(keys.dead, dead_id)
    new_id, _ = await tx.execute()
    return as_str(new_id)


# Unread entries counted one by one when Redis reports no lag: a floor above every
# lag alert's threshold (docker/prometheus-rules.yml), without reading a huge backlog.
LAG_COUNT_CAP = 1000


async def stream_stats(redis: Redis, stream: str, group: str) -> tuple[int, int, int]:
    """(length, lag, pending) of ``stream`` for ``group``; zeros when absent."""
    length = int(await redis.xlen(stream))
    lag = pending = 0
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:
        return length, 0, 0
    for g in groups:
        if as_str(g.get("name", "")) == group:
            pending = int(g.get("pending", 0) or 0)
            raw_lag = g.get("lag")
            if raw_lag is not None:
                lag = int(raw_lag)
            else:
                # Redis cannot tell the lag once entries past the group's position were
                # deleted (an XDEL by hand, a SETID); count them, up to a cap, rather than
                # report 0 and silence the lag alerts.
                last = as_str(g.get("last-delivered-id", "0-0"))
                unread: Any = await redis.xrange(
                    stream, min=f"({last}", max="+", count=LAG_COUNT_CAP
                )
                lag = len(unread)
    return length, lag, pending


async def refresh_stream_gauges(redis: Redis, keys: Keys) -> None:
    for name, stream, group in (
        ("inbound", keys.inbound, keys.WORKERS),
        ("outbox", keys.outbox, keys.SENDERS),
    ):
        length, lag, pending = await stream_stats(redis, stream, group)
        metrics.STREAM_LENGTH.labels(name).set(length)
        metrics.STREAM_LAG.labels(name).set(lag)
        metrics.STREAM_PENDING.labels(name).set(pending)
    metrics.STREAM_LENGTH.labels("dead").set(int(await redis.xlen(keys.dead)))
