"""The decision policy, in order:

1. ignore spam and lottery hunters;
2. if a human owns the conversation, join its ticket and say nothing;
3. escalate complaints, negative posts and requests for a person;
4. answer confident intents (order status, greetings, an FAQ hit above its threshold);
5. otherwise ask one clarifying question (not of a post over the answer guard: that one
   goes to a person), and escalate on the second unclear turn.

Each step is a router of topic handlers; the first decision wins. Handlers get only the
values the pipeline hands them, so the policy is tested with plain values.
"""

from __future__ import annotations

from typing import Any

from bot.config import AccountConfig
from bot.conversation import Conversation
from bot.models import InboundEvent
from bot.nlu.types import NluResult
from bot.orders import OrderLookup
from handlers import complaints, faq, greetings, human_request, orders, spam
from handlers.complaints import public_ack_enabled
from handlers.decisions import Answer, Decision, Escalate, nlu_reasons
from handlers.responses import Say
from handlers.router import Router

IGNORE = Router("ignore").include(spam.router)
ESCALATE = Router("escalate").include(complaints.router, human_request.router)
ANSWER = Router("answer").include(orders.router, greetings.router, faq.router)


async def decide(
    *,
    message: InboundEvent,
    nlu: NluResult,
    conversation: Conversation,
    account: AccountConfig | None,
    say: Say,
    orders: OrderLookup | None = None,
) -> Decision:
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
    d.reasons = {**base, **d.reasons}
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
        return Escalate(
            "human_owned",
            "normal",
            None,
            {"rule": "human_owned", "ticket_id": conversation.ticket_id},
        )
    d = await ESCALATE.dispatch(intent, **available)
    if d is not None:
        return d
    d = await ANSWER.dispatch(intent, **available)
    if d is not None and not (isinstance(d, Answer) and message.is_public and nlu.is_negative):
        return d
    if not nlu.calm:
        # A clarifying question is a canned answer too: an upset post that nothing
        # answers ("is it about an order, a payment...?") goes to a person instead.
        d = complaints.escalate("tone", message, nlu, account, say)
        d.reasons["rule"] = "unclear_tone"
        return d
    if conversation.unclear >= 1:
        ack: str | None = say("escalate_unclear", sla_promise=say.sla_promise("low"))
        if message.is_public:
            ack = say("ack_public_human") if public_ack_enabled(account, message) else None
        return Escalate("unclear", "low", ack, {"rule": "unclear_twice"})
    return Answer(say("clarify"), {"rule": "clarify"})
