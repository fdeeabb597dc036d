"""Complaints and negative posts: always a ticket, at most a short acknowledgement.

A negative public mention never gets a canned answer: the bot only moves the customer to
DM (per-account option ``ack_negative_mentions``; off by default on Weibo, where a
mention may be answered once and that reply is better left to a person).
"""

from __future__ import annotations

from bot.config import AccountConfig
from bot.models import InboundEvent
from bot.nlu.types import NluResult
from handlers.decisions import Escalate
from handlers.responses import Say
from handlers.router import Router

router = Router("complaints")

BIG_REACH = 10_000
VERY_NEGATIVE = 0.85
_LEVELS = ("low", "normal", "high", "urgent")


def priority_for(message: InboundEvent, nlu: NluResult, *, base: str = "normal") -> str:
    """Priority from negativity, reach (followers, verified) and public vs private."""
    level = _LEVELS.index(base)
    negative = nlu.is_negative or nlu.intent == "complaint"
    if negative and message.is_public:
        level += 1  # others can see it
    if message.author.verified or message.author.followers >= BIG_REACH:
        level += 1
    if nlu.negativity >= VERY_NEGATIVE:
        level += 1
    return _LEVELS[min(level, len(_LEVELS) - 1)]


def public_ack_enabled(account: AccountConfig | None, message: InboundEvent) -> bool:
    default = message.platform != "weibo"
    if account is None:
        return default
    return bool(account.options.get("ack_negative_mentions", default))


def ack(
    message: InboundEvent,
    account: AccountConfig | None,
    say: Say,
    *,
    dm_key: str,
    public_key: str,
    priority: str = "normal",
) -> str | None:
    """The acknowledgement for an escalation, promising the ticket's first-response time."""
    promise = say.sla_promise(priority)
    if message.is_public:
        return (
            say(public_key, sla_promise=promise) if public_ack_enabled(account, message) else None
        )
    return say(dm_key, sla_promise=promise)


def escalate(
    reason: str, message: InboundEvent, nlu: NluResult, account: AccountConfig | None, say: Say
) -> Escalate:
    """A ticket at the priority the post earns, acknowledged as the account allows."""
    p = priority_for(message, nlu)
    return Escalate(
        reason, p, ack(message, account, say, dm_key="ack_dm", public_key="ack_public", priority=p)
    )


def handoff(
    reason: str,
    message: InboundEvent,
    account: AccountConfig | None,
    say: Say,
    *,
    apologise: bool = False,
) -> Escalate:
    """A ticket at normal priority for what the bot cannot settle itself (no answer, a
    repeated answer, a busy thread, a prize claim). Its acknowledgement is neutral: "We're
    sorry to hear this" fits a complaint or a customer kept waiting (``apologise``), not
    a winner asking for a prize or a question nothing answered."""
    if apologise:
        text = ack(message, account, say, dm_key="ack_dm", public_key="ack_public")
    else:
        text = ack(message, account, say, dm_key="ack_handoff", public_key="ack_public_human")
    return Escalate(reason, "normal", text, {"rule": reason})


@router.intent("complaint")
def complaint(message: InboundEvent, nlu: NluResult, account: AccountConfig, say: Say) -> Escalate:
    return escalate("complaint", message, nlu, account, say)


@router.intent()
def negative(
    message: InboundEvent, nlu: NluResult, account: AccountConfig, say: Say
) -> Escalate | None:
    return escalate("negative", message, nlu, account, say) if nlu.is_negative else None
