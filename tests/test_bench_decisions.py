"""bench/decisions.py's counting: what each decision and each test row is counted as."""

from __future__ import annotations

from pathlib import Path

from bench.decisions import ROOT, group, outcome, post_groups
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


def test_a_blind_post_counts_under_its_group(tmp_path: Path) -> None:
    f = tmp_path / "posts.yml"
    f.write_text(
        "version: '3.1'\nnlu:\n- intent: complaint\n  examples:\n"
        "  - text: great job, it broke again\n    metadata: {group: sarcasm_complaint}\n"
        "  - text: plain line\n",
        encoding="utf-8",
    )
    assert post_groups(f) == {"great job, it broke again": "sarcasm_complaint"}
    shipped = post_groups(ROOT / "tests" / "data" / "blind_posts_heldout.yml")
    assert len(shipped) == 166 and set(shipped.values()) == {
        "sarcasm_complaint",
        "small_talk",
        "follow_up",
        "faq",
        "spam",
        "prize_winner",
    }
