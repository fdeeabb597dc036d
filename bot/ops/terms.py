"""Terms of a message for the insights view: English words and Chinese words (jieba),
lower-cased, without stop words, URLs, @handles, numbers or punctuation."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any

from bot.ops.stopwords import EN, ZH

_URL = re.compile(r"https?://\S+|www\.\S+", re.I)
_HANDLE = re.compile(r"[@#＃]\S+")  # handles and hashtags' markers go; topics come back below
_HASHTAG = re.compile(r"#([^#\s]{1,30})#|#(\w{2,30})")  # Weibo #topic# and X #topic
_RUN = re.compile(r"([\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+)|([A-Za-z][A-Za-z'\-]*[A-Za-z])")

_jieba: Any = None
_jieba_lock = threading.Lock()


def _segmenter() -> Any:
    """jieba, loaded once (its dictionary takes about a second to build)."""
    global _jieba
    if _jieba is None:
        with _jieba_lock:
            if _jieba is None:
                import jieba

                jieba.setLogLevel(logging.WARNING)
                jieba.initialize()
                _jieba = jieba
    return _jieba


def _hashtags(text: str) -> list[str]:
    return [(a or b).lower() for a, b in _HASHTAG.findall(text)]


def terms(text: str, *, max_terms: int = 30) -> list[str]:
    """Distinct terms of ``text`` in first-seen order (a message counts a term once)."""
    tags = _hashtags(text)
    text = _HANDLE.sub(" ", _URL.sub(" ", text))
    out: list[str] = []
    for zh, en in _RUN.findall(text):
        if zh:
            words: Iterable[str] = _segmenter().cut(zh)
            out.extend(w for w in words if len(w) >= 2 and w not in ZH)
        else:
            w = en.lower()
            if len(w) >= 3 and w not in EN:
                out.append(w)
    seen: dict[str, None] = {}
    for t in (*tags, *out):
        seen.setdefault(t, None)
    return list(seen)[:max_terms]
