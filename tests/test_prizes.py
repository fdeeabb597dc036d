"""handlers/prizes.py's two halves: a claim to have won, and what a winner asks.

Each winner below says it won in a different shape (the speaker won, is a winner, was
drawn, is on the list, was told so by a message) and asks something a person has to
answer; each hunter has a winner's question or a win word but has not won: someone else's
win, a win denied or only hoped for, the scam post's own "you've won".
"""

from __future__ import annotations

import pytest

from handlers.prizes import is_prize_claim

WINNERS = [
    # The speaker won.
    "Guess who just won the mug 🙋 how do I get it?",
    "won your spring giveaway, still waiting on the prize",
    "got a DM saying I'd won, is that really your account?",
    "won!!! now what do I do",
    "my win from the summer draw never arrived",
    # The speaker is a winner.
    "I was one of the three winners last week, where do I send my details?",
    "I'm the lucky one 🥳 what info do you need?",
    "winner of the July draw here, no email yet",
    # Drawn.
    "you guys picked me!! what happens next?",
    "thanks for choosing me in the raffle! when will it ship?",
    "Was I actually selected? an account called acme_prizes says so",
    # On the list, or notified.
    "my handle is on the winners list, how do I claim?",
    "your giveaway post has my @ in it, what's the process?",
    "received a winning notification asking for a fee, is that you?",
    # Chinese: 中奖了 and its forms, 抽中/抽到, on the list, the one picked, notified.
    "中奖一个月了，奖品呢？",
    "终于中一次奖了，请问怎么兑换",
    "被官博抽中了，奖品什么时候寄？",
    "官博开奖开到我了，要填什么信息",
    "中奖名单里有我吗？",
    "抽奖结果公布了，里面有我！需要我做什么",
    "锦鲤竟然是我！请问怎么领取",
    "我是这期的中奖者，私信没人回",
    "上周的转发抽奖是我中的，怎么没人联系",
    "恭喜@我 获得体验装一份——是你们发的吗",
    "收到中奖短信要我交运费，是你们吗",
]

HUNTERS = [
    # Someone else's win.
    "who won? when will you ship the prize?",
    "has anyone won yet? when do you ship",
    "Congrats, you've been selected as a winner! Claim your reward at bit.ly/x",
    "🎁 You have won a prize! Confirm your shipping address at prize-site.co",
    "谁中奖了？奖品什么时候寄",
    "恭喜你中奖了！请添加客服微信领取",
    "恭喜中奖的朋友们，奖品什么时候发",
    # A win denied or only hoped for.
    "I've won nothing in 50 giveaways, is this even real?",
    "hope I'm the winner this time, I'll send my address right away",
    "if I'd won I would have told you my address",
    "saw the giveaway post, pick me! I'll DM my address",
    "pls consider picking me, I'd send my address fast",
    "希望被抽中，地址都准备好了",
    "如果中了奖，什么时候发货？",
    "又没中奖了，什么时候发下一轮",
]


@pytest.mark.parametrize("text", WINNERS)
def test_a_winner_in_any_shape_is_a_prize_claim(text: str) -> None:
    assert is_prize_claim(text)


@pytest.mark.parametrize("text", HUNTERS)
def test_a_hunter_or_someone_elses_win_is_not(text: str) -> None:
    assert not is_prize_claim(text)


def test_both_halves_are_needed() -> None:
    # Won, but nothing asked: a brag, not a ticket.
    assert not is_prize_claim("I won the mug!! love it")
    assert not is_prize_claim("抽中了！开心")
    # Asked, but no win: a hunter's question.
    assert not is_prize_claim("how do I claim? where do I send my address?")
    assert not is_prize_claim("奖品什么时候寄？地址私信可以吗")
