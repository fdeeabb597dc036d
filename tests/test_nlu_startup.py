"""A worker whose NLU model is still loading (or training, up to a minute on a first
start) already serves HTTP: /healthz answers, /readyz says 503 with the pipeline check
false, and the inbound worker takes no event until the pipeline is ready."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from bot import keys as K
from bot.app import build_app
from bot.config import NluConfig
from bot.nlu import service as service_mod
from bot.nlu.artifact import Loaded
from bot.nlu.service import NluService
from tests.conftest import GENERIC_SECRET, make_settings
from tests.support.cli import run_replydesk
from tests.support.redis_server import free_port
from tests.support.waiting import until
from tests.support.webhooks import generic_event, signed

pytest_plugins = ["tests.conftest_nlu"]

ROOT = Path(__file__).resolve().parents[1]


class GatedNlu(NluService):
    """The real service, whose start waits for the test to open ``gate``."""

    def __init__(self, *a: Any, **k: Any) -> None:
        super().__init__(*a, **k)
        self.gate = asyncio.Event()

    async def start(self, force_train: bool = False) -> None:
        await self.gate.wait()
        await super().start(force_train)


async def test_http_answers_while_the_model_loads_and_events_wait_for_it(
    aiohttp_client: Any,
    redis_server: Any,
    redis: Any,
    tmp_path: Path,
    nlu_artifact: Loaded,
    nlu_data_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gated = GatedNlu(
        NluConfig(train_on_start=False), str(nlu_data_root), str(ROOT / "nlu_data"),
        preloaded=nlu_artifact,
    )  # fmt: skip
    monkeypatch.setattr(service_mod, "build_service", lambda *a, **k: gated)
    settings = make_settings(
        redis_server.url,
        tmp_path,
        **{
            "dialog.pipeline": "brain",
            "dialog.responses_path": str(ROOT / "nlu_data" / "responses"),
        },
    )
    app = build_app(settings, role="all")
    with capture_logs() as logs:
        # Before, startup waited for the model: no listener at all (here: no client).
        client = await asyncio.wait_for(aiohttp_client(app), 60)
        assert (await client.get("/healthz")).status == 200
        r = await client.get("/readyz")
        assert r.status == 503
        assert (await r.json())["checks"] == {"redis": True, "pipeline": False}

        body, headers = signed(GENERIC_SECRET, generic_event("e1", "where is my order #A12345"))
        assert (
            await client.post("/webhooks/generic/acme", data=body, headers=headers)
        ).status == 200
        started = [e.get("role") for e in logs if e["event"] == "consumer_started"]
        assert started == ["sender"]  # the inbound worker waits for the pipeline

        gated.gate.set()
        outcome = app[K.KEYS].outcome("generic:acme:e1")
        await until(lambda: redis.exists(outcome), 30, "the event's outcome")
        assert (await client.get("/readyz")).status == 200
    assert [e.get("role") for e in logs if e["event"] == "consumer_started"] == [
        "sender",
        "worker",
    ]


@pytest.mark.slow
def test_a_start_that_cannot_load_the_model_still_exits_2_with_one_line(
    tmp_path: Path,
) -> None:
    """The model now loads after the listener is up; a data error with no previous
    model still ends ``serve`` as it did: one line, exit 2, everything closed."""
    data = tmp_path / "nlu_data"
    shutil.copytree(ROOT / "nlu_data", data)
    (data / "faq.yml").write_text((data / "faq.yml").read_text() + "  - [unclosed\n")
    config = {
        "log_level": "info",
        "redis": {"data_dir": str(tmp_path / "var")},  # the embedded Redis
        "nlu": {"data_path": str(data)},
    }
    out = run_replydesk(
        tmp_path, config, "serve", "--role", "worker", "--host", "127.0.0.1",
        "--port", str(free_port()),
    )  # fmt: skip
    assert out.returncode == 2, out.stderr[-3000:]
    assert f"replydesk: data error: {data / 'faq.yml'}: while parsing" in out.stderr
    assert "Traceback" not in out.stderr
    lines = out.stdout.splitlines() + out.stderr.splitlines()
    events = [json.loads(line)["event"] for line in lines if line.startswith("{")]
    assert events[-1] == "embedded_redis_stopped", events  # everything closed, in order
