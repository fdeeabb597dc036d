"""Evaluation: accuracy, macro-F1, per-intent P/R/F1, confusions, out-of-scope recall and the
auto-answer trade-off (precision of what would be answered vs the share answered)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import f1_score, precision_recall_fscore_support

from bot.nlu.data import NO_FAQ
from bot.nlu.types import OUT_OF_SCOPE

TRADEOFF_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


@dataclass
class EvalReport:
    n: int
    threshold: float
    accuracy: float
    macro_f1: float
    per_intent: dict[str, dict[str, float]]
    confused: list[tuple[str, str, int]]  # (gold, predicted, count), most frequent first
    oos_recall: float | None  # None when the test data has no out_of_scope rows
    tradeoff: list[dict[str, float]] = field(default_factory=list)
    # The most confident mistakes first (often a mislabelled example or two intents
    # that overlap): text, gold, predicted, confidence. Only when asked for (--errors).
    errors: list[dict[str, Any]] = field(default_factory=list)


def evaluate(
    gold: list[str],
    top: list[str],
    conf: list[float],
    threshold: float,
    texts: list[str] | None = None,
    errors: int = 0,
) -> EvalReport:
    """``top``: the classifier's best intent before the threshold; ``conf``: its probability;
    ``errors``: how many of the wrong predictions on ``texts`` to list."""
    g = np.asarray(gold)
    t = np.asarray(top)
    c = np.asarray(conf, dtype=float)
    pred = np.where(c >= threshold, t, OUT_OF_SCOPE)
    labels = sorted(set(g) | set(pred))
    p, r, f, s = precision_recall_fscore_support(g, pred, labels=labels, zero_division=0)
    per = {
        lab: {
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "support": int(s[i]),
        }
        for i, lab in enumerate(labels)
    }
    gold_labels = sorted(set(g))
    confused = Counter((a, b) for a, b in zip(g, pred, strict=True) if a != b).most_common(10)
    oos = g == OUT_OF_SCOPE
    return EvalReport(
        n=len(g),
        threshold=threshold,
        accuracy=float(np.mean(pred == g)) if len(g) else 0.0,
        macro_f1=float(f1_score(g, pred, labels=gold_labels, average="macro", zero_division=0)),
        per_intent=per,
        confused=[(a, b, n) for (a, b), n in confused],
        oos_recall=float(np.mean(pred[oos] == OUT_OF_SCOPE)) if oos.any() else None,
        tradeoff=tradeoff(g, t, c, sorted({*TRADEOFF_GRID, round(threshold, 4)})),
        errors=_most_confident_errors(texts or [], g, pred, t, c, errors),
    )


def _most_certain(wrong: np.ndarray, certainty: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``wrong`` rows, the ``k`` most certain first (a stable sort: equal
    certainty keeps the data's order)."""
    idx = np.flatnonzero(wrong)
    return idx[np.argsort(-certainty[idx], kind="stable")][:k]


def _most_confident_errors(
    texts: list[str], gold: np.ndarray, pred: np.ndarray, top: np.ndarray, conf: np.ndarray, k: int
) -> list[dict[str, Any]]:
    order = _most_certain(gold != pred, conf, k if texts else 0)
    return [
        {
            "text": texts[i],
            "gold": str(gold[i]),
            "predicted": str(pred[i]),  # out_of_scope when below the threshold
            "best": str(top[i]),  # the best intent, whose probability is the confidence
            "confidence": round(float(conf[i]), 4),
        }
        for i in order
    ]


def tradeoff(
    gold: np.ndarray, top: np.ndarray, conf: np.ndarray, grid: list[float]
) -> list[dict[str, float]]:
    """Per threshold: coverage = share of in-scope messages answered automatically,
    precision = share of answered messages (in scope or not) whose intent is right."""
    in_scope = gold != OUT_OF_SCOPE
    rows = []
    for thr in grid:
        answered = (conf >= thr) & (top != OUT_OF_SCOPE)
        rows.append(
            {
                "threshold": float(thr),
                "coverage": float(answered[in_scope].mean()) if in_scope.any() else 0.0,
                "precision": float(np.mean(top[answered] == gold[answered]))
                if answered.any()
                else 1.0,
                "answered": int(answered.sum()),
            }
        )
    return rows


NEGATIVITY_GRID = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


@dataclass
class NegativityReport:
    """The negativity detector on labelled posts (negative | neutral | positive): the
    question it answers is "negative or not", so neutral and positive both count as not."""

    n: int
    threshold: float
    precision: float
    recall: float
    f1: float
    accuracy: float
    flagged: dict[str, float]  # per label: share scored negative (for negative: recall)
    # The answer guard (NluResult.calm), and per label the share at or over it: posts kept
    # from a canned FAQ answer (for negative posts, the more the better).
    answer_guard: float
    guarded: dict[str, float]
    per_language: dict[str, dict[str, float]]  # precision/recall/F1 per detected language
    tradeoff: list[dict[str, float]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)  # most confident first


def _prf(gold: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    p, r, f, _ = precision_recall_fscore_support(
        gold, pred, average="binary", pos_label=True, zero_division=0
    )
    return {"precision": float(p), "recall": float(r), "f1": float(f), "n": len(gold)}


def evaluate_negativity(
    labels: list[str],
    scores: list[float],
    threshold: float,
    languages: list[str],
    texts: list[str] | None = None,
    errors: int = 0,
    answer_guard: float = 1.0,
) -> NegativityReport:
    lab = np.asarray(labels)
    s = np.asarray(scores, dtype=float)
    gold = lab == "negative"
    pred = s >= threshold
    overall = _prf(gold, pred)
    langs = np.asarray(languages)
    # Certainty of a mistake: how far the score sat on the wrong side.
    order = _most_certain(gold != pred, np.abs(s - threshold), errors if texts else 0)
    return NegativityReport(
        n=len(lab),
        threshold=threshold,
        precision=overall["precision"],
        recall=overall["recall"],
        f1=overall["f1"],
        accuracy=float(np.mean(gold == pred)) if len(lab) else 0.0,
        flagged={str(x): float(np.mean(pred[lab == x])) for x in sorted(set(labels))},
        answer_guard=answer_guard,
        guarded={str(x): float(np.mean(s[lab == x] >= answer_guard)) for x in sorted(set(labels))},
        per_language={
            str(lg): _prf(gold[langs == lg], pred[langs == lg]) for lg in sorted(set(languages))
        },
        tradeoff=[
            {"threshold": t} | _prf(gold, s >= t)
            for t in sorted({*NEGATIVITY_GRID, round(threshold, 4)})
        ],
        errors=[
            {"text": (texts or [])[i], "label": str(lab[i]), "negativity": round(float(s[i]), 4)}
            for i in order
        ],
    )


FAQ_GRID = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


@dataclass
class FaqReport:
    """FAQ retrieval on messages labelled with the FAQ that answers them, or with none
    (``NO_FAQ``). What the retrieval layer would do: the worker also asks the intent
    (a complaint is never answered from the FAQ), so this is an upper bound on answers."""

    n: int  # messages some FAQ answers
    unrelated: int  # messages no FAQ answers
    threshold: float  # for languages without their own
    thresholds: dict[str, float]  # per language, where training chose one
    hit1: float  # the best FAQ is the right one (whatever its score)
    hit_k: float  # the right one is among the top k returned
    k: int
    coverage: float  # share of answerable messages answered (best score >= threshold)
    precision: float  # share of answered messages (unrelated ones included) answered right
    unrelated_answered: float  # share of unrelated messages answered anyway
    per_language: dict[str, dict[str, float]]
    tradeoff: list[dict[str, float]] = field(default_factory=list)  # one threshold for all
    # The same per language: what nlu.faq_thresholds would do for that language alone.
    tradeoff_by_language: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)  # wrong answers, surest first


def _faq_point(
    gold: np.ndarray, top: np.ndarray, score: np.ndarray, thr: float | np.ndarray
) -> dict[str, float]:
    answerable = gold != NO_FAQ
    answered = score >= thr
    right = answered & (top == gold)
    return {
        "coverage": float(answered[answerable].mean()) if answerable.any() else 0.0,
        "precision": float(right.sum() / answered.sum()) if answered.any() else 1.0,
        "unrelated_answered": float(answered[~answerable].mean()) if (~answerable).any() else 0.0,
    }


def _faq_tradeoff(
    gold: np.ndarray, top: np.ndarray, score: np.ndarray, configured: float
) -> list[dict[str, float]]:
    """One threshold for all the messages given: the grid, and the configured point."""
    return [
        {"threshold": t} | _faq_point(gold, top, score, t)
        for t in sorted({*FAQ_GRID, round(configured, 4)})
    ]


def evaluate_faq(
    gold: list[str],
    ranked: list[list[tuple[str, float]]],
    threshold: float,
    languages: list[str],
    texts: list[str] | None = None,
    errors: int = 0,
    by_language: dict[str, float] | None = None,
) -> FaqReport:
    """``ranked``: per message, the FAQ hits (id, score) best first, as parse returns them;
    a message is answered when its best score reaches its language's threshold
    (``by_language``, else ``threshold``)."""
    by_language = by_language or {}
    g = np.asarray(gold, dtype=object)
    top = np.array([r[0][0] if r else NO_FAQ for r in ranked], dtype=object)
    score = np.array([r[0][1] if r else -1.0 for r in ranked], dtype=float)
    in_k = np.array([any(f == x for f, _ in r) for x, r in zip(gold, ranked, strict=True)])
    answerable = g != NO_FAQ
    langs = np.asarray(languages)
    thr = np.array([by_language.get(x, threshold) for x in languages], dtype=float)
    wrong = (score >= thr) & (top != g)

    def summary(rows: np.ndarray) -> dict[str, float]:
        a = rows & answerable
        return {
            "hit1": float(np.mean(top[a] == g[a])) if a.any() else 0.0,
            **_faq_point(g[rows], top[rows], score[rows], thr[rows]),
            "n": int(a.sum()),
        }

    overall = summary(np.ones(len(g), dtype=bool))
    masks = {str(lg): langs == lg for lg in sorted(set(languages))}
    return FaqReport(
        n=int(answerable.sum()),
        unrelated=int((~answerable).sum()),
        threshold=threshold,
        thresholds=dict(by_language),
        hit1=overall["hit1"],
        hit_k=float(in_k[answerable].mean()) if answerable.any() else 0.0,
        k=max((len(r) for r in ranked), default=0),
        coverage=overall["coverage"],
        precision=overall["precision"],
        unrelated_answered=overall["unrelated_answered"],
        per_language={
            lg: summary(m) | {"threshold": by_language.get(lg, threshold)}
            for lg, m in masks.items()
        },
        tradeoff=_faq_tradeoff(g, top, score, threshold),
        tradeoff_by_language={
            lg: _faq_tradeoff(g[m], top[m], score[m], by_language.get(lg, threshold))
            for lg, m in masks.items()
        },
        errors=[
            {
                "text": (texts or [])[i],
                "gold": str(g[i]),
                "answered": str(top[i]),
                "score": round(float(score[i]), 4),
            }
            for i in _most_certain(wrong, score, errors if texts else 0)
        ],
    )
