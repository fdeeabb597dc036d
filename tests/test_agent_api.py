"""The agent API: auth and roles, ticket actions, errors, fuzzing, SSE, OpenAPI."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import quote

import pytest

from bot import textfit
from bot.app import build_app
from bot.models import OutboundReply
from bot.outbox import sent_record
from bot.platforms import windows
from bot.platforms.mastodon import MastodonAdapter
from escalation.agents import AgentStore
from escalation.api import TICKETS
from escalation.tickets import TicketStore
from tests.conftest import make_settings
from tests.fakes.harness import accounts
from tests.support.escalation import FakeClock, event

API = "/api/v1"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def api(aiohttp_client: Any, settings: Any, redis: Any, keys: Any, clock: FakeClock) -> Any:
    return await _client(aiohttp_client, settings, redis, keys, clock)


async def _client(aiohttp_client: Any, settings: Any, redis: Any, keys: Any, clock: Any) -> Any:
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


async def test_listing_previews_the_latest_customer_message(
    api: Any, redis: Any, clock: FakeClock
) -> None:
    """The queue shows what the customer said last, on one line: the listing carries it
    from the ticket hash (no read of the messages), with where that message was."""
    long = "My parcel\n\n never came   and " + "nobody answers my emails " * 6
    tid = await new_ticket(api, text="@acme hello?", kind="mention")

    async def listed() -> dict[str, Any]:
        r = await api.get(f"{API}/tickets", headers=auth(api, "ann"))
        (t,) = [t for t in (await r.json())["tickets"] if t["id"] == tid]
        return dict(t)

    t = await listed()
    assert (t["last_preview"], t["last_kind"], t["channel"]) == (
        "@acme hello?",
        "mention",
        "mention",
    )
    clock.advance(60)
    await api.store.append_customer_message(tid, event(long, kind="dm"))
    t = await listed()
    one_line = " ".join(long.split())
    assert t["last_preview"] == one_line[:100].rstrip() + "…"
    assert len(t["last_preview"]) <= 101 and "\n" not in t["last_preview"]
    assert (t["last_kind"], t["channel"]) == ("dm", "mention")
    # An agent's reply is not what the customer said: the preview stays.
    r = await api.post(
        f"{API}/tickets/{tid}/reply", json={"text": "We are on it."}, headers=auth(api, "ann")
    )
    assert r.status == 200 and (await r.json())["ticket"]["last_preview"] == t["last_preview"]
    # Listed from the hashes alone: no list (the messages) is read.
    await redis.config_resetstat()
    assert (await listed())["last_preview"] == t["last_preview"]
    stats = await redis.info("commandstats")
    assert "cmdstat_hgetall" in stats
    assert not [c for c in stats if c in ("cmdstat_lrange", "cmdstat_lindex")], stats
    doc = await (await api.get(f"{API}/openapi.json")).json()
    assert "last_preview" in doc["components"]["schemas"]["Ticket"]["properties"]


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


async def test_resuming_from_a_trimmed_event_says_events_were_lost(api: Any, redis: Any) -> None:
    """The console was away while the stream dropped its old events: resuming from its
    last id once skipped what was trimmed without a word. It now starts with
    events.lost (no id, so the client's resume point stays) and then goes on."""
    stream = api.store.keys.events
    first = (await redis.xadd(stream, {"type": "ticket.note", "data": "{}"})).decode()
    kept = (await redis.xadd(stream, {"type": "ticket.note", "data": "{}"})).decode()
    await redis.xtrim(stream, minid=kept, approximate=False)  # `first` is gone

    async def opening(last: str) -> str:
        headers = {**auth(api, "ann"), "Last-Event-ID": last}
        async with api.get(f"{API}/events", headers=headers) as r:
            assert r.status == 200
            assert await asyncio.wait_for(r.content.readline(), 5) == b": connected\n"
            assert await asyncio.wait_for(r.content.readline(), 5) == b"\n"
            lines = [await asyncio.wait_for(r.content.readline(), 5)]
            while lines[-1] != b"\n":
                lines.append(await asyncio.wait_for(r.content.readline(), 5))
            return b"".join(lines).decode()

    assert await opening(first) == f'event: events.lost\ndata: {{"since": "{first}"}}\n\n'
    # From an id the stream still holds: straight on to the next event, nothing lost.
    after = (await redis.xadd(stream, {"type": "ticket.note", "data": "{}"})).decode()
    assert await opening(kept) == f"id: {after}\nevent: ticket.note\ndata: {{}}\n\n"
    # since=0-0 asks for everything the stream holds: no events.lost.
    assert (await opening("0-0")).startswith(f"id: {kept}\n")


async def test_an_idle_events_stream_stays_open_past_the_redis_socket_timeout(
    api: Any,
) -> None:
    """With nothing happening, the live stream sends keep-alives and stays open: the
    blocking read it waits in must not outlast the Redis client's socket timeout (then
    each idle wait failed, the stream broke every half minute and the log said Redis was
    down)."""
    from bot.config import REDIS_SOCKET_TIMEOUT_S

    async with api.get(f"{API}/events", headers=auth(api, "ann")) as r:
        assert await asyncio.wait_for(r.content.readline(), 5) == b": connected\n"
        lines: list[bytes] = []
        deadline = time.monotonic() + REDIS_SOCKET_TIMEOUT_S + 1.5
        while time.monotonic() < deadline:
            line = await asyncio.wait_for(r.content.readline(), REDIS_SOCKET_TIMEOUT_S * 2)
            assert line, "the server ended the stream"
            lines.append(line)
        assert b": keep-alive\n" in lines


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
    s = await create_session(redis, keys, ann, api.tokens["ann"])
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
    # The detail has the listing's shape too (the console reads dm/mention).
    assert w["dm"] == {
        "closes_at": w["closes_at"],
        "open": True,
        "closing_soon": True,
        "remaining_s": 3600.0,
    }

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


async def outbox(redis: Any, keys: Any) -> list[OutboundReply]:
    return [OutboundReply.from_json(f[b"reply"]) for _, f in await redis.xrange(keys.outbox)]


async def test_reply_goes_where_the_customer_last_wrote_and_public_answers_the_mention(
    api: Any, redis: Any, keys: Any
) -> None:
    tid, _ = await api.store.open_or_append(
        event("@acme your delivery is a joke", kind="mention", event_id="m100", audience="private"),
        reason="complaint",
        priority="high",
        reasons={},
    )
    # The customer moves to DM, as the acknowledgement asked, with private details.
    dm = event("order A12345, 1 Main St", event_id="d200", conversation_id="dm-42")
    await api.store.append_customer_message(tid, dm)
    d = await (await api.get(f"{API}/tickets/{tid}", headers=auth(api, "ann"))).json()
    assert d["ticket"]["channel"] == "mention" and d["ticket"]["last_kind"] == "dm"

    url = f"{API}/tickets/{tid}/reply"
    r = await api.post(url, json={"text": "Ships tomorrow"}, headers=auth(api, "ann"))
    assert r.status == 200
    r = await api.post(
        url, json={"text": "We answered you by DM", "channel": "public"}, headers=auth(api, "ann")
    )
    assert r.status == 200
    private, public = await outbox(redis, keys)
    assert (private.kind, private.in_reply_to_id, private.conversation_id) == ("dm", None, "dm-42")
    # The public reply answers the mention, never the DM's id or thread.
    assert (public.kind, public.in_reply_to_id, public.conversation_id) == (
        "mention",
        "m100",
        "thread-42",
    )
    assert public.audience == "private" and private.audience == ""  # a reply no wider

    # A customer who only ever wrote by DM has no public post to answer: 409, nothing changes.
    other = await new_ticket(api, user="43")
    before = await api.store.get(other)
    r = await api.post(
        f"{API}/tickets/{other}/reply",
        json={"text": "hi", "channel": "public"},
        headers=auth(api, "ann"),
    )
    body = await r.json()
    assert r.status == 409 and body["error"]["code"] == "no_public_mention"
    assert "DM" in body["error"]["message"]
    after = await api.store.get(other)
    assert before is not None and after is not None and after.to_hash() == before.to_hash()
    assert len(await outbox(redis, keys)) == 2

    # A ticket stored before the mention fields: its latest message was the mention.
    legacy = await new_ticket(api, user="44", kind="mention", event_id="m300")
    k = api.store.k_ticket(legacy)
    await redis.hdel(k, "mention_event_id", "mention_reply_to_id", "mention_conversation_id")
    await redis.hset(k, mapping={"last_reply_to_id": "m300", "last_conversation_id": "t-44"})
    r = await api.post(
        f"{API}/tickets/{legacy}/reply", json={"text": "On it"}, headers=auth(api, "ann")
    )
    assert r.status == 200
    last = (await outbox(redis, keys))[-1]
    assert (last.kind, last.in_reply_to_id, last.conversation_id) == ("mention", "m300", "t-44")


async def test_reply_the_window_refuses_is_409_and_changes_nothing(
    api: Any, redis: Any, keys: Any, clock: FakeClock
) -> None:
    async def seen(ev: Any) -> Any:
        ev.received_at = clock.t
        await windows.record(redis, keys, ev)
        return ev

    dm = await seen(event("差评！退款呢", platform="weibo", account="wb", at=clock.t))
    tid, _ = await api.store.open_or_append(dm, reason="complaint", priority="high", reasons={})
    url = f"{API}/tickets/{tid}/reply"
    r = await api.post(
        url, json={"text": "您好", "idempotency_key": "k1"}, headers=auth(api, "ann")
    )
    assert r.status == 200  # the 48 h window is open
    clock.advance(600)
    more = await seen(event("还在吗", platform="weibo", account="wb", at=clock.t))
    await api.store.append_customer_message(tid, more)
    clock.advance(60)
    await seen(event("", platform="weibo", account="wb", kind="unfollow", at=clock.t))
    before = await api.store.get(tid)
    queued = await redis.xlen(keys.outbox)
    r = await api.post(url, json={"text": "已退款"}, headers=auth(api, "ann"))
    body = await r.json()
    assert r.status == 409 and body["error"]["code"] == "window_closed"
    assert "unfollowed" in body["error"]["message"]
    after = await api.store.get(tid)
    assert before is not None and after is not None and after.to_hash() == before.to_hash()
    assert await redis.xlen(keys.outbox) == queued
    d = await (await api.get(f"{API}/tickets/{tid}", headers=auth(api, "ann"))).json()
    assert d["ticket"]["sla"]["next_response"]["state"] == "running"  # still owed
    # A retry of the reply recorded while the window was open is not refused.
    r = await api.post(
        url, json={"text": "您好", "idempotency_key": "k1"}, headers=auth(api, "ann")
    )
    assert r.status == 200 and (await r.json())["created"] is False

    # A mention allows one reply; the bot's public acknowledgement took it.
    m = await seen(event("@品牌 垃圾", platform="weibo", account="wb", kind="mention", user="77"))
    t2, _ = await api.store.open_or_append(m, reason="complaint", priority="high", reasons={})
    ack = OutboundReply.answering(m, "抱歉，请私信我们")
    ack.ticket_id = t2
    await api.store.add_bot_message(t2, ack)
    r = await api.post(
        f"{API}/tickets/{t2}/reply",
        json={"text": "您好", "channel": "public"},
        headers=auth(api, "ann"),
    )
    body = await r.json()
    assert r.status == 409 and "already sent" in body["error"]["message"]
    d = await (await api.get(f"{API}/tickets/{t2}", headers=auth(api, "ann"))).json()
    assert d["ticket"]["sla"]["first_response"]["state"] == "running"


@pytest.fixture
async def masto_api(
    aiohttp_client: Any, redis_server: Any, redis: Any, keys: Any, tmp_path: Any, clock: FakeClock
) -> Any:
    masto = [a for a in accounts() if a["platform"] == "mastodon"]
    settings = make_settings(redis_server.url, tmp_path, accounts=masto)
    client = await _client(aiohttp_client, settings, redis, keys, clock)
    client.adapter = MastodonAdapter(settings.accounts[0])
    return client


async def test_mastodon_reply_over_the_limit_with_the_handle_is_422(
    masto_api: Any, redis: Any, keys: Any
) -> None:
    api = masto_api
    handle = "customer_handle@other.social"
    tid = await new_ticket(
        api, platform="mastodon", account="brandm", kind="mention", handle=handle
    )
    prefix = f"@{handle} "
    room = 500 - textfit.count(prefix, "mastodon")  # a remote @user@domain counts as @user
    fits = ("We are very sorry about the delay with your order. " * 20)[: room - 1] + "."
    too_long = fits + "!"
    url = f"{API}/tickets/{tid}/reply"
    r = await api.post(url, json={"text": too_long}, headers=auth(api, "ann"))
    body = await r.json()
    assert r.status == 422 and body["error"]["code"] == "too_long"
    assert (body["error"]["length"], body["error"]["limit"]) == (501, 500)
    assert await redis.xlen(keys.outbox) == 0
    r = await api.post(url, json={"text": fits}, headers=auth(api, "ann"))
    assert r.status == 200
    # The sender agrees: what was accepted goes out whole, what was refused would be cut.
    (queued,) = await outbox(redis, keys)
    assert api.adapter.compose(queued) == prefix + fits
    refused = OutboundReply.from_json(queued.to_json().replace(fits, too_long))
    assert api.adapter.compose(refused) != prefix + too_long


async def test_a_reply_is_recorded_and_queued_together_and_a_retry_sends_it_once(
    api: Any, redis: Any, keys: Any, monkeypatch: Any
) -> None:
    import escalation.tickets as tickets_module

    # The transaction that would record and queue the reply fails: neither happens.
    failures = [ConnectionError("redis connection lost")]
    real = tickets_module.enqueue_reply_in

    def flaky(*args: Any) -> Any:
        if failures:
            raise failures.pop()
        return real(*args)

    monkeypatch.setattr(tickets_module, "enqueue_reply_in", flaky)
    tid = await new_ticket(api)
    url = f"{API}/tickets/{tid}/reply"
    body = {"text": "Refund issued"}  # no idempotency key
    r = await api.post(url, json=body, headers=auth(api, "ann"))
    assert r.status == 500
    d = await (await api.get(f"{API}/tickets/{tid}", headers=auth(api, "ann"))).json()
    assert [m for m in d["conversation"] if m["from"] == "agent"] == []
    assert d["ticket"]["sla"]["first_response"]["state"] == "running"
    assert await redis.xlen(keys.outbox) == 0
    # The agent sends again: recorded and queued. The same request once more (its answer
    # was lost) finds the recorded reply and queues nothing.
    first = await (await api.post(url, json=body, headers=auth(api, "ann"))).json()
    again = await api.post(url, json=body, headers=auth(api, "ann"))
    data = await again.json()
    assert first["created"] is True and again.status == 200 and data["created"] is False
    (queued,) = await outbox(redis, keys)
    assert queued.reply_id == data["reply_id"] == first["reply_id"]
    assert queued.text == "Refund issued"
    d = await (await api.get(f"{API}/tickets/{tid}", headers=auth(api, "ann"))).json()
    assert [m["text"] for m in d["conversation"] if m["from"] == "agent"] == ["Refund issued"]
    # After the customer writes again the same words are a new reply.
    await api.store.append_customer_message(tid, event("and the shipping?"))
    r = await api.post(url, json=body, headers=auth(api, "ann"))
    assert r.status == 200 and (await r.json())["created"] is True
    assert len(await outbox(redis, keys)) == 2

    # A retry with a client key returns the reply as recorded, though the ticket moved on.
    t2 = await new_ticket(api, user="50", kind="mention", event_id="m500")
    body = {"text": "Sorry!", "idempotency_key": "c-1"}
    r = await api.post(f"{API}/tickets/{t2}/reply", json=body, headers=auth(api, "ann"))
    assert r.status == 200
    await api.store.append_customer_message(t2, event("details in DM", user="50"))
    r = await api.post(f"{API}/tickets/{t2}/reply", json=body, headers=auth(api, "ann"))
    assert r.status == 200 and (await r.json())["created"] is False
    queued = await outbox(redis, keys)
    assert len(queued) == 3
    assert (queued[-1].kind, queued[-1].in_reply_to_id, queued[-1].text) == (
        "mention",
        "m500",
        "Sorry!",
    )


async def test_resolved_ticket_refuses_priority_and_release(
    api: Any, redis: Any, keys: Any
) -> None:
    tid = await new_ticket(api)
    await api.post(f"{API}/tickets/{tid}/resolve", headers=auth(api, "ann"))
    before = await api.store.get(tid)
    events = await redis.xlen(keys.events)
    r = await api.post(
        f"{API}/tickets/{tid}/priority", json={"priority": "urgent"}, headers=auth(api, "sue")
    )
    assert r.status == 409 and (await r.json())["error"]["code"] == "not_open"
    for who in ("ann", "sue"):
        r = await api.post(f"{API}/tickets/{tid}/release", headers=auth(api, who))
        assert r.status == 409 and (await r.json())["error"]["code"] == "not_open"
    after = await api.store.get(tid)
    assert before is not None and after is not None and after.to_hash() == before.to_hash()
    assert await redis.xlen(keys.events) == events
    lists = await api.store.lists(tid)
    assert [h["action"] for h in lists["history"]] == ["created", "resolved"]


async def test_reply_window_is_checked_inside_the_ticket_transaction(
    api: Any, redis: Any, keys: Any, clock: FakeClock, monkeypatch: Any
) -> None:
    """The customer unfollows right after the reply path read the window state: the
    reply must be refused, not recorded and queued on the stale read."""
    from escalation import tickets as tickets_mod

    dm = event("差评！退款呢", platform="weibo", account="wb", at=clock.t)
    await windows.record(redis, keys, dm)
    tid, _ = await api.store.open_or_append(dm, reason="complaint", priority="high", reasons={})
    unfollow = event("", platform="weibo", account="wb", kind="unfollow", at=clock.t + 1)
    clock.advance(60)
    real = tickets_mod.window_state
    calls = 0

    async def then_unfollow(*args: Any, **kw: Any) -> Any:
        nonlocal calls
        calls += 1
        state = await real(*args, **kw)
        if calls == 1:  # the unfollow lands between the check and the write
            await windows.record(redis, keys, unfollow)
        return state

    monkeypatch.setattr(tickets_mod, "window_state", then_unfollow)
    before = await api.store.get(tid)
    r = await api.post(
        f"{API}/tickets/{tid}/reply", json={"text": "您好"}, headers=auth(api, "ann")
    )
    body = await r.json()
    assert r.status == 409 and body["error"]["code"] == "window_closed", body
    assert "unfollowed" in body["error"]["message"]
    assert await redis.xlen(keys.outbox) == 0
    after = await api.store.get(tid)
    assert before is not None and after is not None and after.to_hash() == before.to_hash()


async def test_events_stream_ends_when_the_agent_is_revoked(
    api: Any, redis: Any, keys: Any, monkeypatch: Any
) -> None:
    """A revoked agent (or an ended session) must stop receiving live ticket events."""
    from escalation import api as api_mod

    monkeypatch.setattr(api_mod, "SSE_BLOCK_MS", 100)
    monkeypatch.setattr(api_mod, "SSE_REAUTH_S", 0.0, raising=False)
    tid = await new_ticket(api)
    async with api.get(f"{API}/events", headers=auth(api, "ann")) as r:
        assert await asyncio.wait_for(r.content.readline(), 5) == b": connected\n"
        await AgentStore(redis, keys).revoke("ann")
        await api.post(f"{API}/tickets/{tid}/claim", headers=auth(api, "bob"))
        rest = await asyncio.wait_for(r.content.read(), 5)  # the server ends the stream
        assert b"ticket.claimed" not in rest


async def test_openapi_lists_the_errors_each_route_gives(api: Any) -> None:
    """Every status a route really answers is in its documented responses."""
    doc = await (await api.get(f"{API}/openapi.json")).json()
    tid = await new_ticket(api)

    def documented(path: str, method: str) -> set[str]:
        return set(doc["paths"][path][method]["responses"])

    for action in ("claim", "release", "reply", "notes", "assign", "priority", "resolve", "reopen"):
        path = f"/tickets/{{id}}/{action}"
        for body, status in ((b"{oops", 400), (b"x" * 70_000, 413)):
            r = await api.post(
                f"{API}/tickets/{tid}/{action}",
                data=body,
                headers={**auth(api, "sue"), "Content-Type": "application/json"},
            )
            assert r.status == status, (action, r.status)
            assert str(status) in documented(path, "post"), (path, status)
        r = await api.post(f"{API}/tickets/{tid}/{action}", json={})
        assert r.status == 401 and "401" in documented(path, "post")
    # Only the supervisor actions answer 403.
    for action in ("claim", "release", "reply", "notes", "resolve", "reopen"):
        assert "403" not in documented(f"/tickets/{{id}}/{action}", "post"), action
    r = await api.get(f"{API}/events", headers={**auth(api, "ann"), "Last-Event-ID": "nope"})
    assert r.status == 422 and "422" in documented("/events", "get")
    assert (await api.get(f"{API}/events")).status == 401 and "401" in documented("/events", "get")
    params = {p["name"] for p in doc["paths"]["/events"]["get"].get("parameters", [])}
    assert {"since", "Last-Event-ID"} <= params


async def test_release_without_a_live_claim_records_nothing(
    api: Any, redis: Any, keys: Any, clock: FakeClock
) -> None:
    """Releasing a ticket nobody holds changes nothing: the activity log must not say
    that an agent who never held it "released it"."""
    tid = await new_ticket(api)
    events = await redis.xlen(keys.events)
    r = await api.post(f"{API}/tickets/{tid}/release", headers=auth(api, "bob"))
    assert r.status == 200 and (await r.json())["ticket"]["assignee"] is None
    await api.post(f"{API}/tickets/{tid}/claim", headers=auth(api, "ann"))
    clock.advance(api.store.cfg.claim_lease_s + 1)  # ann's lease lapsed
    r = await api.post(f"{API}/tickets/{tid}/release", headers=auth(api, "bob"))
    assert r.status == 200
    d = await (await api.get(f"{API}/tickets/{tid}", headers=auth(api, "ann"))).json()
    assert [h["action"] for h in d["history"]] == ["created", "claimed"]
    assert await redis.xlen(keys.events) == events + 1  # only the claim


async def test_a_known_path_with_the_wrong_method_is_405_with_allow(api: Any) -> None:
    """A wrong method on a route that exists says which methods it takes; only paths no
    route has are 404."""
    tid = await new_ticket(api)
    r = await api.get(f"{API}/tickets/{tid}/claim", headers=auth(api, "ann"))
    body = await r.json()
    assert r.status == 405 and body["error"]["code"] == "method_not_allowed", body
    assert "GET" in body["error"]["message"] and r.headers["Allow"] == "POST"
    r = await api.delete(f"{API}/tickets/{tid}", headers=auth(api, "ann"))
    assert r.status == 405 and set(r.headers["Allow"].split(", ")) == {"GET", "HEAD"}
    r = await api.post(f"{API}/tickets", json={}, headers=auth(api, "ann"))
    assert r.status == 405 and "GET" in r.headers["Allow"].split(", ")
    # Routes other modules add under /api/v1 count too.
    r = await api.post(f"{API}/insights?account=acme", headers=auth(api, "ann"))
    assert r.status == 405 and "GET" in r.headers["Allow"].split(", ")
    for path in ("/nothing/here", f"/tickets/{tid}/unknown", f"/tickets/{tid}/claim/more"):
        r = await api.get(f"{API}{path}", headers=auth(api, "ann"))
        assert r.status == 404 and (await r.json())["error"]["code"] == "not_found", path
        assert "Allow" not in r.headers
    t = await api.store.get(tid)
    assert t is not None and t.assignee == ""  # the GET claimed nothing


async def test_filtered_listing_looks_past_the_head_of_a_big_queue(
    api: Any, redis: Any, clock: FakeClock
) -> None:
    """A filter finds matching tickets however far down the queue they are (the listing
    once read only its first ~2000 tickets), in queue order, at most ``limit`` of them."""
    store = api.store
    # Only the fields the listing reads (the rest take their defaults), in one round trip.
    template = {"platform": "generic", "account": "acme", "created_at": str(clock.t)}
    pipe = redis.pipeline(transaction=False)

    def put(tid: str, index: str, score: float, **fields: Any) -> None:
        h = {**template, "id": tid, **{k: str(v) for k, v in fields.items()}}
        pipe.hset(store.k_ticket(tid), mapping=h)
        pipe.zadd(index, {tid: score})

    filler = 2100  # past the old cap of 2001
    for i in range(filler):
        # Groups of 1000 share a due time: ties longer than a page.
        put(f"T{i + 1}", store.k_open, clock.t + 3600 + i // 1000)
        put(f"T{i + 5001}", store.k_resolved, clock.t - 3600 - i, status="resolved")
    late = clock.t + 7200
    put("T9001", store.k_open, late, account="other")
    put("T9002", store.k_open, late + 1, account="other", assignee="ann", lease_until=late)
    put("T9003", store.k_open, late + 2, account="other")
    put("T9004", store.k_resolved, clock.t - 10 * filler, status="resolved", account="other")
    pipe.zadd(store.k_open, {"T9999": late + 3})  # an index entry whose hash is gone
    await pipe.execute()

    async def ids(query: str) -> list[str]:
        r = await api.get(f"{API}/tickets?{query}", headers=auth(api, "ann"))
        assert r.status == 200, query
        return [t["id"] for t in (await r.json())["tickets"]]

    assert await ids("account=other") == ["T9001", "T9002", "T9003"]
    assert await ids("account=other&limit=2") == ["T9001", "T9002"]
    assert await ids("assignee=me") == ["T9002"]
    assert await ids("status=resolved&account=other") == ["T9004"]
    # Unfiltered, or matching everything: the head of the queue, in its order.
    head = [t.decode() for t in await redis.zrange(store.k_open, 0, 499)]
    assert await ids("limit=500") == head
    assert await ids("assignee=none&limit=500") == head
    # The whole queue, past the tied groups' page boundaries: in order, each ticket once.
    found, _ = await store.search(account="acme", limit=10_000)
    queue = [t.decode() for t in await redis.zrange(store.k_open, 0, -1)]
    assert [t.id for t in found] == queue[:filler]

    async def pages(query: str) -> list[list[str]]:
        """Every page of a listing, following `next` (the API once stopped at 500)."""
        out, after = [], ""
        while True:
            r = await api.get(f"{API}/tickets?{query}{after}", headers=auth(api, "ann"))
            assert r.status == 200, query
            body = await r.json()
            out.append([t["id"] for t in body["tickets"]])
            if body["next"] is None:
                return out
            after = f"&after={quote(body['next'])}"

    # Pages of 500 across ties of 1000 (same due time, ordered by id): in order, once each.
    listed = await pages("limit=500")
    assert [len(p) for p in listed] == [500, 500, 500, 500, 103]
    assert [t for p in listed for t in p] == [t for t in queue if t != "T9999"]
    resolved = [t.decode() for t in await redis.zrevrange(store.k_resolved, 0, -1)]
    assert [t for p in await pages("status=resolved&limit=300") for t in p] == resolved
    assert await pages("account=other&limit=2") == [["T9001", "T9002"], ["T9003"]]
    # A full last page says there may be more; the next one is then empty.
    assert await pages("account=other&limit=3") == [["T9001", "T9002", "T9003"], []]
    for bad in ("nope", "1.5", "~T1", "inf~T1", "nan~T1"):
        r = await api.get(f"{API}/tickets?after={quote(bad)}", headers=auth(api, "ann"))
        assert r.status == 422 and (await r.json())["error"]["field"] == "after", bad


@pytest.mark.parametrize("action", ["claim", "release", "reply", "notes", "resolve", "reopen"])
async def test_a_ticket_deleted_under_a_change_is_404_and_nothing_is_written(
    api: Any, redis: Any, keys: Any, monkeypatch: Any, action: str
) -> None:
    """The ticket's hash goes (e.g. removed by retention) just as a change starts: the
    API answers 404 ``not_found``, never a 500, and writes nothing back."""
    from redis.asyncio.client import Pipeline

    tid = await new_ticket(api)
    if action == "reopen":
        await api.post(f"{API}/tickets/{tid}/resolve", headers=auth(api, "ann"))
    key = api.store.k_ticket(tid)
    real_watch = Pipeline.watch

    async def watch_then_delete(self: Any, *names: Any) -> Any:
        res = await real_watch(self, *names)
        if key in names:
            await redis.delete(key)  # on another connection, after the WATCH
        return res

    monkeypatch.setattr(Pipeline, "watch", watch_then_delete)
    events = await redis.xlen(keys.events)
    conv = await api.store.open_ticket_for("generic:acme:42")
    r = await api.post(
        f"{API}/tickets/{tid}/{action}", json={"text": "hello"}, headers=auth(api, "ann")
    )
    body = await r.json()
    assert r.status == 404 and body["error"]["code"] == "not_found", (action, r.status, body)
    assert not await redis.exists(key)
    assert await redis.xlen(keys.events) == events
    assert await redis.xlen(keys.outbox) == 0
    assert await api.store.open_ticket_for("generic:acme:42") == conv


async def test_reopen_refused_while_the_customer_has_a_newer_open_ticket(
    api: Any, redis: Any, keys: Any
) -> None:
    tid = await new_ticket(api)
    await api.post(f"{API}/tickets/{tid}/resolve", headers=auth(api, "ann"))
    newer = await new_ticket(api)  # the customer wrote again: a new ticket
    before = await api.store.get(tid)
    events = await redis.xlen(keys.events)
    r = await api.post(f"{API}/tickets/{tid}/reopen", headers=auth(api, "ann"))
    body = await r.json()
    assert r.status == 409 and body["error"]["code"] == "conversation_has_ticket"
    assert newer in body["error"]["message"]
    after = await api.store.get(tid)
    assert before is not None and after is not None and after.to_hash() == before.to_hash()
    assert await redis.xlen(keys.events) == events
    assert await api.store.open_ticket_for("generic:acme:42") == newer
    # Once that one is resolved too, the old one may be reopened.
    await api.post(f"{API}/tickets/{newer}/resolve", headers=auth(api, "ann"))
    r = await api.post(f"{API}/tickets/{tid}/reopen", headers=auth(api, "ann"))
    assert r.status == 200 and (await r.json())["ticket"]["status"] == "open"
    assert await api.store.open_ticket_for("generic:acme:42") == tid


async def test_ticket_detail_shows_the_conversation_before_it_and_while_resolved(
    api: Any, redis: Any, keys: Any, clock: FakeClock, settings: Any
) -> None:
    from bot.conversation import ConversationStore, Turn

    before = [
        {"at": clock.t - 60, "from": "customer", "kind": "dm", "text": "order A12345?"},
        {"at": clock.t - 59, "from": "bot", "kind": "dm", "text": "It shipped."},
    ]
    tid, _ = await api.store.open_or_append(
        event("where is my order?"), reason="repeat", priority="normal", reasons={}, context=before
    )
    d = await (await api.get(f"{API}/tickets/{tid}", headers=auth(api, "ann"))).json()
    assert d["context"] == [{**c, "when": "before_ticket"} for c in before]
    assert [m["text"] for m in d["conversation"]] == ["where is my order?"]
    r = await api.post(f"{API}/tickets/{tid}/resolve", headers=auth(api, "ann"))
    assert r.status == 200
    # While it was resolved the customer wrote again and the bot answered.
    clock.advance(60)
    convs = ConversationStore(redis, keys, idle_s=settings.dialog.conversation_idle_s)
    said = [Turn(clock.t, "customer", "and the invoice?"), Turn(clock.t, "bot", "Sent by email.")]
    assert await convs.record("generic", "acme", "42", event_key="later", turns=said)
    clock.advance(60)
    r = await api.post(f"{API}/tickets/{tid}/reopen", headers=auth(api, "ann"))
    assert r.status == 200
    d = await (await api.get(f"{API}/tickets/{tid}", headers=auth(api, "ann"))).json()
    assert [(c["from"], c["text"], c["when"]) for c in d["context"]] == [
        ("customer", "order A12345?", "before_ticket"),
        ("bot", "It shipped.", "before_ticket"),
        ("customer", "and the invoice?", "while_resolved"),
        ("bot", "Sent by email.", "while_resolved"),
    ]
    doc = await (await api.get(f"{API}/openapi.json")).json()
    detail = doc["components"]["schemas"]["TicketDetail"]["properties"]
    assert detail["context"]["items"] == {"$ref": "#/components/schemas/ContextTurn"}
    turn = doc["components"]["schemas"]["ContextTurn"]["properties"]
    assert set(d["context"][0]) == set(turn)


async def test_a_public_ack_on_an_open_ticket_waits_on_the_reply_window(
    api: Any, redis: Any, keys: Any, clock: FakeClock
) -> None:
    """The bot's move-to-DM ack for a mention joining a ticket: refused where the sender
    would refuse it (Weibo: 48 h lapsed, no DM window), else recorded and queued once."""

    async def seen(ev: Any) -> Any:
        ev.received_at = clock.t
        await windows.record(redis, keys, ev)
        return ev

    def ack_for(ev: Any, tid: str) -> OutboundReply:
        reply = OutboundReply.answering(ev, "抱歉，请私信我们")
        reply.ticket_id = tid
        return reply

    dm = await seen(event("人工客服", platform="weibo", account="wb", at=clock.t))
    tid, _ = await api.store.open_or_append(dm, reason="human", priority="normal", reasons={})
    late = await seen(event("@品牌 骗子", platform="weibo", account="wb", kind="mention"))
    clock.advance(49 * 3600)  # handled two days late: the DM window and the mention lapsed
    await api.store.append_customer_message(tid, late, priority="urgent")
    queued = await redis.xlen(keys.outbox)
    assert not await api.store.add_public_ack(tid, ack_for(late, tid))
    t = await api.store.get(tid)
    assert t is not None and t.mention_replied == "" and await redis.xlen(keys.outbox) == queued

    # In time (the mention's one reply is free): recorded and queued in one go, once.
    fresh = await seen(
        event("@品牌 还骗", platform="weibo", account="wb", kind="mention", at=clock.t)
    )
    await api.store.append_customer_message(tid, fresh, priority="urgent")
    ack = ack_for(fresh, tid)
    assert await api.store.add_public_ack(tid, ack)
    assert await api.store.add_public_ack(tid, ack)  # a re-run: done before, nothing new
    assert await redis.xlen(keys.outbox) == queued + 1
    d = await (await api.get(f"{API}/tickets/{tid}", headers=auth(api, "ann"))).json()
    assert [(m["from"], m["kind"]) for m in d["conversation"]][-1] == ("bot", "mention")
    assert d["ticket"]["reply_window"]["mention"]["used"] is True
    # Once per ticket: another mention gets none.
    other = await seen(
        event("@品牌 ???", platform="weibo", account="wb", kind="mention", at=clock.t)
    )
    await api.store.append_customer_message(tid, other)
    assert not await api.store.add_public_ack(tid, ack_for(other, tid))
    assert await redis.xlen(keys.outbox) == queued + 1


async def test_customer_filter_finds_their_open_and_resolved_tickets_across_pages(
    api: Any, clock: FakeClock
) -> None:
    """'I wrote yesterday, where is my answer?': the agent finds the customer's tickets by
    handle (any case, with or without @) or user id, open and resolved, and only theirs."""

    async def ticket(user: str, handle: str, account: str) -> str:
        clock.advance(1)
        return await new_ticket(api, user=user, handle=handle, account=account)

    async def pages(query: str) -> list[list[str]]:
        out, after = [], ""
        while True:
            r = await api.get(f"{API}/tickets?{query}{after}", headers=auth(api, "ann"))
            assert r.status == 200, query
            body = await r.json()
            out.append([t["id"] for t in body["tickets"]])
            if body["next"] is None:
                return out
            after = f"&after={quote(body['next'])}"

    mine: list[str] = []
    for n, account in enumerate(["acme", "acme-cn", "shop", "outlet"]):
        # Look-alike handles in between: a prefix, a suffix, another customer's id.
        await ticket(f"9{n}", "alice_b", account)
        await ticket(f"8{n}", "malice", account)
        mine.append(await ticket("42", "Alice", account))
        await ticket("43", "bob", account)
    gone = mine.pop(0)
    r = await api.post(f"{API}/tickets/{gone}/resolve", headers=auth(api, "ann"))
    assert r.status == 200
    mine.append(await ticket("42", "Alice", "acme"))  # wrote again after the resolve

    for who in ("alice", "@alice", "ALICE", "@Alice", " alice ", "42", "@42"):
        q = f"customer={quote(who)}&limit=3"
        assert await pages(q) == [mine[:3], mine[3:]], who
        assert await pages(f"status=resolved&{q}") == [[gone]], who
    assert await pages("customer=alice&account=shop") == [[mine[1]]]
    for nobody in ("alic", "alice_", "4", "carol"):
        assert await pages(f"customer={nobody}") == [[]], nobody
    # "@" alone filters nothing; an over-long value is refused.
    everything = await pages("limit=500")
    assert await pages("customer=%40&limit=500") == everything
    r = await api.get(f"{API}/tickets?customer={'a' * 129}", headers=auth(api, "ann"))
    assert r.status == 422 and (await r.json())["error"]["field"] == "customer"
    doc = await (await api.get(f"{API}/openapi.json")).json()
    names = [p["name"] for p in doc["paths"]["/tickets"]["get"]["parameters"]]
    assert "customer" in names
