""" "Let me talk to a person": a ticket and a promise of when someone will answer.

A customer chasing an earlier message ("any update on my case?", "hello? anyone there?
I've been waiting 3 days", "在吗？昨天的消息还没人回") is asking for one too: the bot
cannot tell what became of it, and "Hi! How can I help?" would be the worst reply.
"""

from __future__ import annotations

from bot.config import AccountConfig
from bot.models import InboundEvent
from bot.nlu.types import NluResult
from handlers.complaints import ack, handoff, priority_for
from handlers.decisions import Escalate
from handlers.responses import Say
from handlers.router import Router

router = Router("human_request")


@router.intent("human_request")
def human_request(
    message: InboundEvent, nlu: NluResult, account: AccountConfig, say: Say
) -> Escalate:
    p = priority_for(message, nlu)
    text = ack(message, account, say, dm_key="ack_human", public_key="ack_public_human", priority=p)
    return Escalate("human_request", p, text)


@router.intent("follow_up")
def follow_up(message: InboundEvent, account: AccountConfig, say: Say) -> Escalate:
    return handoff("follow_up", message, account, say, apologise=True)  # kept waiting
