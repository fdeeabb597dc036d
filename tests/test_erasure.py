"""Erasing one customer (bot/erasure.py): real redis-server, real ingest writer, workers,
brain (stub NLU), tickets, SLA scanner and agent API; data for two customers, one
erased. Afterwards no key or stream entry holds the erased customer's id, handle or
messages; the other customer's data is as it was, and everything keeps running."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from bot.brain import Brain
from bot.config import WorkerConfig
from bot.erasure import Customer, customers_with_handle, erase, find
from bot.ingest import IngestWriter
from bot.models import InboundEvent
from bot.pipeline import Outcome
from bot.redis import as_str
from bot.streams import ensure_group, stream_stats
from bot.worker import InboundWorker
from escalation.agents import AgentStore
from escalation.api import TICKETS
from escalation.scanner import Notifier, SlaScanner
from escalation.tickets import TicketStore
from handlers.responses import Responses
from tests.conftest import make_settings
from tests.support.escalation import FakeClock, event
from tests.support.nlu_values import StubNlu
from tests.support.waiting import until

RESPONSES = Responses.load(Path(__file__).resolve().parents[1] / "nlu_data" / "responses")
ERIN = Customer("generic", "acme", "cust-7731")
OTTO = Customer("generic", "acme", "cust-5510")
ERIN_SAYS = [
    "hello there zebra-quartz",
    "how do I get a refund for my velvet-lamp?",
    "@acme worst service ever, my copper-kettle broke",
    "where is my order moss-harbor",
]
POISON = "poison-pill amber-fjord"
AGENT_TO_ERIN = "So sorry, a kettle-replacement-9 is on its way"
OTTO_SAYS = ["@acme worst delivery ever otto-grievance", "hello from otto-lindqvist"]


def erin(text: str, **kw: Any) -> InboundEvent:
    kind = "mention" if text.startswith("@") else "dm"
    return event(text, user=ERIN.user_id, handle="erin_q", kind=kind, **kw)


def otto(text: str, **kw: Any) -> InboundEvent:
    kind = "mention" if text.startswith("@") else "dm"
    return event(text, user=OTTO.user_id, handle="otto_b", kind=kind, **kw)


class Poisoned:
    """The brain, but one message always fails: it ends in the dead stream."""

    ready = True

    def __init__(self, brain: Brain) -> None:
        self.brain = brain

    async def handle(self, ev: InboundEvent) -> Outcome:
        if ev.text == POISON:
            raise RuntimeError("boom")
        return await self.brain.handle(ev)


async def ingest(redis: Any, keys: Any, events: list[InboundEvent]) -> None:
    writer = IngestWriter(redis, keys, dedupe_ttl_s=3600, batch_max=64)
    await writer.start()
    for ev in events:
        assert await writer.store([ev]) == [True]
    await writer.close()


async def run_worker(redis: Any, keys: Any, brain: Brain, done: Any) -> None:
    # One failure dead-letters (the poison), and no live entry is reclaimed under load.
    cfg = WorkerConfig(
        concurrency=4, visibility_timeout_s=5, block_ms=50, claim_interval_s=0.1, max_attempts=1
    )
    worker = InboundWorker(redis, keys, cfg, Poisoned(brain), consumer="w1")
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await until(done, 20, "every event handled")
    finally:
        stop.set()
        await task


async def settled(redis: Any, keys: Any, events: list[InboundEvent], dead: int = 0) -> bool:
    if await redis.exists(*[keys.outcome(e.key) for e in events]) != len(events):
        return False
    _, lag, pending = await stream_stats(redis, keys.inbound, keys.WORKERS)
    return lag == pending == 0 and await redis.xlen(keys.dead) == dead


async def dump(redis: Any) -> dict[str, str]:
    """Every key in the database with everything it holds, as text."""
    out: dict[str, str] = {}
    async for raw in redis.scan_iter(count=1000):
        k = as_str(raw)
        t = as_str(await redis.type(k))
        if t == "string":
            v: Any = await redis.get(k)
        elif t == "hash":
            v = await redis.hgetall(k)
        elif t == "list":
            v = await redis.lrange(k, 0, -1)
        elif t == "set":
            v = sorted(await redis.smembers(k))
        elif t == "zset":
            v = await redis.zrange(k, 0, -1, withscores=True)
        else:
            v = await redis.xrange(k)
        # JSON escapes non-ASCII and quotes: compare on the decoded text too.
        out[k] = repr(v).encode().decode("unicode_escape", "ignore")
    return out


def mentions(db: dict[str, str], needles: list[str]) -> list[tuple[str, str]]:
    return [
        (k, n)
        for k, v in db.items()
        for n in needles
        if n.casefold() in k.casefold() or n.casefold() in v.casefold()
    ]


@pytest.fixture
def settings(redis_server: Any, redis: Any, tmp_path: Any) -> Any:
    # A crisis alert from one negative mention (after the account's first window), so
    # the erased customer's message is copied into an alert too.
    return make_settings(
        redis_server.url,
        tmp_path,
        **{"ops.min_count": 1, "ops.baseline_floor": 0.1, "ops.factor": 1.01},
    )


async def test_erasing_a_customer_leaves_no_trace_and_the_rest_running(
    redis: Any, keys: Any, settings: Any, aiohttp_client: Any
) -> None:
    clock = FakeClock()
    tickets = TicketStore(redis, keys, settings.escalation, clock=clock)
    brain = Brain(
        redis, keys, settings, StubNlu(), tickets=tickets, responses=RESPONSES, clock=clock
    )
    # Otto first (his negative mention starts the account's spike window), then Erin.
    first = [otto(t) for t in OTTO_SAYS]
    await ingest(redis, keys, first)
    await run_worker(redis, keys, brain, lambda: settled(redis, keys, first))
    clock.advance(6 * 3600)  # his bucket is history: a baseline near zero
    hers = [erin(t) for t in ERIN_SAYS]
    await ingest(redis, keys, [*hers, erin(POISON)])
    await run_worker(redis, keys, brain, lambda: settled(redis, keys, hers, dead=1))

    [erin_tid] = {o.ticket_id for o in await outcomes(redis, keys, hers) if o.ticket_id}
    otto_tid = await tickets.open_ticket_for(OTTO.conv)
    assert otto_tid and otto_tid != erin_tid
    assert await redis.llen(keys.ns("ops", "alert", await alert_id(redis, keys), "events"))
    # Both tickets breach their first response: SLA notices (naming the customer) queued.
    clock.advance(61 * 60)
    fired = await SlaScanner(tickets, Notifier(), clock=clock).scan_once(use_lock=False)
    assert {a["ticket_id"] for a in fired} >= {erin_tid, otto_tid}
    await tickets.reply(erin_tid, "ann", AGENT_TO_ERIN)
    # A sender took every queued reply and has not finished: pending in its group.
    await ensure_group(redis, keys.outbox, keys.SENDERS)
    await redis.xreadgroup(keys.SENDERS, "s1", {keys.outbox: ">"})

    erin_marks = [ERIN.user_id, "erin_q", *ERIN_SAYS, POISON, AGENT_TO_ERIN]
    otto_marks = [OTTO.user_id, "otto_b", *OTTO_SAYS]
    before = await dump(redis)
    assert {n for _, n in mentions(before, erin_marks)} == set(erin_marks)

    # Dry run: reads only.
    plan = await find(redis, keys, ERIN)
    assert await dump(redis) == before
    counts = plan.counts()
    assert counts["tickets"] == 1 and counts["inbound entries"] == 5
    assert counts["dead letters"] == 1 and counts["spike and crisis-alert message copies"] == 2
    assert counts["queued notifications"] >= 1 and counts["decision records"] == 4
    assert set(plan.tickets) == {erin_tid}

    with capture_logs() as logs:
        done, audit = await erase(redis, keys, settings, ERIN, reference="DSR-2026-014")
    assert audit and done.counts() == counts
    [line] = [e for e in logs if e["event"] == "customer_erased"]
    assert line["erasure_id"] == audit and line["tickets"] == [erin_tid]
    assert not mentions({"log": json.dumps(line, default=str)}, erin_marks)

    after = await dump(redis)
    assert mentions(after, erin_marks) == []
    # Otto's data is untouched: what only he is in holds what it held, what he shares
    # with her (streams, alert and notification lists) still holds his part, and the
    # records of his events are there.
    assert {n for _, n in mentions(after, otto_marks)} == set(otto_marks)
    for k, v in before.items():
        if mentions({k: v}, otto_marks) and not mentions({k: v}, erin_marks):
            assert after.get(k) == v, k
    for ev in first:
        records = [keys.outcome(ev.key), keys.ns("decided", ev.key), keys.ns("seen", ev.key)]
        assert await redis.exists(*records) == 3
    # Her ticket is gone with every index entry and pointer to it. Its id is still in
    # the console's change events (ids and statuses only), the audit record, and the
    # short-lived "sent" marker of the agent's reply (see below).
    refs = {k for k, v in after.items() if erin_tid in k or erin_tid in v}
    [marker] = refs - {keys.events, keys.ns("erasures")}
    assert marker.startswith(keys.sent(f"ticket:{erin_tid}:"))
    # Nothing is pending for a customer's entry that is gone; her replies held by the
    # sender carry a short-lived "sent" marker so it never posts them.
    _, _, pending = await stream_stats(redis, keys.outbox, keys.SENDERS)
    assert pending == len(await redis.xrange(keys.outbox))
    assert done.in_flight_replies
    for r in done.in_flight_replies:
        assert json.loads(await redis.get(keys.sent(r))) == {"erased": True}
        assert 0 < await redis.ttl(keys.sent(r)) <= 3600
    # The audit record: where, when, what; not who.
    [record] = [json.loads(r) for r in await redis.lrange(keys.ns("erasures"), 0, -1)]
    assert record["reference"] == "DSR-2026-014" and record["tickets"] == [erin_tid]
    assert record["counts"] == counts and record["account"] == "acme"

    # Re-running changes nothing; so does a dry run now.
    again, audit2 = await erase(redis, keys, settings, ERIN)
    assert audit2 is None and again.empty
    assert await dump(redis) == after
    assert (await find(redis, keys, ERIN)).empty

    # The console API lists the queue, and the erased ticket is simply not there.
    app_client = await api(aiohttp_client, settings, tickets, redis, keys)
    for status in ("open", "resolved"):
        r = await app_client.get(f"/api/v1/tickets?status={status}", headers=app_client.auth)
        assert r.status == 200, await r.text()
        ids = [t["id"] for t in (await r.json())["tickets"]]
        assert erin_tid not in ids and (status != "open" or otto_tid in ids)
    r = await app_client.get(f"/api/v1/tickets/{erin_tid}", headers=app_client.auth)
    assert r.status == 404

    # The worker and the SLA scanner go on: an agent answers Otto, his next message
    # joins his ticket, and his ticket's next-response deadline fires.
    await tickets.reply(otto_tid, "ann", "Looking into it")
    more = [otto("hello again otto")]
    await ingest(redis, keys, more)
    await run_worker(redis, keys, brain, lambda: settled(redis, keys, more))
    assert (await outcomes(redis, keys, more))[0].ticket_id == otto_tid
    clock.advance(24 * 3600)
    due = await tickets.due_alerts(clock())
    assert due and all(m.startswith(f"{otto_tid}|") for m in due)
    fired = await SlaScanner(tickets, Notifier(), clock=clock).scan_once(use_lock=False)
    assert fired and {a["ticket_id"] for a in fired} == {otto_tid}
    assert await tickets.due_alerts(clock()) == []


async def test_an_entry_a_worker_holds_is_dropped_by_the_worker(
    redis: Any, keys: Any, settings: Any
) -> None:
    """A message read by a worker but not yet decided when the erasure ran: the worker
    finds it done, and nothing of it is stored again."""
    clock = FakeClock()
    tickets = TicketStore(redis, keys, settings.escalation, clock=clock)
    brain = Brain(
        redis, keys, settings, StubNlu(), tickets=tickets, responses=RESPONSES, clock=clock
    )
    held = erin("how do I get a refund for my velvet-lamp?")
    await ingest(redis, keys, [held])
    await ensure_group(redis, keys.inbound, keys.WORKERS)
    [(_, [(msg_id, fields)])] = await redis.xreadgroup(
        keys.WORKERS, "w1", {keys.inbound: ">"}, count=1
    )
    done, _ = await erase(redis, keys, settings, ERIN)
    assert done.in_flight_events == [held.key]
    # The worker goes on with the entry it read before the erasure.
    worker = InboundWorker(redis, keys, settings.worker, brain, consumer="w1")
    await worker.handle_entry(as_str(msg_id), {as_str(k): as_str(v) for k, v in fields.items()})
    assert mentions(await dump(redis), [ERIN.user_id, "erin_q", held.text]) == []
    assert await redis.xlen(keys.outbox) == 0


@pytest.mark.parametrize("crash_in", ["TicketStore.erase", "_drop_entries", "_mark_in_flight"])
async def test_a_run_that_crashed_part_way_is_finished_by_the_next(
    redis: Any, keys: Any, settings: Any, monkeypatch: Any, crash_in: str
) -> None:
    """Killed at any step: no index points at a missing ticket meanwhile, and running the
    command again erases the rest."""
    import bot.erasure

    clock = FakeClock()
    tickets = TicketStore(redis, keys, settings.escalation, clock=clock)
    brain = Brain(
        redis, keys, settings, StubNlu(), tickets=tickets, responses=RESPONSES, clock=clock
    )
    hers = [erin(t) for t in ERIN_SAYS]
    await ingest(redis, keys, [*hers, otto(OTTO_SAYS[0])])
    await run_worker(redis, keys, brain, lambda: settled(redis, keys, hers))
    await ensure_group(redis, keys.outbox, keys.SENDERS)
    await redis.xreadgroup(keys.SENDERS, "s1", {keys.outbox: ">"})  # in flight

    async def crash(*args: Any, **kw: Any) -> None:
        raise ConnectionError("killed")

    if crash_in == "TicketStore.erase":
        monkeypatch.setattr(TicketStore, "erase", crash)
    else:
        monkeypatch.setattr(bot.erasure, crash_in, crash)
    with pytest.raises(ConnectionError):
        await erase(redis, keys, settings, ERIN)
    monkeypatch.undo()
    for index in ("open", "resolved"):
        for tid in await redis.zrange(keys.ns("tickets", index), 0, -1):
            assert await redis.exists(keys.ns("ticket", as_str(tid))), tid
    for member in await redis.zrange(keys.ns("sla", "due"), 0, -1):
        assert await redis.exists(keys.ns("ticket", as_str(member).split("|")[0])), member
    async for k in redis.scan_iter(match=keys.ns("conv_ticket", "*")):
        assert await redis.exists(keys.ns("ticket", as_str(await redis.get(k))))

    _, audit = await erase(redis, keys, settings, ERIN)
    # Each run has its record, the one cut short too (written before anything changed).
    assert audit is not None and await redis.llen(keys.ns("erasures")) == 2
    marks = [ERIN.user_id, "erin_q", *ERIN_SAYS]
    assert mentions(await dump(redis), marks) == []
    assert (await find(redis, keys, ERIN)).empty


async def test_a_sandbox_customer_loses_the_sandbox_conversation_too(
    redis: Any, keys: Any, settings: Any
) -> None:
    from bot.models import OutboundReply
    from bot.platforms.sandbox import SandboxInbox

    inbox = SandboxInbox(redis, keys)
    sb = Customer("sandbox", "demo", "sb0123abcd")
    await inbox.append("demo", sb.user_id, who="customer", kind="dm", text="my lilac-otter",
                       ref="sb-77", handle="guest_x")  # fmt: skip
    reply = OutboundReply(f"{sb.event_key('sb-77')}:0", "sandbox", "demo", "dm", "hi guest_x",
                          recipient_id=sb.user_id)  # fmt: skip
    await inbox.deliver(reply)
    await ingest(redis, keys, [event("my lilac-otter", platform="sandbox", account="demo",
                                     user=sb.user_id, handle="guest_x", event_id="sb-77")])  # fmt: skip
    counts = (await find(redis, keys, sb)).counts()
    assert counts["sandbox conversations"] == 1 and counts["sandbox delivery markers"] == 1
    await erase(redis, keys, settings, sb)
    assert mentions(await dump(redis), [sb.user_id, "guest_x", "lilac-otter"]) == []


async def test_a_handle_resolves_to_each_customer_who_used_it(redis: Any, keys: Any) -> None:
    await ingest(
        redis,
        keys,
        [erin("hello"), event("hello", user="other-1", handle="@ERIN_Q", account="acme-2")],
    )
    found = await customers_with_handle(redis, keys, "@Erin_Q")
    assert found == [ERIN, Customer("generic", "acme-2", "other-1")]
    assert await customers_with_handle(redis, keys, "erin_q", account="acme") == [ERIN]
    assert await customers_with_handle(redis, keys, "nobody") == []


async def outcomes(redis: Any, keys: Any, events: list[InboundEvent]) -> list[Outcome]:
    return [Outcome.from_json(await redis.get(keys.outcome(e.key))) for e in events]


async def alert_id(redis: Any, keys: Any) -> str:
    [aid] = await redis.zrange(keys.ns("ops", "alerts"), 0, -1)
    return as_str(aid)


async def api(
    aiohttp_client: Any, settings: Any, tickets: TicketStore, redis: Any, keys: Any
) -> Any:
    from bot.app import build_app

    app = build_app(settings, role="web")
    app[TICKETS] = tickets
    client = await aiohttp_client(app)
    client.auth = {
        "Authorization": f"Bearer {await AgentStore(redis, keys).add('sue', 'supervisor')}"
    }
    return client
