"""The Rasa backend against a small aiohttp server standing in for Rasa: answers that
are not what Rasa sends, a Rasa that fails every other request, and the nlu settings.
(tests/test_nlu_rasa.py runs a real Rasa server.)"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from bot.config import ConfigError, NluConfig, load_settings
from bot.metrics import REGISTRY
from bot.nlu.artifact import Loaded
from bot.nlu.service import NluService

pytest_plugins = ["tests.conftest_nlu"]

GOOD = {
    "intent": {"name": "greet", "confidence": 0.9},
    "intent_ranking": [{"name": "greet", "confidence": 0.9}, {"name": "thanks", "confidence": 0.1}],
}


class FakeRasa:
    """``POST /model/parse`` answering whatever ``reply`` says: a JSON body, an HTML
    page (a str), an HTTP status (an int), or waiting forever ("hang")."""

    def __init__(self) -> None:
        self.reply: Any = GOOD
        self.requests = 0
        self.got_request = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_post("/model/parse", self.parse)

    async def parse(self, request: web.Request) -> web.Response:
        self.requests += 1
        self.got_request.set()
        reply = self.reply(self.requests) if callable(self.reply) else self.reply
        if reply == "hang":
            await asyncio.Event().wait()
        if isinstance(reply, int):
            return web.Response(status=reply)
        if isinstance(reply, str):
            return web.Response(text=reply, content_type="text/html")
        return web.json_response(reply)


@pytest.fixture
async def rasa(aiohttp_server: Any) -> AsyncIterator[tuple[FakeRasa, str]]:
    fake = FakeRasa()
    server = await aiohttp_server(fake.app)
    yield fake, str(server.make_url("")).rstrip("/")


@pytest.fixture
async def svc(
    rasa: tuple[FakeRasa, str], nlu_artifact: Loaded, nlu_data_root: Path
) -> AsyncIterator[NluService]:
    cfg = NluConfig(backend="rasa", rasa_url=rasa[1], rasa_timeout_s=30, train_on_start=False)
    service = NluService(cfg, str(nlu_data_root), preloaded=nlu_artifact)
    await service.start()
    yield service
    await service.close()


def fallbacks() -> dict[str, float]:
    return {
        reason: REGISTRY.get_sample_value("replydesk_nlu_rasa_fallbacks_total", {"reason": reason})
        or 0.0
        for reason in ("timeout", "http", "connection", "bad_response")
    }


def rasa_events(logs: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in logs if e["event"].startswith("nlu.rasa")]


async def test_rasas_answer_is_used(svc: NluService) -> None:
    r = await svc.parse("hello there")
    assert (r.backend, r.intent, r.confidence) == ("rasa", "greet", 0.9)
    assert [(s.name, s.confidence) for s in r.ranking] == [("greet", 0.9), ("thanks", 0.1)]


@pytest.mark.parametrize(
    "reply",
    [
        {"intent": {"name": "greet", "confidence": 0.9}, "intent_ranking": ["greet"]},
        {"intent": {"name": "greet", "confidence": 0.9}, "intent_ranking": [None]},
        {"intent": {"name": "greet", "confidence": 0.9}, "intent_ranking": {"greet": 0.9}},
        {"intent": {"name": "greet", "confidence": [0.9]}},
        {"intent": {"name": "greet", "confidence": "high"}},
        {"intent": {"name": "greet", "confidence": 7.5}},
        {"intent": {"name": ["greet"], "confidence": 0.9}},
        {"text": "no intent"},
        [GOOD],
        "<html><body>502 Bad Gateway</body></html>",
    ],
    ids=lambda r: str(r)[:48],
)
async def test_a_malformed_answer_falls_back_as_bad_response(
    svc: NluService, rasa: tuple[FakeRasa, str], reply: Any
) -> None:
    """A 200 with something that is not Rasa's parse: the embedded engine answers, and it
    counts as bad_response (it raised out of parse, or counted as connection, before)."""
    rasa[0].reply = reply
    before = fallbacks()
    r = await svc.parse("where is my order #A12345")
    assert r.backend == "embedded-fallback" and r.intent == "order_status"
    after = fallbacks()
    assert {k: after[k] - before[k] for k in after} == {
        "timeout": 0.0,
        "http": 0.0,
        "connection": 0.0,
        "bad_response": 1.0,
    }


async def test_a_cancelled_parse_leaves_no_embedded_parse_behind(
    svc: NluService, rasa: tuple[FakeRasa, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller cancelled while Rasa answers (a worker stopping): the embedded parse
    started beside the request is cancelled and awaited, not left to finish, or fail,
    with nobody waiting for it."""
    fake, _ = rasa
    fake.reply = "hang"
    release = threading.Event()

    def blocked(*a: Any, **k: Any) -> list[Any]:
        release.wait()
        raise RuntimeError("embedded engine failed")

    assert svc.loaded is not None
    monkeypatch.setattr(svc.loaded.engine, "analyze", blocked)
    try:
        task = asyncio.create_task(svc.parse("where is my order"))
        await fake.got_request.wait()
        [embedded] = [t for t in asyncio.all_tasks() if "submit" in t.get_coro().__qualname__]
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert task.cancelled()
        assert embedded.cancelled()
    finally:
        release.set()


async def test_a_flapping_rasa_is_one_outage_logged_once(
    svc: NluService, rasa: tuple[FakeRasa, str]
) -> None:
    """Failing every other request is one outage (one line), not a down/recovered pair per
    message; it ends once RECOVERY_SUCCESSES requests in a row succeed (one line)."""
    fake, _ = rasa
    fake.reply = lambda n: 503 if n % 2 else GOOD
    before = fallbacks()["http"]
    with capture_logs() as logs:
        backends = [(await svc.parse("hello there")).backend for _ in range(20)]
    assert backends == ["embedded-fallback", "rasa"] * 10
    assert fallbacks()["http"] - before == 10
    assert rasa_events(logs) == ["nlu.rasa.down"]

    fake.reply = GOOD
    with capture_logs() as logs:
        for _ in range(5):
            assert (await svc.parse("hello there")).backend == "rasa"
    recovered = [e for e in logs if e["event"].startswith("nlu.rasa")]
    assert [e["event"] for e in recovered] == ["nlu.rasa.recovered"]
    assert recovered[0]["failed_messages"] == 10


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("nlu.backend", "spacy", "nlu.backend: expected one of embedded, rasa"),
        ("nlu.runtime", "gpu", "nlu.runtime: expected one of auto, onnx, torch"),
        ("nlu.rasa_timeout_s", 0, "nlu.rasa_timeout_s: must be greater than 0"),
        ("nlu.rasa_timeout_s", -1.5, "nlu.rasa_timeout_s: must be greater than 0"),
    ],
)
def test_nlu_settings_are_checked_at_load(key: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_settings(env={}, overrides={key: value}, config_file="/dev/null")
    assert str(e.value) == f"{message} (from the command line)"
