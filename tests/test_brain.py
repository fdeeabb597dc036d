"""The real pipeline with a stub NLU: effects, idempotency per event, hand-back."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from bot.brain import Brain
from bot.conversation import ConversationStore
from bot.models import Author, InboundEvent
from escalation.tickets import TicketStore
from handlers.responses import Responses
from tests.support.escalation import FakeClock, event
from tests.support.nlu_values import StubNlu
from tests.support.waiting import until

RESPONSES = Responses.load(Path(__file__).resolve().parents[1] / "nlu_data" / "responses")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def brain(redis: Any, keys: Any, settings: Any, clock: FakeClock) -> Brain:
    return Brain(
        redis,
        keys,
        settings,
        StubNlu(),
        tickets=TicketStore(redis, keys, settings.escalation, clock=clock),
        responses=RESPONSES,
        clock=clock,
    )


async def outbox(redis: Any, keys: Any) -> list[dict[str, Any]]:
    return [json.loads(f[b"reply"]) for _, f in await redis.xrange(keys.outbox)]


async def test_faq_answer_is_enqueued_once_even_when_rerun(
    brain: Brain, redis: Any, keys: Any
) -> None:
    ev = event("how do I get a refund?")
    o1 = await brain.handle(ev)
    o2 = await brain.handle(ev)  # a worker died before acknowledging: run again
    assert o1.decision == o2.decision == "answer"
    assert o1.reply_ids == o2.reply_ids == [f"{ev.key}:0"]
    sent = await outbox(redis, keys)
    assert [r["text"] for r in sent] == ["Returns are free within 30 days."]
    assert o1.reasons["faq_id"] == "return_policy" and o1.reasons["intent"] == "returns_refunds"
    conv = await ConversationStore(redis, keys, idle_s=60).load("generic", "acme", "42")
    assert [t.who for t in conv.turns] == ["customer", "bot"]
    # The context expires after the configured idle time.
    ttl = await redis.ttl(keys.conv("generic", "acme", "42"))
    assert 0 < ttl <= brain.settings.dialog.conversation_idle_s


async def test_complaint_then_follow_up_then_resolve_hands_back(
    brain: Brain, redis: Any, keys: Any
) -> None:
    complaint = event("@acme worst service ever", kind="mention")
    o = await brain.handle(complaint)
    assert o.decision == "escalate" and o.ticket_id and len(o.reply_ids) == 1
    ack = (await outbox(redis, keys))[0]
    assert ack["kind"] == "mention" and "DM" in ack["text"] and ack["ticket_id"] == o.ticket_id
    again = await brain.handle(complaint)
    assert again.ticket_id == o.ticket_id and again.reply_ids == o.reply_ids
    follow = event("hello? where is my order", kind="dm")
    o2 = await brain.handle(follow)
    assert o2.decision == "append" and o2.ticket_id == o.ticket_id and o2.reply_ids == []
    await brain.handle(follow)
    assert len(await outbox(redis, keys)) == 1  # the bot stayed silent
    lists = await brain.tickets.lists(o.ticket_id or "")
    assert [m["from"] for m in lists["messages"]] == ["customer", "bot", "customer"]
    await brain.tickets.resolve(o.ticket_id or "", "ann")
    o3 = await brain.handle(event("hello there"))
    # The bot has it back. A DM is the customer's alone: no @handle in it.
    assert o3.decision == "answer" and "@alice" not in (await outbox(redis, keys))[-1]["text"]


async def test_public_replies_start_with_the_handle_and_dms_do_not_name_it(
    brain: Brain, redis: Any, keys: Any
) -> None:
    await brain.handle(event("hello there", kind="mention"))
    await brain.handle(event("hello there", kind="dm", user="43"))
    mention, dm = (r["text"] for r in await outbox(redis, keys))
    assert mention.startswith("@alice ") and mention.count("@alice") == 1
    assert "@" not in dm


async def test_a_run_racing_the_first_reports_the_same_escalation(
    brain: Brain, redis: Any, keys: Any, settings: Any, clock: FakeClock
) -> None:
    """Two workers on one event (the first stalled past its visibility timeout): the
    second looked the event up just before the first opened the ticket, then found that
    ticket. It must report what the first did, not an append without the ack."""
    complaint = event("@acme worst service ever", kind="mention")
    first = await brain.handle(complaint)
    tickets = TicketStore(redis, keys, settings.escalation, clock=clock)
    looked_up = tickets.ticket_for_event
    calls = 0

    async def too_early(key: str) -> tuple[str, bool] | None:
        nonlocal calls
        calls += 1
        return None if calls == 1 else await looked_up(key)

    tickets.ticket_for_event = too_early  # type: ignore[method-assign]
    racer = Brain(
        redis, keys, settings, StubNlu(), tickets=tickets, responses=RESPONSES, clock=clock
    )
    second = await racer.handle(complaint)
    assert calls >= 1  # the early lookup ran: the race was taken
    assert (second.decision, second.ticket_id, second.reply_ids) == (
        first.decision,
        first.ticket_id,
        first.reply_ids,
    )
    assert await looked_up(complaint.key) == (first.ticket_id, True)  # not "appended"
    lists = await tickets.lists(first.ticket_id or "")
    assert [m["from"] for m in lists["messages"]] == ["customer", "bot"]
    assert len(await outbox(redis, keys)) == 1


async def test_unclear_twice_escalates_low(brain: Brain, redis: Any, keys: Any) -> None:
    o1 = await brain.handle(event("hmm so about that thing"))
    assert o1.decision == "answer" and o1.reasons["rule"] == "clarify"
    o2 = await brain.handle(event("you know, the thing"))
    assert o2.decision == "escalate" and o2.reasons["rule"] == "unclear_twice"
    t = await brain.tickets.get(o2.ticket_id or "")
    assert t is not None and t.priority == "low" and t.reason == "unclear"


class SlowNlu(StubNlu):
    """Parsing takes a while, so two events of one customer are in it together."""

    async def parse(self, text: str, language: str | None = None) -> Any:
        await asyncio.sleep(0.05)
        return await super().parse(text, language)


def slow_brain(redis: Any, keys: Any, settings: Any, clock: FakeClock) -> Brain:
    tickets = TicketStore(redis, keys, settings.escalation, clock=clock)
    return Brain(
        redis, keys, settings, SlowNlu(), tickets=tickets, responses=RESPONSES, clock=clock
    )


async def test_one_customers_messages_are_decided_one_at_a_time(
    redis: Any, keys: Any, settings: Any, clock: FakeClock
) -> None:
    """Two unclear messages at once: the second sees the first's clarifying question and
    escalates, as it would one after the other (not two identical questions)."""
    a, b = slow_brain(redis, keys, settings, clock), slow_brain(redis, keys, settings, clock)
    o1, o2 = await asyncio.gather(
        a.handle(event("hmm so about that thing")), b.handle(event("you know, the thing"))
    )
    assert sorted([o1.reasons["rule"], o2.reasons["rule"]]) == ["clarify", "unclear_twice"]
    texts = [r["text"] for r in await outbox(redis, keys)]
    assert len(texts) == 2 and len(set(texts)) == 2
    # Other customers are not held up by this one's lease.
    assert not await redis.keys(keys.lock("conv:*"))


async def test_no_faq_answer_beside_a_ticket_opened_at_the_same_time(
    redis: Any, keys: Any, settings: Any, clock: FakeClock
) -> None:
    """A question arriving while the customer's complaint is being understood waits for
    it, then sees the ticket: appended for the agent, not answered from the FAQ."""
    entered, go = asyncio.Event(), asyncio.Event()

    class GatedNlu(StubNlu):
        async def parse(self, text: str, language: str | None = None) -> Any:
            if "worst" in text:
                entered.set()
                await go.wait()
            return await super().parse(text, language)

    tickets = TicketStore(redis, keys, settings.escalation, clock=clock)
    brain = Brain(
        redis, keys, settings, GatedNlu(), tickets=tickets, responses=RESPONSES, clock=clock
    )
    first = asyncio.create_task(brain.handle(event("worst service ever")))
    await entered.wait()
    second = asyncio.create_task(brain.handle(event("how do I get a refund?")))
    await asyncio.sleep(0.2)  # as far as the question can get while the complaint holds
    go.set()
    o1, o2 = await asyncio.gather(first, second)
    assert (o1.decision, o2.decision) == ("escalate", "append")
    assert o2.ticket_id == o1.ticket_id
    assert [r["ticket_id"] for r in await outbox(redis, keys)] == [o1.ticket_id]  # the ack


async def test_a_lease_left_by_a_dead_worker_lapses(brain: Brain, redis: Any, keys: Any) -> None:
    key = keys.lock("conv:generic:acme:42")
    await redis.set(key, "dead-worker", px=300)
    o = await asyncio.wait_for(brain.handle(event("how do I get a refund?")), timeout=30)
    assert o.decision == "answer"
    assert not await redis.exists(key)


async def test_a_slow_event_keeps_its_lease_until_done(redis: Any, keys: Any) -> None:
    """An event running for several lease lengths (a slow Rasa, an order lookup) keeps
    the customer's conversation: the next message waits for it, not for the lease."""
    store = ConversationStore(redis, keys, idle_s=60, lease_s=0.3)
    order: list[str] = []

    async def slow() -> None:
        async with store.turn("generic", "acme", "42"):
            order.append("slow in")
            await asyncio.sleep(1.2)  # the slow outside call: four lease lengths
            order.append("slow out")

    async def next_message() -> None:
        await until(lambda: order, what="the slow event holds the lease")
        async with store.turn("generic", "acme", "42"):
            order.append("next in")

    await asyncio.gather(slow(), next_message())
    assert order == ["slow in", "slow out", "next in"]
    assert not await redis.exists(keys.lock("conv:generic:acme:42"))


async def test_a_lease_lost_to_a_stall_is_logged_and_left_to_its_new_holder(
    redis: Any, keys: Any
) -> None:
    store = ConversationStore(redis, keys, idle_s=60, lease_s=0.3)
    key = keys.lock("conv:generic:acme:42")
    with capture_logs() as logs:
        async with store.turn("generic", "acme", "42"):
            # As if this worker stalled past the lease and another one took it.
            await redis.set(key, "other-worker", px=5000)
            await until(
                lambda: any(e["event"] == "conversation_lease_lost" for e in logs),
                what="the lost lease logged",
            )
    assert await redis.get(key) == b"other-worker"  # not renewed, nor freed, by us
    assert await redis.pttl(key) <= 5000


async def test_failed_lease_renewals_are_logged_once_per_run_of_failures(
    redis: Any, keys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis unreachable for several renewal ticks logs one warning, not one per tick
    (an outage has every event in flight renewing): the outage's line, shared with the
    worker's other loops (bot/storage_down.OutageLog). Failing again after a renewal
    that worked is a new run, logged again."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    import bot.conversation as conversation

    script = iter(["fail"] * 4 + ["ok"] + ["fail"] * 2)
    ticks: list[str] = []

    async def renew(*args: Any) -> bool:
        # Only the logging is under test: a renewal that "works" needs no real lease.
        step = next(script, "ok")
        ticks.append(step)
        if step == "fail":
            raise RedisConnectionError("Connection refused")
        return True

    monkeypatch.setattr(conversation, "renew_lock", renew)
    store = ConversationStore(redis, keys, idle_s=60, lease_s=0.15)
    with capture_logs() as logs:
        async with store.turn("generic", "acme", "42"):
            await until(lambda: len(ticks) >= 8, what="eight renewal ticks")
    lines = [e for e in logs if e.get("part") == "conversation_leases"]
    assert [e["event"] for e in lines[:3]] == [
        "redis_unavailable",
        "redis_recovered",
        "redis_unavailable",
    ]
    failed = [e for e in lines if e["event"] == "redis_unavailable"]
    assert len(failed) == 2
    assert failed[0]["error"] == "ConnectionError"
    assert not [e for e in logs if e["event"] == "conversation_lease_renew_failed"]


async def test_decision_replayed_after_a_crash_between_effects(
    brain: Brain, redis: Any, keys: Any
) -> None:
    ev = event("I want to talk to a human")
    decision = await brain._decide(ev)
    # The first run stored the decision and died before any effect.
    await redis.set(keys.ns("decided", ev.key), json.dumps(decision.to_dict()))
    o = await brain.handle(ev)
    assert o.decision == "escalate" and len(o.reply_ids) == 1
    assert brain.nlu.calls == 1  # type: ignore[attr-defined]  # not decided again
    o_again = await brain.handle(ev)
    assert o_again.ticket_id == o.ticket_id and len(await outbox(redis, keys)) == 1


async def test_message_decided_for_a_person_after_the_ticket_closed_goes_to_the_bot(
    brain: Brain, redis: Any, keys: Any
) -> None:
    """Decided while an agent owned the conversation, applied after they resolved it
    (a run that crashed in between, or a slow one): decided again, not a new ticket."""
    opened = await brain.handle(event("worst service ever"))
    thanks = event("thanks, bye")
    decision = await brain._decide(thanks)
    assert decision.reasons["rule"] == "human_owned"
    await redis.set(keys.ns("decided", thanks.key), json.dumps(decision.to_dict()))
    await brain.tickets.resolve(opened.ticket_id or "", "ann")
    o = await brain.handle(thanks)
    assert o.decision == "answer" and o.ticket_id is None
    assert (
        await brain.tickets.open_ticket_for(brain.tickets.conv_of("generic", "acme", "42")) is None
    )
    replay = await brain.handle(thanks)  # the new decision was stored
    assert replay.decision == "answer" and replay.reply_ids == o.reply_ids


async def test_spam_ignored_and_follow_events_are_state(
    brain: Brain, redis: Any, keys: Any
) -> None:
    o = await brain.handle(event("转发抽奖 @acme"))
    assert o.decision == "ignore" and await outbox(redis, keys) == []
    follow = InboundEvent("weibo", "acme", "follow", "f1", Author("42", "alice"))
    assert (await brain.handle(follow)).decision == "state"
    assert await redis.exists(keys.user_state("weibo", "acme", "42"))


def test_pipeline_setting_is_validated() -> None:
    from bot.config import ConfigError
    from tests.conftest import make_settings

    with pytest.raises(ConfigError, match=r"dialog\.pipeline"):
        make_settings("redis://127.0.0.1:1/0", **{"dialog.pipeline": "magic"})
    assert (
        make_settings("redis://127.0.0.1:1/0", **{"dialog.pipeline": "brain"}).dialog.pipeline
        == "brain"
    )


def brain_with(redis: Any, keys: Any, settings: Any, clock: FakeClock) -> Brain:
    tickets = TicketStore(redis, keys, settings.escalation, clock=clock)
    return Brain(
        redis, keys, settings, StubNlu(), tickets=tickets, responses=RESPONSES, clock=clock
    )


async def test_own_accounts_and_bots_are_ignored_without_the_nlu(
    redis: Any, keys: Any, redis_server: Any, tmp_path: Any, clock: FakeClock
) -> None:
    """Two brand accounts on one deployment: each one's reply mentions the other."""
    from tests.conftest import make_settings

    settings = make_settings(
        redis_server.url,
        tmp_path,
        accounts=[
            {"id": "acme", "platform": "generic", "user_id": "1000", "handle": "acme"},
            {"id": "acme_help", "platform": "generic", "handle": "acme_help"},
        ],
    )
    brain = brain_with(redis, keys, settings, clock)
    from_acme = event("@acme_help hello!", kind="mention", account="acme_help", user="1000")
    from_help = event("@acme hello!", kind="mention", user="2000", handle="acme_help")
    for ev in (from_acme, from_help):
        o = await brain.handle(ev)
        assert o.decision == "ignore" and o.reasons["rule"] == "own_account"
    automated = event("@acme hello!", kind="mention", user="77")
    automated.author = Author("77", "newsbot", bot=True)
    o = await brain.handle(automated)
    assert o.decision == "ignore" and o.reasons["rule"] == "bot_author"
    assert brain.nlu.calls == 0  # type: ignore[attr-defined]
    assert await outbox(redis, keys) == []
    assert (await brain.handle(event("hello!"))).decision == "answer"  # a customer


async def test_a_chatty_thread_gets_no_repeated_small_talk(
    brain: Brain, redis: Any, keys: Any, clock: FakeClock
) -> None:
    """Another bot (or a chatty customer) thanking in a public thread: the bot's thanks
    lines are not sent twice within the hour."""
    outcomes = []
    for i in range(6):
        clock.advance(20)
        o = await brain.handle(event(f"@acme thanks {i}", kind="mention", at=clock()))
        outcomes.append((o.decision, o.reasons["rule"]))
    texts = [r["text"] for r in await outbox(redis, keys)]
    assert len(texts) == len(set(texts)) <= 2  # the two "thanks" variants, once each
    assert ("ignore", "repeat") in outcomes
    assert all(d in ("answer", "ignore") for d, _ in outcomes)


async def test_a_repeated_faq_answer_goes_to_a_person(
    brain: Brain, redis: Any, keys: Any, clock: FakeClock
) -> None:
    assert (await brain.handle(event("how do I get a refund?"))).decision == "answer"
    clock.advance(60)
    o = await brain.handle(event("how do I get a refund???", at=clock()))
    assert o.decision == "escalate" and o.reasons["rule"] == "repeat" and len(o.reply_ids) == 1
    t = await brain.tickets.get(o.ticket_id or "")
    assert t is not None and t.reason == "repeat" and t.priority == "normal"
    sent = [r["text"] for r in await outbox(redis, keys)]
    assert sent[0] == "Returns are free within 30 days." and "a colleague who can help" in sent[1]


async def test_answers_per_hour_are_capped_by_the_brains_clock(
    redis: Any, keys: Any, redis_server: Any, tmp_path: Any, clock: FakeClock
) -> None:
    from tests.conftest import make_settings

    settings = make_settings(redis_server.url, tmp_path, **{"dialog.max_bot_replies_per_hour": 2})
    brain = brain_with(redis, keys, settings, clock)
    for text in ("hello", "how do I get a refund?"):
        assert (await brain.handle(event(text, user="1"))).decision == "answer"
        clock.advance(60)
    # An hour on, the cap starts over.
    clock.advance(3600)
    assert (await brain.handle(event("thanks", user="1"))).decision == "answer"
    # Another customer over the cap in the hour: a person takes the next one.
    for text in ("hello", "how do I get a refund?"):
        assert (await brain.handle(event(text, user="2"))).decision == "answer"
    o = await brain.handle(event("thanks", user="2"))
    assert o.decision == "escalate" and o.reasons["rule"] == "busy_thread"
    t = await brain.tickets.get(o.ticket_id or "")
    assert t is not None and t.reason == "busy_thread" and t.priority == "normal"


# -- what a ticket shows of the conversation before it ----------------------------------
async def test_a_ticket_keeps_what_was_said_before_it(
    brain: Brain, redis: Any, keys: Any, clock: FakeClock
) -> None:
    """The customer gave the order number to the bot; the ticket opened on the repeat
    shows it to the agent, with who said what, where and when. Turns older than the
    conversation's idle time are not part of it."""
    idle = brain.settings.dialog.conversation_idle_s
    assert (await brain.handle(event("hello", at=clock()))).decision == "answer"
    clock.advance(idle + 60)  # a day later: that greeting is another conversation
    asked = clock()
    first = event("how do I get a refund for order A12345?", at=asked)
    assert (await brain.handle(first)).decision == "answer"
    clock.advance(60)
    repeat = event("how do I get a refund?", at=clock())
    o = await brain.handle(repeat)
    assert o.decision == "escalate" and o.reasons["rule"] == "repeat"
    lists = await brain.tickets.lists(o.ticket_id or "")
    assert lists["context"] == [
        {
            "at": asked,
            "from": "customer",
            "kind": "dm",
            "text": "how do I get a refund for order A12345?",
            "when": "before_ticket",
        },
        {
            "at": asked,
            "from": "bot",
            "kind": "dm",
            "text": "Returns are free within 30 days.",
            "when": "before_ticket",
        },
    ]
    # The escalated message itself is the ticket's first message, not context.
    assert lists["messages"][0]["text"] == "how do I get a refund?"
    await brain.handle(repeat)  # a re-run adds nothing
    assert len((await brain.tickets.lists(o.ticket_id or ""))["context"]) == 2


async def test_a_reopened_ticket_gets_what_was_said_while_it_was_resolved(
    brain: Brain, redis: Any, keys: Any, clock: FakeClock
) -> None:
    opened = await brain.handle(event("worst service ever", at=clock()))
    tid = opened.ticket_id or ""
    clock.advance(60)
    await brain.tickets.resolve(tid, "ann")
    clock.advance(60)
    later = clock()
    assert (await brain.handle(event("how do I get a refund?", at=later))).decision == "answer"
    clock.advance(60)
    await brain.tickets.reopen(tid, "ann")
    context = (await brain.tickets.lists(tid))["context"]
    # Only the exchange since the resolve: the complaint and its ack are messages.
    assert [(c["from"], c["text"], c["when"]) for c in context] == [
        ("customer", "how do I get a refund?", "while_resolved"),
        ("bot", "Returns are free within 30 days.", "while_resolved"),
    ]
    assert context[0]["at"] == later
    # Resolved and reopened again with nothing said meanwhile: nothing is added twice.
    await brain.tickets.resolve(tid, "ann")
    clock.advance(60)
    await brain.tickets.reopen(tid, "ann")
    assert len((await brain.tickets.lists(tid))["context"]) == 2


async def test_a_post_written_before_the_resolve_and_handled_after_it_is_context(
    brain: Brain, redis: Any, keys: Any, clock: FakeClock
) -> None:
    """The customer wrote just before the agent resolved, and the worker got to it just
    after (a backlog): the bot answered it, so on reopen the agent sees it with the
    answer, at the time the customer wrote it."""
    opened = await brain.handle(event("worst service ever", at=clock()))
    tid = opened.ticket_id or ""
    clock.advance(60)
    written = clock() - 1
    await brain.tickets.resolve(tid, "ann")
    clock.advance(5)
    late = event("how do I get a refund?", at=written)
    assert (await brain.handle(late)).decision == "answer"
    clock.advance(60)
    await brain.tickets.reopen(tid, "ann")
    context = (await brain.tickets.lists(tid))["context"]
    assert [(c["from"], c["text"], c["at"]) for c in context] == [
        ("customer", "how do I get a refund?", written),
        ("bot", "Returns are free within 30 days.", written + 6),
    ]


def test_context_is_the_last_turns_after_a_time() -> None:
    from bot.conversation import CONTEXT_TURNS, Conversation, Turn

    conv = Conversation("generic", "acme", "42")
    conv.turns = [Turn(float(i), "customer" if i % 2 else "bot", f"t{i}") for i in range(20)]
    assert [c["text"] for c in conv.context(since=0.0)] == [f"t{i}" for i in range(10, 20)]
    assert len(conv.context(since=0.0)) == CONTEXT_TURNS
    assert [c["text"] for c in conv.context(since=16.0)] == ["t17", "t18", "t19"]


# -- a worse message on an open ticket ---------------------------------------------------
SCATHING = (
    "@acme you double charged me $400 and ignore me. Going to the press. "
    "Everyone boycott @acme, total scammers!!!"
)


class AngryNlu(StubNlu):
    """The stub, plus the public outburst as the complaint it is."""

    RULES = (("scammers", "complaint", None, 0.95), *StubNlu.RULES)


def angry_brain(redis: Any, keys: Any, settings: Any, clock: FakeClock) -> Brain:
    tickets = TicketStore(redis, keys, settings.escalation, clock=clock)
    return Brain(
        redis, keys, settings, AngryNlu(), tickets=tickets, responses=RESPONSES, clock=clock
    )


ACK_PUBLIC = "@alice We're sorry to hear this. Please send us a DM so we can look into it."


async def test_a_worse_public_post_raises_the_ticket_and_is_acknowledged_once(
    redis: Any, keys: Any, settings: Any, clock: FakeClock
) -> None:
    brain = angry_brain(redis, keys, settings, clock)
    opened = await brain.handle(event("I want to talk to a human", at=clock()))
    tid = opened.ticket_id or ""
    t = await brain.tickets.get(tid)
    assert t is not None and t.priority == "normal"
    clock.advance(120)
    post = event(SCATHING, kind="mention", at=clock())
    o = await brain.handle(post)
    assert (o.decision, o.ticket_id, o.reply_ids) == ("append", tid, [f"{post.key}:0"])
    t = await brain.tickets.get(tid)
    assert t is not None and t.priority == "urgent"
    # Re-timed as a supervisor's change is: first response due 15 min after opening.
    fr = t.clocks["first_response"]
    assert fr.due == t.created_at + 15 * 60
    history = (await brain.tickets.lists(tid))["history"]
    raised = [h for h in history if h["action"] == "priority"]
    assert [(h["actor"], h["from"], h["to"]) for h in raised] == [("bot", "normal", "urgent")]
    ack = (await outbox(redis, keys))[-1]
    assert (ack["kind"], ack["in_reply_to_id"], ack["ticket_id"]) == ("mention", post.event_id, tid)
    assert ack["text"] == ACK_PUBLIC
    # The same post as a first message gets the same acknowledgement, at the same priority.
    fresh = await brain.handle(event(SCATHING, kind="mention", user="7", at=clock()))
    t7 = await brain.tickets.get(fresh.ticket_id or "")
    assert t7 is not None and t7.priority == "urgent"
    assert (await outbox(redis, keys))[-1]["text"] == ACK_PUBLIC
    sent = len(await outbox(redis, keys))

    again = await brain.handle(post)  # a re-run changes nothing more
    assert again.reply_ids == o.reply_ids and len(await outbox(redis, keys)) == sent
    assert len((await brain.tickets.lists(tid))["history"]) == len(history)
    # Once per ticket: the next public post joins the ticket without another ack.
    clock.advance(60)
    more = await brain.handle(event(f"{SCATHING} still waiting", kind="mention", at=clock()))
    assert more.decision == "append" and more.reply_ids == []
    assert len(await outbox(redis, keys)) == sent
    lists = await brain.tickets.lists(tid)
    assert [m["from"] for m in lists["messages"]] == [
        "customer",
        "bot",
        "customer",
        "bot",
        "customer",
    ]
    assert len([h for h in lists["history"] if h["action"] == "priority"]) == 1


async def test_a_calmer_message_never_lowers_the_priority(
    redis: Any, keys: Any, settings: Any, clock: FakeClock
) -> None:
    brain = angry_brain(redis, keys, settings, clock)
    opened = await brain.handle(event(SCATHING, kind="mention", at=clock()))
    clock.advance(60)
    for text in ("thanks", "I want to talk to a human"):
        o = await brain.handle(event(text, at=clock()))
        assert o.decision == "append" and o.reply_ids == []
    t = await brain.tickets.get(opened.ticket_id or "")
    assert t is not None and t.priority == "urgent"
    history = (await brain.tickets.lists(t.id))["history"]
    assert [h["action"] for h in history] == ["created"]


async def test_appended_mention_acknowledged_after_a_crash_between_effects(
    redis: Any, keys: Any, settings: Any, clock: FakeClock
) -> None:
    """The first run decided, appended (raising the priority) and died before the
    acknowledgement: the re-run sends it, once, and raises nothing again."""
    brain = angry_brain(redis, keys, settings, clock)
    tid = (await brain.handle(event("I want to talk to a human", at=clock()))).ticket_id or ""
    before = len(await outbox(redis, keys))
    post = event(SCATHING, kind="mention", at=clock())
    decision = await brain._decide(post)
    assert decision.reasons["rule"] == "human_owned" and decision.priority == "urgent"
    await redis.set(keys.ns("decided", post.key), json.dumps(decision.to_dict()))
    assert await brain.tickets.append_to_open(post, priority=decision.priority) == tid
    o = await brain.handle(post)
    assert o.decision == "append" and o.reply_ids == [f"{post.key}:0"]
    assert await brain.handle(post) == o
    sent = await outbox(redis, keys)
    assert len(sent) == before + 1 and sent[-1]["text"] == ACK_PUBLIC
    history = (await brain.tickets.lists(tid))["history"]
    assert [h["action"] for h in history] == ["created", "priority"]


async def test_public_small_talk_is_held_back_while_the_account_has_a_crisis_alert(
    brain: Brain, redis: Any, keys: Any
) -> None:
    """The spike detector's active alert reaches the policy (crisis_hold): public posts
    get nothing canned; a DM is answered as ever."""
    from bot.ops.spikes import ops_key

    assert (await brain.handle(event("hello there", kind="mention"))).decision == "answer"
    await redis.hset(ops_key(keys, "spike", "acme"), "alert", "a1")
    o = await brain.handle(event("hello there", kind="mention", user="43"))
    assert o.decision == "ignore" and o.reasons["rule"] == "crisis_hold"
    assert (await brain.handle(event("hello there", kind="dm", user="44"))).decision == "answer"
    await redis.hdel(ops_key(keys, "spike", "acme"), "alert")  # cleared
    assert (await brain.handle(event("hello there", kind="mention", user="45"))).decision == (
        "answer"
    )
