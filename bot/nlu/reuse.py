"""What a retraining may take from the artifact it replaces: the exported encoder and the
sentence vectors of texts it already encoded.

Editing `nlu_data/` retrains on the next start. Exporting MiniLM to ONNX and encoding
every example again took most of that time, though neither depends on the data: only
new or changed texts need the encoder. Both are reused only when the encoder and the
library versions are the ones the old artifact was built with."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from bot.nlu.encoder import Encoder

log = structlog.get_logger(__name__)

VECTORS = "vectors.npz"


def copy_export(old_art: Path, new_art: Path) -> None:
    """Start the new artifact with the old one's exported encoder; ``load_encoder``
    still checks each export's recipe stamp and re-exports a stale one."""
    if (old_art / "encoder").is_dir():
        shutil.copytree(old_art / "encoder", new_art / "encoder")


def read_vectors(old_art: Path, encoder_id: str) -> dict[str, np.ndarray]:
    """The old artifact's vectors by text, if ``encoder_id`` made them; else none."""
    try:
        with np.load(old_art / VECTORS, allow_pickle=False) as z:
            if str(z["encoder_id"]) != encoder_id:
                return {}
            return dict(zip(z["texts"].tolist(), z["vectors"], strict=True))
    except (OSError, KeyError, ValueError):
        return {}


class RememberingEncoder:
    """An encoder that answers texts it has seen from memory and encodes only the others;
    ``save`` keeps the vectors of the texts asked for since it was made."""

    def __init__(self, inner: Encoder, known: dict[str, np.ndarray]) -> None:
        self.inner = inner
        self.known = dict(known)
        self.used: dict[str, None] = {}  # insertion-ordered set
        self.encoded = 0  # texts that needed the encoder

    def __getattr__(self, name: str) -> Any:  # id, dim, parts, calls, reentrant
        return getattr(self.inner, name)

    def encode(self, texts: list[str], languages: Sequence[str] | None = None) -> np.ndarray:
        if languages is not None:  # memory holds the detected languages' vectors
            return self.inner.encode(texts, languages)
        missing = [t for t in dict.fromkeys(texts) if t not in self.known]
        if missing:
            self.known.update(zip(missing, self.inner.encode(missing), strict=True))
            self.encoded += len(missing)
        self.used.update(dict.fromkeys(texts))
        if not texts:
            return np.zeros((0, self.inner.dim), dtype=np.float32)
        return np.stack([self.known[t] for t in texts]).astype(np.float32)

    def save(self, art: Path) -> None:
        texts = list(self.used)
        vectors = (
            np.stack([self.known[t] for t in texts])
            if texts
            else np.zeros((0, self.inner.dim), dtype=np.float32)
        )
        np.savez(
            art / VECTORS,
            encoder_id=np.array(self.inner.id),
            texts=np.array(texts, dtype=str),
            vectors=vectors.astype(np.float32),
        )
