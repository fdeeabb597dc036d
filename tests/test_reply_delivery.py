"""An agent's reply that the platform refuses (or whose delivery is unknown) reaches the
ticket: a system note, the reply shown as not delivered, the customer still owed an
answer; a replayed dead letter that goes out shows as sent. Real Redis, the real agent
API and sender, a fake X."""

from __future__ import annotations

import functools
import json
import time
from typing import Any

import aiohttp
import pytest

from bot.app import build_app
from bot.models import OutboundReply
from bot.outbox import enqueue_reply
from bot.streams import list_dead
from escalation.agents import AgentStore
from escalation.api import TICKETS
from escalation.tickets import TicketStore
from escalation.undeliverable import note_dead
from tests.conftest import make_settings
from tests.fakes import FakeX
from tests.fakes.harness import X_TOKEN, accounts, deliver, make_sender
from tests.support.cli import replydesk_cli
from tests.support.escalation import FakeClock, event
from tests.support.redis_server import env_with_redis

API = "/api/v1"
REFUSAL = {"title": "Forbidden", "detail": "You are not allowed to send a DM to this user."}


@pytest.fixture
async def env(aiohttp_server: Any, aiohttp_client: Any, redis_server: Any, redis: Any, keys: Any, tmp_path: Any) -> Any:  # fmt: skip
    x = FakeX(token=X_TOKEN)
    sx = await aiohttp_server(x.app)
    settings = make_settings(
        redis_server.url, tmp_path, accounts=accounts(str(sx.make_url("")).rstrip("/"))
    )
    clock = FakeClock()
    app = build_app(settings, role="web")
    app[TICKETS] = TicketStore(redis, keys, settings.escalation, clock=clock)
    client = await aiohttp_client(app)
    client.redis_url = redis_server.url
    client.headers = {
        "Authorization": f"Bearer {await AgentStore(redis, keys).add('ann', 'agent')}"
    }
    async with aiohttp.ClientSession() as http:
        sender = make_sender(settings, redis, keys, http)
        # As bot.app wires it (the hook's store keeps real time).
        sender.on_dead = functools.partial(note_dead, redis, keys, cfg=settings.escalation)
        yield client, app[TICKETS], sender, x, clock


async def ticket_with_reply(client: Any, store: TicketStore) -> tuple[str, str]:
    ev = event("you charged me twice", platform="x", account="brandx", user="6253282")
    tid, _ = await store.open_or_append(ev, reason="complaint", priority="normal", reasons={})
    r = await client.post(
        f"{API}/tickets/{tid}/reply", json={"text": "Refund is on its way"}, headers=client.headers
    )
    assert r.status == 200
    reply_id = next(iter(await store.redis.hkeys(store.k_list(tid, "outbound")))).decode()
    return tid, reply_id


async def get(client: Any, tid: str) -> dict[str, Any]:
    r = await client.get(f"{API}/tickets/{tid}", headers=client.headers)
    assert r.status == 200
    return dict(await r.json())


def agent_msg(d: dict[str, Any]) -> dict[str, Any]:
    return next(m for m in d["conversation"] if m["from"] == "agent")


async def events(store: TicketStore, kind: str) -> list[dict[str, Any]]:
    rows = await store.redis.xrange(store.keys.events)
    return [json.loads(f[b"data"]) for _, f in rows if f[b"type"].decode() == kind]


async def test_refused_dm_is_noted_owed_and_shows_sent_after_replay(env: Any) -> None:
    client, store, sender, x, _clock = env
    tid, reply_id = await ticket_with_reply(client, store)
    assert agent_msg(await get(client, tid))["delivery"] == {"state": "queued"}

    x.fail_next(403, REFUSAL)
    await deliver(sender)
    d = await get(client, tid)
    (note,) = d["notes"]
    assert note["author"] == "system" and "X refused it" in note["text"]
    assert "not allowed to send a DM" in note["text"] and "Refund is on its way" in note["text"]
    delivery = agent_msg(d)["delivery"]
    assert delivery["state"] == "not_delivered" and "X refused it" in delivery["reason"]
    # The customer never got it: it is no first response, still owed since the ticket opened.
    fr = d["ticket"]["sla"]["first_response"]
    assert fr["state"] == "running" and fr["started_at"] == d["ticket"]["created_at"]
    assert [e["state"] for e in await events(store, "ticket.delivery")] == ["not_delivered"]
    # The sender may run the hook again after a crash: still one note.
    raw = await store.redis.hget(store.k_list(tid, "outbound"), reply_id)
    await note_dead(store.redis, store.keys, OutboundReply.from_json(raw), "HTTP 403", "refused")
    assert len((await get(client, tid))["notes"]) == 1

    # What ops do once the customer allows DMs again: `replydesk dead replay ID`.
    ((dead_id, _),) = await list_dead(store.redis, store.keys)
    out = replydesk_cli("dead", "replay", dead_id, env=env_with_redis(client.redis_url))
    assert out.returncode == 0, out.stderr
    await deliver(sender)
    assert len(x.dms) == 1
    d = await get(client, tid)
    assert agent_msg(d)["delivery"]["state"] == "sent"
    assert [e["state"] for e in await events(store, "ticket.delivery")] == [
        "not_delivered",
        "sent",
    ]


async def test_sent_reply_shows_sent(env: Any) -> None:
    client, store, sender, _x, _clock = env
    tid, _ = await ticket_with_reply(client, store)
    await deliver(sender)
    d = await get(client, tid)
    assert agent_msg(d)["delivery"]["state"] == "sent" and d["notes"] == []
    assert d["ticket"]["sla"]["first_response"]["state"] == "met"


async def test_unknown_delivery_says_check_the_platform(env: Any) -> None:
    client, store, sender, x, _clock = env
    tid, _ = await ticket_with_reply(client, store)
    x.drop_next()  # the request reached X, the answer was lost: X may have posted it
    await deliver(sender)
    reason = agent_msg(await get(client, tid))["delivery"]["reason"]
    assert "may or may not have been posted" in reason and "check the X account" in reason


async def test_refused_reply_on_resolved_ticket_reopens_it(env: Any) -> None:
    client, store, sender, x, _clock = env
    tid, _ = await ticket_with_reply(client, store)
    r = await client.post(f"{API}/tickets/{tid}/resolve", headers=client.headers)
    assert r.status == 200
    x.fail_next(403, REFUSAL)
    before = time.time()
    await deliver(sender)
    d = await get(client, tid)
    assert d["ticket"]["status"] == "open"
    assert d["history"][-1]["actor"] == "system" and d["history"][-1]["action"] == "reopened"
    fr = d["ticket"]["sla"]["first_response"]
    # Owed from the reopening, as when an agent reopens a ticket nobody answered.
    assert fr["started_at"] >= before and d["ticket"]["sla"]["resolution"]["started_at"] >= before
    # The bot no longer owns the conversation: the customer's next message joins the ticket.
    assert await store.open_ticket_for("x:brandx:6253282") == tid


async def test_a_refused_bot_acknowledgement_is_noted_and_stops_nothing(env: Any) -> None:
    client, store, sender, x, _clock = env
    ev = event("@acme scammers", kind="mention", platform="x", account="brandx", user="6253282")
    tid, _ = await store.open_or_append(ev, reason="complaint", priority="high", reasons={})
    ack = OutboundReply(
        f"{ev.key}:0", "x", "brandx", "mention", "Please DM us.", "6253282",
        in_reply_to_id=ev.event_id, ticket_id=tid,
    )  # fmt: skip
    await store.add_bot_message(tid, ack)
    await enqueue_reply(store.redis, store.keys, ack)  # as the pipeline queues it
    x.fail_next(403, {"title": "Forbidden", "detail": "You are not permitted to reply."})
    await deliver(sender)
    d = await get(client, tid)
    (note,) = d["notes"]
    assert note["text"].startswith("Not delivered (bot mention reply): X refused it")
    bot = next(m for m in d["conversation"] if m["from"] == "bot")
    assert bot["delivery"]["state"] == "not_delivered"
    assert d["ticket"]["sla"]["first_response"]["state"] == "running"
    assert d["ticket"]["status"] == "open" and d["history"][-1]["action"] == "created"
