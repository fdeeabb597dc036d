"""The one hook the pipeline calls per handled message: feeds insights and spikes."""

from __future__ import annotations

import time

from redis.exceptions import WatchError

from bot import metrics
from bot.config import OpsConfig
from bot.models import InboundEvent
from bot.ops.insights import queue_counts
from bot.ops.spikes import SpikeDetector, message_item
from bot.redis import Keys, Redis

# Longer than any redelivery of an event (visibility timeouts times attempts).
COUNTED_TTL_S = 24 * 3600

# Set once at start-up from Settings.ops (register_ops_routes); tests may pass cfg.
_config = OpsConfig()


def configure(cfg: OpsConfig) -> None:
    global _config
    _config = cfg


async def record_message(
    redis: Redis,
    keys: Keys,
    event: InboundEvent,
    *,
    intent: str,
    negative: bool,
    decision: str,
    now: float | None = None,
    cfg: OpsConfig | None = None,
) -> None:
    """Count ``event`` for insights and, if negative, for its account's spike detector.

    Call once per handled message, after the decision. Idempotent per event, and a run
    that fails part-way (a Redis error, a killed worker) leaves the rest to the event's
    redelivery: the spike script counts a message once by its own marker, and the
    insights counters are written in one transaction with ``ops:counted``. Costs three
    Redis round trips (five for a negative mention); raises on Redis errors like the rest
    of the pipeline.
    """
    if not event.is_message:
        return
    cfg = cfg or _config
    now = time.time() if now is None else now
    counted = keys.ns("ops", "counted", event.key)
    if negative and event.kind in cfg.spike_kinds:
        item = message_item(event, intent=intent, now=now)
        await SpikeDetector(redis, keys, cfg).observe(
            event.account, now=now, item=item, once=event.key, once_ttl_s=COUNTED_TTL_S
        )
    async with redis.pipeline(transaction=True) as tx:
        try:
            await tx.watch(counted)
            if await tx.exists(counted):
                return
            tx.multi()
            tx.set(counted, b"1", ex=COUNTED_TTL_S)
            queue_counts(
                tx,
                keys,
                cfg,
                account=event.account,
                text=event.text,
                intent=intent,
                negative=negative,
                decision=decision,
                now=now,
            )
            await tx.execute()
        except WatchError:  # another run of the event counted it meanwhile
            return
    if negative:
        metrics.NEGATIVE_MESSAGES.labels(event.platform, event.account, event.kind).inc()
