"""Weibo: the official signature example, push parsing, and replies inside the window."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import aiohttp
import pytest

from bot.app import build_app
from bot.config import AccountConfig, Secret
from bot.models import Author, InboundEvent, OutboundReply
from bot.outbox import Sender, sent_record
from bot.platforms import windows
from bot.platforms.base import SignatureError
from bot.platforms.weibo import WeiboAdapter, encode_data, signature
from tests.conftest import make_settings
from tests.fakes import FakeWeibo
from tests.fakes.harness import (
    WEIBO_SECRET,
    WEIBO_TOKEN,
    FakeClock,
    accounts,
    dead_entries,
    deliver,
    inbound_events,
    make_sender,
    weibo_query,
)

TEXT = {
    "type": "text",
    "receiver_id": 1902538057,
    "sender_id": 2489518277,
    "created_at": "Mon Jul 16 18:09:20 +0800 2012",
    "text": "the content of a general message",
    "data": {},
}


def test_official_signature_example() -> None:
    assert (
        signature("xyz123xyz", "1397022061823", "57155157")
        == "90e4c22c90a58f26526c2dd5b6c56c8822edeaa1"
    )


def test_data_encoding_matches_the_official_curl() -> None:
    assert (
        encode_data({"text": "纯文本回复"})
        == "%7B%22text%22%3A%22%E7%BA%AF%E6%96%87%E6%9C%AC%E5%9B%9E%E5%A4%8D%22%7D"
    )


@pytest.fixture
async def client(aiohttp_client, redis_server, redis, tmp_path):  # type: ignore[no-untyped-def]
    settings = make_settings(
        redis_server.url, tmp_path, accounts=accounts(weibo_base="http://127.0.0.1:9")
    )
    return await aiohttp_client(build_app(settings, role="web"))


async def test_handshake_echoes_echostr(client) -> None:  # type: ignore[no-untyped-def]
    # The official GET: http://yoururl?nonce=57155157&timestamp=1397022061823&echostr=dnPdpTZz85&signature=90e4...
    resp = await client.get(
        "/webhooks/weibo/brandwb?nonce=57155157&timestamp=1397022061823&echostr=dnPdpTZz85"
        "&signature=90e4c22c90a58f26526c2dd5b6c56c8822edeaa1"
    )
    assert resp.status == 200 and await resp.text() == "dnPdpTZz85"
    bad = await client.get(
        "/webhooks/weibo/brandwb", params={**weibo_query(), "signature": "0" * 40, "echostr": "x"}
    )
    assert bad.status == 401


async def push(client: Any, payload: dict[str, Any], query: dict[str, str] | None = None) -> Any:
    q = weibo_query() if query is None else query
    return await client.post(
        "/webhooks/weibo/brandwb", params=q, data=json.dumps(payload, ensure_ascii=False).encode()
    )


@pytest.mark.parametrize(
    "query",
    [
        {},
        {**weibo_query(), "signature": "deadbeef"},
        weibo_query(secret="other"),
        {**weibo_query(), "nonce": "1"},
    ],
)
async def test_bad_signature_is_401_and_stores_nothing(client, redis, keys, query) -> None:  # type: ignore[no-untyped-def]
    resp = await push(client, TEXT, query)
    assert resp.status == 401
    assert await redis.xlen(keys.inbound) == 0


async def test_text_becomes_dm_with_derived_id_and_empty_answer(client, redis, keys) -> None:  # type: ignore[no-untyped-def]
    for _ in range(2):  # Weibo retries: deduped on sender_id + created_at + content
        resp = await push(client, TEXT)
        assert resp.status == 200 and await resp.read() == b""
    (ev,) = await inbound_events(redis, keys)
    assert ev["kind"] == "dm"
    assert ev["event_id"].startswith("2489518277:Mon Jul 16 18:09:20 +0800 2012:")
    assert ev["author"]["id"] == "2489518277" and ev["text"] == "the content of a general message"
    assert ev["created_at"] == 1342433360.0


async def test_messages_sent_in_the_same_second_are_all_kept(client, redis, keys) -> None:  # type: ignore[no-untyped-def]
    """A follow, then two messages, all stamped with one second: three events."""
    follow = {**TEXT, "type": "event", "text": "关注事件消息", "data": {"subtype": "follow"}}
    second = {**TEXT, "text": "and my order number is A123"}
    for payload in (follow, TEXT, second, TEXT):  # the last one: a retry of the first DM
        assert (await push(client, payload)).status == 200
    evs = await inbound_events(redis, keys)
    assert [e["kind"] for e in evs] == ["follow", "dm", "dm"]
    assert len({e["event_id"] for e in evs}) == 3


async def test_mention_follow_unfollow_and_unknown_types(client, redis, keys) -> None:  # type: ignore[no-untyped-def]
    mention = {
        **TEXT,
        "type": "mention",
        "text": "@品牌客服 快递丢了",
        "created_at": "Mon Jul 16 18:10:00 +0800 2012",
    }
    follow = {
        **TEXT,
        "type": "event",
        "text": "关注事件消息",
        "data": {"subtype": "follow"},
        "created_at": "Mon Jul 16 18:11:00 +0800 2012",
    }
    unfollow = {
        **follow,
        "data": {"subtype": "unfollow"},
        "created_at": "Mon Jul 16 18:12:00 +0800 2012",
    }
    menu = {
        **follow,
        "data": {"subtype": "click", "key": "menu1"},
        "created_at": "Mon Jul 16 18:13:00 +0800 2012",
    }
    odd = {**TEXT, "type": "hologram", "created_at": "Mon Jul 16 18:14:00 +0800 2012"}
    own = {**TEXT, "sender_id": 1902538057, "receiver_id": 2489518277}
    for p in (mention, follow, unfollow, menu, odd, own):
        assert (await push(client, p)).status == 200
    evs = await inbound_events(redis, keys)
    assert [e["kind"] for e in evs] == ["mention", "follow", "unfollow", "activity"]
    assert evs[0]["reply_to_id"] == evs[0]["event_id"] and evs[0]["text"] == "@品牌客服 快递丢了"
    assert evs[1]["text"] == "" and evs[3]["text"] == ""


@pytest.mark.parametrize("subtype", ["subscribe", "scan", "click", "view"])
async def test_window_opening_events_are_stored_as_activity(client, redis, keys, subtype) -> None:  # type: ignore[no-untyped-def]
    """§2.5: a subscribe, QR scan or menu click opens the 48 h window like a message."""
    data = {"subtype": subtype}
    if subtype in ("click", "view"):
        data["key"] = "menu1"  # the menu item
    assert (await push(client, {**TEXT, "type": "event", "text": "dy", "data": data})).status == 200
    (ev,) = await inbound_events(redis, keys)
    assert ev["kind"] == "activity" and ev["text"] == ""
    event = InboundEvent.from_json(json.dumps(ev))
    assert not event.is_message  # recorded for the window, never answered
    await windows.record(redis, keys, event)
    state = await windows.describe(
        redis, keys, "weibo", "brandwb", "2489518277", now=event.created_at + 3600
    )
    assert state["open"] and state["closes_at"] == event.created_at + 48 * 3600


def test_own_echo_is_dropped_without_a_configured_user_id() -> None:
    acc = AccountConfig(
        id="w",
        platform="weibo",
        secrets={"app_secret": Secret(WEIBO_SECRET), "access_token": Secret(WEIBO_TOKEN)},
    )
    a = WeiboAdapter(acc)
    # The bot's own reply, were Weibo to push it: sender is the receiver (the bot's uid).
    own = {**TEXT, "sender_id": 1902538057, "text": "@user thanks"}
    assert a.parse(json.dumps(own).encode()) == []
    assert [e.kind for e in a.parse(json.dumps(TEXT).encode())] == ["dm"]


# -- freshness and replays (the signature covers only the query, §2.1) ---------


@pytest.mark.parametrize("age_s", [-600, 600, 3600 * 24 * 365 * 12])
async def test_stale_or_future_timestamp_is_401(client, redis, keys, age_s) -> None:  # type: ignore[no-untyped-def]
    q = weibo_query(timestamp=str(int((time.time() - age_s) * 1000)))
    assert (await push(client, TEXT, q)).status == 401
    assert await redis.xlen(keys.inbound) == 0


async def test_timestamp_within_tolerance_is_accepted_in_ms_or_seconds(client, redis, keys) -> None:  # type: ignore[no-untyped-def]
    ms = weibo_query(timestamp=str(int((time.time() - 120) * 1000)))
    seconds = weibo_query(timestamp=str(int(time.time() + 60)))
    later = {**TEXT, "created_at": "Mon Jul 16 18:09:21 +0800 2012"}
    assert (await push(client, TEXT, ms)).status == 200
    assert (await push(client, later, seconds)).status == 200
    assert len(await inbound_events(redis, keys)) == 2


def _weibo(**options: Any) -> WeiboAdapter:
    acc = AccountConfig(
        id="brandwb",
        platform="weibo",
        user_id="1902538057",
        secrets={"app_secret": Secret(WEIBO_SECRET), "access_token": Secret(WEIBO_TOKEN)},
        options=options,
    )
    return WeiboAdapter(acc)


def test_timestamp_tolerance_is_an_option() -> None:
    q = weibo_query(timestamp=str(int((time.time() - 200) * 1000)))
    _weibo().verify({}, q, b"{}")
    with pytest.raises(SignatureError, match="stale"):
        _weibo(timestamp_tolerance_s=60).verify({}, q, b"{}")


async def test_signature_replayed_with_another_body_is_refused(redis, keys) -> None:  # type: ignore[no-untyped-def]
    a = _weibo()
    q = weibo_query()
    body = json.dumps(TEXT).encode()
    forged = json.dumps({**TEXT, "type": "event", "data": {"subtype": "unfollow"}}).encode()
    for b in (body, body):  # the push, then Weibo's own retry of it
        a.verify({}, q, b)
        await a.check_replay(redis, keys, q, b)
    a.verify({}, q, forged)  # fresh and correctly signed: only the memory catches it
    with pytest.raises(SignatureError, match="already used"):
        await a.check_replay(redis, keys, q, forged)
    ttl = await redis.ttl(keys.ns("replay", "weibo", "brandwb", q["signature"]))
    assert 2 * 300 - 5 <= ttl <= 2 * 300  # kept while the timestamp could be accepted


async def test_a_captured_push_url_cannot_carry_another_body(client, redis, keys) -> None:  # type: ignore[no-untyped-def]
    """Through the webhook: the captured URL with a forged body is 401 and stores nothing."""
    q = weibo_query()
    assert (await push(client, TEXT, q)).status == 200
    forged = {**TEXT, "text": "forged", "created_at": "Mon Jul 16 18:09:21 +0800 2012"}
    resp = await push(client, forged, q)
    assert resp.status == 401 and "already used" in await resp.text()
    assert [e["text"] for e in await inbound_events(redis, keys)] == [TEXT["text"]]


# -- outbound and the reply window ---------------------------------------------


@pytest.fixture
async def fake_weibo(aiohttp_server):  # type: ignore[no-untyped-def]
    fake = FakeWeibo(token=WEIBO_TOKEN)
    server = await aiohttp_server(fake.app)
    fake.url = str(server.make_url("")).rstrip("/")  # type: ignore[attr-defined]
    return fake


@pytest.fixture
async def env(fake_weibo, redis_server, redis, keys, tmp_path):  # type: ignore[no-untyped-def]
    settings = make_settings(
        redis_server.url, tmp_path, accounts=accounts(weibo_base=fake_weibo.url)
    )
    clock = FakeClock(start=1_700_000_000.0)
    async with aiohttp.ClientSession() as http:
        yield settings, clock, http


def inbound(kind: str, at: float, n: int = 1) -> InboundEvent:
    return InboundEvent(
        platform="weibo",
        account="brandwb",
        kind=kind,  # type: ignore[arg-type]
        event_id=f"2489518277:t{n}",
        author=Author(id="2489518277", handle=""),
        text="你好",
        reply_to_id=f"2489518277:t{n}" if kind == "mention" else None,
        created_at=at,
        received_at=at,
    )


def answer(ev: InboundEvent, text: str = "纯文本回复", n: int = 0) -> OutboundReply:
    return OutboundReply.answering(ev, text, n=n)


async def opened(kind: str, env, redis, keys) -> tuple[InboundEvent, Sender]:  # type: ignore[no-untyped-def]
    """A customer's ``kind`` event a minute ago (the window it opens recorded), and a
    sender to answer it."""
    settings, clock, http = env
    ev = inbound(kind, clock.now - 60)
    await windows.record(redis, keys, ev)
    return ev, make_sender(settings, redis, keys, http, clock)


async def test_dm_reply_in_window_is_sent_form_encoded(env, fake_weibo, redis, keys) -> None:  # type: ignore[no-untyped-def]
    settings, clock, http = env
    ev = inbound("dm", clock.now - 3600)
    await windows.record(redis, keys, ev)
    sender = make_sender(settings, redis, keys, http, clock)
    await deliver(sender, answer(ev))
    (call,) = fake_weibo.calls
    assert call.query == {"access_token": WEIBO_TOKEN}
    assert call.headers["Content-Type"] == "application/x-www-form-urlencoded"
    # Byte for byte the official curl's body (receiver_id, type, data).
    assert call.body.decode() == (
        "receiver_id=2489518277&type=text&data=%7B%22text%22%3A%22%E7%BA%AF%E6%96%87%E6%9C%AC%E5%9B%9E%E5%A4%8D%22%7D"
    )
    rec = await sent_record(redis, keys, answer(ev).reply_id)
    assert rec is not None and rec["platform_id"] == fake_weibo.messages[0]["id"]
    # The window is unlimited for 48 h: a second reply to the same DM goes out too.
    await deliver(sender, answer(ev, "第二条", n=1))
    assert len(fake_weibo.messages) == 2


async def test_mention_gets_exactly_one_reply(env, fake_weibo, redis, keys) -> None:  # type: ignore[no-untyped-def]
    settings, clock, http = env
    ev = inbound("mention", clock.now - 60)
    await windows.record(redis, keys, ev)
    sender = make_sender(settings, redis, keys, http, clock)
    await deliver(sender, answer(ev))
    await deliver(sender, answer(ev, "again", n=1))
    assert [m["text"] for m in fake_weibo.messages] == ["纯文本回复"]
    (dead,) = await dead_entries(redis, keys)
    assert dead["error"] == windows.REASONS["mention_used"]


async def test_expired_window_calls_hook_not_api(env, fake_weibo, redis, keys) -> None:  # type: ignore[no-untyped-def]
    settings, clock, http = env
    ev = inbound("dm", clock.now - 48 * 3600 - 1)
    await windows.record(redis, keys, ev)
    notes: list[tuple[str, str]] = []

    async def note(r: OutboundReply, reason: str) -> None:
        notes.append((r.reply_id, reason))

    sender = make_sender(settings, redis, keys, http, clock, on_undeliverable=note)
    await deliver(sender, answer(ev))
    assert fake_weibo.calls == []
    assert notes == [(answer(ev).reply_id, windows.REASONS["expired"])]
    assert await redis.xlen(keys.dead) == 0
    pending = await redis.xpending(keys.outbox, keys.SENDERS)
    assert pending["pending"] == 0


async def test_unfollow_closes_window_and_default_is_dead_letter(
    env, fake_weibo, redis, keys
) -> None:  # type: ignore[no-untyped-def]
    settings, clock, http = env
    dm = inbound("dm", clock.now - 600)
    await windows.record(redis, keys, dm)
    await windows.record(redis, keys, inbound("unfollow", clock.now - 300, n=2))
    sender = make_sender(settings, redis, keys, http, clock)
    await deliver(sender, answer(dm))
    assert fake_weibo.calls == []
    (dead,) = await dead_entries(redis, keys)
    assert (
        dead["error"]
        == windows.REASONS["unfollowed"]
        == "reply window closed: the user unfollowed the account"
    )
    # Following again reopens it.
    await windows.record(redis, keys, inbound("follow", clock.now - 10, n=3))
    await deliver(sender, answer(dm, "welcome back", n=1))
    assert [m["text"] for m in fake_weibo.messages] == ["welcome back"]


async def test_failed_mention_reply_gives_the_credit_back(env, fake_weibo, redis, keys) -> None:  # type: ignore[no-untyped-def]
    _, clock, _ = env
    ev, sender = await opened("mention", env, redis, keys)
    fake_weibo.fail_next(400, {"error": "receiver invalid", "error_code": 20003})
    await deliver(sender, answer(ev))
    (dead,) = await dead_entries(redis, keys)
    assert "error_code=20003" in dead["error"] and "receiver invalid" in dead["error"]
    state = await windows.describe(redis, keys, "weibo", "brandwb", "2489518277", now=clock.now)
    assert state["mentions_answerable"] == ["2489518277:t1"]


async def test_rate_limit_error_code_is_retried(env, fake_weibo, redis, keys) -> None:  # type: ignore[no-untyped-def]
    ev, sender = await opened("dm", env, redis, keys)
    fake_weibo.fail_next(403, {"error": "User requests out of rate limit!", "error_code": 10023})
    await deliver(sender, answer(ev))
    assert len(fake_weibo.messages) == 1 and await redis.xlen(keys.dead) == 0


async def test_long_reply_fits_under_300(env, fake_weibo, redis, keys) -> None:  # type: ignore[no-untyped-def]
    ev, sender = await opened("dm", env, redis, keys)
    await deliver(sender, answer(ev, "您的包裹正在派送中，请耐心等待。" * 40))
    (msg,) = fake_weibo.messages
    assert len(str(msg["text"])) < 300 and str(msg["text"]).endswith("详情请回复我们")


async def test_emoji_reply_fits_in_utf16_code_units(env, fake_weibo, redis, keys) -> None:  # type: ignore[no-untyped-def]
    """Counted in graphemes this fitted as 299 but is 418 code units: 21325, dead-lettered."""
    ev, sender = await opened("dm", env, redis, keys)
    await deliver(sender, answer(ev, "感谢您的耐心等待👍🏽" * 40))
    assert await redis.xlen(keys.dead) == 0
    (msg,) = fake_weibo.messages
    assert len(str(msg["text"]).encode("utf-16-le")) // 2 < 300


async def test_empty_or_signed_elsewhere_bodies_are_refused(client, redis, keys) -> None:  # type: ignore[no-untyped-def]
    q = weibo_query()
    resp = await client.post("/webhooks/weibo/brandwb", params=q, data=b"")
    assert resp.status == 400  # signed query, but no push: nothing stored, signature unused
    assert (await push(client, TEXT, q)).status == 200
    assert (await push(client, TEXT, q)).status == 200  # Weibo's own retry: same body
    assert await redis.xlen(keys.inbound) == 1
    upper = {**weibo_query(), "echostr": "e"}
    upper["signature"] = upper["signature"].upper()  # hex in capitals is the same digest
    assert (await client.get("/webhooks/weibo/brandwb", params=upper)).status == 200


async def test_closed_windows_say_why(env, fake_weibo, redis, keys) -> None:  # type: ignore[no-untyped-def]
    """A reply 49 h after a mention was refused as "more than 48 h since the user's last
    message", and so was a private message to a user who only ever mentioned us (a
    mention allows a reply to it, not a DM): the customer had sent no message at all."""
    settings, clock, http = env
    old = inbound("mention", clock.now - 49 * 3600, n=1)
    fresh = inbound("mention", clock.now - 60, n=2)
    for ev in (old, fresh):
        await windows.record(redis, keys, ev)
    notes: list[str] = []

    async def note(r: OutboundReply, reason: str) -> None:
        notes.append(reason)

    sender = make_sender(settings, redis, keys, http, clock, on_undeliverable=note)
    await deliver(sender, answer(old))
    dm = dataclasses.replace(answer(fresh), kind="dm", in_reply_to_id=None, reply_id="dm-1")
    await deliver(sender, dm)
    assert fake_weibo.calls == []
    assert notes == [windows.REASONS["mention_expired"], windows.REASONS["expired"]]
    assert "48 h old" in notes[0] and "last message" not in notes[1]


async def test_an_agent_is_told_why_a_mention_cannot_be_answered(redis, keys) -> None:  # type: ignore[no-untyped-def]
    from escalation.tickets import Ticket
    from escalation.windows import window_refusal, window_state

    now = 1_700_000_000.0
    ev = inbound("mention", now - 49 * 3600)
    await windows.record(redis, keys, ev)
    t = Ticket(
        id="t1",
        platform="weibo",
        account="brandwb",
        user_id=ev.author.id,
        channel="mention",
        mention_event_id=ev.event_id,
        mention_reply_to_id=str(ev.reply_to_id),
    )
    state = await window_state(redis, keys, t, now)
    why = window_refusal(state, t, answer(ev))
    assert why == windows.REASONS["mention_expired"] + "; the reply was not sent or recorded"
