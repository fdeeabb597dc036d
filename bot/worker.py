"""The inbound worker: runs the pipeline on each event and stores its outcome.

The outcome (decision and reasons) is stored and the entry acknowledged (and taken off
its conversation's order list) in one transaction, so an acknowledged event always has
its outcome. An event whose outcome already exists (a worker died between storing and
acknowledging, another turn decided it first, or a replay) is acknowledged without
running the pipeline again. After ``max_attempts`` failed deliveries the event moves to
the dead stream.
"""

from __future__ import annotations

import time

import structlog

from bot import metrics
from bot.config import WorkerConfig
from bot.consumer import StreamConsumer
from bot.models import InboundEvent
from bot.pipeline import Pipeline
from bot.redis import Keys, Redis
from bot.streams import (
    INBOUND_ENTRY,
    consumer_name,
    count_attempt,
    finish_inbound,
    last_error,
    move_to_dead,
    note_failure,
)

log = structlog.get_logger(__name__)


class InboundWorker(StreamConsumer):
    role = "worker"

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        cfg: WorkerConfig,
        pipeline: Pipeline,
        *,
        consumer: str | None = None,
    ) -> None:
        super().__init__(
            redis,
            stream=keys.inbound,
            group=keys.WORKERS,
            consumer=consumer or consumer_name("worker"),
            cfg=cfg,
        )
        self.keys = keys
        self.pipeline = pipeline

    async def handle_entry(self, msg_id: str, fields: dict[str, str]) -> None:
        started = time.perf_counter()
        INBOUND_ENTRY.set(msg_id)  # this entry's own task: the brain orders by it
        attempts = await count_attempt(self.redis, self.keys, msg_id)
        raw = fields.get("event", "")
        try:
            event = InboundEvent.from_json(raw)
        except Exception:
            await self._dead(msg_id, fields, "unparsable event", attempts)
            return
        log_ = log.bind(event_id=event.event_id, platform=event.platform, account=event.account)
        outcome_key = self.keys.outcome(event.key)
        if await self.redis.exists(outcome_key):
            await self.redis.xack(self.stream, self.group, msg_id)
            await self.redis.delete(self.keys.attempts(msg_id))
            metrics.WORKER_EVENTS.labels("skipped_done").inc()
            log_.info("event_already_done")
            return
        if attempts > self.cfg.max_attempts:
            error = (
                await last_error(self.redis, self.keys, msg_id) or "worker died while handling it"
            )
            await self._dead(msg_id, fields, error, attempts - 1)
            log_.warning("event_dead_lettered", attempts=attempts - 1)
            return
        try:
            outcome = await self.pipeline.handle(event)
        except Exception as e:
            metrics.WORKER_EVENTS.labels("failed").inc()
            await note_failure(self.redis, self.keys, msg_id, f"{type(e).__name__}: {e}")
            log_.warning("event_failed", attempt=attempts, error=type(e).__name__, exc_info=True)
            if attempts >= self.cfg.max_attempts:
                await self._dead(msg_id, fields, f"{type(e).__name__}: {e}", attempts)
                log_.warning("event_dead_lettered", attempts=attempts)
            return  # otherwise left pending: reclaimed after the visibility timeout
        await finish_inbound(self.redis, self.keys, msg_id, event, outcome, self.cfg.outcome_ttl_s)
        metrics.WORKER_EVENTS.labels("done").inc()
        metrics.WORKER_SECONDS.observe(time.perf_counter() - started)
        log_.info("event_done", decision=outcome.decision, kind=event.kind)

    async def _dead(self, msg_id: str, fields: dict[str, str], error: str, attempts: int) -> None:
        await move_to_dead(
            self.redis,
            self.keys,
            source="inbound",
            stream=self.stream,
            group=self.group,
            msg_id=msg_id,
            fields=fields,
            error=error,
            attempts=attempts,
        )
        metrics.WORKER_EVENTS.labels("dead").inc()
