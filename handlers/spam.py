"""Spam and lottery hunters: ignored, never answered, never ticketed.

Only a calm post is ignored: the classifier calls an angry post about a giveaway or a
scam ("SCAM ALERT: @acme stole my money") spam too, and that customer needs a person, so
an upset "spam" post goes on through the policy (to the tone escalation). Nor is a
winner asking how to claim a prize (handlers/prizes.py), which a person handles.

One exception to "calm": the negativity model scores many plain ads above the answer
guard ("兼职刷单，日赚三百，私聊", "airdrop live, claim your tokens" at 0.40-0.49), which
then went to a person. A post the classifier calls spam that is shaped as an ad or a
contact farm (a get-rich offer, "加我微信", "私聊", "follow back", "link in bio"), is not
negative (under 0.5) and has no word of a customer's problem (refund, order, scam, 骗,
退款, 客服...) is ignored too. Lottery hunters' chatter ("so jealous of the winners",
"从来没中过奖") gets no such rule: it shares its words with real complaints about a draw.
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
# Ads and contact farming: an offer to earn, buy or follow, or a request to be contacted
# off the platform. Not links alone (a complaint links its proof), nor "follow me" alone
# ("can't DM you because you don't follow me" is a customer).
AD_RE = re.compile(
    r"\$\d+k?\+? ?(?:/|a|an|per) ?(?:day|week|month|hour)\b|\bturn \$\d+k? into\b"
    r"|\b(?:earn|make|made) \$\d+k?\b[^.!?\n]{0,30}\b(?:from (?:home|my phone)|ask me how|DM me|message me)"
    r"|\b(?:passive|daily) income\b|\bwork from home\b|\bno experience needed\b"
    r"|\b(?:crypto|forex|trading) (?:signals|group|bot)\b|\bairdrop\b|\bpresale\b|\bt\.me/"
    r"|\bDM me (?:for|to learn|to earn)\b|\bmessage me (?:for|to)\b|\bask me how\b"
    r"|\blink in (?:my )?bio\b|\bcheck (?:out )?my (?:channel|profile|shop)\b|\bjoin my (?:channel|group)\b"
    r"|\bfollow back\b|\bf4f\b|\bsub4sub\b|\bfollow for follow\b|\bfollow me (?:and|&) I['’]?ll follow\b"
    r"|\b(?:cheap|buy|gain|get) (?:\d+k? )?(?:real )?(?:followers|likes)\b"
    r"|加(?:我)?(?:微信|V|vx|薇|扣扣|QQ)|\bvx[:：]|微信[:：]|私聊|私信了解|日结|日赚|日入|刷单|招代理"
    r"|躺赚|稳赚|涨粉|刷粉|互粉|互关|互赞|回关|必回|炒币|带你翻倍|点击链接|看主页",
    re.IGNORECASE,
)
# A customer's problem, which no ad mentions: such a post goes on to a person.
GRIEVANCE_RE = re.compile(
    r"\brefund|\bscam|\bfraud|\bstole|\bsteal|\bcharged|\bbroken|\bdamaged|\bnever (?:arrived|came|got)"
    r"|\bnot (?:received|working)|\bdoesn['’]?t work|\bworst\b|\bterrible\b|\bawful\b|\bangry\b"
    r"|\bcomplain|\breport|\blawyer|\buseless\b|\brip ?off|\bfake\b|\blie[ds]?\b|\bcheat|\bmoney back"
    r"|\bwhere is my|\bwaiting\b|\bstill no|\bnobody\b|\bno one\b|\bcancel|\border\b|\bdelivery\b"
    r"|\baccount\b|\bsupport\b|\bimpersonat"
    r"|退款|退货|投诉|骗|坑|差评|垃圾|坏|没收到|没到|不能用|质量|假货|客服|售后|维权|举报|曝光|欺诈|冒充"
    r"|扣款|扣钱|赔偿|索赔|内定|暗箱|黑幕|一直没|没人|不回|气死|失望|恶心|太差|订单|快递|账号",
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


@router.intent("spam")
def ad(message: InboundEvent, nlu: NluResult) -> Ignore | None:
    """A plain ad the negativity model scores over the answer guard (rule ``spam.ad``)."""
    text = message.text
    if nlu.is_negative or not AD_RE.search(text) or GRIEVANCE_RE.search(text):
        return None
    return None if is_prize_claim(text) else Ignore("spam")


@router.intent(*LOTTERY_INTENTS)
def lottery(message: InboundEvent, nlu: NluResult) -> Ignore | None:
    if _ignorable(message, nlu) and LOTTERY_RE.search(message.text):
        return Ignore("lottery")
    return None
