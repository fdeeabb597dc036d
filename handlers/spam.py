"""Spam and lottery hunters: ignored, never answered, never ticketed.

Only a calm post is ignored: the classifier calls an angry post about a giveaway or a
scam ("SCAM ALERT: @acme stole my money") spam too, and that customer needs a person, so
an upset "spam" post goes on through the policy (to the tone escalation). Nor is a
winner asking how to claim a prize (handlers/prizes.py), which a person handles, nor a
question about a draw ("is the giveaway open outside the UK?", "开奖结果在哪里公布？"):
the classifier hears the giveaway words and calls it spam, but a hunter seldom asks who
may enter, what the rules are or when the results come, and only a person can answer it.

One exception to "calm": the negativity model scores many plain ads above the answer
guard ("兼职刷单，日赚三百，私聊", "airdrop live, claim your tokens" at 0.40-0.49), which
then went to a person. A post the classifier calls spam that is shaped as an ad or a
contact farm (a get-rich offer, "加我微信", "私聊", "follow back", "link in bio"), is not
negative (under 0.5) and has no word of a customer's problem (refund, order, scam, 骗,
退款, 客服...) is ignored too.

Lottery hunters sorry for their own luck ("the luck gods hate me 😩", "又没抽到我") score
over the guard the same way. They share their words with real complaints about a draw,
so the rule for them (``spam.hunter``) also wants what such chatter never has: the
brand addressed ("you", "your", "你们"), a question, the prize itself, or a fault in
the draw ("rigged", "disqualified", "内定", "取消资格").
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
# A hunter's talk of their own luck and of entering: "not picked again", "shared for
# luck 🍀", "lost the draw", "又没中", "陪跑", "分母", "非酋", "锦鲤", "欧气".
HUNTER_RE = re.compile(
    r"\bluck(?:y|ily)?\b|\bunlucky\b|\bwin\b|\bwon\b|\bwinn(?:er|ers|ing)\b|\bgiveaways?\b"
    r"|\braffles?\b|\bdraws?\b|\bsweepstakes?\b|\bentr(?:y|ies)\b|\bentered\b|\bchosen one\b"
    r"|\b(?:pick|choose) me\b|\bmanifest|\bfingers crossed\b|🤞|🍀"
    r"|\b(?:RT|retweet|repost|share)(?:ed|['’]d)?\b"
    r"|抽|中奖|没中|中过|中一次|锦鲤|陪跑|分母|非酋|非洲人|欧气|欧皇|运气|好运|转发|天选|羡慕",
    re.IGNORECASE,
)
# What a complaint about a draw has and a hunter's chatter does not: the brand addressed,
# a question, the prize, a fault in the draw.
DRAW_GRIEVANCE_RE = re.compile(
    r"\b(?:you|your|u|ur)\b|[?？]|吗|\bprizes?\b|\brigged\b|\bunfair\b|\bshady\b|\bfix(?:ed)?\b"
    r"|\bbots?\b|\bdisqualif|\bexclud|\bremov|\bdelet|\brules?\b"
    r"|你们|贵司|官方|奖品|不公平|假|小号|僵尸号|水军|自己人|取消|删|资格|规则",
    re.IGNORECASE,
)
# A question ("when ...?", "can I ...?", 吗, 怎么, 什么时候) about a draw, its rules or its
# results, in one clause: "pick me?" or "什么时候轮到我 转发抽奖" asks nothing about the draw.
ASK_RE = re.compile(
    r"^(?:when|how|where|what|which|who|is|are|can|could|do|does|will|would|did|should|am)\b"
    r".*[?？]|吗|怎么|如何|什么时候|啥时候|多久|哪里|哪儿|在哪|能不能|可不可以|是否|几号|几点|为什么|为啥",
    re.IGNORECASE,
)
DRAW_RE = re.compile(
    r"\b(?:draws?|giveaways?|contests?|sweepstakes?|raffles?|winners?|prizes?|rules|terms|enter"
    r"|entries|entry|eligible|results?|announce\w*)\b|抽奖|开奖|中奖|奖品|规则|参加|参与|资格|结果"
    r"|名单|公布|公示",
    re.IGNORECASE,
)
# Clauses: after a sentence's end (its ? kept), at a comma, at a space after Chinese.
_CLAUSES = re.compile(r"(?<=[?？.!。！；;\n])|[，,]|(?<=[\u4e00-\u9fff])\s+")
# The lottery phrases decide only over intents that carry no support question: "can't log
# in to check the lottery result" is an account_login question all the same.
LOTTERY_INTENTS = frozenset({"spam", OUT_OF_SCOPE, *SMALL_TALK})


def _ignorable(message: InboundEvent, nlu: NluResult) -> bool:
    calm = nlu.calm and not nlu.is_negative and nlu.intent != "complaint"
    return calm and not is_prize_claim(message.text) and not is_draw_question(message.text)


def is_draw_question(text: str) -> bool:
    clauses = (c.strip() for c in _CLAUSES.split(text))
    return any(ASK_RE.search(c) and DRAW_RE.search(c) for c in clauses)


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


@router.intent("spam")
def hunter(message: InboundEvent, nlu: NluResult) -> Ignore | None:
    """A hunter's chatter the negativity model scores over the answer guard (rule
    ``spam.hunter``): not negative, about their luck, and nothing of a complaint."""
    text = message.text
    if nlu.calm or nlu.is_negative or not HUNTER_RE.search(text):
        return None  # a calm one is the first rule's to decide
    if GRIEVANCE_RE.search(text) or DRAW_GRIEVANCE_RE.search(text) or is_draw_question(text):
        return None
    return None if is_prize_claim(text) else Ignore("lottery")


@router.intent(*LOTTERY_INTENTS)
def lottery(message: InboundEvent, nlu: NluResult) -> Ignore | None:
    if _ignorable(message, nlu) and LOTTERY_RE.search(message.text):
        return Ignore("lottery")
    return None
