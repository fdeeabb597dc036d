"""Evaluation: accuracy, macro-F1, per-intent P/R/F1, confusions, out-of-scope recall and the
auto-answer trade-off (precision of what would be answered vs the share answered)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import f1_score, precision_recall_fscore_support

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
