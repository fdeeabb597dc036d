"""The console's server side without a browser: sign-in, cookies, CSRF, headers, helpers."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from bot.app import build_app
from escalation.agents import AgentStore
from escalation.auth import SESSION_COOKIE
from escalation.pages import CSP
from tests.conftest import make_settings
from tests.support.browser import sandbox_accounts


@pytest.fixture
async def client(
    aiohttp_client: Any, redis_server: Any, redis: Any, keys: Any, tmp_path: Any
) -> Any:
    settings = make_settings(redis_server.url, tmp_path, accounts=sandbox_accounts())
    c = await aiohttp_client(build_app(settings, role="web"))
    store = AgentStore(redis, keys)
    c.tokens = {"ann": await store.add("ann", "agent"), "sue": await store.add("sue", "supervisor")}
    return c


async def login(client: Any, who: str) -> str:
    r = await client.post(
        "/console/login",
        data={"token": client.tokens[who], "next": "/console"},
        allow_redirects=False,
    )
    assert r.status == 303 and r.headers["Location"] == "/console"
    morsel = r.cookies[SESSION_COOKIE]
    assert morsel["httponly"] and morsel["secure"] and morsel["samesite"] == "Strict"
    assert morsel["path"] == "/"
    return str(morsel.value)


def cookie(sid: str) -> dict[str, str]:
    # aiohttp's client jar keeps Secure cookies off http, so send it by hand.
    return {"Cookie": f"{SESSION_COOKIE}={sid}"}


async def test_pages_need_a_session(client: Any) -> None:
    for path in ("/console", "/console/tickets/T1", "/console/supervisor"):
        r = await client.get(path, allow_redirects=False)
        assert r.status == 303 and r.headers["Location"].startswith("/console/login"), path
    r = await client.get("/console/tickets/T9", allow_redirects=False)
    assert r.headers["Location"] == "/console/login?next=/console/tickets/T9"
    assert (await client.get("/console/rules.json")).status == 401


async def test_login_refuses_bad_tokens_and_other_sites(client: Any) -> None:
    r = await client.post("/console/login", data={"token": "rdk_nope"}, allow_redirects=False)
    assert r.status == 401 and SESSION_COOKIE not in r.cookies
    assert "That token is not valid." in await r.text()
    r = await client.post(
        "/console/login",
        data={"token": client.tokens["ann"]},
        headers={"Origin": "https://evil.example"},
        allow_redirects=False,
    )
    assert r.status == 403 and SESSION_COOKIE not in r.cookies
    r = await client.post(
        "/console/login",
        data={"token": client.tokens["ann"], "next": "https://evil.example/"},
        allow_redirects=False,
    )
    assert r.headers["Location"] == "/console"  # no open redirect


async def test_page_headers_and_no_secrets(client: Any) -> None:
    sid = await login(client, "ann")
    r = await client.get("/console", headers=cookie(sid))
    assert r.status == 200
    assert r.headers["Content-Security-Policy"] == CSP
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["X-Frame-Options"] == "DENY"
    html = await r.text()
    assert client.tokens["ann"] not in html and sid not in html
    assert "<script>" not in html and " on" + "click=" not in html  # no inline script or handler
    static = await client.get("/static/console.js")
    assert static.status == 200 and "Cache-Control" not in static.headers


async def test_logout_needs_the_csrf_token(client: Any) -> None:
    sid = await login(client, "ann")
    page = await (await client.get("/console", headers=cookie(sid))).text()
    csrf = page.split('name="csrf-token" content="')[1].split('"')[0]
    r = await client.post("/console/logout", data={}, headers=cookie(sid), allow_redirects=False)
    assert r.status == 403
    r = await client.post(
        "/console/logout", data={"csrf_token": csrf}, headers=cookie(sid), allow_redirects=False
    )
    assert r.status == 303 and r.headers["Location"] == "/console/login"
    assert r.cookies[SESSION_COOKIE].value == ""
    r = await client.get("/console", headers=cookie(sid), allow_redirects=False)
    assert r.status == 303  # the session is gone on the server too
    api = await client.get("/api/v1/me", headers=cookie(sid))
    assert api.status == 401


async def test_sessions_end_with_their_token_even_after_the_agent_is_added_again(
    client: Any, redis: Any, keys: Any
) -> None:
    sid = await login(client, "ann")  # e.g. on a laptop that is then stolen
    assert (await client.get("/api/v1/me", headers=cookie(sid))).status == 200
    store = AgentStore(redis, keys)
    await store.revoke("ann")
    assert (await client.get("/api/v1/me", headers=cookie(sid))).status == 401
    # Token rotation as documented: revoke, then add again (here with more rights).
    client.tokens["ann"] = await store.add("ann", "supervisor")
    assert (await client.get("/api/v1/me", headers=cookie(sid))).status == 401
    r = await client.get("/console", headers=cookie(sid), allow_redirects=False)
    assert r.status == 303 and r.headers["Location"].startswith("/console/login")
    assert (await client.get("/console/rules.json", headers=cookie(sid))).status == 401
    fresh = await login(client, "ann")
    me = await (await client.get("/api/v1/me", headers=cookie(fresh))).json()
    assert me["agent"] == {"name": "ann", "role": "supervisor"}
    # Only the token's hash is kept in the session (itself under the hash of its id).
    raw = await redis.get(keys.ns("sessions", hashlib.sha256(fresh.encode()).hexdigest()))
    assert client.tokens["ann"] not in raw.decode()


async def test_rules_and_agents_helpers(client: Any) -> None:
    ann = await login(client, "ann")
    rules = await (await client.get("/console/rules.json", headers=cookie(ann))).json()
    assert rules["accounts"]["acme"]["platform"] == "x"  # sandbox accounts imitate a platform
    assert rules["accounts"]["acme-cn"]["limits"]["mention"] == 299
    assert rules["accounts"]["acme"]["reply_prefix"] == ""  # the sandbox adds no @handle
    assert (await client.get("/console/api/agents", headers=cookie(ann))).status == 403
    assert (await client.get("/console/supervisor", headers=cookie(ann))).status == 403
    sue = await login(client, "sue")
    data = await (await client.get("/console/api/agents", headers=cookie(sue))).json()
    assert data == {
        "agents": [{"name": "ann", "role": "agent"}, {"name": "sue", "role": "supervisor"}]
    }
    assert (await client.get("/console/supervisor", headers=cookie(sue))).status == 200


async def test_agents_get_a_console_page_for_the_supervisor_view(client: Any) -> None:
    """Not a bare text 403: the console's layout, a short reason and the way back."""
    ann = await login(client, "ann")
    r = await client.get("/console/supervisor", headers=cookie(ann))
    assert r.status == 403
    assert r.content_type == "text/html"
    assert r.headers["Content-Security-Policy"] == CSP
    html = await r.text()
    assert 'Signed in as <strong id="whoami">ann</strong>' in html  # the console's top bar
    assert "needs the supervisor role" in html
    assert '<a href="/console" id="back-to-queue">' in html
    assert 'href="/console/supervisor"' not in html  # no nav link to where ann cannot go


async def test_ticket_page_rejects_odd_ids(client: Any) -> None:
    sid = await login(client, "ann")
    r = await client.get("/console/tickets/%3Cscript%3E", headers=cookie(sid))
    assert r.status == 404
    r = await client.get("/console/tickets/T12", headers=cookie(sid))
    assert r.status == 200 and 'data-ticket-id="T12"' in await r.text()


async def test_login_warns_when_the_cookie_cannot_stick(client: Any) -> None:
    r = await client.get("/console/login")
    assert "plain HTTP" not in await r.text()  # 127.0.0.1: browsers accept Secure cookies
    r = await client.get("/console/login", headers={"Host": "192.0.2.7:8080"})
    assert "plain HTTP" in await r.text()
    r = await client.get(
        "/console/login", headers={"Host": "desk.example", "X-Forwarded-Proto": "https"}
    )
    assert "plain HTTP" not in await r.text()
