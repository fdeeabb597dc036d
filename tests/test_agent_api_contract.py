"""The agent API as a client developer meets it: bodies however they arrive, input the
JSON decoder or Redis cannot take, event-stream cursors, and answers that match
/api/v1/openapi.json (statuses, error bodies, headers)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from bot.platforms import windows
from escalation.agents import AgentStore
from escalation.auth import SESSION_COOKIE, create_session
from tests.conftest import GENERIC_SECRET, make_settings
from tests.fakes.harness import accounts
from tests.support.escalation import FakeClock, event
from tests.test_agent_api import _client, auth, new_ticket

API = "/api/v1"
JSON = {"Content-Type": "application/json"}
GENERIC = {
    "id": "acme",
    "platform": "generic",
    "user_id": "1000",
    "handle": "acme",
    "secrets": {"signing_secret": GENERIC_SECRET},
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def api(
    aiohttp_client: Any, redis_server: Any, redis: Any, keys: Any, tmp_path: Any, clock: FakeClock
) -> Any:
    """The web role on loopback with a generic, an X, a Weibo and a Mastodon account."""
    settings = make_settings(redis_server.url, tmp_path, accounts=[GENERIC, *accounts()])
    return await _client(aiohttp_client, settings, redis, keys, clock)


async def snapshot(api: Any, redis: Any, keys: Any, tid: str) -> Any:
    """Everything a refused request must leave as it was."""
    t = await api.store.get(tid)
    return (
        t.to_hash() if t else None,
        await api.store.lists(tid),
        await redis.xlen(keys.events),
        await redis.xlen(keys.outbox),
    )


async def pieces(*parts: bytes) -> AsyncIterator[bytes]:
    """A chunked request body, one chunk per part, each after the server has had time to
    read the one before (so it sees them arrive separately)."""
    for i, part in enumerate(parts):
        if i:
            await asyncio.sleep(0.2)
        yield part


async def test_a_body_that_arrives_in_pieces_is_read_whole(api: Any, redis: Any, keys: Any) -> None:
    """A body sent chunked (or split over TCP segments, as any large body is off
    loopback) was cut at the first piece to arrive: a valid reply came back 400
    ``bad_json``, and an oversized one 400 instead of 413."""
    tid = await new_ticket(api)
    body = json.dumps({"text": "We have refunded your order, sorry for the wait."}).encode()
    r = await api.post(
        f"{API}/tickets/{tid}/reply",
        data=pieces(body[:12], body[12:30], body[30:]),
        headers={**auth(api, "ann"), **JSON},
    )
    assert r.status == 200, await r.text()
    assert (await r.json())["created"] is True
    d = await (await api.get(f"{API}/tickets/{tid}", headers=auth(api, "ann"))).json()
    assert [m["text"] for m in d["conversation"] if m["from"] == "agent"] == [
        "We have refunded your order, sorry for the wait."
    ]

    before = await snapshot(api, redis, keys, tid)
    big = json.dumps({"text": "x" * 70_000}).encode()  # no Content-Length: chunked
    r = await api.post(
        f"{API}/tickets/{tid}/notes",
        data=pieces(big[:1000], big[1000:40_000], big[40_000:]),
        headers={**auth(api, "ann"), **JSON},
    )
    assert r.status == 413 and (await r.json())["error"]["code"] == "too_large"
    assert await snapshot(api, redis, keys, tid) == before


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"[" * 50_000, 400, "nests too deeply"),  # under the 64 KiB limit
        (b'{"text": ' + b"1" * 5000 + b"}", 400, "number too long"),  # > 4300 digits
        (b'{"text": "sorry \\ud83d about that"}', 422, "surrogate"),  # half an emoji
    ],
)
async def test_json_the_server_cannot_take_is_a_4xx_and_changes_nothing(
    api: Any, redis: Any, keys: Any, body: bytes, status: int, says: str
) -> None:
    """Each was a 500 with a traceback: the decoder's recursion limit, Python's limit on
    integer digits, and a lone surrogate that parses but cannot be encoded for Redis."""
    tid = await new_ticket(api)
    before = await snapshot(api, redis, keys, tid)
    for action in ("reply", "notes", "assign", "priority", "claim"):
        r = await api.post(
            f"{API}/tickets/{tid}/{action}", data=body, headers={**auth(api, "sue"), **JSON}
        )
        err = (await r.json())["error"]
        assert r.status == status, (action, r.status, err)
        assert err["code"] == ("bad_json" if status == 400 else "invalid")
        assert says in err["message"], err
    assert await snapshot(api, redis, keys, tid) == before


@pytest.mark.parametrize(
    "cursor",
    [
        "18446744073709551616-0",  # 2^64: past Redis's range
        "0-99999999999999999999",
        "1700000000000-0\n",  # `$` let a trailing newline through
        "١٧٠٠-٠",  # Arabic-Indic digits matched `\d`
    ],
)
async def test_an_event_cursor_redis_would_refuse_is_422(api: Any, cursor: str) -> None:
    """It was accepted with a 200, and the stream then broke on Redis's refusal (the
    client hung with a half-sent response; a 500 traceback in the log)."""
    r = await asyncio.wait_for(
        api.get(f"{API}/events", params={"since": cursor}, headers=auth(api, "ann")), 5
    )
    assert r.status == 422, r.status
    assert (await r.json())["error"]["code"] == "invalid"


async def test_the_largest_event_cursor_is_accepted(api: Any) -> None:
    headers = {**auth(api, "ann"), "Last-Event-ID": f"{2**64 - 1}-{2**64 - 1}"}
    async with api.get(f"{API}/events", headers=headers) as r:
        assert r.status == 200
        assert await asyncio.wait_for(r.content.readline(), 5) == b": connected\n"


async def test_a_stream_that_fails_after_it_started_ends_cleanly(
    api: Any, monkeypatch: Any
) -> None:
    """Redis lost mid-stream: the stream ends (the browser reconnects with Last-Event-ID);
    no error response is written into the event stream after its 200."""
    from escalation import api as api_mod

    async def lost(*_a: Any, **_k: Any) -> Any:
        raise RedisConnectionError("connection lost")

    monkeypatch.setattr(api_mod, "_pump", lost)
    async with api.get(f"{API}/events", headers=auth(api, "ann")) as r:
        assert r.status == 200
        rest = await asyncio.wait_for(r.content.read(), 5)  # ends, nothing after the 200
        assert b"error" not in rest and b"HTTP/1.1" not in rest


async def test_head_on_the_event_stream_is_headers_only(api: Any) -> None:
    """HEAD was served like GET: a body after the headers, and a stream held open."""
    r = await asyncio.wait_for(api.head(f"{API}/events", headers=auth(api, "ann")), 5)
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
    assert await r.read() == b""
    assert (await api.head(f"{API}/events")).status == 401


async def test_401_names_the_scheme(api: Any, redis: Any, keys: Any) -> None:
    """RFC 9110: a 401 carries WWW-Authenticate (clients and proxies key on it)."""
    tid = await new_ticket(api)
    ann = await AgentStore(redis, keys).get("ann")
    assert ann is not None
    session = await create_session(redis, keys, ann, api.tokens["ann"])
    await AgentStore(redis, keys).revoke("bob")
    for r in (
        await api.get(f"{API}/tickets"),
        await api.get(f"{API}/me", headers=auth(api, "bob")),  # revoked
        await api.post(f"{API}/tickets/{tid}/claim", cookies={SESSION_COOKIE: session.session_id}),
    ):
        assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer"), r.status
        assert (await r.json())["error"]["code"] == "unauthorized"
    assert "WWW-Authenticate" not in (await api.get(f"{API}/me", headers=auth(api, "ann"))).headers


async def test_every_answer_is_documented_and_every_error_body_fits_the_schema(
    api: Any, redis: Any, keys: Any, clock: FakeClock, monkeypatch: Any
) -> None:
    """A client generated from openapi.json must know every status a route answers and
    every field of its error bodies (``too_long`` carries length and limit,
    ``window_closed`` platform; Redis down is 503 on GETs too)."""
    doc = await (await api.get(f"{API}/openapi.json")).json()
    error_schema = doc["components"]["responses"]["Error"]["content"]["application/json"]
    error_fields = set(error_schema["schema"]["properties"]["error"]["properties"])
    seen: list[tuple[str, str, int]] = []

    async def check(method: str, path: str, route: str, who: str | None = "ann", **kw: Any) -> Any:
        headers = {**(auth(api, who) if who else {}), **kw.pop("headers", {})}
        r = await api.request(method, f"{API}{path}", headers=headers, **kw)
        documented = doc["paths"][route][method.lower()]["responses"]
        assert str(r.status) in documented, (method, route, r.status, sorted(documented))
        if r.status >= 400:
            err = (await r.json())["error"]
            assert isinstance(err["code"], str) and isinstance(err["message"], str)
            assert set(err) <= error_fields, (route, set(err) - error_fields)
        seen.append((method, route, r.status))
        return r

    tid = await new_ticket(api)
    x = await new_ticket(api, platform="x", account="brandx", user="7", kind="mention")
    wb = event("差评，客服在哪", platform="weibo", account="brandwb", user="8", at=clock.t)
    wb.received_at = clock.t
    await windows.record(redis, keys, wb)
    weibo, _ = await api.store.open_or_append(wb, reason="complaint", priority="high", reasons={})
    one = "/tickets/{id}"
    await check("GET", "/me", "/me")
    await check("GET", "/me", "/me", who=None)
    await check("GET", "/tickets?limit=0", "/tickets")
    await check("GET", "/tickets/T424242", one)
    await check("GET", "/events?since=1-x", "/events")
    await check("POST", f"/tickets/{tid}/claim", one + "/claim", data=b"[1]", headers=JSON)
    await check("POST", f"/tickets/{tid}/claim", one + "/claim", who="bob")
    await check("POST", f"/tickets/{tid}/release", one + "/release", data=b"{oops", headers=JSON)
    await check("POST", f"/tickets/{tid}/claim", one + "/claim", who="ann")  # 409 claimed
    await check("POST", f"/tickets/{tid}/reply", one + "/reply", who="ann", json={"text": 1})
    await check("POST", f"/tickets/{tid}/notes", one + "/notes", json={"text": " "})
    await check("POST", f"/tickets/{tid}/priority", one + "/priority", json={"priority": "x"})
    await check("POST", f"/tickets/{tid}/assign", one + "/assign", who="sue", json={"agent": "?"})
    r = await check("POST", f"/tickets/{x}/reply", one + "/reply", json={"text": "y" * 281})
    assert (await r.json())["error"]["code"] == "too_long"
    clock.advance(49 * 3600)  # Weibo: the 48 h DM window has closed
    r = await check("POST", f"/tickets/{weibo}/reply", one + "/reply", json={"text": "您好"})
    assert (await r.json())["error"]["code"] == "window_closed"
    await check("POST", f"/tickets/{tid}/resolve", one + "/resolve", who="sue")
    await check("POST", f"/tickets/{tid}/reopen", one + "/reopen", data=b"x" * 70_000)

    async def down(*_a: Any, **_k: Any) -> Any:
        raise RedisConnectionError("connection refused")

    monkeypatch.setattr(api.store, "search", down)
    monkeypatch.setattr(api.store, "get", down)
    r = await check("GET", "/tickets", "/tickets")
    assert r.status == 503 and (await r.json())["error"]["code"] == "unavailable"
    await check("GET", f"/tickets/{tid}", one)
    statuses = {s for _m, _r, s in seen}
    assert {200, 400, 401, 403, 404, 409, 413, 422, 503} <= statuses, statuses

    notes = doc["paths"][one + "/notes"]["post"]["requestBody"]["content"]["application/json"]
    assert notes["schema"]["properties"]["text"]["minLength"] == 1  # " " is refused
    reply = doc["paths"][one + "/reply"]["post"]
    assert "Idempotency-Key" in {p.get("name") for p in reply["parameters"]}
    (limit,) = [p for p in doc["paths"]["/tickets"]["get"]["parameters"] if p["name"] == "limit"]
    assert limit["schema"]["default"] == 100
