"""Security review of the console and the sandbox: what an attacker tries on a deployed
instance (open redirects, cookie flags, framing, CSRF, roles, ids in paths, the sandbox
reaching other visitors or real accounts)."""

from __future__ import annotations

from typing import Any

import pytest

from bot.app import build_app
from escalation.agents import AgentStore
from escalation.auth import SESSION_COOKIE
from escalation.sandbox import CSRF_COOKIE, CUSTOMER_COOKIE
from tests.conftest import GENERIC_SECRET, make_settings
from tests.support.browser import sandbox_accounts


@pytest.fixture
async def client(
    aiohttp_client: Any, redis_server: Any, redis: Any, keys: Any, tmp_path: Any
) -> Any:
    real = {"id": "realco", "platform": "generic", "secrets": {"signing_secret": GENERIC_SECRET}}
    settings = make_settings(
        redis_server.url,
        tmp_path,
        accounts=[*sandbox_accounts(), real],
        **{"sandbox.enabled": True},
    )
    c = await aiohttp_client(build_app(settings, role="web"))
    store = AgentStore(redis, keys)
    c.token = await store.add("ann", "agent")
    c.sup_token = await store.add("sue", "supervisor")
    return c


async def _login(client: Any, token: str | None = None, **form: str) -> Any:
    """Sign in; the session cookie (Secure: the jar keeps it from http) goes in ``client.h``."""
    r = await client.post(
        "/console/login", data={"token": token or client.token, **form}, allow_redirects=False
    )
    assert r.status == 303
    client.h = {"Cookie": f"{SESSION_COOKIE}={r.cookies[SESSION_COOKIE].value}"}
    return r


async def test_ticket_page_id_must_be_ascii_digits_without_a_newline(client: Any) -> None:
    """``re.match`` with ``$`` took "T1\\n", and ``\\d`` any script's digits."""
    await _login(client)
    for tid in ("T1%0A", "T%D9%A3", "T1%3A*"):  # "T1\n", "T" + Arabic-Indic 3, "T1:*"
        r = await client.get(f"/console/tickets/{tid}", headers=client.h, allow_redirects=False)
        assert r.status == 404, tid
    ok = await client.get("/console/tickets/T1", headers=client.h, allow_redirects=False)
    assert ok.status == 200


async def test_names_and_ticket_ids_are_matched_whole(client: Any, redis: Any, keys: Any) -> None:
    """``$`` admits a final newline and ``isdigit`` any script's digits."""
    from escalation.agents import AgentError
    from escalation.tickets import _valid_id

    with pytest.raises(AgentError):
        await AgentStore(redis, keys).add("bob\n", "agent")
    assert not _valid_id("T\u0663") and not _valid_id("T\u00b2") and _valid_id("T3")
    r = await client.post(
        "/api/v1/tickets/T1/assign",
        json={"agent": "ann\n"},
        headers={"Authorization": f"Bearer {client.sup_token}"},
    )
    assert r.status == 422


@pytest.mark.parametrize(
    "nxt",
    [
        "//evil.example",
        "/\\evil.example",
        "https://evil.example/console",
        "/console/../..//evil.example",
        "/console%2F%2Fevil.example",
        "/%2F%2Fevil.example",
        "/console\r\nSet-Cookie: x=1",
        "/console@evil.example",
    ],
)
async def test_sign_in_never_redirects_off_site(client: Any, nxt: str) -> None:
    r = await _login(client, next=nxt)
    assert r.headers["Location"] == "/console", nxt
    html = await (await client.get("/console/login", params={"next": nxt})).text()
    assert 'name="next" value="/console"' in html or "evil" not in html


async def test_session_cookie_flags_and_page_headers(client: Any) -> None:
    r = await _login(client)
    cookie = r.cookies[SESSION_COOKIE]
    assert cookie["httponly"] and cookie["secure"] and cookie["samesite"] == "Strict"
    assert cookie["path"] == "/"
    for path in ("/console", "/console/login", "/sandbox"):
        page = await client.get(path, allow_redirects=False)
        csp = page.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp, path
        assert page.headers["X-Frame-Options"] == "DENY", path
        assert "unsafe-inline" not in csp


async def test_cross_site_login_and_logout_are_refused(client: Any) -> None:
    r = await client.post(
        "/console/login",
        data={"token": client.token},
        headers={"Origin": "https://evil.example"},
        allow_redirects=False,
    )
    assert r.status == 403 and SESSION_COOKIE not in r.cookies
    await _login(client)
    r = await client.post("/console/logout", data={}, headers=client.h, allow_redirects=False)
    assert r.status == 403  # no csrf_token field: still signed in
    assert (await client.get("/api/v1/me", headers=client.h)).status == 200


async def test_cookie_session_needs_the_csrf_header_on_every_api_post(client: Any) -> None:
    await _login(client)
    for action in ("claim", "release", "reply", "notes", "resolve", "reopen"):
        r = await client.post(f"/api/v1/tickets/T1/{action}", json={"text": "x"}, headers=client.h)
        assert r.status == 401, action


async def test_agents_cannot_use_supervisor_routes(client: Any) -> None:
    h = {"Authorization": f"Bearer {client.token}"}
    assert (await client.get("/console/api/agents", headers=h)).status == 401  # cookie only
    await _login(client)
    assert (await client.get("/console/api/agents", headers=client.h)).status == 403
    assert (await client.get("/console/supervisor", headers=client.h)).status == 403
    for action, body in (("assign", {"agent": "ann"}), ("priority", {"priority": "high"})):
        r = await client.post(f"/api/v1/tickets/T1/{action}", json=body, headers=h)
        assert r.status == 403, action


async def test_sandbox_visitor_sees_only_their_own_conversation(client: Any) -> None:
    page = await client.get("/sandbox")
    assert page.status == 200
    for name in (CUSTOMER_COOKIE, CSRF_COOKIE):
        c = page.cookies[name]
        assert c["path"] == "/sandbox" and c["httponly"] and c["samesite"] == "Strict"
    # A forged customer id reads an empty conversation, never someone else's.
    client.session.cookie_jar.update_cookies({CUSTOMER_COOKIE: "sbdeadbeefdeadbeef"})
    account = sandbox_accounts()[0]["id"]
    r = await client.get("/sandbox/api/messages", params={"account": account})
    assert r.status == 200 and (await r.json())["entries"] == []
    # A real (non-sandbox) account is not reachable through the sandbox.
    r = await client.get("/sandbox/api/messages", params={"account": "realco"})
    assert r.status == 404
