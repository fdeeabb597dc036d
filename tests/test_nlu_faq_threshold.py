"""The FAQ answer threshold is chosen per language when each has enough examples."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from bot.nlu.data import Faq
from bot.nlu.faq import MIN_LANGUAGE_ROWS, FaqIndex, choose_threshold

N = MIN_LANGUAGE_ROWS  # phrasings per FAQ and language, unrelated messages per language


def _bank() -> tuple[FaqIndex, np.ndarray, list[str]]:
    """Two FAQs (axes 0 and 1) phrased N times in English, tightly (cosine 0.92 to each
    other), and N times in Chinese, loosely (0.68 at best, to an English phrasing). N
    unrelated English messages lean on FAQ 0 (0.72 to its English phrasings), above every
    Chinese phrasing's score; N unrelated Chinese ones sit far lower (0.38). One threshold
    either answers the English unrelated messages or no Chinese question; one per language
    does neither."""
    faqs = [
        Faq(
            f"faq{f}",
            {"en": [f"en {f} {k}" for k in range(N)], "zh": [f"zh {f} {k}" for k in range(N)]},
            {"en": f"answer {f}"},
        )
        for f in range(2)
    ]
    index = FaqIndex(faqs, alpha=1.0)  # embeddings only: the char rows stay empty
    dim = 2 + len(index.items) + 2 * N
    spare = iter(range(2, dim))  # one direction of its own for each text

    def vec(axis: int, lean: float, own: float) -> np.ndarray:
        v = np.zeros(dim, dtype=np.float32)
        if axis >= 0:
            v[axis] = lean
        v[next(spare)] = own
        return v / np.linalg.norm(v)

    spread = {"en": 0.3, "zh": 1.0}
    emb = np.stack(
        [
            vec(-1, 0.0, 1.0) if it.is_answer else vec(it.faq, 1.0, spread[it.language])
            for it in index.items
        ]
    )
    index.set_vectors(emb, sp.csr_matrix((len(emb), 1), dtype=np.float32))
    unrelated = np.stack(
        [vec(0, 0.75, 0.66) for _ in range(N)] + [vec(0, 0.4, 0.92) for _ in range(N)]
    )
    return index, unrelated, ["en"] * N + ["zh"] * N


def _choose(index: FaqIndex, unrelated: np.ndarray, langs: list[str] | None) -> tuple:
    n_q = sum(not it.is_answer for it in index.items)
    no_char = sp.csr_matrix((len(unrelated), 1), dtype=np.float32)
    return choose_threshold(
        index, unrelated, no_char, np.zeros((n_q, 2)), np.zeros((len(unrelated), 2)), langs
    )


def test_each_language_gets_the_threshold_that_suits_its_scores() -> None:
    index, unrelated, langs = _bank()
    overall, by_language, stats = _choose(index, unrelated, langs)
    # Over everything, answering every question wins (F1 0.89 against 0.67), so the
    # English unrelated messages are answered.
    assert overall < 0.68
    assert set(by_language) == {"en", "zh"}
    assert 0.71 < by_language["en"] <= 0.92 and 0.38 < by_language["zh"] <= 0.68
    assert stats["threshold_en"] == by_language["en"]
    # Each language held to its own: every question answered right, nothing unrelated.
    assert stats["recall"] == 1.0 and stats["precision"] == 1.0
    assert stats["unrelated_answered"] == 0.0 and stats["f1"] == 1.0


def test_languages_without_enough_examples_share_the_overall_threshold() -> None:
    index, unrelated, langs = _bank()
    # One Chinese unrelated message short of the minimum: Chinese has no threshold of its own.
    keep = N + N - 1
    overall, by_language, stats = _choose(index, unrelated[:keep], langs[:keep])
    assert set(by_language) == {"en"} and "threshold_zh" not in stats
    # Chinese questions are held to the overall threshold.
    assert stats["recall"] == pytest.approx(1.0 if overall <= 0.68 else 0.5)
    # Unrelated messages of unknown language: no language has its own.
    assert _choose(index, unrelated, None)[1] == {}
