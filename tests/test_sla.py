"""SLA clocks with an injectable clock: targets, business hours, pauses, alerts once."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web

from bot import metrics
from bot.config import EscalationConfig, Secret, SlaPolicyConfig
from bot.models import OutboundReply
from bot.ops import notify
from escalation.scanner import Notifier, SlaScanner
from escalation.sla import BusinessCalendar, SlaPolicies
from escalation.tickets import TicketStore, is_trivial
from tests.support.escalation import FakeClock, event

MIN = 60.0


def ts(s: str, tz: str = "UTC") -> float:
    return dt.datetime.fromisoformat(s).replace(tzinfo=dt.UTC if tz == "UTC" else None).timestamp()


def cfg(**kw: Any) -> EscalationConfig:
    c = EscalationConfig(**kw)
    c.policies["normal"] = SlaPolicyConfig(
        first_response_min=30, next_response_min=60, resolution_min=240
    )
    return c


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(ts("2026-01-01T10:00:00"))  # a Thursday


@pytest.fixture
def store(redis: Any, keys: Any, clock: FakeClock) -> TicketStore:
    return TicketStore(redis, keys, cfg(), clock=clock)


async def open_ticket(store: TicketStore, clock: FakeClock, **kw: Any) -> str:
    tid, created = await store.open_or_append(
        event(at=clock.t, **kw),
        reason="complaint",
        priority=kw.pop("priority", "normal"),
        reasons={},
    )
    assert created
    return tid


async def clocks(store: TicketStore, tid: str) -> dict[str, Any]:
    t = await store.get(tid)
    assert t is not None
    return store.sla_view(t, store.now())


def test_business_calendar_skips_weekend_and_holidays() -> None:
    cal = BusinessCalendar("UTC", [0, 1, 2, 3, 4], "09:00", "18:00")
    # Friday 17:00 + 2 working hours → Monday 10:00.
    assert cal.add(ts("2026-01-02T17:00:00"), 2 * 3600) == ts("2026-01-05T10:00:00")
    # Saturday start counts from Monday 09:00.
    assert cal.add(ts("2026-01-03T12:00:00"), 30 * MIN) == ts("2026-01-05T09:30:00")
    # Before opening: counts from 09:00 the same day.
    assert cal.add(ts("2026-01-05T06:00:00"), 60 * MIN) == ts("2026-01-05T10:00:00")
    hol = BusinessCalendar("UTC", [0, 1, 2, 3, 4], "09:00", "18:00", ["2026-01-05"])
    assert hol.add(ts("2026-01-02T17:00:00"), 2 * 3600) == ts("2026-01-06T10:00:00")
    # Timezone: 09:00-18:00 Shanghai is 01:00-10:00 UTC.
    sh = BusinessCalendar("Asia/Shanghai", [0, 1, 2, 3, 4], "09:00", "18:00")
    # Friday 17:30 Shanghai + 1 h → Monday 09:30 Shanghai (01:30 UTC).
    assert sh.add(ts("2026-01-02T09:30:00"), 60 * MIN) == ts("2026-01-05T01:30:00")


async def test_first_response_runs_until_a_human_reply_not_a_bot_ack(
    store: TicketStore, clock: FakeClock
) -> None:
    tid = await open_ticket(store, clock)
    c = await clocks(store, tid)
    assert c["first_response"]["state"] == "running"
    assert c["first_response"]["due_at"] == clock.t + 30 * MIN
    assert c["resolution"]["due_at"] == clock.t + 240 * MIN
    assert c["next_response"]["state"] == "not_started"
    clock.advance(5 * MIN)
    ack = OutboundReply("ack-1", "generic", "acme", "dm", "we're on it", "42", ticket_id=tid)
    await store.add_bot_message(tid, ack)
    assert (await clocks(store, tid))["first_response"]["state"] == "running"  # bot ack: no stop
    clock.advance(10 * MIN)
    await store.reply(tid, "ann", "Hi, Ann here")
    c = await clocks(store, tid)
    assert c["first_response"]["state"] == "met" and c["first_response"]["stopped_at"] == clock.t
    assert c["resolution"]["state"] == "running"


async def test_next_response_from_oldest_unanswered_and_thanks_does_not_restart(
    store: TicketStore, clock: FakeClock
) -> None:
    tid = await open_ticket(store, clock)
    clock.advance(MIN)
    await store.reply(tid, "ann", "Looking into it")
    clock.advance(MIN)
    await store.append_customer_message(tid, event("thanks!", at=clock.t))
    await store.append_customer_message(tid, event("谢谢", at=clock.t))
    assert (await clocks(store, tid))["next_response"]["state"] == "not_started"
    clock.advance(MIN)
    started = clock.t
    await store.append_customer_message(tid, event("still no package though", at=clock.t))
    clock.advance(5 * MIN)
    await store.append_customer_message(tid, event("hello??", at=clock.t))
    c = await clocks(store, tid)
    # The oldest unanswered message sets the deadline; later ones do not move it.
    assert c["next_response"]["started_at"] == started
    assert c["next_response"]["due_at"] == started + 60 * MIN
    clock.advance(70 * MIN)
    c = await clocks(store, tid)
    assert c["next_response"]["state"] == "breached"
    await store.reply(tid, "ann", "Sorry for the wait")
    assert (await clocks(store, tid))["next_response"]["state"] == "missed"
    assert is_trivial("ok") and is_trivial("好的") and not is_trivial("ok but where is it")


async def test_resolution_and_reopen(store: TicketStore, clock: FakeClock) -> None:
    tid = await open_ticket(store, clock)
    clock.advance(100 * MIN)
    await store.resolve(tid, "ann")
    c = await clocks(store, tid)
    assert c["resolution"]["state"] == "met" and c["first_response"]["state"] == "missed"
    assert await store.due_alerts(clock.t + 10**6) == []  # nothing left to fire
    clock.advance(MIN)
    await store.reopen(tid, "ann")
    c = await clocks(store, tid)
    assert (
        c["resolution"]["state"] == "running" and c["resolution"]["due_at"] == clock.t + 240 * MIN
    )


async def test_resolving_unanswered_is_not_a_response_and_reopen_owes_one(
    store: TicketStore, clock: FakeClock
) -> None:
    tid = await open_ticket(store, clock)
    clock.advance(MIN)
    await store.resolve(tid, "ann")  # e.g. by mistake, or as a duplicate
    c = await clocks(store, tid)
    assert c["first_response"]["state"] == "not_applicable"  # not met: nobody answered
    assert c["resolution"]["state"] == "met"
    clock.advance(MIN)
    await store.reopen(tid, "ann")
    c = await clocks(store, tid)
    # Still owed a first response, measured from the reopening.
    assert c["first_response"]["state"] == "running"
    assert c["first_response"]["due_at"] == clock.t + 30 * MIN
    assert await store.due_alerts(clock.t + 30 * MIN) != []
    await store.append_customer_message(tid, event("hello?? still no parcel", at=clock.t))
    assert (await clocks(store, tid))["next_response"]["state"] == "not_started"
    clock.advance(MIN)
    await store.reply(tid, "ann", "On it")
    assert (await clocks(store, tid))["first_response"]["state"] == "met"
    clock.advance(MIN)
    await store.append_customer_message(tid, event("it says delivered, it is not", at=clock.t))
    c = await clocks(store, tid)
    assert c["next_response"]["state"] == "running"
    assert c["next_response"]["due_at"] == clock.t + 60 * MIN
    # Resolving with that question unanswered does not meet it either; a reopen after a
    # human reply waits for the customer's next message.
    await store.resolve(tid, "ann")
    assert (await clocks(store, tid))["next_response"]["state"] == "not_applicable"
    await store.reopen(tid, "ann")
    c = await clocks(store, tid)
    assert c["first_response"]["state"] == "met"
    assert c["next_response"]["state"] == "not_applicable"


async def test_breach_reports_and_keeps_the_deadline_it_missed(
    store: TicketStore, clock: FakeClock, redis: Any, keys: Any
) -> None:
    tid = await open_ticket(store, clock)
    c = await clocks(store, tid)
    due = c["first_response"]["due_at"]
    clock.t = due + 1
    fired = await SlaScanner(store, clock=clock).scan_once()
    assert [(f["kind"], f["due_at"]) for f in fired] == [("at_risk", due), ("breach", due)]
    data = [
        json.loads(f[b"data"])
        for _, f in await redis.xrange(keys.events)
        if f[b"type"] == b"sla.breach"
    ]
    assert [d["due_at"] for d in data] == [due]
    c = await clocks(store, tid)
    assert c["first_response"]["due_at"] == due and c["first_response"]["state"] == "breached"
    t = await store.get(tid)
    assert t is not None and t.priority == "high" and t.next_due() == due  # sorts as overdue
    # The other running clock follows the bumped priority (high: 480 min by default).
    assert c["resolution"]["due_at"] == c["resolution"]["started_at"] + 480 * MIN
    await store.set_priority(tid, "urgent", "sue")
    assert (await clocks(store, tid))["first_response"]["due_at"] == due


async def test_business_hours_policy_pauses_over_the_weekend(redis: Any, keys: Any) -> None:
    clock = FakeClock(ts("2026-01-02T17:30:00"))  # Friday
    c = cfg()
    c.policies["normal"] = SlaPolicyConfig(
        first_response_min=60, next_response_min=60, resolution_min=600, business_hours=True
    )
    store = TicketStore(redis, keys, c, clock=clock)
    tid = await open_ticket(store, clock)
    v = await clocks(store, tid)
    assert v["first_response"]["due_at"] == ts("2026-01-05T09:30:00")  # 30 min Fri + 30 min Mon
    clock.t = ts("2026-01-04T23:00:00")  # Sunday night: paused, not breached
    assert (await clocks(store, tid))["first_response"]["state"] == "running"
    scanner = SlaScanner(store, clock=clock)
    assert await scanner.scan_once() == []


async def test_per_account_channel_override(redis: Any, keys: Any, clock: FakeClock) -> None:
    c = cfg(overrides={"acme/mention": {"normal": SlaPolicyConfig(first_response_min=5)}})
    store = TicketStore(redis, keys, c, clock=clock)
    public = await open_ticket(store, clock, kind="mention", user="7")
    private = await open_ticket(store, clock, user="8")
    assert (await clocks(store, public))["first_response"]["due_at"] == clock.t + 5 * MIN
    assert (await clocks(store, private))["first_response"]["due_at"] == clock.t + 30 * MIN
    assert SlaPolicies(c).policy("normal", "acme", "dm").first_response_min == 30


@pytest.fixture
async def hook(aiohttp_server: Any) -> Any:
    got: list[dict[str, Any]] = []

    async def receive(request: web.Request) -> web.Response:
        got.append(await request.json())
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", receive)
    server = await aiohttp_server(app)
    server.got = got
    return server


async def test_at_risk_and_breach_fire_once_each_with_two_scanners(
    redis_server: Any, redis: Any, keys: Any, clock: FakeClock, hook: Any
) -> None:
    import aiohttp

    # Two "processes": separate connections, stores and scanners over one Redis.
    other = aioredis.Redis.from_url(redis_server.url)
    s1 = TicketStore(redis, keys, cfg(), clock=clock)
    s2 = TicketStore(other, keys, cfg(), clock=clock)
    tid = await open_ticket(s1, clock)
    async with aiohttp.ClientSession() as http:
        n = Notifier()
        a, b = SlaScanner(s1, n, clock=clock), SlaScanner(s2, n, clock=clock)
        fired: list[dict[str, Any]] = []

        async def both(use_lock: bool) -> None:
            for r in await asyncio.gather(
                a.scan_once(use_lock=use_lock), b.scan_once(use_lock=use_lock)
            ):
                fired.extend(r)

        clock.advance(23 * MIN)
        await both(False)
        assert fired == []
        clock.advance(2 * MIN)  # 25 min: 80% of the 30 min first response target
        await both(False)  # no lock: the ticket transaction alone keeps it once
        await both(False)
        assert [(f["clock"], f["kind"]) for f in fired] == [("first_response", "at_risk")]
        clock.advance(6 * MIN)
        await both(True)
        await both(True)
        await a.release()
        await both(False)
        assert [(f["clock"], f["kind"]) for f in fired] == [
            ("first_response", "at_risk"),
            ("first_response", "breach"),
        ]
        t = await s1.get(tid)
        assert t is not None and t.priority == "high"  # bumped on breach
        # Queued on the durable notification queue, posted by the ops delivery loop.
        url = Secret(str(hook.make_url("/hook")))
        assert await notify.deliver_pending(redis, keys, http, url) == 2
        assert await notify.deliver_pending(redis, keys, http, url) == 0
        assert len(hook.got) == 2 and "SLA breached" in hook.got[1]["text"]
        sent = hook.got[1]["replydesk"]
        assert sent["kind"] == "sla" and sent["alert"] == "breach" and sent["ticket_id"] == tid
        c = await clocks(s1, tid)
        assert c["first_response"]["state"] == "breached"
        # Once each on the events stream (for the console) and in the metrics.
        types = [f[b"type"] for _, f in await redis.xrange(keys.events)]
        assert types.count(b"sla.at_risk") == 1 and types.count(b"sla.breach") == 1
        assert metrics.SLA_ALERTS.labels("breach", "first_response", "high")._value.get() >= 1
        # The running resolution clock now follows the high policy (default 480 min).
        assert c["resolution"]["due_at"] == c["resolution"]["started_at"] + 480 * MIN
    await other.aclose()


async def test_only_one_scanner_holds_the_lock(store: TicketStore, clock: FakeClock) -> None:
    a, b = SlaScanner(store, clock=clock, name="a"), SlaScanner(store, clock=clock, name="b")
    assert await a._acquire() and not await b._acquire()
    await a.release()
    assert await b._acquire()


async def test_deadlines_survive_a_redis_restart(
    redis_server: Any, keys: Any, clock: FakeClock
) -> None:
    r1 = aioredis.Redis.from_url(redis_server.url)
    await r1.flushall()
    tid = await open_ticket(TicketStore(r1, keys, cfg(), clock=clock), clock)
    await r1.aclose()
    redis_server.restart(kill=True)
    r2 = aioredis.Redis.from_url(redis_server.url)
    store = TicketStore(r2, keys, cfg(), clock=clock)
    clock.advance(31 * MIN)
    fired = await SlaScanner(store, clock=clock).scan_once()
    assert {(f["ticket_id"], f["kind"]) for f in fired} == {(tid, "at_risk"), (tid, "breach")}
    await r2.aclose()


async def test_priority_change_reschedules_running_clocks(
    store: TicketStore, clock: FakeClock
) -> None:
    tid = await open_ticket(store, clock)
    await store.set_priority(tid, "urgent", "sue")
    c = await clocks(store, tid)
    assert c["first_response"]["due_at"] == clock.t + 15 * MIN  # default urgent target
    clock.advance(16 * MIN)
    fired = await SlaScanner(store, clock=clock).scan_once()
    assert [f["kind"] for f in fired] == ["at_risk", "breach"]


async def test_a_deadline_moved_later_after_the_scanner_read_it_is_not_a_breach(
    store: TicketStore, clock: FakeClock
) -> None:
    """The scanner read the breach as due, then a supervisor lowered the priority (the
    deadline moved past now) before the ticket transaction: no breach fires, no priority
    bump, and the deadline stays in the due set for its new time, where it fires."""
    tid = await open_ticket(store, clock)
    clock.t = (await clocks(store, tid))["first_response"]["due_at"] + 1
    due = await store.due_alerts(clock.t)
    breach = f"{tid}|first_response|1|breach"
    assert breach in due
    await store.set_priority(tid, "low", "sue")  # first response: 30 min -> 240 min
    scanner = SlaScanner(store, clock=clock)
    for member in due:
        assert await store.fire_alert(member) is None
        await store.take_alert(member, due_by=clock.t)  # what the scanner does with None
    t = await store.get(tid)
    assert t.priority == "low" and not t.clocks["first_response"].breached
    assert not [h for h in (await store.lists(tid))["history"] if h["action"] == "sla.breach"]
    moved = (await clocks(store, tid))["first_response"]["due_at"]
    assert moved > clock.t and await store.redis.zscore(store.k_due, breach) == moved
    clock.t = moved + 1
    fired = await scanner.scan_once()
    assert [(f["kind"], f["priority_before"]) for f in fired] == [
        ("at_risk", "low"),
        ("breach", "low"),
    ]


async def test_a_breach_records_the_priority_it_raised(
    store: TicketStore, clock: FakeClock
) -> None:
    tid = await open_ticket(store, clock)
    scanner = SlaScanner(store, clock=clock)
    clock.t = (await clocks(store, tid))["first_response"]["due_at"] + 1
    await scanner.scan_once()
    history = (await store.lists(tid))["history"]
    (at_risk,) = [h for h in history if h["action"] == "sla.at_risk"]
    (breach,) = [h for h in history if h["action"] == "sla.breach"]
    assert "from" not in at_risk  # an at-risk alert changes no priority
    assert (breach["actor"], breach["clock"], breach["from"], breach["to"]) == (
        "sla",
        "first_response",
        "normal",
        "high",
    )
    # An urgent ticket cannot go higher: its breach records no change.
    urgent, _ = await store.open_or_append(
        event(user="9", at=clock.t), reason="complaint", priority="urgent", reasons={}
    )
    clock.t = (await clocks(store, urgent))["first_response"]["due_at"] + 1
    await scanner.scan_once()
    (breach,) = [h for h in (await store.lists(urgent))["history"] if h["action"] == "sla.breach"]
    assert "from" not in breach and "to" not in breach


async def test_a_worse_appended_message_raises_and_retimes_like_a_supervisor(
    store: TicketStore, clock: FakeClock, redis: Any, keys: Any
) -> None:
    tid = await open_ticket(store, clock)
    opened = clock.t
    clock.advance(5 * MIN)
    worse = event("you scammers", kind="mention", at=clock.t)
    assert await store.append_customer_message(tid, worse, priority="high")
    t = await store.get(tid)
    assert t is not None and t.priority == "high"
    c = await clocks(store, tid)
    # Re-timed from when each clock started, under the high policy (default targets).
    assert c["first_response"]["due_at"] == opened + 30 * MIN
    assert c["resolution"]["due_at"] == opened + 480 * MIN
    due = await redis.zrange(keys.ns("sla", "due"), 0, -1, withscores=True)
    assert (f"{tid}|first_response|1|breach".encode(), opened + 30 * MIN) in due
    events = [f[b"type"] for _, f in await redis.xrange(keys.events)]
    assert b"ticket.priority" in events
    # A re-run of that message, and a calmer one, change nothing.
    assert not await store.append_customer_message(tid, worse, priority="high")
    assert await store.append_customer_message(tid, event("ok", at=clock.t), priority="low")
    t = await store.get(tid)
    assert t is not None and t.priority == "high"
    raised = [h for h in (await store.lists(tid))["history"] if h["action"] == "priority"]
    assert [(h["actor"], h["from"], h["to"], h["event_id"]) for h in raised] == [
        ("bot", "normal", "high", worse.event_id)
    ]
