"""FAQ retrieval: nearest neighbours over every phrasing (and the answer) of each FAQ.

An item's similarity to a query is ``alpha * cosine(embedding) + (1 - alpha) *
cosine(char n-grams)``; the char part is what matches Chinese with an English-only
encoder. With a concatenated encoder (``minilm+usem3``) the embedding cosine is a
weighted mean of the parts' cosines. A FAQ's score is ``(1 - proto) * its best item +
proto * the mean over its phrasings in the query's language`` (its prototype), plus
``boost * P(the FAQ's intent)`` from the intent classifier (it breaks ties such as "pay
for my order" between a payment FAQ and an order FAQ: +6 points of leave-one-out hit@1
on our bank).

``alpha``, the part weights and ``proto`` form a language's :class:`Blend`, chosen at
training by leave-one-out hit@1 over the bank's own phrasings. The nearest phrasing alone
is fooled by one stray phrasing of another FAQ; the mean of four is not. On our bank the
blends (one encoder per language, no char n-grams, proto 0.5) took leave-one-out hit@1
from 0.75 to 0.89 (English) and 0.82 to 0.89 (Chinese), and the training report's answer
F1 from 0.761 to 0.846 (docs/nlu.md). Languages with fewer than five phrasings keep the
default blend.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from bot.nlu.data import Faq
from bot.nlu.parts import cosine, present

# Tried per language at training (fit_blends).
ALPHAS = (0.6, 0.8, 1.0)
PROTO_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
# A language gets its own answer threshold with at least this many phrasings and
# unrelated messages in it; others use the threshold chosen over all of them.
MIN_LANGUAGE_ROWS = 20


@dataclass(frozen=True)
class Blend:
    """How the queries of one language are scored."""

    alpha: float = 0.6  # embedding cosine against char n-grams
    parts: tuple[float, ...] = ()  # weight of each encoder part's cosine; () = their mean
    proto: float = 0.0  # a FAQ's prototype against its best item


@dataclass
class FaqItem:
    faq: int  # index into FaqIndex.faqs
    text: str
    language: str
    is_answer: bool


class FaqIndex:
    def __init__(
        self, faqs: list[Faq], alpha: float = 0.6, answer_weight: float = 0.9, boost: float = 0.1
    ) -> None:
        self.faqs = faqs
        self.boost = boost
        # An answer is a weaker paraphrase of its question than a real phrasing.
        self.answer_weight = answer_weight
        self.items: list[FaqItem] = []
        for i, f in enumerate(faqs):
            for lang, qs in f.questions.items():
                self.items += [FaqItem(i, q, lang, False) for q in qs]
            for lang, a in f.answers.items():
                self.items.append(FaqItem(i, a, lang, True))
        # Answer thresholds, chosen at training time (choose_threshold): per language
        # where it had enough examples, else the one over all.
        self.threshold = 0.5
        self.thresholds: dict[str, float] = {}
        # Training only: (phrasings, item vectors) from encoders tuned without those
        # phrasings (bot/nlu/tuning.py); leave-one-out scores each phrasing with those.
        self.views: list[tuple[frozenset[str], np.ndarray]] = []
        # Per language (fit_blends); other languages, and queries of unknown language,
        # get the default.
        self.default = Blend(alpha=alpha)
        self.blends: dict[str, Blend] = {}
        self.parts: list[int] = []  # encoder part widths (several for "a+b")
        self.emb = np.zeros((0, 0), dtype=np.float32)
        self.char = sp.csr_matrix((0, 0), dtype=np.float32)
        self._ran: np.ndarray | None = None  # which parts ran on each item (parts.present)
        self._item_faq = np.array([it.faq for it in self.items], dtype=np.int64)
        self._item_w = np.array(
            [answer_weight if it.is_answer else 1.0 for it in self.items], dtype=np.float32
        )
        self._means = {lang: self._mean_matrix(lang) for lang in self._languages()}

    def _languages(self) -> list[str]:
        return sorted({it.language for it in self.items if not it.is_answer})

    def _mean_matrix(self, lang: str) -> sp.csr_matrix:
        """(n items, n faqs): item scores @ it = each FAQ's mean over its phrasings in
        ``lang`` (over all its phrasings when it has none in ``lang``)."""
        phrasings: list[list[int]] = [[] for _ in self.faqs]
        for i, it in enumerate(self.items):  # one pass, not one per FAQ
            if not it.is_answer:
                phrasings[it.faq].append(i)
        rows, cols, vals = [], [], []
        for f, mine in enumerate(phrasings):
            same = [i for i in mine if self.items[i].language == lang] or mine
            rows += same
            cols += [f] * len(same)
            vals += [1.0 / len(same)] * len(same)
        return sp.csr_matrix(
            (np.array(vals, dtype=np.float32), (rows, cols)),
            shape=(len(self.items), len(self.faqs)),
        )

    @property
    def texts(self) -> list[str]:
        return [it.text for it in self.items]

    def set_vectors(
        self, emb: np.ndarray, char: sp.csr_matrix, parts: list[int] | None = None
    ) -> None:
        """Item vectors; ``parts``: the widths of a concatenated encoder's parts
        (bot/nlu/parts.py)."""
        self.emb = emb.astype(np.float32)
        self.char = sp.csr_matrix(char, dtype=np.float32)
        self.parts = list(parts or [])
        self._ran = present(self.emb, self.parts) if len(self.parts) > 1 else None

    def set_views(self, folds: Sequence[tuple[frozenset[str], Any]]) -> None:
        """Leave-one-out views from (phrasings, encoder not tuned on them) pairs
        (bot/nlu/tuning.fold_encoders): the bank's texts encoded by each; [] clears."""
        self.views = [(texts, enc.encode(self.texts)) for texts, enc in folds]

    def _blends(self, langs: list[str] | None, n: int) -> list[Blend]:
        if langs is None:
            return [self.default] * n
        return [self.blends.get(lang, self.default) for lang in langs]

    def item_scores(
        self,
        emb: np.ndarray,
        char: sp.csr_matrix,
        langs: list[str] | None = None,
        items: np.ndarray | None = None,
    ) -> np.ndarray:
        """(n queries, n items): weighted similarity of each query to each item
        (``items``: other vectors for the items, a leave-one-out view's)."""
        blends = self._blends(langs, emb.shape[0])
        n = len(self.parts)
        w = None
        if n > 1 and any(b.parts for b in blends):
            w = np.array([b.parts or (1.0,) * n for b in blends], dtype=np.float32)
        if items is None:
            e = cosine(emb, self.emb, self.parts, w, self._ran)
        else:
            ran = present(items, self.parts) if len(self.parts) > 1 else None
            e = cosine(emb, items, self.parts, w, ran)
        alpha = np.array([[b.alpha] for b in blends], dtype=np.float32)
        s = alpha * np.asarray(e)
        if (alpha < 1.0).any():
            s = s + (1.0 - alpha) * np.asarray((char @ self.char.T).todense())
        return np.asarray(s * self._item_w, dtype=np.float32)

    def fit_blends(self, min_phrasings: int = 5) -> dict[str, float]:
        """Per language of the bank's phrasings, the blend with the best leave-one-out
        hit@1; returns the hit@1 reached. Many blends tie on a small bank (within a
        phrasing or two): the mean reciprocal rank of the right FAQ breaks the tie, so
        the pick does not hang on the order they are tried in; exact ties go to the
        simpler blend (default alpha, mean of the parts, no prototype)."""
        self.blends = {}
        n = len(self.parts)
        parts: list[tuple[float, ...]] = [()]
        if n > 1:
            parts += [tuple(float(p == q) for q in range(n)) for p in range(n)]
        alphas = [self.default.alpha] + [a for a in ALPHAS if a != self.default.alpha]
        chosen: dict[str, float] = {}
        for lang in self._languages():
            q = [i for i, it in enumerate(self.items) if it.language == lang and not it.is_answer]
            if len(q) < min_phrasings:
                continue
            gold = self._item_faq[q]
            best_key, best = (-1.0, -1.0), self.default
            for alpha, w, proto in itertools.product(alphas, parts, PROTO_WEIGHTS):
                self.blends[lang] = replace(self.default, alpha=alpha, parts=w, proto=proto)
                s = self.loo_scores(q, [lang] * len(q))
                own = s[np.arange(len(q)), gold][:, None]
                rank = 1 + (s > own).sum(1)
                key = (float(np.mean(rank == 1)), float(np.mean(1.0 / rank)))
                if key > (best_key[0], best_key[1] + 1e-9):
                    best_key, best = key, self.blends[lang]
            self.blends[lang] = best
            chosen[lang] = round(best_key[0], 4)
        return chosen

    def scores(
        self, emb: np.ndarray, char: sp.csr_matrix, langs: list[str] | None = None
    ) -> np.ndarray:
        """(n queries, n faqs): each FAQ's score, its best item mixed with its prototype."""
        if not self.items:
            return np.zeros((emb.shape[0], 0), dtype=np.float32)
        s = self.item_scores(emb, char, langs)
        best = self._per_faq(s)
        beta = self._betas(langs, len(s))
        if not beta.any():
            return best
        return ((1 - beta) * best + beta * self._prototypes(s, langs, beta)).astype(np.float32)

    def loo_scores(self, q: list[int], langs: list[str]) -> np.ndarray:
        """(len(q), n faqs): the bank's own phrasings ``q`` as queries (``langs``: theirs),
        each scored against the bank without itself. For choosing weights and thresholds.
        With ``views``, a phrasing and the bank are encoded by the view not tuned on it."""
        if not self.views:
            return self._loo(q, langs, self.emb)
        # The first view holding a phrasing out scores it (a text phrased for two FAQs
        # may be held out by both); one no view holds out, the final vectors.
        embs = [e for _, e in self.views] + [self.emb]
        which = np.array(
            [
                next((k for k, (held, _) in enumerate(self.views) if t in held), len(self.views))
                for t in (self.items[i].text for i in q)
            ]
        )
        out = np.zeros((len(q), len(self.faqs)), dtype=np.float32)
        for k, emb in enumerate(embs):
            mine = np.flatnonzero(which == k)
            if len(mine):
                out[mine] = self._loo([q[j] for j in mine], [langs[j] for j in mine], emb)
        return out

    def _loo(self, q: list[int], langs: list[str], emb: np.ndarray) -> np.ndarray:
        s = self.item_scores(emb[q], self.char[q], langs, None if emb is self.emb else emb)
        rows = np.arange(len(q))
        s[rows, q] = -9.0
        best = self._per_faq(s)
        beta = self._betas(langs, len(q))
        if not beta.any():
            return best
        s[rows, q] = 0.0
        proto = self._prototypes(s, langs, beta)
        # The query counted in its own FAQ's mean with weight w = 1/n, at score 0:
        # rescale to the mean of the other n - 1; with none left, the best item stands.
        own = self._item_faq[q]
        w = np.array([self._means[lang][i, f] for i, f, lang in zip(q, own, langs, strict=True)])
        rest = np.maximum(1.0 - w, 1e-9)  # 0 when the query was its FAQ's only phrasing
        proto[rows, own] = np.where(w < 1.0, proto[rows, own] / rest, best[rows, own])
        return ((1 - beta) * best + beta * proto).astype(np.float32)

    def _betas(self, langs: list[str] | None, n: int) -> np.ndarray:
        """(n, 1) prototype weight of each query's language."""
        return np.array([[b.proto] for b in self._blends(langs, n)], dtype=np.float32)

    def _prototypes(self, s: np.ndarray, langs: list[str] | None, beta: np.ndarray) -> np.ndarray:
        """(n, n faqs) mean item score per FAQ in each query's language (rows whose
        prototype weight is 0 are left at 0)."""
        out = np.zeros((s.shape[0], len(self.faqs)), dtype=np.float32)
        for lang in {x for x, b in zip(langs or [], beta[:, 0], strict=True) if b > 0}:
            rows = [i for i, x in enumerate(langs or []) if x == lang]
            out[rows] = np.asarray(s[rows] @ self._means[lang])
        return out

    def _per_faq(self, s: np.ndarray) -> np.ndarray:
        # Items are built FAQ by FAQ, each FAQ with at least its question: one reduceat
        # over the runs instead of a masked max per FAQ.
        starts = np.flatnonzero(np.diff(self._item_faq, prepend=-1))
        if np.array_equal(self._item_faq[starts], np.arange(len(self.faqs))):
            return np.maximum.reduceat(s, starts, axis=1).astype(np.float32)
        out = np.full((s.shape[0], len(self.faqs)), -1.0, dtype=np.float32)
        for f in range(len(self.faqs)):
            cols = self._item_faq == f
            out[:, f] = s[:, cols].max(1) if cols.any() else -1.0
        return out

    def intent_boost(self, proba: np.ndarray, labels: list[str]) -> np.ndarray:
        """(n, n faqs): boost * P(intent of each FAQ); 0 for FAQs without a known intent."""
        col = {lab: i for i, lab in enumerate(labels)}
        out = np.zeros((proba.shape[0], len(self.faqs)), dtype=np.float32)
        for f, faq in enumerate(self.faqs):
            if faq.intent in col:
                out[:, f] = self.boost * proba[:, col[faq.intent]]
        return out

    def top_k(self, scores: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """Per query, the k best (faq index, score), best first."""
        order = np.argsort(-scores, axis=1)[:, :k]
        return [
            [(int(j), float(row[j])) for j in idx] for row, idx in zip(scores, order, strict=True)
        ]


def choose_threshold(
    index: FaqIndex,
    unrelated_emb: np.ndarray,
    unrelated_char: sp.csr_matrix,
    boost: np.ndarray,
    unrelated_boost: np.ndarray,
    unrelated_langs: list[str] | None = None,
) -> tuple[float, dict[str, float], dict[str, float]]:
    """Answer thresholds from leave-one-out retrieval of the FAQ's own phrasings (each
    queried against the bank without itself; ``boost``: their intent boosts) plus
    messages no FAQ answers (greetings, spam, out of scope): the score maximising F1 of
    "answered with the right FAQ". Returns the threshold over every message, one per
    language that has enough of both (the encoders' scores sit at different heights per
    language: one number over both cost Chinese a tenth of its answers once the English
    encoder was tuned), and the figures at those thresholds."""
    q_items = [i for i, it in enumerate(index.items) if not it.is_answer]
    langs = np.array([index.items[i].language for i in q_items], dtype=object)
    per_faq = index.loo_scores(q_items, list(langs)) + boost
    picked = per_faq.argmax(1)
    pos_s = per_faq[np.arange(len(q_items)), picked]
    pos_ok = picked == index._item_faq[q_items]
    neg = (index.scores(unrelated_emb, unrelated_char, unrelated_langs) + unrelated_boost).max(1)
    neg_langs = np.array(unrelated_langs or [""] * len(neg), dtype=object)
    overall = _best_f1(pos_s, pos_ok, neg)
    by_language: dict[str, float] = {}
    for lang in sorted(set(langs)):
        mine, theirs = langs == lang, neg_langs == lang
        if min(mine.sum(), theirs.sum()) >= MIN_LANGUAGE_ROWS:
            by_language[lang] = _best_f1(pos_s[mine], pos_ok[mine], neg[theirs])
    # The figures with each message held to its own language's threshold.
    pos_t = np.array([by_language.get(x, overall) for x in langs])
    neg_t = np.array([by_language.get(x, overall) for x in neg_langs])
    acc, neg_acc = pos_s >= pos_t, neg >= neg_t
    tp = int((pos_ok & acc).sum())
    stats = {
        "threshold": overall,
        **{f"threshold_{lang}": t for lang, t in by_language.items()},
        "f1": round(_f1(tp, int((~pos_ok & acc).sum() + neg_acc.sum()), len(pos_ok)), 4),
        "recall": round(tp / max(1, len(pos_ok)), 4),
        "precision": round(tp / max(1, int(acc.sum() + neg_acc.sum())), 4),
        "unrelated_answered": round(float(neg_acc.mean()) if len(neg) else 0.0, 4),
    }
    return overall, by_language, stats


def _f1(tp: int, fp: int, n_pos: int) -> float:
    # Every phrasing should get its FAQ: a wrong answer is a false positive and a false
    # negative, no answer a false negative; an unrelated answer a false positive.
    return 2 * tp / max(1, 2 * tp + fp + (n_pos - tp))


def _best_f1(pos_s: np.ndarray, pos_ok: np.ndarray, neg: np.ndarray) -> float:
    """The threshold (0.20-0.94, step 0.01) with the best F1; the lowest of equals."""
    best_t, best_f1 = 0.5, -1.0
    for t in np.round(np.arange(0.2, 0.95, 0.01), 2):
        tp = int((pos_ok & (pos_s >= t)).sum())
        fp = int((~pos_ok & (pos_s >= t)).sum() + (neg >= t).sum())
        f1 = _f1(tp, fp, len(pos_ok))
        if f1 > best_f1 + 1e-9:
            best_t, best_f1 = float(t), f1
    return best_t
