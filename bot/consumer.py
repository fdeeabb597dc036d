"""A bounded-concurrency consumer of one Redis stream in a consumer group.

New entries come from XREADGROUP; entries left pending by a consumer that died or
stalled longer than the visibility timeout are taken over with XAUTOCLAIM. While a
handler runs, the consumer renews its claim every third of the visibility timeout, so a
slow but live handler keeps its entry and only a dead (or frozen) consumer's entries
move. Stopping drains: no new reads, in-flight entries finish and are acknowledged.
Subclasses implement :meth:`handle_entry` and acknowledge what they finish.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog

from bot import metrics
from bot.config import WorkerConfig
from bot.redis import Redis, as_str
from bot.storage_down import CANNOT_STORE, OutageLog, round_failed
from bot.streams import ensure_group, is_nogroup, renew_leases

log = structlog.get_logger(__name__)


class StreamConsumer:
    role = "consumer"

    def __init__(
        self, redis: Redis, *, stream: str, group: str, consumer: str, cfg: WorkerConfig
    ) -> None:
        self.redis = redis
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.cfg = cfg
        self._concurrency = cfg.concurrency
        self._vt_ms = max(1, int(cfg.visibility_timeout_s * 1000))
        self._block_ms = cfg.block_ms
        self._claim_interval = cfg.claim_interval_s
        self._inflight: set[asyncio.Task[None]] = set()
        self._held: dict[asyncio.Task[None], str] = {}  # in-flight task -> its entry id
        # Reads, reclaims, renewals and handlers all meet the same outage: one line for it.
        self.outage = OutageLog(self.role, consumer=consumer)

    async def handle_entry(self, msg_id: str, fields: dict[str, str]) -> None:
        raise NotImplementedError

    async def run(self, stop: asyncio.Event) -> None:
        await ensure_group(self.redis, self.stream, self.group)
        log.info("consumer_started", role=self.role, consumer=self.consumer)
        reclaimer = asyncio.create_task(self._reclaim_loop(stop), name=f"{self.role}-reclaim")
        # Stopped after the drain, not with `stop`: draining handlers keep their entries.
        drained = asyncio.Event()
        leases = asyncio.create_task(self._lease_loop(drained), name=f"{self.role}-leases")
        try:
            while not stop.is_set():
                free = await self._wait_for_slot(stop)
                if free <= 0:
                    continue
                try:
                    resp: Any = await self.redis.xreadgroup(
                        self.group,
                        self.consumer,
                        {self.stream: ">"},
                        count=free,
                        block=self._block_ms,
                    )
                except Exception as e:  # Redis restarting: the client reconnects; retry
                    if await self._regroup(e):
                        continue
                    self._failed("consumer_read_failed", e)
                    await _sleep_or_stop(stop, 1.0)
                    continue
                self.outage.ok()
                for _stream, entries in resp or []:
                    for msg_id, fields in entries:
                        self._spawn(as_str(msg_id), fields)
        finally:
            reclaimer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reclaimer
            await self.drain()
            # An event, not cancel(): redis-py can swallow a cancellation that lands
            # inside a command, and the await would hang.
            drained.set()
            await leases
            log.info("consumer_stopped", role=self.role, consumer=self.consumer)

    async def drain(self) -> None:
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)

    async def _wait_for_slot(self, stop: asyncio.Event) -> int:
        free = self._concurrency - len(self._inflight)
        if free > 0:
            return free
        done = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({*self._inflight, done}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            done.cancel()
        return self._concurrency - len(self._inflight)

    def _spawn(self, msg_id: str, fields: dict[Any, Any]) -> None:
        decoded = {as_str(k): as_str(v) for k, v in fields.items()}
        task = asyncio.create_task(self._guarded(msg_id, decoded))
        self._inflight.add(task)
        self._held[task] = msg_id
        task.add_done_callback(self._inflight.discard)
        task.add_done_callback(self._release)

    def _release(self, task: asyncio.Task[None]) -> None:
        self._held.pop(task, None)

    def _failed(self, event: str, e: BaseException) -> None:
        round_failed(self.outage, event, e, role=self.role)

    async def _lease_loop(self, done: asyncio.Event) -> None:
        while not done.is_set():
            await _sleep_or_stop(done, max(self._vt_ms / 3000, 0.05))
            held = list(self._held.values())
            if not held:
                continue
            try:
                lost = await renew_leases(self.redis, self.stream, self.group, self.consumer, held)
            except Exception as e:  # Redis restarting: the next round renews
                self._failed("consumer_lease_renew_failed", e)
                continue
            self.outage.ok()
            # This process stalled past the visibility timeout and another consumer
            # took these over; the handlers are idempotent, so finishing here as well
            # changes nothing. Stop renewing them (and warn once each).
            for task, msg_id in list(self._held.items()):
                if msg_id in lost:
                    del self._held[task]
                    metrics.WORKER_LEASES_LOST.labels(consumer_role=self.role).inc()
                    log.warning("entry_lease_lost", role=self.role, stream_id=msg_id)

    async def _guarded(self, msg_id: str, fields: dict[str, str]) -> None:
        try:
            await self.handle_entry(msg_id, fields)
        except CANNOT_STORE as e:
            # Redis went away mid-entry: a traceback per in-flight entry says nothing the
            # outage's line does not. The entry stays pending and is reclaimed.
            self.outage.failed(e)
        except Exception:
            # The entry stays pending and is reclaimed after the visibility timeout.
            log.exception("consumer_entry_crashed", role=self.role, stream_id=msg_id)

    async def _reclaim_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await _sleep_or_stop(stop, self._claim_interval)
            if stop.is_set():
                return
            try:
                await self.reclaim_once()
            except Exception as e:
                if not await self._regroup(e):
                    self._failed("consumer_reclaim_failed", e)

    async def _regroup(self, e: Exception) -> bool:
        """On NOGROUP, create the group again; True when it exists now. Redis came back
        without it (restarted without persistence, flushed, failed over to an empty
        replica) and the next XADD made a bare stream: nothing would ever read it."""
        if not is_nogroup(e):
            return False
        try:
            created = await ensure_group(self.redis, self.stream, self.group)
        except Exception:  # Redis away again: the caller logs and retries
            return False
        if created:  # once: whoever else races here finds the group there
            log.warning(
                "consumer_group_recreated", role=self.role, stream=self.stream, group=self.group
            )
        return True

    async def reclaim_once(self) -> int:
        """Take over entries idle longer than the visibility timeout; returns how many."""
        start = "0-0"
        claimed = 0
        while True:
            free = self._concurrency - len(self._inflight)
            if free <= 0:
                break
            resp: Any = await self.redis.xautoclaim(
                self.stream, self.group, self.consumer, self._vt_ms, start_id=start, count=free
            )
            start, entries = as_str(resp[0]), resp[1]
            for msg_id, fields in entries:
                if fields is None:  # deleted from the stream meanwhile
                    continue
                claimed += 1
                metrics.WORKER_RECLAIMED.inc()
                log.info("entry_reclaimed", role=self.role, stream_id=as_str(msg_id))
                self._spawn(as_str(msg_id), fields)
            if start == "0-0":
                break
        return claimed


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
