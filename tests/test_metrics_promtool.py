"""The real /metrics output passes ``promtool check metrics`` (Prometheus' own linter).

promtool comes with the Debian ``prometheus`` package (CI installs it); without it the
test is skipped, not silently passed.
"""

from __future__ import annotations

import asyncio
import shutil
from asyncio.subprocess import PIPE, STDOUT
from typing import Any

import pytest

from bot.app import build_app
from bot.models import Author, InboundEvent
from bot.ops import record_message
from tests.conftest import GENERIC_SECRET
from tests.support.waiting import until
from tests.support.webhooks import generic_event, signed

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)"
)


async def test_metrics_pass_promtool_check(
    aiohttp_client: Any, settings: Any, redis: Any, keys: Any
) -> None:
    client = await aiohttp_client(build_app(settings, role="all"))
    # A few webhooks (new, duplicate, refused) so labelled series exist.
    for i in range(3):
        body, headers = signed(
            GENERIC_SECRET, generic_event(f"m{i}", "where is my order?", kind="mention")
        )
        assert (
            await client.post("/webhooks/generic/acme", data=body, headers=headers)
        ).status == 200
    assert (await client.post("/webhooks/generic/acme", data=body, headers=headers)).status == 200
    bad = await client.post(
        "/webhooks/generic/acme", data=body, headers={"X-Replydesk-Signature": "x"}
    )
    assert bad.status == 401
    # The crisis metrics' series, through the pipeline's hook.
    ev = InboundEvent(
        "generic", "acme", "mention", "neg1", Author("7", "bob"), text="battery exploded"
    )
    await record_message(redis, keys, ev, intent="complaint", negative=True, decision="escalate")

    await until(
        lambda: redis.exists(keys.outcome("generic:acme:m2")),
        what="the worker to handle the events",
    )

    resp = await client.get("/metrics")
    assert resp.status == 200
    text = await resp.text()
    for name in (
        "replydesk_ingest_events_total",
        "replydesk_worker_events_total",
        "replydesk_negative_messages_total",
        "replydesk_crisis_active",
        "replydesk_stream_lag",
        "process_cpu_seconds_total",
    ):
        assert f"\n{name}" in text, name

    assert PROMTOOL is not None
    proc = await asyncio.create_subprocess_exec(
        PROMTOOL, "check", "metrics", stdin=PIPE, stdout=PIPE, stderr=STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(text.encode()), timeout=30)
    assert proc.returncode == 0, out.decode()
