"""The answer guard: the negativity under which a canned FAQ answer may go out
(bot/nlu/engine.py choose_answer_guard), as training chooses it and the service applies it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bot.config import NluConfig
from bot.nlu.artifact import Loaded
from bot.nlu.engine import Thresholds, choose_answer_guard
from bot.nlu.service import NluService

pytest_plugins = ["tests.conftest_nlu"]


def test_the_guard_separates_plain_worded_complaints_from_questions() -> None:
    """Ten loud complaints, five in plain words (0.35, under the negativity threshold),
    sixteen FAQ phrasings of which one reads a little sharp (0.4): 0.3 and 0.35 both keep
    every complaint from a canned answer and hold back that one phrasing; the tie goes to
    the higher guard. Praise (not negative, not a phrasing) does not count either way."""
    p = np.array([0.9] * 10 + [0.35] * 5 + [0.05] * 15 + [0.4] + [0.45] * 4)
    y = np.array([1] * 15 + [0] * 16 + [0] * 4)
    phrasing = np.array([False] * 15 + [True] * 16 + [False] * 4)
    guard, stats = choose_answer_guard(p, y, phrasing)
    assert guard == 0.35
    assert stats == {"negatives_under": 0.0, "phrasings_over": round(1 / 16, 3)}
    # Without the plain-worded complaints the negativity threshold's default is enough.
    keep = p != 0.35
    assert choose_answer_guard(p[keep], y[keep], phrasing[keep])[0] == 0.5


def test_too_little_data_leaves_the_guard_open() -> None:
    p = np.array([0.9] * 4 + [0.1] * 20)
    y = np.array([1] * 4 + [0] * 20)
    assert choose_answer_guard(p, y, y == 0) == (1.0, {})
    assert choose_answer_guard(np.full(24, np.nan), y, y == 0)[0] == 1.0


async def test_training_chooses_a_guard_and_the_service_applies_it(
    nlu_artifact: Loaded, nlu_data_root: Path, nlu_data_dir: Path
) -> None:
    engine, report = nlu_artifact.engine, nlu_artifact.stamp.report
    assert 0 < engine.answer_guard <= 0.5 and report["answer_guard"] == engine.answer_guard
    assert set(report["answer_guard_held_out"]) == {"negatives_under", "phrasings_over"}

    async def parse(cfg: NluConfig, text: str) -> tuple[Thresholds, bool, float]:
        svc = NluService(cfg, str(nlu_data_root), str(nlu_data_dir), preloaded=nlu_artifact)
        await svc.start()
        try:
            r = await svc.parse(text)
        finally:
            await svc.close()
        assert svc.thresholds is not None
        return svc.thresholds, r.calm, r.negativity

    text = "Refund approved on the 3rd, now the 28th. Where is my money??"
    trained, calm, neg = await parse(NluConfig(train_on_start=False), text)
    assert trained.answer_guard == engine.answer_guard and calm == (neg < engine.answer_guard)
    # A configured guard wins; just over or under this post's score decides its calm.
    over = await parse(NluConfig(train_on_start=False, answer_guard=neg + 0.01), text)
    under = await parse(NluConfig(train_on_start=False, answer_guard=max(neg - 0.01, 0.01)), text)
    assert over[1] is True and under[1] is False
