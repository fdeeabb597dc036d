"""Intent classifier: a linear SVM whose scores become probabilities through a softmax
with a temperature fitted on cross-validated (held-out) scores, plus an out-of-scope
threshold chosen on the same held-out predictions.

Why an SVM: on our data and on BANKING77 it is as accurate as logistic regression on
these features and about ten times faster to train (liblinear on sparse rows); the
temperature makes its scores calibrated probabilities (ECE is in the training report)."""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_softmax, softmax
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC

from bot.nlu.types import OUT_OF_SCOPE


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
    """Cross-validated predictions on the training data (for threshold and reports)."""

    gold: np.ndarray
    pred: np.ndarray
    conf: np.ndarray
    temperature: float
    threshold: float
    ece_before: float
    ece_after: float
    report: dict[str, float] = field(default_factory=dict)


class IntentModel:
    def __init__(self, c: float = 0.5) -> None:
        self.c = c
        self.svm: LinearSVC | None = None
        self.labels: list[str] = []
        self.temperature = 1.0
        self.threshold = 0.5

    def fit(self, x: sp.csr_matrix, y: list[str]) -> IntentModel:
        self.svm = fit_svm(x, np.asarray(y), self.c)
        self.labels = [str(c) for c in self.svm.classes_]
        return self

    def predict_proba(self, x: sp.csr_matrix) -> np.ndarray:
        assert self.svm is not None, "not trained"
        return softmax(_scores(self.svm, x) / self.temperature, axis=1)

    def held_out(self, x: sp.csr_matrix, y: list[str], folds: int = 5, seed: int = 0) -> HeldOut:
        """K-fold predictions, then fit temperature and threshold on them (and keep them)."""
        ya = np.asarray(y)
        labels = sorted(set(y))
        idx = {lab: i for i, lab in enumerate(labels)}
        logits = np.zeros((len(y), len(labels)), dtype=np.float64)
        skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        for tr, te in skf.split(np.zeros(len(y)), ya):
            svm = fit_svm(x[tr], ya[tr], self.c)
            cols = [idx[str(c)] for c in svm.classes_]
            logits[np.ix_(te, cols)] = _scores(svm, x[te])
        y_idx = np.array([idx[v] for v in y])
        raw = softmax(logits, axis=1)
        t = fit_temperature(logits, y_idx)
        p = softmax(logits / t, axis=1)
        pred = np.array(labels)[p.argmax(1)]
        conf = p.max(1)
        correct = (pred == ya).astype(float)
        self.temperature = t
        thr = choose_threshold(conf, pred, ya) if OUT_OF_SCOPE in idx else 0.0
        self.threshold = thr
        return HeldOut(
            gold=ya,
            pred=pred,
            conf=conf,
            temperature=t,
            threshold=thr,
            ece_before=expected_calibration_error(
                raw.max(1), (np.array(labels)[raw.argmax(1)] == ya).astype(float)
            ),
            ece_after=expected_calibration_error(conf, correct),
        )
