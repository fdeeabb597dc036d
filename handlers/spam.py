"""Spam and lottery hunters: ignored, never answered, never ticketed."""

from __future__ import annotations

import re

from bot.models import InboundEvent
from bot.nlu.types import NluResult
from handlers.decisions import Ignore
from handlers.router import Router

router = Router("spam")

# Giveaway hunting ("转发抽奖", "pick me!", "#giveaway") — not a question for support.
LOTTERY_RE = re.compile(
    r"抽奖|求中奖|中奖|锦鲤|转发.{0,4}抽|#?giveaway|pick me|lottery|sweepstake|#win\b|\bwin me\b",
    re.IGNORECASE,
)
# Intents under which a lottery phrase is still a real customer concern.
_SERIOUS = frozenset(
    {"complaint", "order_status", "shipping", "payment_problem", "returns_refunds", "human_request"}
)


@router.intent("spam")
def spam(nlu: NluResult) -> Ignore:
    return Ignore("spam")


@router.intent()
def lottery(message: InboundEvent, nlu: NluResult) -> Ignore | None:
    if nlu.intent in _SERIOUS or nlu.is_negative:
        return None
    if LOTTERY_RE.search(message.text):
        return Ignore("lottery")
    return None
