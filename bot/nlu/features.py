"""Feature rows: sentence embedding + character n-grams + word n-grams, side by side.

The embedding carries meaning in English; char_wb 1-4 n-grams carry Chinese (MiniLM is
English-only), typos and order-number shapes; word uni/bigrams sharpen close intents.
Each block is L2-normalised and weighted, so a linear model sees comparable scales.
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

# Latin words and single CJK characters (so word bigrams over Chinese are char bigrams).
_WORD = re.compile(r"[a-z0-9']+|[\u3400-\u9fff]")
_ORDER_NO = re.compile(r"#?\b[a-z]?\d{4,}\b")
_URL = re.compile(r"https?://\S+|www\.\S+|\b\w+\.(?:ly|me|biz|io)/\S*")
_HANDLE = re.compile(r"@\w+")


# The @mentions a post starts with (X and Weibo handles, Mastodon's @user@instance) say
# whom it is addressed to, not what it says. Left in, they moved sentence vectors enough
# to change the FAQ hit of "@brand @friend where is my order". Weibo ends a handle at a
# space or punctuation, so "@品牌我的快递" is all handle and stays as it is.
_REPLY_PREFIX = re.compile(r"^(?:\s*[@＠][\w.\-]+(?:@[\w.\-]+)?[\s,:;，：、]*)+")


def strip_reply_prefix(text: str) -> str:
    """``text`` without the @mentions it starts with, unless they are all there is."""
    rest = _REPLY_PREFIX.sub("", text, count=1)
    return rest if rest.strip() else text


def normalise_text(text: str) -> str:
    """Lower-case, placeholders for handles, links and order numbers (their shape matters,
    their value does not)."""
    t = text.lower()
    t = _URL.sub(" urltoken ", t)
    t = _HANDLE.sub(" @user ", t)
    return _ORDER_NO.sub(" ordernum ", t)


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


def char_wb_grams(word: str, lo: int, hi: int) -> list[str]:
    """scikit-learn's ``char_wb`` n-grams of one word: padded with a space each side; a
    word no longer than n gives itself once and ends the longer n-grams."""
    w = f" {word} "
    out: list[str] = []
    for n in range(lo, hi + 1):
        last = max(len(w) - n, 0)
        out += [w[i : i + n] for i in range(last + 1)]
        if last == 0:
            break
    return out


# char_wb n-grams never cross a word, so a post's are the sum of its words'; words recur
# from post to post, so their vocabulary columns are cached, per vectorizer and for the
# vocabulary it was fitted with (a refit starts afresh). Columns are kept as packed int32
# (about 200 bytes a word) and the cache is cleared when full: a few MB at most.
WORD_CACHE = 20_000
_word_columns: weakref.WeakKeyDictionary[
    TfidfVectorizer, tuple[dict[str, int], dict[str, bytes]]
] = weakref.WeakKeyDictionary()


def _packed(cols: list[int]) -> bytes:
    return np.array(cols, dtype=np.int32).tobytes()


def _columns(vec: TfidfVectorizer, texts: list[str]) -> list[bytes]:
    """Per text, the vocabulary columns of its n-grams (repeats included), packed int32."""
    vocab = vec.vocabulary_
    if vec.analyzer != "char_wb":
        analyze = vec.build_analyzer()
        return [_packed([j for g in analyze(t) if (j := vocab.get(g)) is not None]) for t in texts]
    known_vocab, cache = _word_columns.get(vec, (None, {}))
    if known_vocab is not vocab:
        cache = {}
        _word_columns[vec] = (vocab, cache)
    preprocess = vec.build_preprocessor()
    lo, hi = vec.ngram_range
    out = []
    for text in texts:
        words = []
        for word in preprocess(text).split():
            known = cache.get(word)
            if known is None:
                grams = char_wb_grams(word, lo, hi)
                known = _packed([j for g in grams if (j := vocab.get(g)) is not None])
                if len(cache) >= WORD_CACHE:
                    cache.clear()
                cache[word] = known
            words.append(known)
        out.append(b"".join(words))
    return out


def _indptr(rows: np.ndarray, n: int) -> np.ndarray:
    """CSR row pointers of entries whose (sorted) row numbers are ``rows``."""
    out = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=out[1:])
    return out


def tfidf_rows(vec: TfidfVectorizer, texts: list[str]) -> sp.csr_matrix:
    """``vec.transform(texts)`` for a fitted vectorizer with our settings (sublinear tf,
    idf, L2-normalised rows), without scikit-learn's per-call checks and conversions.
    Char n-grams are looked up per word (``_columns``) and all rows are counted in one
    ``np.unique``: on the speed pool's char rows, 0.14x the time of counting each post's
    n-grams in Python in batches of 64, 0.70x for one post (docs/benchmarks.md).
    tests/test_nlu.py checks it against ``vec.transform``."""
    if not (vec.sublinear_tf and vec.use_idf and vec.norm == "l2" and not vec.binary):
        return sp.csr_matrix(vec.transform(texts))
    per = _columns(vec, texts)
    width = len(vec.vocabulary_)
    lengths = [len(p) // 4 for p in per]
    rows = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
    cols = np.frombuffer(b"".join(per), dtype=np.int32).astype(np.int64)
    # One key per (row, column): sorted and counted, they are the CSR entries in order.
    keys, counts = np.unique(rows * width + cols, return_counts=True)
    row_of, indices = np.divmod(keys, width)
    data = (1.0 + np.log(counts)) * vec.idf_[indices]
    norms = np.sqrt(np.bincount(row_of, weights=data * data, minlength=len(texts)))
    data /= np.maximum(norms, 1e-12)[row_of]
    return sp.csr_matrix(
        (
            data.astype(np.float32),
            indices.astype(np.int32),
            _indptr(row_of, len(texts)).astype(np.int32),
        ),
        shape=(len(texts), width),
    )


# Up to this many rows, transform puts the blocks together itself (side_by_side); past
# it scipy's hstack, whose fixed cost no longer matters, is faster (BANKING77's 10k rows:
# 0.3 s against 0.6 s).
SMALL_BATCH = 256


@dataclass
class FeatureWeights:
    emb: float = 1.5
    char: float = 1.0
    word: float = 1.0


class Featurizer:
    def __init__(
        self,
        weights: FeatureWeights | None = None,
        min_df: int = 1,
        max_features: int | None = 200_000,
    ) -> None:
        self.weights = weights or FeatureWeights()
        self.char = TfidfVectorizer(
            analyzer="char_wb",
            ngram_range=(1, 4),
            sublinear_tf=True,
            min_df=min_df,
            max_features=max_features,
            preprocessor=normalise_text,
            dtype=np.float32,
        )
        self.word = TfidfVectorizer(
            analyzer="word",
            tokenizer=_words,
            token_pattern=None,
            ngram_range=(1, 2),
            sublinear_tf=True,
            min_df=min_df,
            preprocessor=normalise_text,
            dtype=np.float32,
        )

    def fit(self, texts: list[str]) -> Featurizer:
        self.fit_ngrams(texts)
        return self

    def fit_ngrams(self, texts: list[str]) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """Fit on ``texts`` and return their char and word n-gram rows: one pass over the
        n-grams instead of two (BANKING77's 10k sentences: 2.8 -> 1.2 s)."""
        return (
            sp.csr_matrix(self.char.fit_transform(texts), dtype=np.float32),
            sp.csr_matrix(self.word.fit_transform(texts), dtype=np.float32),
        )

    def fit_transform(self, texts: list[str], emb: np.ndarray) -> sp.csr_matrix:
        """``fit(texts).transform(texts, emb)``, with one pass over the n-grams."""
        char, word = self.fit_ngrams(texts)
        return self.transform(texts, emb, char, word)

    def char_matrix(self, texts: list[str]) -> sp.csr_matrix:
        return tfidf_rows(self.char, texts)

    def transform(
        self,
        texts: list[str],
        emb: np.ndarray,
        char: sp.csr_matrix | None = None,
        word: sp.csr_matrix | None = None,
    ) -> sp.csr_matrix:
        """Feature rows of ``texts``; ``char``/``word``: their n-gram rows if known."""
        w = self.weights
        ngrams = [
            (block if block is not None else tfidf_rows(vec, texts), weight)
            for block, weight, vec in ((char, w.char, self.char), (word, w.word, self.word))
            if weight
        ]
        if len(emb) > SMALL_BATCH:
            blocks = [sp.csr_matrix(emb * w.emb)] + [m * weight for m, weight in ngrams]
            return sp.hstack(blocks, format="csr", dtype=np.float32)
        rows, cols = np.nonzero(emb)  # a part that skipped a post left zeros: not stored
        return side_by_side(
            [(_indptr(rows, len(emb)), cols, emb[rows, cols], emb.shape[1], w.emb)]
            + [(m.indptr, m.indices, m.data, m.shape[1], weight) for m, weight in ngrams],
            len(emb),
        )


def side_by_side(
    blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray, int, float]], n: int
) -> sp.csr_matrix:
    """The CSR blocks (indptr, indices, data, width, weight) of ``n`` rows side by side,
    each weighted, as one float32 CSR matrix. Built directly: with scipy's hstack (and
    the matrices it makes on the way) a single message's feature rows took 0.96 ms of its
    parse, with this 0.62 (docs/benchmarks.md; tests/test_nlu.py compares the two)."""
    counts = [np.diff(b[0]) for b in blocks]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.sum(counts, axis=0), out=indptr[1:])
    data = np.empty(indptr[-1], dtype=np.float32)
    indices = np.empty(indptr[-1], dtype=np.int32)
    start = indptr[:-1].copy()  # where each row's next block goes
    offset = 0
    for (ptr, idx, val, width, weight), k in zip(blocks, counts, strict=True):
        row = np.repeat(np.arange(n), k)
        at = start[row] + np.arange(len(row)) - ptr[row]
        data[at] = val[: len(row)] * weight
        indices[at] = idx[: len(row)] + offset
        start += k
        offset += width
    return sp.csr_matrix((data, indices, indptr), shape=(n, offset))
