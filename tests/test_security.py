"""Security review findings, each with the attack that proved it (console and agent API)."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from bot.app import build_app
from escalation.agents import AgentStore
from escalation.auth import SESSION_COOKIE
from tests.conftest import make_settings
from tests.support.browser import sandbox_accounts


@pytest.fixture
async def client(
    aiohttp_client: Any, redis_server: Any, redis: Any, keys: Any, tmp_path: Any
) -> Any:
    settings = make_settings(redis_server.url, tmp_path, accounts=sandbox_accounts())
    c = await aiohttp_client(build_app(settings, role="web"))
    c.token = await AgentStore(redis, keys).add("ann", "agent")
    return c


async def _login(client: Any) -> str:
    r = await client.post("/console/login", data={"token": client.token}, allow_redirects=False)
    assert r.status == 303
    return str(r.cookies[SESSION_COOKIE].value)


async def test_reading_redis_gives_no_session_id(client: Any, redis: Any) -> None:
    """Whoever reads Redis (a backup, the AOF file) must not be able to sign in with it."""
    sid = await _login(client)
    dump = []
    async for key in redis.scan_iter():
        dump.append(key)
        if await redis.type(key) == b"string":
            dump.append(await redis.get(key))
    assert dump and not any(sid.encode() in item for item in dump)
    me = await client.get("/api/v1/me", headers={"Cookie": f"{SESSION_COOKIE}={sid}"})
    assert me.status == 200  # the session still works from its cookie


async def test_refused_tokens_are_logged_with_where_from_not_the_token(client: Any) -> None:
    guess = "rdk_guessed-token-0123456789"
    with capture_logs() as logs:
        r = await client.post("/console/login", data={"token": guess}, allow_redirects=False)
        assert r.status == 401
        r = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {guess}"})
        assert r.status == 401
        r = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {client.token}"})
        assert r.status == 200
    refused = {e["event"]: e for e in logs if e["event"].endswith("_refused")}
    assert set(refused) == {"console_login_refused", "api_token_refused"}
    assert all(e["remote"] == "127.0.0.1" for e in refused.values())
    assert all(e["log_level"] == "warning" for e in refused.values())
    assert guess not in repr(logs) and client.token not in repr(logs)


async def test_api_answers_are_never_cached_nor_sniffed(client: Any) -> None:
    for headers in ({"Authorization": f"Bearer {client.token}"}, {}):
        r = await client.get("/api/v1/tickets", headers=headers)
        assert r.status in (200, 401)
        assert r.headers["Cache-Control"] == "no-store", r.status
        assert r.headers["X-Content-Type-Options"] == "nosniff"


async def test_login_next_with_a_trailing_newline_is_not_kept(client: Any) -> None:
    html = await (await client.get("/console/login", params={"next": "/console\n"})).text()
    assert 'name="next" value="/console">' in html
    r = await client.post(
        "/console/login",
        data={"token": client.token, "next": "/console/x\n"},
        allow_redirects=False,
    )
    assert r.status == 303 and r.headers["Location"] == "/console"
