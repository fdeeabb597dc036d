"""Prize winners: "I won the giveaway, how do I claim my prize?" goes to a person.

The classifier hears the giveaway words and calls such a post spam, and the lottery rule
would ignore it. But a winner asking how to claim, where the prize is, or whether a "you
won" DM is really from the brand (the usual impersonation scam) needs a person who can
check the draw; no canned answer settles it. Only the two together count: a claim to
have won, and a claim, receipt or is-it-you question. A hunter's "pick me!", "amazing
prize, count me in" or "求中奖" has the first at most, and is still ignored.
"""

from __future__ import annotations

import re

from bot.config import AccountConfig
from bot.models import InboundEvent
from handlers.complaints import handoff
from handlers.decisions import Escalate
from handlers.responses import Say
from handlers.router import Router

router = Router("prizes")

# Having won: "I won", "won the/your/a ...", "picked as a winner", "my prize", "中奖了".
# Not "won't", and not "win" or "winner" alone, which every hunter says.
WON_RE = re.compile(
    r"\bI(?:'ve| have)? won\b(?!['’]t)|\bwon (?:the|your|a|an)\b"
    r"|\b(?:picked|chosen|selected|announced|drawn) as (?:a |the |one of the )?winners?\b"
    r"|\bmy prize\b|中奖(?:了|啦|咯|喽)|中了奖|获奖了|抽中了|(?:抽奖|转发)中了|我的奖品",
    re.IGNORECASE,
)
# What a winner asks: how to claim, where to send their address, where the prize is,
# whom to ask, whether a message is really ours.
CLAIM_RE = re.compile(
    r"\bclaim|\bcollect|\bredeem|\breceived?\b|\barrived?\b|\bsent\b|\bship"
    r"|\bhaven'?t (?:got|had|heard)|\bnever (?:got|came|heard|showed|turned)|\bwhat do I do\b"
    r"|\bnext steps?\b|\b(?:my|shipping|postal|home) address\b|\bwho (?:do|should) I (?:contact|talk)"
    r"|\bhow do I get\b|\bis (?:this|that|it) (?:really |actually )?(?:you|legit|real|official)\b"
    r"|\blegit\b|\bscam|\bfake\b"
    r"|领奖|领取|兑奖|兑换|没收到|未收到|还没到|还没发|一直没|怎么领|怎么拿|是你们|官方|骗"
    r"|地址|什么时候(?:发|寄|到)|找谁|联系谁",
    re.IGNORECASE,
)


def is_prize_claim(text: str) -> bool:
    return bool(WON_RE.search(text) and CLAIM_RE.search(text))


@router.intent()
def prize_claim(message: InboundEvent, account: AccountConfig, say: Say) -> Escalate | None:
    if not is_prize_claim(message.text):
        return None
    return handoff("prize_claim", message, account, say)
