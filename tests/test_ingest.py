"""Webhook ingest: every refusal stores nothing; accepted events are durable and deduped."""

from __future__ import annotations

import asyncio
import io
import json

import pytest

from bot.app import build_app
from bot.metrics import REGISTRY
from tests.conftest import GENERIC_SECRET
from tests.support.waiting import until
from tests.support.webhooks import generic_event, signed

URL = "/webhooks/generic/acme"


@pytest.fixture
async def client(aiohttp_client, settings):
    return await aiohttp_client(build_app(settings, role="web"))


async def stored(redis, keys) -> int:
    return int(await redis.xlen(keys.inbound))


async def test_signed_event_is_stored_once(client, redis, keys):
    body, headers = signed(GENERIC_SECRET, generic_event("e1", "where is my order?"))
    resp = await client.post(URL, data=body, headers=headers)
    assert resp.status == 200
    assert await stored(redis, keys) == 1
    ((_, fields),) = await redis.xrange(keys.inbound)
    assert b"where is my order?" in fields[b"event"]
    # the platform retries the same delivery: accepted, not stored again
    resp = await client.post(URL, data=body, headers=headers)
    assert resp.status == 200
    assert await stored(redis, keys) == 1


async def test_batch_of_events_and_unknown_types(client, redis, keys):
    payload = {
        "events": [
            generic_event("a"),
            {"type": "like", "id": "x"},
            generic_event("b", kind="mention"),
        ]
    }
    body, headers = signed(GENERIC_SECRET, payload)
    resp = await client.post(URL, data=body, headers=headers)
    assert resp.status == 200
    assert await stored(redis, keys) == 2  # the unknown 'like' is ignored


async def test_own_posts_are_dropped(client, redis, keys):
    body, headers = signed(GENERIC_SECRET, generic_event("own", author_id="1000"))
    assert (await client.post(URL, data=body, headers=headers)).status == 200
    assert await stored(redis, keys) == 0


@pytest.mark.parametrize(
    "mutate, status",
    [
        (lambda b, h: (b, {**h, "X-Replydesk-Signature": "sha256=" + "0" * 64}), 401),
        (lambda b, h: (b, {k: v for k, v in h.items() if k != "X-Replydesk-Signature"}), 401),
        (lambda b, h: (b + b" ", h), 401),  # body changed after signing
        (lambda b, h: signed(GENERIC_SECRET, b"{not json"), 400),
        (lambda b, h: signed(GENERIC_SECRET, b"[1,2]"), 400),
        (lambda b, h: signed(GENERIC_SECRET, {"type": "dm", "id": "z", "author": "bob"}), 400),
        (lambda b, h: signed(GENERIC_SECRET, {"type": "dm", "id": "", "author": {"id": "1"}}), 400),
        (
            lambda b, h: signed(
                GENERIC_SECRET, {"events": [generic_event("ok"), {"type": "dm", "id": 5}]}
            ),
            400,
        ),
        # Valid JSON too deep for the parser (it used to be a 500).
        (
            lambda b, h: signed(GENERIC_SECRET, b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
            400,
        ),
    ],
    ids=[
        "wrong-sig",
        "missing-sig",
        "tampered",
        "not-json",
        "not-object",
        "bad-author",
        "empty-id",
        "half-bad-batch",
        "too-deep",
    ],
)
async def test_refusals_store_nothing(client, redis, keys, mutate, status):
    body, headers = signed(GENERIC_SECRET, generic_event("e1"))
    body, headers = mutate(body, headers)
    resp = await client.post(URL, data=body, headers=headers)
    assert resp.status == status
    assert "error" in await resp.json()
    assert await stored(redis, keys) == 0
    assert await redis.dbsize() == 0  # no dedupe key either


async def test_a_lone_surrogate_in_the_text_is_stored_as_a_replacement_character(
    client, redis, keys
):
    """A broken emoji escape ("\\ud83d" without its pair) is valid JSON but not UTF-8:
    storing it failed, and the 503 made the platform retry the message forever. The
    event is taken, with U+FFFD where the half emoji was."""
    raw = json.dumps(generic_event("half", "great job PLACEHOLDER")).encode()
    body, headers = signed(GENERIC_SECRET, raw.replace(b"PLACEHOLDER", b"\\ud83d!"))
    resp = await client.post(URL, data=body, headers=headers)
    assert resp.status == 200
    ((_, fields),) = await redis.xrange(keys.inbound)
    assert "great job \ufffd!" in fields[b"event"].decode()
    # A whole emoji sent as an escaped pair is untouched.
    body, headers = signed(GENERIC_SECRET, raw.replace(b"PLACEHOLDER", b"\\ud83d\\ude00"))
    body = body.replace(b'"half"', b'"pair"')
    body, headers = signed(GENERIC_SECRET, body)
    assert (await client.post(URL, data=body, headers=headers)).status == 200
    assert "great job \U0001f600" in (await redis.xrange(keys.inbound))[1][1][b"event"].decode()


async def test_oversized_body_is_413(client, redis, keys):
    event = generic_event("big", "x" * (1024 * 1024 + 10))
    body, headers = signed(GENERIC_SECRET, event)
    resp = await client.post(
        URL, data=io.BytesIO(body), headers={**headers, "Content-Length": str(len(body))}
    )
    assert resp.status == 413
    assert await redis.dbsize() == 0


async def test_oversized_chunked_body_is_413(client, redis):
    async def gen():
        for _ in range(20):
            yield b"x" * 65536

    resp = await client.post(URL, data=gen(), headers={"X-Replydesk-Signature": "sha256=00"})
    assert resp.status == 413
    assert await redis.dbsize() == 0


@pytest.mark.parametrize(
    "url", ["/webhooks/generic/nope", "/webhooks/x/acme", "/webhooks/bogus/acme"]
)
async def test_unknown_platform_or_account_is_404(client, redis, url):
    body, headers = signed(GENERIC_SECRET, generic_event("e1"))
    assert (await client.post(url, data=body, headers=headers)).status == 404
    assert (await client.get(url)).status == 404
    assert await redis.dbsize() == 0


async def test_handshake(client):
    resp = await client.get(URL, params={"challenge": "abc"})
    assert resp.status == 200
    from bot.platforms.generic import sign

    assert (await resp.json())["response"] == sign(GENERIC_SECRET, b"abc")
    assert (await client.get(URL)).status == 400


async def test_concurrent_duplicate_deliveries_store_one(client, redis, keys):
    body, headers = signed(GENERIC_SECRET, generic_event("dup", "same event"))
    other = [signed(GENERIC_SECRET, generic_event(f"u{i}")) for i in range(10)]
    resps = await asyncio.gather(
        *[client.post(URL, data=body, headers=headers) for _ in range(30)],
        *[client.post(URL, data=b, headers=h) for b, h in other],
    )
    assert {r.status for r in resps} == {200}
    assert await stored(redis, keys) == 11
    events = [f[b"event"] for _, f in await redis.xrange(keys.inbound)]
    assert sum(b'"dup"' in e for e in events) == 1


async def test_redis_down_is_503_not_200(aiohttp_client, settings, redis_server):
    app = build_app(settings, role="web")
    client = await aiohttp_client(app)
    redis_server.stop()
    try:
        body, headers = signed(GENERIC_SECRET, generic_event("e-down"))
        resp = await client.post(URL, data=body, headers=headers)
        assert resp.status == 503
    finally:
        redis_server.start()


async def test_ready_fails_while_redis_refuses_writes(client, redis):
    """A Redis at maxmemory under noeviction still answers PING, so /readyz said ready
    while every webhook got 503: the load balancer kept sending traffic here."""
    await redis.config_set("maxmemory-policy", "noeviction")
    await redis.config_set("maxmemory", "1")  # below what is used: every write refused
    try:
        r = await client.get("/readyz")
        assert r.status == 503 and (await r.json())["checks"]["redis"] is False
        body, headers = signed(GENERIC_SECRET, generic_event("e-full"))
        assert (await client.post(URL, data=body, headers=headers)).status == 503
    finally:
        await redis.config_set("maxmemory", "0")
    assert (await client.get("/readyz")).status == 200


async def test_health_ready_metrics(client):
    assert (await client.get("/healthz")).status == 200
    r = await client.get("/readyz")
    assert r.status == 200 and (await r.json())["checks"]["redis"] is True
    labels = {"kind": "dm", "outcome": "accepted", "platform": "generic"}
    before = REGISTRY.get_sample_value("replydesk_ingest_events_total", labels) or 0.0
    body, headers = signed(GENERIC_SECRET, generic_event("m1"))
    await client.post(URL, data=body, headers=headers)
    text = await (await client.get("/metrics")).text()
    assert REGISTRY.get_sample_value("replydesk_ingest_events_total", labels) == before + 1
    assert "replydesk_ingest_events_total{" in text
    assert "replydesk_ingest_ack_seconds_bucket" in text
    assert 'replydesk_stream_length{stream="inbound"}' in text


async def test_the_web_role_stores_events_and_the_worker_role_takes_no_webhooks(
    client, aiohttp_client, settings, redis, keys
):
    """role=web (the ingest tier) stores events for the workers and handles none itself;
    role=worker serves no webhooks."""

    async def groups() -> list[str]:
        return [g["name"].decode() for g in await redis.xinfo_groups(keys.inbound)]

    body, headers = signed(GENERIC_SECRET, generic_event("r1"))
    assert (await client.post(URL, data=body, headers=headers)).status == 200
    assert await stored(redis, keys) == 1
    assert await groups() == []  # no worker reads here
    worker = await aiohttp_client(build_app(settings, role="worker"))
    assert (await worker.post(URL, data=body, headers=headers)).status == 404
    await until(groups, what="the worker role's consumer group")
    assert await groups() == [keys.WORKERS] and await stored(redis, keys) == 1
