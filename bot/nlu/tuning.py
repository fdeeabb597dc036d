"""Adapting the sentence encoder to the FAQ bank before anything is encoded.

A frozen encoder ranks FAQs by how alike two questions *look*; customers word the same
need differently from the bank's phrasings. Fine-tuning MiniLM on the bank alone, each
phrasing pulled towards its own answer (and each answer sentence towards its question)
with the other FAQs in the batch as negatives, teaches it which words matter for which
answer. It uses only what the brand writes: no customer messages, no labels beyond the
bank. On covidfaq's bank (one question per FAQ) zero-shot hit@1 went from 0.47 to about
0.63 (docs/benchmarks.md, session 19).

The blend weights and the answer threshold are chosen by leave-one-out over the bank's
phrasings (bot/nlu/faq.py), and a model tuned on a phrasing scores it too well: with
every phrasing tuned on, leave-one-out hit@1 read 0.98 for English where new questions
got 0.94, and the threshold it chose answered 8 % of unrelated English questions. So
two more models are tuned, each without half of every FAQ's phrasings (alternating
within each FAQ, :func:`held_out`), and each phrasing is scored, for leave-one-out
only, by the model that never saw it (:class:`View`). That model has seen the FAQ's
answer and its other phrasings, as the final model has when a new question comes in.
(Holding out whole FAQs instead made leave-one-out a zero-shot test and undervalued
what tuning teaches, the way from a question to its answer: session 20.) They are not
kept: the vectors they give the bank's texts are.

The tuned weights live in the artifact (``<part>/tuned``) with those vectors, and are
reused as long as the pairs and the recipe are the same; the ONNX export is made from
them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from bot.config import NluConfig
from bot.nlu.data import Faq
from bot.nlu.torch_threads import torch_threads

log = structlog.get_logger(__name__)

# The recipe: in-batch negatives at sentence-transformers' scale (20) and batch (32);
# the word embeddings stay frozen (a fifth faster a step, no worse). Epochs (the default
# of nlu.faq_tuning_epochs) and rate were chosen on a zero-shot copy of our bank: 3 at
# 6e-5 matched or beat 5 at 4e-5 and 10 at 2e-5, in a third of the time
# (docs/benchmarks.md, session 19).
EPOCHS = NluConfig.faq_tuning_epochs
LR = 6e-5
BATCH = 32
SCALE = 20.0
SEED = 0
MAX_TOKENS = 128
FOLDS = 2
FOLD_SCHEME = "phrasings"  # in the tuned id: views made another way are retuned
TUNED = "tuned"  # folder inside an encoder part's cache dir
_ID_FILE = "tuned.id"
_VIEWS_FILE = "views.npz"
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s*")
_MIN_SENTENCE = 12  # characters: "Thanks!" is not a sentence that says which FAQ it is

Pair = tuple[str, str, int]  # (anchor, positive, faq index): same index = not a negative
Progress = Callable[[float], None]


def faq_pairs(faqs: Sequence[Faq], languages: frozenset[str] | None) -> list[Pair]:
    """Each phrasing with its answer in the same language, and each answer sentence
    with the FAQ's first phrasing; only ``languages`` (None: all)."""
    pairs: list[Pair] = []
    for i, faq in enumerate(faqs):
        for lang, questions in sorted(faq.questions.items()):
            if languages is not None and lang not in languages:
                continue
            answer = faq.answers.get(lang)
            if not answer or not questions:
                continue
            pairs += [(q, answer, i) for q in questions]
            sentences = [s.strip() for s in _SENTENCE_END.split(answer) if s.strip()]
            if len(sentences) > 1:  # a one-sentence answer is already paired above
                pairs += [(s, questions[0], i) for s in sentences if len(s) >= _MIN_SENTENCE]
    return pairs


def held_out(faqs: Sequence[Faq], fold: int) -> frozenset[str]:
    """The phrasings fold ``fold``'s model is tuned without: of each FAQ's phrasings in a
    language, every other one, starting at the FAQ's index (so FAQs with one phrasing
    split between the folds)."""
    return frozenset(
        q
        for i, faq in enumerate(faqs)
        for questions in faq.questions.values()
        for j, q in enumerate(questions)
        if (i + j) % FOLDS == fold
    )


def _texts(pairs: list[Pair]) -> list[str]:
    return sorted({a for a, _, _ in pairs} | {p for _, p, _ in pairs})


class LookupEncoder:
    """A fold model's vectors for the bank's texts; other texts (a phrasing the language
    detector puts in another language than the bank does) go to ``fallback``."""

    reentrant = False

    def __init__(self, vectors: dict[str, np.ndarray], fallback: Any) -> None:
        self.id = f"{fallback.id}/fold"
        self.dim = fallback.dim
        self.calls = 0
        self._vectors = vectors
        self._fallback = fallback
        self._lock = threading.Lock()

    def encode(self, texts: list[str], languages: Sequence[str] | None = None) -> np.ndarray:
        with self._lock:
            self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        other = [i for i, t in enumerate(texts) if t not in self._vectors]
        for i, t in enumerate(texts):
            if t in self._vectors:
                out[i] = self._vectors[t]
        if other:
            langs = [languages[i] for i in other] if languages is not None else None
            out[other] = self._fallback.encode([texts[i] for i in other], langs)
        return out


@dataclass
class View:
    """For leave-one-out: the phrasings left out of the tuning of fold ``fold``'s model
    (:func:`held_out`, the same for every part), which gave ``vectors`` for encoder part
    ``part``."""

    fold: int
    texts: frozenset[str]
    part: int
    vectors: dict[str, np.ndarray]


@dataclass
class FaqTuning:
    """What to tune on and how long; ``epochs == 0`` turns tuning off. ``views`` is
    filled by ``load_encoder`` for each part it tuned."""

    faqs: Sequence[Faq]
    epochs: int = EPOCHS
    progress: Progress = lambda _: None
    views: list[View] = field(default_factory=list)

    def tuned_id(self, model_id: str, pairs: list[Pair]) -> str:
        recipe = [self.epochs, LR, BATCH, SCALE, SEED, MAX_TOKENS, FOLDS, FOLD_SCHEME, pairs]
        digest = hashlib.sha256(json.dumps(recipe, ensure_ascii=False).encode()).hexdigest()
        return f"{model_id}/faq-{digest[:12]}"

    def apply(
        self,
        model_path: Path,
        model_id: str,
        cache_dir: Path,
        languages: frozenset[str] | None,
        part: int = 0,
    ) -> tuple[Path, str]:
        """The model to encode with: ``cache_dir/tuned`` (tuned now, or kept from an
        earlier training on the same pairs), or the base model when there is nothing to
        tune on. ``part``: the encoder part it is (for the views)."""
        pairs = faq_pairs(self.faqs, languages)
        if self.epochs <= 0 or len({i for *_, i in pairs}) < 2 * FOLDS:  # too few negatives
            shutil.rmtree(cache_dir / TUNED, ignore_errors=True)  # one an older artifact left
            return model_path, model_id
        want = self.tuned_id(model_id, pairs)
        out = cache_dir / TUNED
        if _read_id(out) != want:
            shutil.rmtree(out, ignore_errors=True)
            log.info("nlu.encoder.tuning", model=model_id, pairs=len(pairs), epochs=self.epochs)
            tmp = cache_dir / (TUNED + ".partial")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(model_path, tmp)  # tokenizer, pooling and ST config as they were
            # The final model sees every pair; each fold model those without its
            # held-out phrasings.
            gone = [held_out(self.faqs, k) for k in range(FOLDS)]
            runs = [pairs] + [
                [p for p in pairs if p[0] not in gone[k] and p[1] not in gone[k]]
                for k in range(FOLDS)
            ]
            total = sum(len(r) for r in runs)
            done = 0.0
            texts = _texts(pairs)
            views = {}
            # Pinned: the tuned weights depend on torch's thread count (on one thread
            # they came out different from a fresh process's, and took 1.6x as long).
            with torch_threads(os.cpu_count() or 1):
                for k, run in enumerate(runs):
                    share = len(run) / total

                    def progress(f: float, base: float = done, share: float = share) -> None:
                        self.progress(base + share * f)

                    model = fine_tune(model_path, run, self.epochs, progress)
                    if k == 0:
                        model.save(tmp)
                    else:
                        views[f"fold{k - 1}"] = model.encode(texts)
                    done += share
            arrays: dict[str, Any] = {"texts": np.array(texts), **views}
            np.savez(tmp / _VIEWS_FILE, **arrays)
            (tmp / _ID_FILE).write_text(want)
            tmp.rename(out)
        self.progress(1.0)
        with np.load(out / _VIEWS_FILE, allow_pickle=False) as z:
            texts = z["texts"].tolist()
            self.views += [
                View(
                    k,
                    held_out(self.faqs, k),
                    part,
                    dict(zip(texts, z[f"fold{k}"], strict=True)),
                )
                for k in range(FOLDS)
            ]
        return out, want


def tuned_model(cache_dir: Path) -> tuple[Path, str] | None:
    """The tuned model kept in an artifact's encoder part, if there is one."""
    out = cache_dir / TUNED
    found = _read_id(out)
    return (out, found) if found else None


def _read_id(folder: Path) -> str | None:
    try:
        return (folder / _ID_FILE).read_text()
    except OSError:
        return None


class _Tuned:
    """A fine-tuned transformer in memory: save it, or encode with it (mean pooling)."""

    def __init__(self, body: Any, tok: Any) -> None:
        self.body, self.tok = body, tok

    def save(self, out_dir: Path) -> None:
        self.body.save_pretrained(str(out_dir))

    def encode(self, texts: list[str]) -> np.ndarray:
        import torch

        self.body.eval()
        out = []
        with torch.no_grad():
            for s in range(0, len(texts), 64):
                out.append(_embed(self.body, self.tok, texts[s : s + 64]).numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def _embed(body: Any, tok: Any, texts: list[str]) -> Any:
    import torch

    enc = tok(texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
    hidden = body(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    return torch.nn.functional.normalize(pooled, dim=-1)


def fine_tune(model_path: Path, pairs: list[Pair], epochs: int, progress: Progress) -> _Tuned:
    """In-batch-negatives fine-tuning of a mean-pooling transformer."""
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.manual_seed(SEED)
    tok = AutoTokenizer.from_pretrained(str(model_path))
    body = AutoModel.from_pretrained(str(model_path))
    body.train()
    for p in body.embeddings.parameters():
        p.requires_grad_(False)
    per_epoch = max(1, (len(pairs) + BATCH - 1) // BATCH)  # a fold may have no pairs
    trained = [p for p in body.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trained, lr=LR, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LinearLR(opt, 1.0, 0.0, total_iters=epochs * per_epoch)
    rng = np.random.default_rng(SEED)
    done = 0
    for _ in range(epochs):
        order = rng.permutation(len(pairs))
        for s in range(0, len(order), BATCH):
            batch = [pairs[i] for i in order[s : s + BATCH]]
            sims = (
                _embed(body, tok, [a for a, _, _ in batch])
                @ _embed(body, tok, [p for _, p, _ in batch]).T
            )
            faq = torch.tensor([i for *_, i in batch])
            # Another pair of the same FAQ is not a negative.
            same = (faq[:, None] == faq[None, :]) & ~torch.eye(len(batch), dtype=torch.bool)
            logits = (sims * SCALE).masked_fill(same, float("-inf"))
            loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(batch)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            done += 1
            progress(done / (epochs * per_epoch))
    return _Tuned(body, tok)


def fold_encoders(encoder: Any, views: list[View]) -> list[tuple[frozenset[str], Any]]:
    """Per fold: the phrasings it holds out and ``encoder`` with each tuned part
    answering from that fold model's vectors (for FaqIndex.views)."""
    from bot.nlu.encoder import ConcatEncoder

    out: list[tuple[frozenset[str], Any]] = []
    for k in sorted({v.fold for v in views}):
        mine = [v for v in views if v.fold == k]
        if not isinstance(encoder, ConcatEncoder):
            out.append((mine[0].texts, LookupEncoder(mine[0].vectors, encoder)))
            continue
        parts = list(encoder.parts)
        for v in mine:
            parts[v.part] = LookupEncoder(v.vectors, parts[v.part])
        out.append((mine[0].texts, ConcatEncoder(parts, encoder.langs)))
    return out
