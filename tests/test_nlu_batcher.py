"""The micro-batcher's callers: one bad message in a batch, a close while a batch runs,
and text Python holds but the tokenizer refuses (a lone UTF-16 surrogate)."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from pathlib import Path

import pytest

from bot.nlu.artifact import Loaded
from bot.nlu.batcher import MicroBatcher
from bot.nlu.lang import clean_text
from bot.nlu.service import NluService
from tests.support.cli import run_replydesk

pytest_plugins = ["tests.conftest_nlu"]


async def test_one_bad_item_fails_only_its_own_caller() -> None:
    calls: list[list[str]] = []

    def upper(items: list[str]) -> list[str]:
        calls.append(items)
        if "bad" in items:
            raise ValueError("cannot take 'bad'")
        return [x.upper() for x in items]

    # A long window and five callers: the batch closes when it holds all five.
    b: MicroBatcher[str, str] = MicroBatcher(upper, max_size=5, wait_ms=600_000)
    b.start()
    try:
        items = ["a", "b", "bad", "c", "d"]
        out = await asyncio.gather(*(b.submit(x) for x in items), return_exceptions=True)
    finally:
        await b.close()
    assert out[:2] + out[3:] == ["A", "B", "C", "D"]
    assert isinstance(out[2], ValueError) and "bad" in str(out[2])
    assert calls == [items] + [[x] for x in items]  # the batch, then each alone


async def test_close_fails_the_callers_of_the_batch_it_interrupts() -> None:
    """close() while a batch is in the executor and more callers wait: every caller gets
    "NLU service closed" (those of the running batch waited forever before)."""
    running, release = threading.Event(), threading.Event()

    def slow(items: list[int]) -> list[int]:
        running.set()
        release.wait()
        return [x * 2 for x in items]

    b: MicroBatcher[int, int] = MicroBatcher(slow, max_size=4, wait_ms=0)
    b.start()
    calls = [asyncio.create_task(b.submit(i)) for i in range(6)]
    try:
        await asyncio.to_thread(running.wait)
        await b.close()
        # (bounded: before, the running batch's callers waited forever)
        out = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 60)
    finally:
        release.set()
    assert [str(e) for e in out] == ["NLU service closed"] * 6


def test_clean_text_replaces_only_unpaired_surrogates() -> None:
    assert clean_text("hi \ud83d there") == "hi \ufffd there"
    assert clean_text("\udcff") == "\ufffd"  # a command-line byte that is not UTF-8
    assert clean_text("ok \ud83d\ude00") == "ok 😀"  # a pair written as two escapes
    plain = "where is my order 😀 我的订单"
    assert clean_text(plain) is plain


async def test_a_lone_surrogate_parses_and_fails_nobody_else(nlu_service: NluService) -> None:
    texts = ["where is my order #A12345", "thanks!", "hi \ud83d there", "我的订单在哪里"]
    results = await asyncio.gather(*(nlu_service.parse(t) for t in texts))
    assert [r.intent for r in results] == ["order_status", "thanks", "greet", "order_status"]
    assert results[2].text == "hi \ufffd there"
    json.dumps(results[2].to_dict()).encode()  # writable as UTF-8
    [batch] = nlu_service.parse_batch_sync(["hi \ud83d there"])
    assert batch.intent == "greet"


@pytest.mark.slow
def test_replydesk_parse_of_a_byte_that_is_not_utf8(
    nlu_artifact: Loaded, nlu_data_root: Path, tmp_path: Path
) -> None:
    """``replydesk parse $'where is my order \\xff'``: Python gives the byte as a lone
    surrogate; it parses, and the JSON printed is UTF-8."""
    shutil.copytree(nlu_data_root / "nlu", tmp_path / "var" / "nlu")
    out = run_replydesk(
        tmp_path,
        {"redis": {"data_dir": str(tmp_path / "var")}},
        "parse",
        "where is my order \udcff",
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result["text"] == "where is my order \ufffd" and result["intent"] == "order_status"
