""" "Let me talk to a person": a ticket and a promise of when someone will answer."""

from __future__ import annotations

from bot.config import AccountConfig
from bot.models import InboundEvent
from bot.nlu.types import NluResult
from handlers.complaints import ack, priority_for
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
