"""bench/decisions.py's counting: what each decision and each test row is counted as."""

from __future__ import annotations

from bench.decisions import group, outcome
from bot.nlu.data import NO_FAQ
from handlers.decisions import Answer, Escalate, Ignore


def test_each_decision_counts_under_its_rule() -> None:
    assert outcome(Ignore("spam", {"rule": "spam.spam"})) == "ignore"
    assert outcome(Escalate("tone", reasons={"rule": "faq.faq"})) == "escalate:faq.faq"
    assert outcome(Answer("Refunds take 5 days.", {"rule": "faq.faq"})) == "faq"
    assert outcome(Answer("Could you tell me more?", {"rule": "clarify"})) == "answer:clarify"


def test_rows_count_under_their_label_or_kind() -> None:
    assert group("sentiment", "negative") == "negative"
    assert group("faq", "refund_time") == "faq" and group("faq", NO_FAQ) == "no_faq"
    assert group("intents", "greet") == "intents"
