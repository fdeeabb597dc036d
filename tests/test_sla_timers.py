"""SLA timers as ops see them: policies that cannot work are refused at start, and every
scanner reports the queue depth, not only the one holding the scan lock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot import metrics
from bot.config import ConfigError, EscalationConfig, SlaPolicyConfig
from escalation.scanner import SlaScanner
from escalation.sla import PRIORITIES, SlaPolicies
from escalation.tickets import TicketStore
from tests.support.escalation import FakeClock, event
from tests.support.fresh_metrics import fresh_samples

ROOT = Path(__file__).resolve().parent.parent


def with_policies(**kw: Any) -> EscalationConfig:
    c = EscalationConfig(**kw)
    c.policies["low"] = SlaPolicyConfig(240, 480, 2880, business_hours=True)
    return c


@pytest.mark.parametrize(
    ("change", "says"),
    [
        # ISO weekday numbers (7 = Sunday) are not Python's: Monday is 0.
        ({"business_days": [1, 2, 3, 4, 7]}, "escalation.business_days"),
        # No working day: every business-hours deadline would fail when a ticket opens.
        ({"business_days": []}, "escalation.business_days"),
        # Zero or negative targets breach every ticket the moment it opens.
        ({"policies": {"normal": SlaPolicyConfig(first_response_min=0)}}, "first_response_min"),
        ({"policies": {"high": SlaPolicyConfig(resolution_min=-5)}}, "policies.high.resolution"),
        (
            {"overrides": {"acme/mention": {"urgent": SlaPolicyConfig(next_response_min=0)}}},
            "overrides.acme/mention.urgent.next_response_min",
        ),
        # A priority or channel the tickets never have: the policy would never apply.
        ({"policies": {"critical": SlaPolicyConfig()}}, "escalation.policies.critical"),
        ({"overrides": {"acme": {"hgih": SlaPolicyConfig()}}}, "overrides.acme.hgih"),
        ({"overrides": {"acme/reply": {"high": SlaPolicyConfig()}}}, "overrides.acme/reply"),
    ],
)
def test_policies_that_cannot_work_are_refused_at_start(change: dict[str, Any], says: str) -> None:
    cfg = with_policies()
    for key, value in change.items():
        if key in ("policies", "overrides"):
            getattr(cfg, key).update(value)
        else:
            setattr(cfg, key, value)
    with pytest.raises(ConfigError) as e:
        SlaPolicies(cfg)
    assert says in str(e.value)


def test_valid_policies_and_calendars_still_load() -> None:
    # Fractions of a minute are fine (tests and demos use them); so is a seven-day week,
    # and no business days at all when no policy counts business hours.
    cfg = EscalationConfig(business_days=[0, 1, 2, 3, 4, 5, 6])
    cfg.policies["urgent"] = SlaPolicyConfig(0.1, 0.1, 0.2)
    cfg.overrides = {"acme/dm": {"high": SlaPolicyConfig(20, 60, 480)}}
    SlaPolicies(cfg)
    SlaPolicies(EscalationConfig(business_days=[]))


async def test_a_scanner_without_the_lock_still_reports_the_queue_depth(
    redis: Any, keys: Any
) -> None:
    """Each worker runs a scanner and one holds the lock. The open-tickets gauge is read
    with max() across processes (the dashboard), so a process that stops holding the
    lock must not keep exporting the count it saw last."""
    clock = FakeClock()
    store = TicketStore(redis, keys, EscalationConfig(), clock=clock)
    for user in ("1", "2", "3"):
        await store.open_or_append(
            event(user=user, at=clock.t), reason="complaint", priority="high", reasons={}
        )
    holder = SlaScanner(store, clock=clock, name="holder")
    other = SlaScanner(store, clock=clock, name="other")
    assert await holder._acquire()
    # What this process exported while it held the lock, before the queue changed.
    metrics.TICKETS_OPEN.labels("high").set(40)
    metrics.TICKETS_OPEN.labels("low").set(7)
    assert await other.scan_once() == []  # not the holder: fires nothing
    assert metrics.TICKETS_OPEN.labels("high")._value.get() == 3
    assert metrics.TICKETS_OPEN.labels("low")._value.get() == 0
    await holder.release()


def test_ticket_counters_exist_at_zero_from_the_start() -> None:
    """rate() and increase() count nothing into a series' first sample, so a counter born
    at 1 hides a process's first ticket of each priority and channel from the dashboard."""
    samples = fresh_samples()
    for priority in PRIORITIES:
        key = ("replydesk_tickets_resolved_total", (("priority", priority),))
        assert samples.get(key) == 0, key
        for channel in ("mention", "dm"):
            key = ("replydesk_tickets_opened_total", (("channel", channel), ("priority", priority)))
            assert samples.get(key) == 0, key
    from escalation.sla import CHANNELS  # the channels a ticket has

    assert set(CHANNELS) == {"mention", "dm"}
