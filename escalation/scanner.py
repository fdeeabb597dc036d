"""The SLA scanner: turns due deadlines into at-risk and breach alerts, each once.

Deadlines sit in the ``sla:due`` sorted set. Any number of processes may run a scanner;
a Redis lock with an expiry (``lock:sla-scanner``) lets one scan at a time (each of them
still refreshes its open-tickets gauge from Redis on every round). Even without
the lock an alert fires once: the ticket transaction that records it as fired (per run
of the clock) also removes its deadline member, and a second caller finds it fired.
Nothing is held in process memory, so alerts survive restarts of Redis (AOF) and of the
scanner.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable
from typing import Any

import structlog

from bot import metrics
from bot.redis import Keys, Redis, as_str, release_lock
from bot.storage_down import OutageLog, round_failed
from escalation.tickets import TicketStore

log = structlog.get_logger(__name__)


class Notifier:
    """Formats alerts for the notification webhook. The ticket transaction that fires an
    alert also queues its notification (``bot.ops.notify``, the same durable queue as
    crisis alerts): a slow webhook never stalls a scan, delivery is retried by whichever
    worker pops it, and a crash cannot fire an alert without queueing it."""

    def __init__(self, *, public_url: str = "") -> None:
        self.public_url = public_url.rstrip("/")

    def message(self, alert: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The Slack-compatible text and the structured fields for one alert."""
        what = "breached" if alert["kind"] == "breach" else "at risk"
        clock = alert["clock"].replace("_", " ")
        link = f" {self.public_url}/console/tickets/{alert['ticket_id']}" if self.public_url else ""
        text = (
            f":rotating_light: SLA {what}: {clock} on ticket {alert['ticket_id']} "
            f"({alert['platform']}/{alert['account']}, priority {alert['priority']}){link}"
        )
        data = {k: v for k, v in alert.items() if k != "kind"} | {"alert": alert["kind"]}
        return text, data


class SlaScanner:
    def __init__(
        self,
        store: TicketStore,
        notifier: Notifier | None = None,
        *,
        clock: Callable[[], float] = time.time,
        lock_ttl_s: float = 30.0,
        name: str | None = None,
    ) -> None:
        self.store = store
        self.redis: Redis = store.redis
        self.keys: Keys = store.keys
        self.notifier = notifier
        self.now = clock
        self.lock_ttl_ms = int(lock_ttl_s * 1000)
        self.token = name or secrets.token_hex(8)

    @property
    def lock_key(self) -> str:
        return self.keys.lock("sla-scanner")

    async def _acquire(self) -> bool:
        got = await self.redis.set(self.lock_key, self.token, nx=True, px=self.lock_ttl_ms)
        if got:
            return True
        # Re-entrant for the holder: extend our own lock.
        cur = await self.redis.get(self.lock_key)
        if cur is not None and as_str(cur) == self.token:
            await self.redis.pexpire(self.lock_key, self.lock_ttl_ms)
            return True
        return False

    async def release(self) -> None:
        await release_lock(self.redis, self.lock_key, self.token)

    async def scan_once(self, *, use_lock: bool = True) -> list[dict[str, Any]]:
        """Fire every alert due by now (the lock holder only); returns the alerts this call
        fired. Every caller refreshes the open-tickets gauge: dashboards take its max
        across processes, so one that lost the lock must not keep reporting an old count."""
        fired: list[dict[str, Any]] = []
        if not use_lock or await self._acquire():
            fired = await self._fire_due()
        with contextlib.suppress(Exception):
            await self.store.refresh_gauges()
        return fired

    async def _fire_due(self) -> list[dict[str, Any]]:
        fired: list[dict[str, Any]] = []
        now = self.now()
        for member in await self.store.due_alerts(now):
            # The ticket transaction that marks the alert fired (per clock run) also
            # removes its member, so exactly one concurrent caller gets the alert.
            message = self.notifier.message if self.notifier is not None else None
            alert = await self.store.fire_alert(member, message)
            if alert is None:
                # Stale (the clock stopped or restarted), unless its deadline moved later.
                await self.store.take_alert(member, due_by=now)
                continue
            fired.append(alert)
            metrics.SLA_ALERTS.labels(alert["kind"], alert["clock"], alert["priority"]).inc()
            log.info(
                "sla_alert", ticket_id=alert["ticket_id"], kind=alert["kind"], clock=alert["clock"]
            )
        return fired

    async def run(self, stop: asyncio.Event, interval_s: float) -> None:
        log.info("sla_scanner_started")
        outage = OutageLog("sla_scanner")  # one line per Redis outage, not one a round
        try:
            while not stop.is_set():
                try:
                    await self.scan_once()
                    outage.ok()
                except Exception as e:
                    round_failed(outage, "sla_scan_failed", e)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=interval_s)
        finally:
            with contextlib.suppress(Exception):
                await self.release()
            log.info("sla_scanner_stopped")
