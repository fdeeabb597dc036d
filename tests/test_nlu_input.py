"""Odd input at parse time: very long posts, characters nobody sees, platform language tags
that name no language, and script detection at its edges. Uses the machine's shared
trained artifact (tests/support/trained_nlu.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from bot.config import NluConfig
from bot.nlu.artifact import Loaded, load_or_train
from bot.nlu.lang import detect_language, resolve_language
from bot.nlu.service import NluService
from tests.support.trained_nlu import nlu_data_dir

NLU_DATA = Path(__file__).resolve().parent.parent / "nlu_data"


class SpyEncoder:
    """The trained encoder, recording the texts it is asked to encode."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.id, self.dim = inner.id, inner.dim  # type: ignore[attr-defined]
        self.calls, self.reentrant = 0, False
        self.seen: list[str] = []

    def encode(self, texts: list[str], languages: Sequence[str] | None = None) -> np.ndarray:
        self.seen += texts
        return self.inner.encode(texts, languages)  # type: ignore[attr-defined,no-any-return]


@pytest.fixture(scope="module")
def shared_artifact() -> Loaded:
    cfg = NluConfig()
    return load_or_train(NLU_DATA, Path(nlu_data_dir()) / "nlu", cfg.encoder, cfg.runtime)


@pytest.fixture
async def svc(shared_artifact: Loaded) -> AsyncIterator[NluService]:
    spy = SpyEncoder(shared_artifact.encoder)
    loaded = dataclasses.replace(shared_artifact, encoder=spy)
    service = NluService(
        NluConfig(train_on_start=False), nlu_data_dir(), str(NLU_DATA), preloaded=loaded
    )
    await service.start()
    yield service
    await service.close()


def _seen(svc: NluService) -> list[str]:
    assert svc.loaded is not None
    return svc.loaded.encoder.seen  # type: ignore[attr-defined,no-any-return]


async def test_a_very_long_post_is_read_up_to_2000_characters(svc: NluService) -> None:
    """A 200,000-character post (a request body may hold a megabyte) held the one NLU
    thread for seconds, and every message batched with it or after it waited."""
    text = "where is my order A12345? it has been two weeks. " * 4000
    r = await svc.parse(text)
    assert max(len(t) for t in _seen(svc)) <= 2000
    assert r.text == text  # the post as written
    first = await svc.parse(text[:2000])
    assert (r.intent, r.confidence, r.faq[0].score) == (
        first.intent,
        first.confidence,
        first.faq[0].score,
    )
    [batch] = svc.parse_batch_sync([text])  # replydesk eval and parse read the same
    assert batch.confidence == r.confidence


@pytest.mark.parametrize("invisible", ["\u200b\u200c\u200d\ufeff", "\x00", "\u2060\u200e\x07"])
async def test_a_post_of_characters_nobody_sees_reads_as_an_empty_one(
    svc: NluService, invisible: str
) -> None:
    """Zero-width characters or a NUL alone were read as a greeting (and a public mention
    of them got one); an empty post is out of scope, which the policy leaves alone."""
    empty, r = await svc.parse(""), await svc.parse(invisible)
    assert (r.intent, r.confidence, r.negativity) == (
        empty.intent,
        empty.confidence,
        empty.negativity,
    )
    assert r.text == invisible


async def test_invisible_characters_inside_words_change_nothing(svc: NluService) -> None:
    for plain, odd in [
        ("refund?", "re\u200bfund?"),
        ("退款多久到账", "退\u200b款多久\u200d到账"),
        ("my order is late", "\ufeffmy order is late\x00"),
    ]:
        a, b = await svc.parse(plain), await svc.parse(odd)
        assert (b.intent, b.confidence, b.faq[0].score, b.negativity) == (
            a.intent,
            a.confidence,
            a.faq[0].score,
            a.negativity,
        ), odd


@pytest.mark.parametrize("tag", ["qst", "qme", "qht", "qam", "und", "zxx", "mul", " ", "English"])
def test_a_tag_that_names_no_language_leaves_it_to_the_text(tag: str) -> None:
    """X tags posts it cannot tell with private codes (qst: very short text); taken as a
    language they sent English posts to another language's thresholds, without MiniLM."""
    assert resolve_language("refund?", tag) == "en"
    assert resolve_language("退款多久到账", tag) == "zh"


def test_language_tags_are_read_in_either_spelling() -> None:
    assert resolve_language("👍", "zh_TW") == "zh"
    assert resolve_language("👍", "ZH-Hant") == "zh"
    assert resolve_language("👍", "other") == "other"  # replydesk parse --lang other
    assert resolve_language("Wo ist mein Paket?", "de") == "de"


async def test_a_short_english_post_tagged_qst_parses_as_english(svc: NluService) -> None:
    plain, tagged = await svc.parse("refund?"), await svc.parse("refund?", language="qst")
    assert tagged.language == "en"
    assert (tagged.confidence, tagged.faq[0].score) == (plain.confidence, plain.faq[0].score)


def test_chinese_with_a_katakana_middle_dot_is_chinese() -> None:
    """Chinese input methods type U+30FB between the parts of a foreign name; as kana it
    made the post Japanese ("other"), away from the Chinese threshold and blend."""
    assert detect_language("哈利・波特的书什么时候发货") == "zh"
    assert detect_language("注文はいつ届きますか") == "other"  # kana: Japanese
    assert detect_language("コーヒーを注文した") == "other"
    assert detect_language("주문 어디") == "other"
    assert detect_language("ㅋㅋㅋ") == "other"  # Hangul letters alone
