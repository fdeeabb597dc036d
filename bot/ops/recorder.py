"""The one hook the pipeline calls per handled message: feeds insights and spikes."""

from __future__ import annotations

import time

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

    Call once per handled message, after the decision. Idempotent per event (a worker
    that died after this call and a redelivery count the message once). Costs two or
    three Redis round trips; raises on Redis errors like the rest of the pipeline.
    """
    if not event.is_message:
        return
    cfg = cfg or _config
    now = time.time() if now is None else now
    if not await redis.set(keys.ns("ops", "counted", event.key), b"1", nx=True, ex=COUNTED_TTL_S):
        return
    tx = redis.pipeline(transaction=False)
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
    if negative:
        metrics.NEGATIVE_MESSAGES.labels(event.platform, event.account, event.kind).inc()
        if event.kind in cfg.spike_kinds:
            item = message_item(event, intent=intent, now=now)
            await SpikeDetector(redis, keys, cfg).observe(event.account, now=now, item=item)
