"""One customer's messages are decided in stream order, whichever worker or task takes
each entry first, and even when an earlier message's worker died mid-turn.

Real redis-server, real ingest writer (it lists each message in its conversation's
order), real workers and brain with the stub NLU.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bot.brain import Brain
from bot.config import WorkerConfig
from bot.conversation import ConversationStore
from bot.ingest import IngestWriter
from bot.models import InboundEvent
from bot.pipeline import Outcome
from bot.redis import as_str
from bot.streams import ensure_group, list_dead, stream_stats
from bot.worker import InboundWorker
from escalation.tickets import TicketStore
from handlers.responses import Responses
from tests.support.escalation import FakeClock, event
from tests.support.nlu_values import StubNlu
from tests.support.waiting import until

RESPONSES = Responses.load(Path(__file__).resolve().parents[1] / "nlu_data" / "responses")
# A burst of DMs within milliseconds, as customers send them.
BURST = ["hello", "my order is 12345", "where is it??", "how do I get a refund?"]


def worker_cfg(**kw: Any) -> WorkerConfig:
    base: dict[str, Any] = dict(
        concurrency=4, visibility_timeout_s=0.5, block_ms=50, claim_interval_s=0.1, max_attempts=3
    )
    return WorkerConfig(**{**base, **kw})


def make_brain(redis: Any, keys: Any, settings: Any, nlu: Any = None) -> Brain:
    clock = FakeClock()
    tickets = TicketStore(redis, keys, settings.escalation, clock=clock)
    return Brain(
        redis, keys, settings, nlu or StubNlu(), tickets=tickets, responses=RESPONSES, clock=clock
    )


async def ingest(redis: Any, keys: Any, events: list[InboundEvent]) -> None:
    writer = IngestWriter(redis, keys, dedupe_ttl_s=3600, batch_max=64)
    await writer.start()
    for ev in events:  # one request each, as a burst of webhooks arrives
        assert await writer.store([ev]) == [True]
    await writer.close()


async def said(redis: Any, keys: Any) -> list[str]:
    """What the customer said, in the order the bot recorded (decided) it."""
    conv = await ConversationStore(redis, keys, idle_s=60).load("generic", "acme", "42")
    return [t.text for t in conv.turns if t.who == "customer"]


async def all_done(redis: Any, keys: Any, events: list[InboundEvent]) -> bool:
    if await redis.exists(*[keys.outcome(ev.key) for ev in events]) != len(events):
        return False
    _, _, pending = await stream_stats(redis, keys.inbound, keys.WORKERS)
    return pending == 0


async def run_workers(workers: list[InboundWorker], done: Any) -> None:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    try:
        await until(done, 20, "every event decided and acknowledged")
    finally:
        stop.set()
        await asyncio.gather(*tasks)


class FirstLate:
    """The brain, but the first message's task reaches it only once the last message is
    decided: as if its worker were slower to the customer's lease than the others."""

    ready = True

    def __init__(self, brain: Brain, first: InboundEvent, last: InboundEvent) -> None:
        self.brain, self.first, self.last = brain, first, last

    async def handle(self, ev: InboundEvent) -> Outcome:
        if ev.key == self.first.key:
            decided = self.brain.keys.ns("decided", self.last.key)
            await until(lambda: self.brain.redis.exists(decided), 20, "the last one decided")
        return await self.brain.handle(ev)


async def test_a_burst_is_decided_in_stream_order_across_workers(
    redis: Any, keys: Any, settings: Any
) -> None:
    events = [event(text) for text in BURST]
    await ingest(redis, keys, events)
    pipe = FirstLate(make_brain(redis, keys, settings), events[0], events[-1])
    # Two consumers share the stream, each running its events concurrently.
    workers = [InboundWorker(redis, keys, worker_cfg(), pipe, consumer=f"w{i}") for i in (1, 2)]
    await run_workers(workers, lambda: all_done(redis, keys, events))
    assert await said(redis, keys) == BURST
    assert not await redis.exists(keys.conv_order("generic", "acme", "42"))


async def test_a_holder_that_died_mid_turn_leaves_the_order_intact(
    redis: Any, keys: Any, settings: Any
) -> None:
    """The first message's worker died holding its entry and the customer's lease: the
    next turn after the lease lapses decides it first, and nothing is lost. The entry is
    not reclaimed in this test (long visibility timeout): only that turn can do it."""
    events = [event(text) for text in BURST]
    await ingest(redis, keys, events)
    await ensure_group(redis, keys.inbound, keys.WORKERS)
    [(_, [(first_id, _)])] = await redis.xreadgroup(
        keys.WORKERS, "dead-worker", {keys.inbound: ">"}, count=1
    )
    await redis.set(keys.lock("conv:generic:acme:42"), "dead-worker", px=300)
    worker = InboundWorker(
        redis, keys, worker_cfg(visibility_timeout_s=60), make_brain(redis, keys, settings)
    )
    await run_workers([worker], lambda: all_done(redis, keys, events))
    assert await said(redis, keys) == BURST
    # Its outcome stored and its entry acknowledged by the turn that decided it.
    assert as_str(first_id) not in {
        as_str(p["message_id"])
        for p in await redis.xpending_range(keys.inbound, keys.WORKERS, "-", "+", 10)
    }


class FailsOn(StubNlu):
    def __init__(self, word: str) -> None:
        super().__init__()
        self.word = word

    async def parse(self, text: str, language: str | None = None) -> Any:
        if self.word in text:
            raise RuntimeError("nlu down for this one")
        return await super().parse(text, language)


async def test_a_failing_earlier_message_does_not_hold_the_rest(
    redis: Any, keys: Any, settings: Any
) -> None:
    """An earlier message whose handling fails every time is not waited for: the later
    ones are decided, and it alone ends in the dead stream."""
    events = [event(text) for text in BURST]
    await ingest(redis, keys, events)
    brain = make_brain(redis, keys, settings, FailsOn("hello"))
    worker = InboundWorker(redis, keys, worker_cfg(), brain)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await until(lambda: all_done(redis, keys, events[1:]), 20, "the later ones decided")
        await until(lambda: redis.xlen(keys.dead), 20, "the failing one dead-lettered")
    finally:
        stop.set()
        await task
    assert await said(redis, keys) == BURST[1:]
    [(_, dead)] = await list_dead(redis, keys)
    assert events[0].event_id in dead["event"]


async def test_an_earlier_message_that_kills_its_workers_is_skipped_then_dead(
    redis: Any, keys: Any, settings: Any
) -> None:
    """The first message killed its worker max_attempts times already (its deliveries
    counted; pending to the last dead one): the next turn does not run it again (it would
    die too), and its own reclaim dead-letters it."""
    events = [event(text) for text in BURST[:2]]
    await ingest(redis, keys, events)
    await ensure_group(redis, keys.inbound, keys.WORKERS)
    [(_, [(first_id, _)])] = await redis.xreadgroup(
        keys.WORKERS, "dead-worker", {keys.inbound: ">"}, count=1
    )
    cfg = worker_cfg()
    await redis.hset(keys.attempts(as_str(first_id)), "n", cfg.max_attempts)
    worker = InboundWorker(redis, keys, cfg, make_brain(redis, keys, settings))
    await run_workers([worker], lambda: all_done(redis, keys, events[1:]))
    assert await said(redis, keys) == BURST[1:2]
    [(_, dead)] = await list_dead(redis, keys)
    assert events[0].event_id in dead["event"]


async def test_ingest_lists_messages_only_once_each(redis: Any, keys: Any) -> None:
    msg, follow = event("hello"), event("", kind="follow")
    await ingest(redis, keys, [msg, follow])
    writer = IngestWriter(redis, keys, dedupe_ttl_s=3600, batch_max=64)
    await writer.start()
    assert await writer.store([msg]) == [False]  # a platform retry: not listed again
    await writer.close()
    [(msg_id, _), _] = await redis.xrange(keys.inbound)
    assert await redis.lrange(keys.conv_order("generic", "acme", "42"), 0, -1) == [msg_id]
