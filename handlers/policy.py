"""The decision policy, in order:

0. (bot/brain.py, before the NLU: :func:`screen`) ignore our own accounts and automated
   accounts;
1. ignore calm spam and lottery hunters, and plain ads and hunters' talk of their own
   luck that the negativity model scores over the answer guard but not negative
   (``spam.ad``, ``spam.hunter``); a question about a draw is never ignored;
2. if a human owns the conversation, join its ticket and say nothing, but carry what
   the message would get as a new escalation (steps 3-5): its priority (the ticket's
   rises to it) and, for a public mention, the acknowledgement that moves it to DM
   (the pipeline sends it once per ticket);
3. escalate complaints and negative posts, prize claims, requests for a person and
   follow-ups of an earlier message;
4. answer confident intents (order status, an FAQ hit above its threshold, small talk);
   an answer to a post that is not calm goes to a person instead;
5. a support intent that nothing answers goes to a person; a post with no intent
   (out of scope) gets one clarifying question (not a post over the answer guard: that
   one goes to a person), and escalates on the second unclear turn; one with no words
   at all (emoji, "??") is left alone in public and greeted in a DM;
6. while the account has an active crisis alert (negative posts spiking), no canned
   answer goes out in public: small talk is left alone, a question gets the move-to-DM
   acknowledgement and a person (``crisis_hold``);
7. an answer the bot already sent in the last hour is not sent again (small talk: say
   nothing; else a person), nor more than ``dialog.max_bot_replies_per_hour`` answers.

Each step is a router of topic handlers; the first decision wins. Handlers get only the
values the pipeline hands them, so the policy is tested with plain values.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from bot.config import AccountConfig, DialogConfig
from bot.conversation import Conversation
from bot.models import InboundEvent
from bot.nlu.types import OUT_OF_SCOPE, NluResult
from bot.orders import OrderLookup
from handlers import complaints, faq, greetings, human_request, orders, prizes, spam
from handlers.complaints import handoff, public_ack_enabled
from handlers.decisions import Answer, Decision, Escalate, Ignore, nlu_reasons
from handlers.responses import Say
from handlers.router import Router

IGNORE = Router("ignore").include(spam.router)
ESCALATE = Router("escalate").include(complaints.router, prizes.router, human_request.router)
# The FAQ before small talk: "Hi! How long do refunds take?" wants the FAQ answer.
ANSWER = Router("answer").include(orders.router, faq.router, greetings.router)

HOUR_S = 3600.0


def screen(message: InboundEvent, accounts: Iterable[AccountConfig]) -> Ignore | None:
    """Posts no one should answer, known without the NLU: one of our own accounts on this
    platform (two brand accounts on one deployment answered each other forever) or an
    account the platform marks as automated."""
    handle = message.author.handle.lstrip("@").lower()
    for a in accounts:
        if a.platform != message.platform:
            continue
        ours = (
            message.author.id == a.user_id
            if a.user_id
            else bool(handle) and handle == a.handle.lstrip("@").lower()
        )
        if ours:
            return Ignore("own_account", {"rule": "own_account", "own_account": a.id})
    if message.author.bot:
        return Ignore("bot_author", {"rule": "bot_author"})
    return None


async def decide(
    *,
    message: InboundEvent,
    nlu: NluResult,
    conversation: Conversation,
    account: AccountConfig | None,
    say: Say,
    orders: OrderLookup | None = None,
    now: float | None = None,
    max_bot_replies_per_hour: int = DialogConfig.max_bot_replies_per_hour,
    crisis: bool = False,
) -> Decision:
    """``now`` is the pipeline's clock (the times of the conversation's turns); it
    defaults to when the message was received. ``crisis``: the account has an active
    crisis alert (a spike of negative posts, bot/ops/spikes.py)."""
    available: dict[str, Any] = {
        "message": message,
        "nlu": nlu,
        "conversation": conversation,
        "account": account,
        "orders": orders,
        "say": say,
        "language": say.language,
    }
    base = nlu_reasons(nlu)
    d = await _decide(available, message, nlu, conversation, account, say)
    if crisis and message.is_public and isinstance(d, Answer):
        d = _crisis_hold(d, message, account, say)
    if isinstance(d, Answer):
        d = _throttle(
            d,
            message,
            conversation,
            account,
            say,
            now=message.received_at if now is None else now,
            cap=max_bot_replies_per_hour,
        )
    d.reasons = {**base, **d.reasons}
    return d


def _tone(
    rule: str, message: InboundEvent, nlu: NluResult, account: AccountConfig | None, say: Say
) -> Escalate:
    d = complaints.escalate("tone", message, nlu, account, say)
    d.reasons["rule"] = rule
    return d


async def _decide(
    available: dict[str, Any],
    message: InboundEvent,
    nlu: NluResult,
    conversation: Conversation,
    account: AccountConfig | None,
    say: Say,
) -> Decision:
    intent = nlu.intent
    d = await IGNORE.dispatch(intent, **available)
    if d is not None:
        return d
    if conversation.owner == "human":
        return await _human_owned(available, message, nlu, conversation, account, say)
    d = await ESCALATE.dispatch(intent, **available)
    if d is not None:
        return d
    d = await ANSWER.dispatch(intent, **available)
    if isinstance(d, Answer) and (not nlu.calm or (message.is_public and nlu.is_negative)):
        # Every canned answer needs a calm post: "Wow, amazing service, nobody answered
        # in 5 days. Love it." must not get "Thank you so much!", nor the FAQ text.
        tone = _tone("answer_tone", message, nlu, account, say)
        tone.reasons["held_back"] = d.reasons.get("rule")
        return tone
    if d is not None:
        return d
    if not nlu.calm:
        # A clarifying question is a canned answer too: an upset post that nothing
        # answers ("is it about an order, a payment...?") goes to a person instead.
        return _tone("unclear_tone", message, nlu, account, say)
    if intent and intent != OUT_OF_SCOPE:
        # The customer said what it is about ("my card was charged twice"); asking "is it
        # about an order, a payment...?" would ask it again.
        return handoff("no_answer", message, account, say)
    if not any(unicodedata.category(ch)[0] in "LN" for ch in message.text):
        # Emoji or punctuation alone ("🔥🔥🔥", "??"): nothing to clarify or hand to a
        # person. A public one is a reaction, left alone; a direct one gets a greeting.
        if message.is_public:
            return Ignore("no_words", {"rule": "no_words"})
        return Answer(say("greet"), {"rule": "no_words"})
    if conversation.unclear >= 1:
        ack: str | None = say("escalate_unclear", sla_promise=say.sla_promise("low"))
        if message.is_public:
            ack = say("ack_public_human") if public_ack_enabled(account, message) else None
        return Escalate("unclear", "low", ack, {"rule": "unclear_twice"})
    return Answer(say("clarify"), {"rule": "clarify"})


async def _human_owned(
    available: dict[str, Any],
    message: InboundEvent,
    nlu: NluResult,
    conversation: Conversation,
    account: AccountConfig | None,
    say: Say,
) -> Escalate:
    """Join the open ticket, with what the message would get as a new escalation: decided
    by :func:`_decide` as if the bot owned the conversation, so the priority and
    acknowledgement rules stay in one place. No order lookup: an answer here is thrown
    away. Priority ``low`` when it would not escalate: nothing to raise."""
    unowned = replace(conversation, ticket_id=None)
    fresh = await _decide(
        {**available, "conversation": unowned, "orders": None},
        message,
        nlu,
        unowned,
        account,
        say,
    )
    reasons: dict[str, Any] = {"rule": "human_owned", "ticket_id": conversation.ticket_id}
    if not isinstance(fresh, Escalate):
        return Escalate("human_owned", "low", None, reasons)
    reasons["as_new"] = fresh.reasons.get("rule", fresh.reason)
    # A DM is the agent's to answer; a public post is moved to DM as a new one would be.
    ack = fresh.ack if message.is_public else None
    return Escalate("human_owned", fresh.priority, ack, reasons)


def _small_talk(d: Answer) -> bool:
    """An answer that is only friendliness (a greeting, thanks, praise; the greeting for a
    DM with no words): held back, it is left unsaid rather than handed to a person."""
    rule = str(d.reasons.get("rule", ""))
    return rule.startswith(f"{greetings.router.name}.") or rule == "no_words"


def _crisis_hold(
    d: Answer, message: InboundEvent, account: AccountConfig | None, say: Say
) -> Decision:
    """While negative posts spike, the brand posts nothing canned in public: a cheerful
    "thanks for the kind words 💙" or an FAQ text beside a public outcry reads as not
    listening. Small talk is left alone; a question gets the move-to-DM acknowledgement
    and a person (complaints already do). Direct messages are answered as ever."""
    held_back = {"rule": "crisis_hold", "held_back": d.reasons.get("rule")}
    if _small_talk(d):
        return Ignore("crisis_hold", held_back)
    e = handoff("crisis_hold", message, account, say)
    e.reasons.update(held_back)
    return e


def _throttle(
    d: Answer,
    message: InboundEvent,
    conversation: Conversation,
    account: AccountConfig | None,
    say: Say,
    *,
    now: float,
    cap: int,
) -> Decision:
    """No answer twice in an hour, and at most ``cap`` an hour: a canned answer that did
    not help goes to a person, and a loop with another bot ends through one."""
    sent = [t for t in conversation.turns if t.who == "bot" and now - t.at < HOUR_S]
    held_back = {"held_back": d.reasons.get("rule")}
    if any(t.text == d.text for t in sent):
        if _small_talk(d):  # a second "hi!" (or a second 👍 greeted) says nothing
            return Ignore("repeat", {"rule": "repeat", **held_back})
        e = handoff("repeat", message, account, say)
    elif len(sent) >= cap:
        e = handoff("busy_thread", message, account, say)
    else:
        return d
    e.reasons.update(held_back)
    return e
