"""The agent API: auth and roles, ticket actions, errors, fuzzing, SSE, OpenAPI."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from bot.app import build_app
from bot.outbox import sent_record
from escalation.agents import AgentStore
from escalation.api import TICKETS
from escalation.tickets import TicketStore
from tests.support.escalation import FakeClock, event

API = "/api/v1"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def api(aiohttp_client: Any, settings: Any, redis: Any, keys: Any, clock: FakeClock) -> Any:
    app = build_app(settings, role="web")
    app[TICKETS] = TicketStore(redis, keys, settings.escalation, clock=clock)
    client = await aiohttp_client(app)
    agents = AgentStore(redis, keys)
    client.tokens = {
        "ann": await agents.add("ann", "agent"),
        "bob": await agents.add("bob", "agent"),
        "sue": await agents.add("sue", "supervisor"),
    }
    client.store = app[TICKETS]
    return client


def auth(client: Any, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {client.tokens[who]}"}


async def new_ticket(client: Any, **kw: Any) -> str:
    tid, created = await client.store.open_or_append(
        event(**kw), reason="complaint", priority="normal", reasons={"rule": "complaint"}
    )
    assert created
    return str(tid)


async def test_auth_missing_wrong_revoked(api: Any, redis: Any, keys: Any) -> None:
    r = await api.get(f"{API}/tickets")
    assert r.status == 401 and (await r.json())["error"]["code"] == "unauthorized"
    r = await api.get(f"{API}/tickets", headers={"Authorization": "Bearer nope"})
    assert r.status == 401
    r = await api.get(f"{API}/tickets", headers={"Authorization": "Basic abc"})
    assert r.status == 401
    assert (await api.get(f"{API}/me", headers=auth(api, "ann"))).status == 200
    await AgentStore(redis, keys).revoke("ann")
    assert (await api.get(f"{API}/me", headers=auth(api, "ann"))).status == 401
    # Tokens are stored hashed only.
    dump = json.dumps(
        {k.decode(): v.decode() for k, v in (await redis.hgetall(keys.ns("agents"))).items()}
    )
    assert api.tokens["bob"] not in dump


async def test_supervisor_only_actions(api: Any) -> None:
    tid = await new_ticket(api)
    r = await api.post(
        f"{API}/tickets/{tid}/priority", json={"priority": "urgent"}, headers=auth(api, "ann")
    )
    assert r.status == 403 and (await r.json())["error"]["code"] == "forbidden"
    r = await api.post(
        f"{API}/tickets/{tid}/assign", json={"agent": "bob"}, headers=auth(api, "ann")
    )
    assert r.status == 403
    r = await api.post(
        f"{API}/tickets/{tid}/priority", json={"priority": "urgent"}, headers=auth(api, "sue")
    )
    assert r.status == 200 and (await r.json())["ticket"]["priority"] == "urgent"
    r = await api.post(
        f"{API}/tickets/{tid}/assign", json={"agent": "bob"}, headers=auth(api, "sue")
    )
    assert r.status == 200 and (await r.json())["ticket"]["assignee"] == "bob"
    r = await api.post(
        f"{API}/tickets/{tid}/assign", json={"agent": "ghost"}, headers=auth(api, "sue")
    )
    assert r.status == 422


async def test_claim_conflict_names_owner_and_lease_expires(api: Any, clock: FakeClock) -> None:
    tid = await new_ticket(api)
    r = await api.post(f"{API}/tickets/{tid}/claim", headers=auth(api, "ann"))
    assert r.status == 200 and (await r.json())["ticket"]["assignee"] == "ann"
    r = await api.post(f"{API}/tickets/{tid}/claim", headers=auth(api, "bob"))
    body = await r.json()
    assert r.status == 409 and body["error"]["owner"] == "ann" and "ann" in body["error"]["message"]
    clock.advance(api.store.cfg.claim_lease_s + 1)  # not renewed: the lease lapses
    r = await api.post(f"{API}/tickets/{tid}/claim", headers=auth(api, "bob"))
    assert r.status == 200 and (await r.json())["ticket"]["assignee"] == "bob"


async def test_twenty_concurrent_claims_one_winner(api: Any) -> None:
    tid = await new_ticket(api)
    store = AgentStore(api.store.redis, api.store.keys)
    tokens = [await store.add(f"agent{i}", "agent") for i in range(20)]
    rs = await asyncio.gather(
        *(
            api.post(f"{API}/tickets/{tid}/claim", headers={"Authorization": f"Bearer {t}"})
            for t in tokens
        )
    )
    statuses = sorted(r.status for r in rs)
    assert statuses.count(200) == 1 and statuses.count(409) == 19


async def test_concurrent_replies_one_delivered(api: Any, redis: Any, keys: Any) -> None:
    tid = await new_ticket(api)
    rs = await asyncio.gather(
        *(
            api.post(
                f"{API}/tickets/{tid}/reply",
                json={"text": f"hello from {who}"},
                headers=auth(api, who),
            )
            for who in ("ann", "bob", "sue")
        )
    )
    ok = [r for r in rs if r.status == 200]
    assert sorted(r.status for r in rs) == [200, 409, 409]  # one agent's reply goes out
    owners = {(await r.json())["ticket"]["assignee"] for r in ok}
    assert len(owners) == 1  # one agent answered; the others were refused
    # Same idempotency key twice: one outbox entry.
    winner = owners.pop()
    for _ in range(2):
        r = await api.post(
            f"{API}/tickets/{tid}/reply",
            json={"text": "again", "idempotency_key": "k1"},
            headers=auth(api, winner),
        )
        assert r.status == 200
    entries = await redis.xrange(keys.outbox)
    texts = [json.loads(f[b"reply"])["text"] for _, f in entries]
    assert texts.count("again") == 1 and len(texts) == len(ok) + 1
    assert await sent_record(redis, keys, "nothing") is None


async def test_ticket_detail_and_resolve_reopen(api: Any) -> None:
    tid = await new_ticket(api)
    r = await api.post(
        f"{API}/tickets/{tid}/notes", json={"text": "VIP customer"}, headers=auth(api, "ann")
    )
    assert r.status == 201
    r = await api.get(f"{API}/tickets/{tid}", headers=auth(api, "ann"))
    d = await r.json()
    assert d["ticket"]["sla"]["first_response"]["state"] == "running"
    assert d["conversation"][0]["from"] == "customer" and d["notes"][0]["text"] == "VIP customer"
    assert d["history"][0]["action"] == "created" and d["ticket"]["reasons"] == {
        "rule": "complaint"
    }
    assert d["ticket"]["reply_window"] is None  # generic platform: no window
    r = await api.post(f"{API}/tickets/{tid}/claim", headers=auth(api, "ann"))
    r = await api.post(f"{API}/tickets/{tid}/resolve", headers=auth(api, "bob"))
    assert r.status == 409
    r = await api.post(f"{API}/tickets/{tid}/resolve", headers=auth(api, "ann"))
    assert r.status == 200 and (await r.json())["ticket"]["status"] == "resolved"
    assert await api.store.open_ticket_for("generic:acme:42") is None
    r = await api.post(f"{API}/tickets/{tid}/resolve", headers=auth(api, "ann"))
    assert r.status == 409
    lst = await (await api.get(f"{API}/tickets?status=resolved", headers=auth(api, "ann"))).json()
    assert [t["id"] for t in lst["tickets"]] == [tid]
    r = await api.post(f"{API}/tickets/{tid}/reopen", headers=auth(api, "ann"))
    assert r.status == 200 and (await r.json())["ticket"]["status"] == "open"
    assert await api.store.open_ticket_for("generic:acme:42") == tid


async def test_list_filters_and_order(api: Any, clock: FakeClock) -> None:
    a = await new_ticket(api, user="1")
    b = await new_ticket(api, user="2")
    await api.post(
        f"{API}/tickets/{b}/priority", json={"priority": "urgent"}, headers=auth(api, "sue")
    )
    await api.post(f"{API}/tickets/{a}/claim", headers=auth(api, "ann"))
    lst = await (await api.get(f"{API}/tickets", headers=auth(api, "ann"))).json()
    assert [t["id"] for t in lst["tickets"]] == [b, a]  # urgent is due sooner
    lst = await (await api.get(f"{API}/tickets?priority=urgent", headers=auth(api, "ann"))).json()
    assert [t["id"] for t in lst["tickets"]] == [b]
    lst = await (await api.get(f"{API}/tickets?assignee=me", headers=auth(api, "ann"))).json()
    assert [t["id"] for t in lst["tickets"]] == [a]
    lst = await (await api.get(f"{API}/tickets?assignee=none", headers=auth(api, "ann"))).json()
    assert [t["id"] for t in lst["tickets"]] == [b]
    lst = await (await api.get(f"{API}/tickets?account=other", headers=auth(api, "ann"))).json()
    assert lst["tickets"] == []


async def test_fuzz_never_500_and_nothing_changes(api: Any, redis: Any) -> None:
    tid = await new_ticket(api)
    before = await api.store.get(tid)
    bodies: list[Any] = [
        b"{not json",
        b"\xff\xfe",
        b"[]",
        b'"text"',
        b"null",
        json.dumps({"text": 5}).encode(),
        json.dumps({"text": ["a"]}).encode(),
        json.dumps({"text": ""}).encode(),
        json.dumps({"text": "x" * 100_000}).encode(),
        json.dumps({"priority": "extreme", "agent": {"a": 1}}).encode(),
        b"x" * 70_000,
    ]
    reply_only = [
        json.dumps({"text": "hi", "channel": "carrier-pigeon"}).encode(),
        json.dumps({"text": "hi", "idempotency_key": "bad key!"}).encode(),
    ]
    for action in ("reply", "notes", "priority", "assign"):
        for body in bodies + (reply_only if action == "reply" else []):
            r = await api.post(
                f"{API}/tickets/{tid}/{action}",
                data=body,
                headers={**auth(api, "sue"), "Content-Type": "application/json"},
            )
            assert 400 <= r.status < 500, (action, body[:40], r.status)
            assert "error" in await r.json()
    for bad_id in ("T999999", "nope", "T", "T1x", "%00", "T" + "9" * 40):
        for action in ("claim", "reply", "resolve", "reopen", "release"):
            r = await api.post(
                f"{API}/tickets/{bad_id}/{action}", json={"text": "hi"}, headers=auth(api, "ann")
            )
            assert r.status == 404, (bad_id, action, r.status)
        r = await api.get(f"{API}/tickets/{bad_id}", headers=auth(api, "ann"))
        assert r.status == 404
    for q in ("status=weird", "priority=9", "limit=abc", "limit=0", "limit=100000"):
        assert (await api.get(f"{API}/tickets?{q}", headers=auth(api, "ann"))).status == 422
    assert (await api.get(f"{API}/nothing/here", headers=auth(api, "ann"))).status == 404
    after = await api.store.get(tid)
    assert after is not None and before is not None
    assert after.to_hash() == before.to_hash()
    assert await redis.xlen(api.store.keys.outbox) == 0


async def test_events_stream_sees_changes(api: Any) -> None:
    tid = await new_ticket(api)
    async with api.get(f"{API}/events", headers=auth(api, "ann")) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
        assert await asyncio.wait_for(r.content.readline(), 5) == b": connected\n"
        await r.content.readline()
        await api.post(f"{API}/tickets/{tid}/claim", headers=auth(api, "bob"))
        lines = []
        while not lines or lines[-1] != b"\n":
            lines.append(await asyncio.wait_for(r.content.readline(), 5))
        text = b"".join(lines).decode()
        assert "event: ticket.claimed" in text and f'"ticket_id": "{tid}"' in text


async def test_openapi_describes_every_route(api: Any) -> None:
    doc = await (await api.get(f"{API}/openapi.json")).json()
    paths = set(doc["paths"])
    for route in api.app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if path.startswith(API) and "{tail}" not in path:
            assert path[len(API) :] in paths, path


async def test_session_cookie_needs_csrf_for_changes(api: Any, redis: Any, keys: Any) -> None:
    from escalation.auth import CSRF_HEADER, SESSION_COOKIE, create_session

    tid = await new_ticket(api)
    ann = await AgentStore(redis, keys).get("ann")
    assert ann is not None
    s = await create_session(redis, keys, ann)
    cookies = {SESSION_COOKIE: s.session_id}
    assert (await api.get(f"{API}/me", cookies=cookies)).status == 200
    assert (await api.post(f"{API}/tickets/{tid}/claim", cookies=cookies)).status == 401
    r = await api.post(
        f"{API}/tickets/{tid}/claim", cookies=cookies, headers={CSRF_HEADER: s.csrf_token}
    )
    assert r.status == 200


async def test_weibo_window_shown_and_undeliverable_becomes_a_note(
    api: Any, redis: Any, keys: Any, clock: FakeClock
) -> None:
    from bot.models import OutboundReply
    from bot.platforms import windows
    from escalation.undeliverable import note_undeliverable

    ev = event("差评，客服在哪", platform="weibo", account="wb", at=clock.t)
    ev.received_at = clock.t
    await windows.record(redis, keys, ev)
    tid, _ = await api.store.open_or_append(ev, reason="complaint", priority="high", reasons={})
    clock.advance(47 * 3600)
    d = await (await api.get(f"{API}/tickets/{tid}", headers=auth(api, "ann"))).json()
    w = d["ticket"]["reply_window"]
    assert (
        w["applies"]
        and w["open"]
        and w["closing_soon"]
        and w["closes_at"] == ev.created_at + 48 * 3600
    )
    lst = await (await api.get(f"{API}/tickets", headers=auth(api, "ann"))).json()
    assert lst["tickets"][0]["reply_window"]["dm"]["closing_soon"] is True

    reply = OutboundReply(
        "r-1",
        "weibo",
        "wb",
        "dm",
        "Sorry for the wait",
        ev.author.id,
        ticket_id=tid,
        source="agent",
    )
    for _ in range(2):  # the sender may retry the hook
        await note_undeliverable(redis, keys, reply, "reply window closed: more than 48 h")
    d = await (await api.get(f"{API}/tickets/{tid}", headers=auth(api, "ann"))).json()
    assert len(d["notes"]) == 1 and d["notes"][0]["author"] == "system"
    assert "48 h" in d["notes"][0]["text"] and "Sorry for the wait" in d["notes"][0]["text"]
    # No ticket for that customer: nothing to note, nothing raised.
    await note_undeliverable(
        redis, keys, OutboundReply("r-2", "weibo", "wb", "dm", "x", "nobody"), "closed"
    )
