"""Intent classifier: a linear SVM whose scores become probabilities through a softmax
with a temperature fitted on cross-validated (held-out) scores, plus an out-of-scope
threshold chosen on the same held-out predictions.

Why an SVM: on our data and on BANKING77 it is as accurate as logistic regression on
these features and about ten times faster to train (liblinear on sparse rows); the
temperature makes its scores calibrated probabilities (ECE is in the training report)."""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_softmax, softmax
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC

from bot.nlu.confidence import ConfidenceModel, Neighbours, signals
from bot.nlu.types import OUT_OF_SCOPE

# Held-out rows that are enough for the temperature, the threshold and the confidence
# model (about ten parameters in all). Past it, training runs fewer of its folds (never
# fewer than two): BANKING77's 10k rows run two of five. BANKING77 with intents held out
# as out-of-scope (8,562 rows), three seeds, same vectors: precision at 80 % coverage
# 97.79 % with two folds, 97.81 % with three, 97.78 % with all five; the fit took 14,
# 21 and 28 s (docs/benchmarks.md, session 15).
HELD_OUT_ROWS = 3000


def make_lr(c: float) -> LogisticRegression:
    """Binary logistic regression (negativity): liblinear is fast on sparse rows."""
    return LogisticRegression(C=c, solver="liblinear", class_weight="balanced")


def fit_lr(x: sp.csr_matrix, y: np.ndarray, c: float) -> LogisticRegression:
    return make_lr(c).fit(x, y)


def fit_svm(x: sp.csr_matrix, y: np.ndarray, c: float) -> LinearSVC:
    with warnings.catch_warnings():
        # liblinear's iteration cap rarely binds; when it does the ranking is still fine.
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LinearSVC(C=c, max_iter=5000).fit(x, y)


def fit_temperature(logits: np.ndarray, y_idx: np.ndarray) -> float:
    """The softmax temperature minimising held-out negative log-likelihood."""

    def nll(log_t: float) -> float:
        lp = log_softmax(logits / np.exp(log_t), axis=1)
        return float(-lp[np.arange(len(y_idx)), y_idx].mean())

    return float(np.exp(minimize_scalar(nll, bounds=(-3, 3), method="bounded").x))


def expected_calibration_error(conf: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            ece += m.mean() * abs(conf[m].mean() - correct[m].mean())
    return float(ece)


def choose_threshold(
    conf: np.ndarray, pred: np.ndarray, gold: np.ndarray, oos_label: str = OUT_OF_SCOPE
) -> float:
    """Threshold maximising held-out accuracy when low-confidence predictions become
    out_of_scope; ties go to the middle of the best plateau (robust to noise)."""
    grid = np.round(np.arange(0.05, 0.951, 0.01), 2)
    accs = np.array([np.mean(np.where(conf >= t, pred, oos_label) == gold) for t in grid])
    best = np.flatnonzero(accs >= accs.max() - 1e-9)
    return float(grid[best[len(best) // 2]])


def _linear(model: LinearSVC | LogisticRegression, x: sp.csr_matrix) -> np.ndarray:
    """``model.decision_function(x)`` as a (n, 1 or n classes) array, without its per-call
    input checks (a fifth of a millisecond per message)."""
    return np.asarray(x @ model.coef_.T) + model.intercept_


def _scores(model: LinearSVC, x: sp.csr_matrix) -> np.ndarray:
    d = _linear(model, x)
    return np.column_stack([-d[:, 0], d[:, 0]]) if d.shape[1] == 1 else d  # two classes


def positive_proba(model: LogisticRegression, x: sp.csr_matrix) -> np.ndarray:
    """P(class 1) of a binary logistic regression: ``model.predict_proba(x)[:, 1]``."""
    return expit(_linear(model, x)[:, 0])


@dataclass
class HeldOut:
    """Cross-validated predictions on the rows the folds held out (for threshold and
    reports).

    ``gold``/``pred``/``conf`` cover the rows whose intent the fold's model was taught;
    ``unseen_answered`` is the share of rows of the intents left out of their fold's
    training that the shipped confidence would still answer at ``threshold``
    (``unseen_answered_softmax``: the same with the softmax probability and the threshold
    it would choose)."""

    gold: np.ndarray
    pred: np.ndarray
    conf: np.ndarray
    temperature: float
    threshold: float
    ece_before: float
    ece_after: float
    unseen_answered: float = 0.0
    unseen_answered_softmax: float = 0.0
    folds: tuple[int, int] = (0, 0)  # (folds run, folds): fewer run on large data
    report: dict[str, float] = field(default_factory=dict)


def _intent_groups(labels: list[str], folds: int, seed: int) -> list[set[str]]:
    """Fold k leaves group k's intents out of training (never out_of_scope, and never so
    many that fewer than two intents remain)."""
    droppable = [lab for lab in labels if lab != OUT_OF_SCOPE]
    order = np.random.default_rng(seed).permutation(len(droppable))
    groups = [{droppable[i] for i in part} for part in np.array_split(order, folds)]
    return [g if len(labels) - len(g) >= 2 else set() for g in groups]


class IntentModel:
    def __init__(self, c: float = 0.5) -> None:
        self.c = c
        self.svm: LinearSVC | None = None
        self.labels: list[str] = []
        self.temperature = 1.0
        self.threshold = 0.5
        self.neighbours: Neighbours | None = None
        self.confidence: ConfidenceModel | None = None  # None: the softmax probability

    def fit(self, x: sp.csr_matrix, y: list[str]) -> IntentModel:
        """The SVM alone (``predict_proba`` at temperature 1); ``train`` builds the whole
        model."""
        self.svm = fit_svm(x, np.asarray(y), self.c)
        self.labels = [str(c) for c in self.svm.classes_]
        return self

    def _z(self, x: sp.csr_matrix) -> np.ndarray:
        assert self.svm is not None, "not trained"
        return _scores(self.svm, x) / self.temperature

    def predict_proba(self, x: sp.csr_matrix) -> np.ndarray:
        return softmax(self._z(x), axis=1)

    def predict(self, x: sp.csr_matrix, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(intent probabilities, confidence that the top intent is right)."""
        z = self._z(x)
        p = softmax(z, axis=1)
        if self.confidence is None:
            return p, p.max(1)
        if self.neighbours is None:
            raise RuntimeError("IntentModel.train was given no sentence vectors")
        return p, self.confidence.predict(signals(z, emb, self.neighbours))

    def train(
        self,
        x: sp.csr_matrix,
        y: list[str],
        emb: np.ndarray | None = None,
        parts: list[int] | None = None,
        folds: int = 5,
        seed: int = 0,
        progress: Callable[[float], None] = lambda _: None,
        held_out_rows: int = HELD_OUT_ROWS,
    ) -> HeldOut:
        """The final model, with temperature, confidence model and threshold taken from
        K-fold held-out predictions (returned for the training report).

        Each fold's model is also kept from one group of intents, so the held-out rows of
        those intents show what a message about something never taught looks like; the
        confidence model learns from both kinds of rows. It needs ``emb`` (the examples'
        sentence vectors; ``parts``: the widths of the encoder's parts, when several);
        without it the confidence is the softmax probability. On data with more than
        ``held_out_rows`` rows only as many folds run as hold that many out (at least two).
        ``progress(share)`` is called as the fits finish (they take most of the time)."""
        y_all = np.asarray(y)
        labels = sorted(set(y))
        idx = {lab: i for i, lab in enumerate(labels)}
        y_idx = np.array([idx[v] for v in y])
        groups = _intent_groups(labels, folds, seed) if emb is not None else [set()] * folds
        skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        # On large data a few folds hold out enough rows (HELD_OUT_ROWS); each fold model
        # keeps its size either way.
        runs = min(folds, max(2, -(-held_out_rows * folds // len(y))))
        splits = []  # per fold run: its training rows, its held-out rows
        for (tr, te), left_out in list(
            zip(skf.split(np.zeros(len(y)), y_all), groups, strict=True)
        )[:runs]:
            splits.append((tr[~np.isin(y_all[tr], list(left_out))], te))
        # The held-out arrays below cover the rows ``held``; ``pos`` maps a row to them.
        held = np.sort(np.concatenate([te for _, te in splits]))
        pos = np.full(len(y), -1)
        pos[held] = np.arange(len(held))
        ya = y_all[held]
        logits = np.full((len(held), len(labels)), -np.inf)
        unseen = np.zeros(len(held), dtype=bool)
        for (_, te), left_out in zip(splits, groups[:runs], strict=True):
            unseen[pos[te]] = np.isin(y_all[te], list(left_out))
        # liblinear releases the GIL: the fits run side by side, the final one (the
        # longest) first, so no core idles at the end (BANKING77 with all five folds, 2
        # cores: 50.6 s with the final fit after the folds, 42.9 s with all six together).
        finished = itertools.count(1)

        def fit(rows: np.ndarray | None) -> LinearSVC:
            svm = (
                fit_svm(x, y_all, self.c) if rows is None else fit_svm(x[rows], y_all[rows], self.c)
            )
            progress(next(finished) / (runs + 1))  # count() hands out values atomically
            return svm

        with ThreadPoolExecutor(min(runs + 1, os.cpu_count() or 1)) as pool:
            final = pool.submit(fit, None)
            svms = list(pool.map(lambda s: fit(s[0]), splits))
            self.svm = final.result()
        self.labels = labels
        if emb is not None:
            self.neighbours = Neighbours(emb, y_idx, len(labels), parts)
        for svm, (_, te) in zip(svms, splits, strict=True):
            cols = [idx[str(c)] for c in svm.classes_]
            logits[np.ix_(pos[te], cols)] = _scores(svm, x[te])
        seen = ~unseen
        t = fit_temperature(logits[seen], y_idx[held][seen])
        self.temperature = t
        z = logits / t
        p = softmax(z, axis=1)
        pred = np.array(labels)[p.argmax(1)]
        soft = p.max(1)
        correct = pred == ya
        conf = soft
        if emb is not None:
            conf, self.confidence = _fit_confidence(
                z,
                emb,
                y_idx,
                len(labels),
                parts,
                [(tr, pos[te]) for tr, te in splits],
                held,
                correct,
            )
        has_oos = OUT_OF_SCOPE in idx
        thr = choose_threshold(conf[seen], pred[seen], ya[seen]) if has_oos else 0.0
        soft_thr = choose_threshold(soft[seen], pred[seen], ya[seen]) if has_oos else 0.0
        self.threshold = thr
        raw = softmax(logits, axis=1)
        return HeldOut(
            gold=ya[seen],
            pred=pred[seen],
            conf=conf[seen],
            temperature=t,
            threshold=thr,
            folds=(runs, folds),
            # Both over every held-out row, the left-out intents' too: what the
            # confidence is calibrated for (a raw SVM softmax is far from calibrated).
            ece_before=expected_calibration_error(
                raw.max(1), (np.array(labels)[raw.argmax(1)] == ya).astype(float)
            ),
            ece_after=expected_calibration_error(conf, correct.astype(float)),
            unseen_answered=float(np.mean(conf[unseen] >= thr)) if unseen.any() else 0.0,
            unseen_answered_softmax=float(np.mean(soft[unseen] >= soft_thr))
            if unseen.any()
            else 0.0,
        )


def _fit_confidence(
    z: np.ndarray,
    emb: np.ndarray,
    y_idx: np.ndarray,
    n_labels: int,
    parts: list[int] | None,
    splits: list[tuple[np.ndarray, np.ndarray]],
    held: np.ndarray,
    correct: np.ndarray,
) -> tuple[np.ndarray, ConfidenceModel | None]:
    """Held-out confidences (each fold scored by a model fitted on the other folds) and
    the confidence model fitted on all held-out rows; the softmax where one cannot be
    fitted. ``z`` and ``correct`` cover the rows ``held`` (of ``emb``); each split is (its
    training rows in ``emb``, its held-out rows in ``z``)."""
    # Each fold's signals come from its own training rows' neighbours, as at parse time.
    blocks = [
        signals(z[te], emb[held[te]], Neighbours(emb[tr], y_idx[tr], n_labels, parts))
        for tr, te in splits
    ]
    order = np.concatenate([te for _, te in splits])
    f = np.vstack(blocks)[np.argsort(order)]  # back in row order
    soft = softmax(z, axis=1).max(1)
    if not ConfidenceModel.can_fit(correct):
        return soft, None
    conf = soft.copy()
    for _, te in splits:
        rest = np.ones(len(z), dtype=bool)
        rest[te] = False
        if ConfidenceModel.can_fit(correct[rest]):
            conf[te] = ConfidenceModel(f[rest], correct[rest]).predict(f[te])
    return conf, ConfidenceModel(f, correct)
