"""Spam and lottery hunters: ignored, never answered, never ticketed.

Only a calm post is ignored: the classifier calls an angry post about a giveaway or a
scam ("SCAM ALERT: @acme stole my money") spam too, and that customer needs a person, so
an upset "spam" post goes on through the policy (to the tone escalation). Nor is a
winner asking how to claim a prize (handlers/prizes.py), which a person handles.
"""

from __future__ import annotations

import re

from bot.models import InboundEvent
from bot.nlu.types import OUT_OF_SCOPE, NluResult
from handlers.decisions import Ignore
from handlers.greetings import SMALL_TALK
from handlers.prizes import is_prize_claim
from handlers.router import Router

router = Router("spam")

# Giveaway hunting ("转发抽奖", "pick me!", "#giveaway") — not a question for support.
LOTTERY_RE = re.compile(
    r"抽奖|求中奖|中奖|锦鲤|转发.{0,4}抽|#?giveaway|pick me|lottery|sweepstake|#win\b|\bwin me\b",
    re.IGNORECASE,
)
# The lottery phrases decide only over intents that carry no support question: "can't log
# in to check the lottery result" is an account_login question all the same.
LOTTERY_INTENTS = frozenset({"spam", OUT_OF_SCOPE, *SMALL_TALK})


def _ignorable(message: InboundEvent, nlu: NluResult) -> bool:
    calm = nlu.calm and not nlu.is_negative and nlu.intent != "complaint"
    return calm and not is_prize_claim(message.text)


@router.intent("spam")
def spam(message: InboundEvent, nlu: NluResult) -> Ignore | None:
    return Ignore("spam") if _ignorable(message, nlu) else None


@router.intent(*LOTTERY_INTENTS)
def lottery(message: InboundEvent, nlu: NluResult) -> Ignore | None:
    if _ignorable(message, nlu) and LOTTERY_RE.search(message.text):
        return Ignore("lottery")
    return None
