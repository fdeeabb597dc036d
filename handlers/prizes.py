"""Prize winners: "I won the giveaway, how do I claim my prize?" goes to a person.

The classifier hears the giveaway words and calls such a post spam, and the lottery rule
would ignore it. But a winner asking how to claim, where the prize is, or whether a "you
won" DM is really from the brand (the usual impersonation scam) needs a person who can
check the draw; no canned answer settles it. Only the two together count: a claim to
have won, and a claim, receipt or is-it-you question. A hunter's "pick me!", "amazing
prize, count me in" or "求中奖" has the first at most, and is still ignored.

Having won is said in many ways ("I was one of the winners", "you picked me", "my name's
on the winners list", "抽到我了", "锦鲤竟是我"), so it is matched by its shapes: the
speaker as the subject of a win, as a winner, as the one drawn, on the list, or told so
by a message. What it never counts: someone else's win ("who won?", "congrats
@jenny", "恭喜你中奖了", the scam post's own "you've been selected"), a win denied ("I
never win", "又没中") and one only hoped for ("hope I won", "如果中了").
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

_ADV = (
    r"(?: (?:just|actually|finally|apparently|really|literally|totally|somehow|also|officially))*"
)
# Chinese: a win that is someone else's (你/您/谁), denied (没/未/不) or wished for (求/要/想/盼).
_ZH_NOT_ME = r"(?<![你您谁没未不求要想盼])"
# A Chinese clause: no sentence punctuation or space inside.
_ZH = r"[^，。！？、,.!?\s]"

WON_RE = re.compile(
    # The speaker won: "I won", "I've actually won", "we won", "won your giveaway", and a
    # sentence that starts with it ("won!!! now what?").
    rf"\b(?:I|we)(?:['’]ve|['’]d| have| had)?{_ADV} won\b(?!['’]t| nothing| anything)"
    r"|\bwon (?:the|your|ur|yours|a|an|one|first|second|third|1st|2nd|3rd|this|last|it)\b"
    r"|(?:^|[.!?]\s*)(?:just |finally |actually )?won\b(?!['’]t)|\bmy (?:prize|winnings|win)\b"
    # The speaker is a winner: "I'm one of the 5 lucky winners", "I was winner #3", "I'm
    # the lucky one", "it's me, the headphone winner".
    r"|\b(?:I['’]?m|I am|I was|I['’]ve been|we['’]re|we were)(?: (?!not\b|never\b)\S+){0,5}?"
    r" (?:winners?\b|lucky (?:one|person|guy|girl)\b)|\bit['’]?s me,? the (?:\S+ ){0,2}?winner\b"
    # Drawn: "you picked me", "thanks for choosing me", "tagged me as the winner", "I got
    # picked", "was I selected?", "did I win?".
    r"|\b(?:picked|chose|chosen|selected|drew|drawn) me\b|\bfor (?:picking|choosing|selecting) me\b"
    r"|\b(?:announced|named|tagged|listed|declared|mentioned) me (?:as )?(?:\S+ ){0,3}?winners?\b"
    rf"|\bI(?:['’]ve| have)?{_ADV} (?:been |got |was )(?:picked|selected|chosen|drawn)\b(?! up)"
    r"|\b(?:was|am) I (?:\S+ )?(?:picked|selected|chosen|drawn|a winner|the winner|one of the winners)\b"
    r"|\bcongratulat\w* me\b|\blucky enough to win\b|\bme (?:on|for) winning\b"
    r"|\bdid I (?:really |actually )?win\b|\b(?:didn['’]?t|did not|never) (?:expect|think)[^.!?\n]{0,12}\bwin\b"
    # On the list: "my name's on the winners list", "the winners ... I'm one of them".
    r"|\b(?:my (?:name|handle|username|user name|account|id)(?:['’]s| is)?|I['’]?m|I am|me)\b"
    r"[^.!?\n]{0,25}?\b(?:winners?['’]?s? (?:list|post|announcement|thread|tweet|story)|list of winners)"
    r"|\b(?:I['’]?m|I am|my name is) (?:in|on) (?:the|your) (?:giveaway |draw |contest )?results\b"
    r"|\b(?:giveaway|winners?|draw|contest)(?:['’]s)? (?:post|list|story|announcement|tweet)\b"
    r"[^.!?\n]{0,15}?\b(?:has|had|with|includes?|tagged|mentions?|named) (?:my (?:@|name|handle|username)|me\b)"
    r"|\bwinners?\b[^.!?\n]{0,40}?\b(?:I['’]?m|I am|I was) (?:one of them|among them|on (?:it|there|the list))"
    # Told so: "got a DM saying you've won", "a winning notification", "winner ... here".
    r"|\b(?:DM|message|email|e-mail|text|notification|call|letter)s?\b[^.!?\n]{0,20}?"
    r"\b(?:saying|says|said|that|telling me)\b[^.!?\n]{0,10}?\b(?:won|winner|been (?:selected|chosen|picked))"
    r"|\bwinn(?:ing|er) (?:notification|notice|email|e-mail|DM|message|letter|text|call)"
    r"|\bwinners? (?:(?:of|from) [^.!?\n]{1,30} )?(?:here|checking in)\b"
    # 中奖了, 中奖一个月了, 中了一等奖, 终于中一次奖了, 我中了, 是我中的, 中了中了！, 获奖了.
    rf"|{_ZH_NOT_ME}中{_ZH}{{0,3}}奖(?:了|啦|咯|喽|后|以后|之后)|{_ZH_NOT_ME}中了{_ZH}{{0,6}}奖"
    rf"|{_ZH_NOT_ME}中奖{_ZH}{{0,5}}(?:天|周|星期|月|年)了|(?:^|[，。！？,.!?\s])中(?:了|啦)(?:[!！]|中)"
    rf"|(?:我|本人)(?:也|竟然|居然|真的|终于|这次)?中(?:奖|了)|我中的|(?:获|得)了?奖(?:了|啦)"
    rf"|(?:终于|第一次|头一次|总算)中{_ZH}{{0,2}}奖"
    # 抽中了, 我抽中你们的..., 抽到我了, 开奖开到我, 被官博抽中, 抽奖中了, 我的奖品, 有幸获得.
    rf"|抽中(?:了|啦|咯|喽|我)|我(?:也|竟然|居然|真的|终于|这次)?抽(?:中|到)|(?:抽|开)到了?我"
    rf"|被{_ZH}{{0,4}}抽(?:中|到)|(?:抽奖|转发)中了|我的奖品|(?:幸运(?:地|的)?|有幸|我)获得"
    rf"|(?:我|之前|上次|上周|上个月){_ZH}{{0,6}}中的奖"
    # On the list, the one picked, congratulated, notified: 中奖名单里有我, 开奖结果有我,
    # 我是中奖的那个, 锦鲤竟是我, 我是本期锦鲤, 恭喜@我 获得, 收到中奖通知.
    r"|(?:中奖|获奖|开奖|抽奖)(?:名单|公告|结果)[^。！？]{0,8}(?:有|是|看到|出现了?)我"
    r"|我[^，。！？]{0,4}(?:在|上了?)[^，。！？]{0,3}(?:中奖|获奖)名单"
    r"|我(?:就|竟然|居然|也)?是[^，。！？]{0,12}(?:中奖|获奖)(?:者|的|用户|人)"
    r"|(?:锦鲤|幸运儿|中奖者|中奖的人)(?:竟然?|居然|就|原来)?是我|(?:抽中|中奖|获奖)的(?:就)?是我"
    r"|我(?:是|中了?|拿了|得了)[^，。！？]{0,2}[一二三四五六特]等奖"
    rf"|我(?:成为|成了|是)了?{_ZH}{{0,4}}(?:锦鲤|幸运儿|幸运(?:用户|粉丝|观众|星)|中奖用户)"
    r"|恭喜@?我(?:自己)?[，,！!\s]*(?:获得|中|抽中|成为)"
    r"|(?:收到|接到)了?[^，。！？]{0,4}(?:中奖|获奖)(?:通知|短信|私信|邮件|消息|电话)"
    r"|(?:中奖|获奖)(?:通知|短信|私信|邮件|消息|电话)[^，。！？]{0,3}收到",
    re.IGNORECASE,
)
# A win only hoped for or imagined, in the same clause before it: "hope I won", "fingers
# crossed I'm the winner", "if I won", "希望被抽中", "要是中了奖", "让我抽中吧".
HOPED_RE = re.compile(
    r"\b(?:hope|hoping|hopefully|wish|if|whoever|fingers crossed|pray|praying)\b"
    r"|希望|如果|要是|万一|假如|祈祷|保佑|求|想要|但愿|期待|让我",
    re.IGNORECASE,
)
# Someone else's win, just before "won the ...": "who won the", "you've won a free iPhone"
# (the scam's own words), "has anyone won"; but "guess who just won" is the speaker.
OTHERS_RE = re.compile(
    r"\b(?<!guess )(?:who|you|u|ya|anyone|anybody|someone|somebody|nobody|everyone|they)"
    r"(?:['’]ve| have| has| had)?(?: (?:just|already|also|finally|actually))?\s*$",
    re.IGNORECASE,
)
_CLAUSE_END = re.compile(r"[.!?;\n,，。！？；]")

# What a winner asks: how to claim or get it, what happens next, where to send their
# details, where the prize is (never came, still waiting, broken code or item), whom to
# ask, whether a message is really ours.
CLAIM_RE = re.compile(
    r"\bclaim|\bcollect|\bredeem|\breceived?\b|\barrived?\b|\bsent\b|\bship|\bdeliver|\btrack"
    r"|\bhow (?:do |can |should |would |to )?(?:I |we )?(?:get|receive|collect|use)\b"
    r"|\bhow does (?:this|it|that) work\b|\bhow long\b|\bwhat (?:happens )?(?:now|next)\b"
    r"|\bwhat happens\b|\bnow what\b|\bnext steps?\b|\bwhat do (?:I|we) (?:do|need|send)\b"
    r"|\bwhat (?:info|information|details)\b|\bwhat do (?:you|u|ya) need\b|\bneed (?:my|from me)\b"
    r"|\bprocess\b|\bproceed\b|\breceipt\b|\bpostage\b|\b(?:real|legit|genuine) or\b"
    r"|\bdo (?:I|we) (?:need|have) to\b|\bdo (?:I|we) (?:DM|message|email|contact|send|fill)\b"
    r"|\b(?:where|who) (?:do|should|can) (?:I|we)\b|\bwhen (?:will|do|does|can|should) (?:I|it|we|you)\b"
    r"|\b(?:my|our) (?:details|info|information|address|contact)\b"
    r"|\b(?:shipping|postal|home|delivery|mailing) (?:address|info|details)\b"
    r"|\bstill (?:waiting|nothing|no)\b|\bwaiting (?:on|for)\b|\band nothing\b|\bnothing yet\b"
    r"|\bno (?:reply|response|word|news|update|email|e-mail|message|DM|contact)\b|\bnobody\b|\bno[ -]one\b"
    r"|\b(?:hasn['’]?t|haven['’]?t|hadn['’]?t|didn['’]?t|has not|have not|did not|never|not yet)\b"
    r"[^.!?\n]{0,15}?\b(?:got|gotten|get|receiv|heard|hear|arriv|come|came|show|turn|sent"
    r"|ship|deliver|contact|reach)"
    r"|\b(?:did|have|has) you (?:get|got|receive|see)\b|\bconfirm\b"
    r"|\bcan (?:you|someone|anyone|somebody) (?:check|help|look)\b|\b(?:a|the) form\b"
    r"|\b(?:doesn['’]?t|does not|didn['’]?t|not) work|\bexpired\b|\binvalid\b|\bbroken\b"
    r"|\bdamaged\b|\bwrong (?:item|size|colou?r|one|address)\b|\bpay\b|\bfee\b"
    r"|\b(?:card|bank|payment) (?:details|info|number|login)\b|\bpassword\b|\b(?:not|really) you\b"
    r"|\bis (?:this|that|it) (?:really |actually )?(?:you|yours|legit|real|official|true)\b"
    r"|\b(?:really|actually|officially) (?:you|your|from you)\b|\b(?:was|am|did) I (?:really|actually)\b"
    r"|\bfor real\b|\blegit\b|\bscam|\bfake\b|\bimpersonat|\bphishing\b"
    r"|领奖|领取|兑奖|兑换|没收到|未收到|还没到|还没发|一直没|是你们|官方|骗|冒充|钓鱼"
    r"|怎么(?:领|拿|兑|操作|弄|办|用|处理|联系|收|还)|如何(?:领|兑|获得|联系)|流程|方式|步骤"
    r"|地址|(?:什么|啥|何)时(?:候)?(?:发|寄|到|能|会|给)|多久|找谁|联系谁|私信"
    r"|快递|单号|物流|寄(?:到|给)|发(?:到|给)"
    r"|没人|没有人|没动静|没消息|没下文|没回复|没(?:有)?(?:发|寄|到|收|联系|回)"
    r"|有我吗|是我吗|是不是我|真的吗|是真的|真的假的|真假|可信"
    r"|需要(?:提供|填|我|私信|发|什么)|信息|资料|身份证|手机号|运费|转账|付钱|交钱|银行卡"
    r"|接下来|下一步|怎么做|确认|核实|查一下|帮我看|请问|求问"
    r"|寄错|发错|坏了|坏的|能换|退换|打不开|过期|失效|用不了|不能用"
    r"|奖品(?:呢|在哪|到哪|发了|寄了|到了|寄出|发出|还没)|到哪|在哪",
    re.IGNORECASE,
)


def _won(text: str) -> bool:
    for m in WON_RE.finditer(text):
        before = _CLAUSE_END.split(text[: m.start()])[-1]
        if HOPED_RE.search(before):
            continue
        if m.group().lstrip(" .!?").lower().startswith("won") and OTHERS_RE.search(before):
            continue
        return True
    return False


def is_prize_claim(text: str) -> bool:
    return bool(CLAIM_RE.search(text)) and _won(text)


@router.intent()
def prize_claim(message: InboundEvent, account: AccountConfig, say: Say) -> Escalate | None:
    if not is_prize_claim(message.text):
        return None
    return handoff("prize_claim", message, account, say)
