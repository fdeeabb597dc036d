"""Redis down: every page and API answers 503 with a retry hint, never a 500 (the
webhooks' 503 is in tests/test_ingest.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from structlog.testing import capture_logs

from bot.app import build_app
from bot.config import WorkerConfig
from bot.consumer import StreamConsumer
from bot.redis import connect
from escalation.agents import AgentStore
from escalation.auth import SESSION_COOKIE
from escalation.sandbox import CUSTOMER_COOKIE
from tests.conftest import GENERIC_SECRET, make_settings
from tests.support.browser import sandbox_accounts
from tests.support.waiting import until
from tests.support.webhooks import generic_event, signed


async def test_api_console_and_sandbox_say_503_while_redis_is_down(
    aiohttp_client: Any, redis: Any, keys: Any, redis_server: Any, tmp_path: Any
) -> None:
    settings = make_settings(
        redis_server.url, tmp_path, **{"accounts": sandbox_accounts(), "sandbox.enabled": True}
    )
    token = await AgentStore(redis, keys).add("ann", "agent")
    client = await aiohttp_client(build_app(settings, role="web"))
    bearer = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/api/v1/tickets", headers=bearer)).status == 200
    redis_server.stop()
    try:
        r = await client.get("/api/v1/tickets", headers=bearer)
        assert r.status == 503 and r.headers["Retry-After"]
        assert (await r.json())["error"]["code"] == "unavailable"
        r = await client.post("/api/v1/tickets/T1/claim", headers=bearer)
        assert r.status == 503
        # A page whose session must be looked up.
        session = {"Cookie": f"{SESSION_COOKIE}=s1"}
        r = await client.get("/console", headers=session, allow_redirects=False)
        assert r.status == 503 and "try again" in (await r.text())
        customer = {"Cookie": f"{CUSTOMER_COOKIE}=sb0123456789abcdef"}
        r = await client.get("/sandbox/api/messages?account=acme", headers=customer)
        assert r.status == 503 and r.headers["Retry-After"]
        # The scrape still answers, and says Redis is away (its stream gauges are stale).
        assert "replydesk_redis_up 0.0" in await (await client.get("/metrics")).text()
        assert (await client.get("/readyz")).status == 503
    finally:
        redis_server.start()
    assert "replydesk_redis_up 1.0" in await (await client.get("/metrics")).text()


def _outage_lines(logs: list[dict[str, Any]], part: str) -> dict[str, int]:
    n: dict[str, int] = {}
    for e in logs:
        if e.get("part") == part:
            n[e["event"]] = n.get(e["event"], 0) + 1
    return n


async def test_webhooks_during_an_outage_log_it_once_and_its_end(
    aiohttp_client: Any, settings: Any, redis_server: Any
) -> None:
    """Each refused webhook logged a traceback (ingest_store_failed); a platform retrying
    its deliveries buried the log. Now: one line when storing starts failing, one when
    it works again, and still a 503 for each delivery meanwhile."""
    client = await aiohttp_client(build_app(settings, role="web"))
    url = "/webhooks/generic/acme"
    with capture_logs() as logs:
        redis_server.stop()
        try:
            reqs = [signed(GENERIC_SECRET, generic_event(f"down{i}")) for i in range(6)]
            resps = await asyncio.gather(*(client.post(url, data=b, headers=h) for b, h in reqs))
            assert [r.status for r in resps] == [503] * 6
            # A second wave, after the first one's failure was logged.
            body, headers = signed(GENERIC_SECRET, generic_event("down-again"))
            assert (await client.post(url, data=body, headers=headers)).status == 503
        finally:
            redis_server.start()
        body, headers = signed(GENERIC_SECRET, generic_event("back"))
        assert (await client.post(url, data=body, headers=headers)).status == 200
    assert _outage_lines(logs, "webhooks") == {"redis_unavailable": 1, "redis_recovered": 1}
    assert not [e for e in logs if e["event"] == "ingest_store_failed" or e.get("exc_info")]


class _Handler(StreamConsumer):
    """Acknowledges each entry once Redis answers; holds one until ``go`` is set."""

    role = "test"

    def __init__(self, redis: Any, cfg: WorkerConfig) -> None:
        super().__init__(redis, stream="t:s", group="g", consumer="c1", cfg=cfg)
        self.started = asyncio.Event()
        self.go = asyncio.Event()
        self.done: list[str] = []

    async def handle_entry(self, msg_id: str, fields: dict[str, str]) -> None:
        self.started.set()
        await self.go.wait()
        await self.redis.xack(self.stream, self.group, msg_id)
        self.done.append(msg_id)


async def test_a_consumer_logs_an_outage_once_and_resumes_by_itself(
    redis: Any, redis_server: Any
) -> None:
    """Every round of the read and reclaim loops logged a warning (157 lines for a
    2-minute outage of one `serve`), and each entry in flight a traceback. Now one line
    for the outage, one for its end; the entry cut short is reclaimed and finished."""
    cfg = WorkerConfig(
        concurrency=2, visibility_timeout_s=0.5, block_ms=100, claim_interval_s=0.2, max_attempts=5
    )
    client = connect(redis_server.url)
    consumer = _Handler(client, cfg)
    stop = asyncio.Event()
    with capture_logs() as logs:
        task = asyncio.create_task(consumer.run(stop))
        try:
            await until(lambda: redis.exists("t:s"), 10, "the group")
            msg_id = (await redis.xadd("t:s", {"k": "v"})).decode()
            await asyncio.wait_for(consumer.started.wait(), 10)
            redis_server.stop()
            try:
                consumer.go.set()  # its ack meets the outage
                await until(lambda: consumer.outage.failures >= 4, 15, "four failed calls")
            finally:
                redis_server.start()
            await until(lambda: consumer.done == [msg_id], 15, "the entry finished")
            await until(lambda: not consumer.outage.down, 15, "the recovery")
            assert (await client.xpending("t:s", "g"))["pending"] == 0
        finally:
            stop.set()
            await task
            await client.aclose()
    assert _outage_lines(logs, "test") == {"redis_unavailable": 1, "redis_recovered": 1}
    noisy = {"consumer_read_failed", "consumer_reclaim_failed", "consumer_entry_crashed"}
    assert not [e for e in logs if e["event"] in noisy or e.get("exc_info")]


async def test_the_periodic_loops_log_an_outage_once(redis_server: Any) -> None:
    """The SLA scanner (every 5 s), the notification loop (every second) and the crisis
    monitor logged a warning each round Redis was away: 16 and 47 lines in two minutes.
    Now each logs the outage once and its end."""
    from bot.ops import notify
    from bot.redis import Keys
    from escalation.scanner import SlaScanner
    from escalation.tickets import TicketStore

    client = connect(redis_server.url)
    keys = Keys("rd:")
    scanner = SlaScanner(TicketStore(client, keys))
    stop = asyncio.Event()
    with capture_logs() as logs:
        loops = [
            asyncio.create_task(scanner.run(stop, interval_s=0.05)),
            asyncio.create_task(
                notify.run(client, keys, None, None, stop, interval_s=0.05)  # type: ignore[arg-type]
            ),
        ]
        try:
            await asyncio.sleep(0.3)
            redis_server.stop()
            try:
                await asyncio.sleep(3)  # dozens of rounds of each
            finally:
                redis_server.start()
            await until(
                lambda: (
                    {"sla_scanner", "notifications"}
                    <= {e.get("part") for e in logs if e["event"] == "redis_recovered"}
                ),
                20,
                "both loops' recovery",
            )
        finally:
            stop.set()
            await asyncio.gather(*loops)
            await client.aclose()
    for part in ("sla_scanner", "notifications"):
        assert _outage_lines(logs, part) == {"redis_unavailable": 1, "redis_recovered": 1}
    noisy = {"sla_scan_failed", "notification_loop_failed"}
    assert not [e for e in logs if e["event"] in noisy]
