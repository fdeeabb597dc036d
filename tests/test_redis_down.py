"""Redis down: every page and API answers 503 with a retry hint, never a 500 (the
webhooks' 503 is in tests/test_ingest.py)."""

from __future__ import annotations

from typing import Any

from bot.app import build_app
from escalation.agents import AgentStore
from escalation.auth import SESSION_COOKIE
from escalation.sandbox import CUSTOMER_COOKIE
from tests.conftest import make_settings
from tests.support.browser import sandbox_accounts


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
    finally:
        redis_server.start()
