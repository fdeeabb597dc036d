"""FAQ scoring and answer thresholds on hand-made banks: the answer's share of a FAQ's
score, and a threshold per language when each has enough examples."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from bot.nlu.data import Faq
from bot.nlu.faq import MIN_LANGUAGE_ROWS, Blend, FaqIndex, choose_threshold

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


def test_the_answer_weight_mixes_in_the_best_answer_and_skips_faqs_without_one() -> None:
    faqs = [Faq("a", {"en": ["a1", "a2"]}, {"en": "A."}), Faq("b", {"en": ["b1"]}, {})]
    index = FaqIndex(faqs, alpha=1.0)  # items: a1, a2, A., b1
    e = np.eye(4, dtype=np.float32)
    index.set_vectors(np.stack([e[0], e[1], e[2], e[3]]), sp.csr_matrix((4, 1)))
    query = np.array([[0.6, 0.0, 0.8, 0.0]], dtype=np.float32)  # a1 0.6, A. 0.8
    no_char = sp.csr_matrix((1, 1), dtype=np.float32)
    w = index.answer_weight  # an answer counts a little less than a phrasing
    # The phrasings' mean (proto 1) is (0.6 + 0) / 2; the answer's score 0.8 w.
    index.blends = {"en": Blend(alpha=1.0, proto=1.0, answer=0.5)}
    got = index.scores(query, no_char, ["en"])[0]
    assert got[0] == pytest.approx(0.5 * 0.3 + 0.5 * 0.8 * w)
    assert got[1] == 0.0  # b has no answer: its phrasings' score stands
    index.blends = {"en": Blend(alpha=1.0, proto=1.0, answer=1.0)}
    assert index.scores(query, no_char, ["en"])[0, 0] == pytest.approx(0.8 * w)
    # Leave-one-out: a2 as the query, a1 and the answer left to score FAQ a.
    loo = index.loo_scores([1], ["en"])[0]
    assert loo.tolist() == [0.0, 0.0]
    index.set_vectors(np.stack([e[0], e[0], e[0], e[3]]), sp.csr_matrix((4, 1)))
    index.blends = {"en": Blend(alpha=1.0, proto=1.0, answer=0.5)}
    loo = index.loo_scores([1], ["en"])[0]  # a1 alone is a's mean now
    assert loo[0] == pytest.approx(0.5 * 1.0 + 0.5 * w) and loo[1] == 0.0


def test_faqs_with_one_phrasing_do_not_pick_an_answer_weight() -> None:
    """Left out, a FAQ with one phrasing is its answer alone; the answer weight would win
    leave-one-out only by hiding the other FAQs' questions, so it is not tried there."""
    # Each FAQ's question sits nearer the next FAQ's question (0.6) than its own
    # answer (0.5 x 0.9): weighting answers fixes every miss in leave-one-out.
    n, dim = 6, 20
    faqs = [Faq(f"f{i}", {"en": [f"q{i}"]}, {"en": f"A{i}."}) for i in range(n)]
    index = FaqIndex(faqs, alpha=1.0)  # items: q0, A0., q1, A1., ...
    vecs = np.zeros((2 * n, dim), dtype=np.float32)
    for i in range(n):
        vecs[2 * i, i] = 1.0  # q_i
        vecs[2 * i, (i + 1) % n] = 0.6 / 0.8  # leans on q_{i+1}
        vecs[2 * i + 1, i] = 0.5  # A_i: 0.5 x 1 / |q_i| to its question
        vecs[2 * i + 1, n + i] = 1.0
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    index.set_vectors(vecs, sp.csr_matrix((2 * n, 1), dtype=np.float32))
    q = list(range(0, 2 * n, 2))
    index.blends = {"en": Blend(alpha=1.0, answer=1.0)}
    by_answer = index.loo_scores(q, ["en"] * n).argmax(1)
    index.blends = {"en": Blend(alpha=1.0)}
    plain = index.loo_scores(q, ["en"] * n).argmax(1)
    assert (by_answer == np.arange(n)).all() and not (plain == np.arange(n)).any()
    index.fit_blends()
    assert index.blends["en"].answer == 0.0
