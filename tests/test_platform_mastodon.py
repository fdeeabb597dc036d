"""Mastodon: admin webhooks, HTML to text, replies (@acct, Idempotency-Key), and the
streaming client's reconnect + catch-up (nothing lost, nothing doubled)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from typing import Any

import aiohttp
import pytest

from bot.app import build_app
from bot.config import ConfigError, Settings
from bot.ingest import IngestWriter
from bot.models import InboundEvent, OutboundReply
from bot.outbox import sent_record
from bot.platforms import adapter_for
from bot.platforms.mastodon import MastodonAdapter, html_to_text
from bot.platforms.mastodon_stream import MastodonStream
from tests.conftest import make_settings
from tests.fakes import FakeMastodon
from tests.fakes.harness import (
    MASTO_TOKEN,
    accounts,
    deliver,
    inbound_events,
    make_sender,
    mastodon_signature,
    reply,
)
from tests.fakes.mastodon import links, status_length
from tests.support.waiting import until

EXAMPLE_CONTENT = (
    '<span class="h-card"><a class="u-url mention" href="https://mastodon.social/@trwnh">'
    "@<span>trwnh</span></a></span> test"
)


def test_html_to_text() -> None:
    assert html_to_text(EXAMPLE_CONTENT) == "@trwnh test"
    assert (
        html_to_text("<p>Hi &amp; thanks&#33;</p><p>line<br>two &lt;3</p>")
        == "Hi & thanks!\n\nline\ntwo <3"
    )
    link = (
        '<a href="https://example.com/orders/123"><span class="invisible">https://</span>'
        '<span class="ellipsis">example.com/ord</span><span class="invisible">ers/123</span></a>'
    )
    assert html_to_text(f"<p>see {link}</p>") == "see https://example.com/orders/123"


def test_webhook_signature_reproduces_the_documented_example() -> None:
    body = b'{"event":"status.created","created_at":"2023-10-26T13:34:00.351Z","object":{}}'
    assert (
        mastodon_signature(body)
        == "sha256=f6f7ad938a42aa67c8178d622257ccd929980d0c56f055ee8a541a4106d4ecd8"
    )


def status(sid: str = "108914343542683797", **kw: Any) -> dict[str, Any]:
    s = {
        "id": sid,
        "created_at": "2022-08-30T23:09:54.070Z",
        "in_reply_to_id": None,
        "visibility": "unlisted",
        "content": '<p><span class="h-card"><a class="u-url mention">@<span>shop</span></a></span> where is my order?</p>',
        "account": {"id": "108892712797543112", "acct": "a@pl.nulled.red"},
        "mentions": [{"id": "109000000000000001", "username": "shop", "acct": "shop"}],
    }
    s.update(kw)
    return s


@pytest.fixture
async def client(aiohttp_client, redis_server, redis, tmp_path):  # type: ignore[no-untyped-def]
    settings = make_settings(redis_server.url, tmp_path, accounts=accounts())
    return await aiohttp_client(build_app(settings, role="web"))


async def hook(client: Any, payload: dict[str, Any], sig: str | None = None) -> Any:
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Hub-Signature": sig if sig is not None else mastodon_signature(body),
    }
    return await client.post("/webhooks/mastodon/brandm", data=body, headers=headers)


@pytest.mark.parametrize("sig", ["", "sha256=00", mastodon_signature(b"{}")])
async def test_webhook_bad_signature_is_401_and_stores_nothing(client, redis, keys, sig) -> None:  # type: ignore[no-untyped-def]
    resp = await hook(client, {"event": "status.created", "object": status()}, sig=sig)
    assert resp.status == 401
    assert await redis.xlen(keys.inbound) == 0


async def test_webhook_status_created_mentioning_us(client, redis, keys) -> None:  # type: ignore[no-untyped-def]
    own = status("2", account={"id": "109000000000000001", "acct": "shop"})
    unrelated = status("3", mentions=[{"id": "5", "acct": "someone"}])
    other_event = {"event": "account.created", "created_at": "x", "object": {"id": "7"}}
    for p in (
        {"event": "status.created", "object": status()},
        {"event": "status.created", "object": status()},  # Sidekiq retry
        {"event": "status.created", "object": own},
        {"event": "status.created", "object": unrelated},
        other_event,
    ):
        assert (await hook(client, p)).status == 200
    (ev,) = await inbound_events(redis, keys)
    assert ev["event_id"] == "108914343542683797" and ev["kind"] == "mention"
    assert ev["author"]["handle"] == "a@pl.nulled.red" and ev["text"] == "@shop where is my order?"


async def test_an_automated_account_is_marked_as_a_bot(client, redis, keys) -> None:  # type: ignore[no-untyped-def]
    """Mastodon's ``account.bot`` reaches the worker as ``Author.bot`` (the policy ignores
    such authors, so two bots do not answer each other)."""
    robot = {"id": "108892712797543199", "acct": "news@bots.example", "bot": True}
    for p in (status("10", account=robot), status("11")):
        assert (await hook(client, {"event": "status.created", "object": p})).status == 200
    bot_ev, person_ev = await inbound_events(redis, keys)
    assert bot_ev["author"]["bot"] is True and "bot" not in person_ev["author"]
    assert InboundEvent.from_json(json.dumps(bot_ev)).author.bot is True
    assert InboundEvent.from_json(json.dumps(person_ev)).author.bot is False


async def test_direct_status_is_a_dm(client, redis, keys) -> None:  # type: ignore[no-untyped-def]
    assert (
        await hook(client, {"event": "status.created", "object": status(visibility="direct")})
    ).status == 200
    (ev,) = await inbound_events(redis, keys)
    assert ev["kind"] == "dm" and ev["conversation_id"] == "dm:108892712797543112"


# -- outbound -------------------------------------------------------------------


@pytest.fixture
async def fake(aiohttp_server):  # type: ignore[no-untyped-def]
    fake = FakeMastodon(token=MASTO_TOKEN)
    server = await aiohttp_server(fake.app)
    fake.base_url = str(server.make_url("")).rstrip("/")
    return fake


@pytest.fixture
async def env(fake, redis_server, redis, keys, tmp_path):  # type: ignore[no-untyped-def]
    settings = make_settings(
        redis_server.url, tmp_path, accounts=accounts(masto_base=fake.base_url)
    )
    async with aiohttp.ClientSession() as http:
        yield settings, http


async def test_mention_reply_with_acct_and_idempotency_key(env, fake, redis, keys) -> None:  # type: ignore[no-untyped-def]
    settings, http = env
    sender = make_sender(settings, redis, keys, http)
    parent = fake.mention("where is my order?")["status"]
    r = reply(
        "mastodon",
        "brandm",
        "mention",
        recipient_handle="a@pl.nulled.red",
        in_reply_to_id=parent["id"],
    )
    await deliver(sender, r)
    (call,) = fake.calls_to("/api/v1/statuses")
    assert call.headers["Authorization"] == f"Bearer {MASTO_TOKEN}"
    assert call.headers["Idempotency-Key"] == r.reply_id
    assert call.json == {
        "status": "@a@pl.nulled.red Thanks, we're on it.",
        "visibility": "unlisted",
        "in_reply_to_id": parent["id"],
        "language": "en",
    }
    rec = await sent_record(redis, keys, r.reply_id)
    assert rec is not None and rec["platform_id"] == fake.statuses[0]["id"]


@pytest.mark.parametrize(
    ("parent", "configured", "expected"),
    [
        ("private", "unlisted", "private"),  # followers-only stays followers-only
        ("private", "public", "private"),
        ("unlisted", "public", "unlisted"),
        ("public", "unlisted", "unlisted"),  # never wider than configured
        ("direct", "unlisted", "direct"),  # an agent answering a DM "publicly"
        ("public", "private", "private"),
    ],
)
async def test_mention_reply_is_never_wider_than_its_parent(  # type: ignore[no-untyped-def]
    fake, redis_server, redis, keys, tmp_path, parent, configured, expected
) -> None:
    settings = make_settings(
        redis_server.url,
        tmp_path,
        accounts=accounts(masto_base=fake.base_url, mastodon={"mention_visibility": configured}),
    )
    n = fake.mention("my order 123, address 1 Main St", visibility=parent)
    adapter = adapter_for(settings.accounts[2])
    ev = adapter.notification_event(n)  # type: ignore[attr-defined]
    assert ev is not None
    event = ev if ev.kind == "mention" else dataclasses.replace(ev, kind="mention")
    async with aiohttp.ClientSession() as http:
        sender = make_sender(settings, redis, keys, http)
        await deliver(sender, OutboundReply.answering(event, "Order 123 ships tomorrow"))
    (st,) = fake.statuses
    assert st["visibility"] == expected and st["in_reply_to_id"] == n["status"]["id"]


def test_unknown_mention_visibility_is_a_config_error(redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(
        redis_server.url, tmp_path, accounts=accounts(mastodon={"mention_visibility": "followers"})
    )
    with pytest.raises(ConfigError, match=r"accounts\[brandm\]\.options\.mention_visibility"):
        adapter_for(settings.accounts[2])


async def test_instance_read_failure_is_retried_later_not_kept(fake) -> None:  # type: ignore[no-untyped-def]
    fake.max_characters = 120
    fake.refuse_instance = 2
    settings = make_settings("redis://unused", accounts=accounts(masto_base=fake.base_url))
    adapter = adapter_for(settings.accounts[2])
    assert isinstance(adapter, MastodonAdapter)
    now = [1000.0]
    adapter.clock = lambda: now[0]

    def reads() -> int:
        return len([c for c in fake.calls if c.path == "/api/v2/instance"])

    async with aiohttp.ClientSession() as http:
        await adapter.ready(http)  # 503
        assert adapter.max_characters == 500 and adapter.streaming_base == "" and reads() == 1
        await adapter.ready(http)  # too soon: no request on every message
        assert reads() == 1
        now[0] += 30
        await adapter.ready(http)  # 503 again: the wait doubles
        now[0] += 59
        await adapter.ready(http)
        assert reads() == 2
        now[0] += 1
        await adapter.ready(http)  # read: the instance's limit and streaming host
        assert reads() == 3 and adapter.max_characters == 120
        assert adapter.streaming_base == fake.base_url
        await adapter.ready(http)  # read once, then never again
        assert reads() == 3


async def test_the_instance_rule_is_recorded_for_the_agent_check(fake, redis, keys) -> None:  # type: ignore[no-untyped-def]
    """The web role does not read the instance: what the sending process read is kept in
    Redis for it (escalation.lengths), as the instance said it: a configured
    max_characters still wins in every reader."""
    fake.max_characters, fake.url_length = 400, 30
    settings = make_settings(
        "redis://unused",
        accounts=accounts(masto_base=fake.base_url, mastodon={"max_characters": 1000}),
    )
    adapter = adapter_for(settings.accounts[2])
    assert isinstance(adapter, MastodonAdapter)
    adapter.bind(redis, keys)
    async with aiohttp.ClientSession() as http:
        await adapter.ready(http)
    recorded = json.loads(await redis.get(keys.instance("mastodon", "brandm")))
    assert recorded == {"max_characters": 400, "characters_reserved_per_url": 30}
    assert adapter.max_characters == 1000 and adapter.rule.url_length == 30


async def test_a_link_counts_what_the_instance_reserves(env, fake, redis, keys) -> None:  # type: ignore[no-untyped-def]
    """This instance counts a link 30 (characters_reserved_per_url). Counted 23, the
    reply "fit": it went out whole and the instance refused it (422, dead letter)."""
    settings, http = env
    fake.max_characters, fake.url_length = 100, 30
    url = "https://shop.example.com/returns"
    text = f"Start your return at {url} and we will email you a label for it, thanks!!"
    assert status_length("@someone " + text) == 100 < status_length("@someone " + text, 30)
    sender = make_sender(settings, redis, keys, http)
    await deliver(sender, reply("mastodon", "brandm", "dm", recipient_handle="someone", text=text))
    assert await redis.xlen(keys.dead) == 0
    (st,) = fake.statuses
    assert url in st["content"] and status_length(st["content"], 30) <= 100


async def test_dm_reply_is_direct_and_keeps_acct_first(env, fake, redis, keys) -> None:  # type: ignore[no-untyped-def]
    settings, http = env
    sender = make_sender(settings, redis, keys, http)
    r = reply(
        "mastodon",
        "brandm",
        "dm",
        recipient_handle="a@pl.nulled.red",
        in_reply_to_id="1",
        text="@a@pl.nulled.red Your refund is on its way.",
    )
    await deliver(sender, r)
    (st,) = fake.statuses
    assert (
        st["visibility"] == "direct"
        and st["content"] == "@a@pl.nulled.red Your refund is on its way."
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("您好，我们已经收到您的消息，会尽快处理。", "zh"),  # a Chinese answer on an en account
        ("Thanks, we're on it.", "en"),
        ("👍", "en"),  # the text cannot tell: the account's language
    ],
)
async def test_reply_language_is_the_replys_own(env, fake, redis, keys, text, expected) -> None:  # type: ignore[no-untyped-def]
    """Mastodon shows and filters posts by their language tag: a Chinese answer tagged
    with the account's "en" is hidden from readers filtering for Chinese."""
    settings, http = env
    r = reply(
        "mastodon",
        "brandm",
        "dm",
        recipient_handle="a@pl.nulled.red",
        text=f"@a@pl.nulled.red {text}",
    )
    await deliver(make_sender(settings, redis, keys, http), r)
    (call,) = fake.calls_to("/api/v1/statuses")
    assert call.json["language"] == expected


async def test_instance_limit_is_read_and_long_text_fitted(env, fake, redis, keys) -> None:  # type: ignore[no-untyped-def]
    settings, http = env
    fake.max_characters = 120
    sender = make_sender(settings, redis, keys, http)
    r = reply(
        "mastodon",
        "brandm",
        "dm",
        recipient_handle="someone@far.away.example",
        text="Please check the tracking page. " * 20,
    )
    await deliver(sender, r)
    (st,) = fake.statuses
    assert st["content"].startswith("@someone@far.away.example Please check")
    assert st["content"].endswith("page. Reply for details")
    # The remote domain is free (only "@someone" counts), and another sentence would not
    # fit: counted the instance's way, not with bot.textfit.
    n = status_length(st["content"])
    assert n <= 120 < n + len(" Please check the tracking page.")
    assert len(st["content"]) - n == len("@far.away.example")


# -- streaming ------------------------------------------------------------------


def stream_settings(redis_url: str, tmp_path: Any, base: str) -> Settings:
    opts = {"streaming": True, "stream_reconnect_min_s": 0.05, "stream_reconnect_max_s": 0.2}
    return make_settings(redis_url, tmp_path, accounts=accounts(masto_base=base, mastodon=opts))


async def test_stream_disconnect_and_catch_up_lose_and_double_nothing(
    fake, redis_server, redis, keys, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    settings = stream_settings(redis_server.url, tmp_path, fake.base_url)
    adapter = adapter_for(settings.accounts[2])
    assert isinstance(adapter, MastodonAdapter)
    writer = IngestWriter(redis, keys, dedupe_ttl_s=3600, batch_max=64)
    await writer.start()
    stop = asyncio.Event()
    old = fake.mention("before the bot ever ran")  # history: not answered on first start
    async with aiohttp.ClientSession() as http:
        stream = MastodonStream(adapter, redis, keys, writer, http)
        task = asyncio.create_task(stream.run(stop))
        try:
            await until(lambda: _connected(fake, 1))
            first = fake.mention("live one")
            await until(lambda: _count(redis, keys, 1))

            fake.refuse_streams = 2  # the reconnect fails twice before it works
            fake.drop_streams()
            missed = [
                fake.mention(f"while away {i}", visibility="direct" if i == 1 else "public")
                for i in range(3)
            ]
            await until(lambda: _connected(fake, 2))
            last = fake.mention("after reconnect")
            await until(lambda: _count(redis, keys, 5))
            await asyncio.sleep(0.3)  # anything doubled would show up by now
        finally:
            stop.set()
            await asyncio.wait_for(task, 5)
            await writer.close()
    evs = await inbound_events(redis, keys)
    ids = [e["event_id"] for e in evs]
    expected = [n["status"]["id"] for n in (first, *missed, last)]
    assert sorted(ids) == sorted(expected) and len(ids) == 5
    assert old["status"]["id"] not in ids
    kinds = {e["event_id"]: e["kind"] for e in evs}
    assert (
        kinds[missed[1]["status"]["id"]] == "dm" and kinds[missed[0]["status"]["id"]] == "mention"
    )
    stored = await redis.hget(keys.platform_state("mastodon", "brandm"), "last_notification_id")
    assert stored.decode() == last["id"]
    streams = [c for c in fake.calls if c.path.endswith("/streaming/user/notification")]
    assert all(c.headers["Authorization"] == f"Bearer {MASTO_TOKEN}" for c in streams)


@contextlib.asynccontextmanager
async def catch_up_stream(fake, redis_server, redis, keys, tmp_path):  # type: ignore[no-untyped-def]
    """The Mastodon account's stream client, its writer started, for catch-up calls."""
    settings = stream_settings(redis_server.url, tmp_path, fake.base_url)
    adapter = adapter_for(settings.accounts[2])
    assert isinstance(adapter, MastodonAdapter)
    writer = IngestWriter(redis, keys, dedupe_ttl_s=3600, batch_max=64)
    await writer.start()
    try:
        async with aiohttp.ClientSession() as http:
            yield MastodonStream(adapter, redis, keys, writer, http)
    finally:
        await writer.close()


async def test_catch_up_pages_through_many_missed_mentions(
    fake, redis_server, redis, keys, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    fake.mention("baseline")
    async with catch_up_stream(fake, redis_server, redis, keys, tmp_path) as stream:
        assert await stream.catch_up() == 0  # first start: baseline only
        for i in range(95):
            fake.mention(f"m{i}")
        assert await stream.catch_up() == 95
        assert await stream.catch_up() == 0
    evs = await inbound_events(redis, keys)
    assert [e["text"] for e in evs] == [f"@shop m{i}" for i in range(95)]  # oldest first


async def test_a_broken_emoji_in_a_streamed_mention_is_stored(
    fake, redis_server, redis, keys, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """Half an emoji (a lone surrogate escape in the API's JSON) used to fail the store,
    and the catch-up with it, on every reconnect; it is stored with U+FFFD instead."""
    fake.mention("baseline")
    async with catch_up_stream(fake, redis_server, redis, keys, tmp_path) as stream:
        assert await stream.catch_up() == 0
        fake.mention("love it \ud83d")
        assert await stream.catch_up() == 1
    (ev,) = await inbound_events(redis, keys)
    assert ev["text"] == "@shop love it \ufffd"


async def test_stream_and_webhook_dedupe_to_one_event(
    fake, aiohttp_client, redis_server, redis, keys, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    settings = stream_settings(redis_server.url, tmp_path, fake.base_url)
    client = await aiohttp_client(build_app(settings, role="web"))  # runs the stream
    await until(lambda: _connected(fake, 1))
    n = fake.mention("seen twice")
    await until(lambda: _count(redis, keys, 1))
    assert (await hook(client, {"event": "status.created", "object": n["status"]})).status == 200
    assert await redis.xlen(keys.inbound) == 1


async def _connected(fake: FakeMastodon, n: int) -> bool:
    return fake.stream_connects >= n and fake.stream_count >= 1


async def _count(redis: Any, keys: Any, n: int) -> bool:
    return int(await redis.xlen(keys.inbound)) >= n


async def test_dm_without_handle_is_refused_not_posted(env, fake, redis, keys) -> None:  # type: ignore[no-untyped-def]
    settings, http = env
    sender = make_sender(settings, redis, keys, http)
    await deliver(
        sender, reply("mastodon", "brandm", "dm", recipient_handle="", in_reply_to_id="1")
    )
    assert fake.calls_to("/api/v1/statuses") == []
    rows = await redis.xrange(keys.dead)
    assert b"needs the user's @acct" in rows[0][1][b"error"]


@pytest.mark.parametrize(
    "piece",
    [
        "谢谢@alice@example.social",  # after a letter "@alice@…" is no mention: all of it counts
        "HTTPS://A.CO",  # a link in capitals counts 23, not the 12 it has
        "https://help.shop.example/returns/start",  # no TLD, no link: 39 as written
        "@a@b.social-",  # the mention's domain ends before "-", which counts
    ],
)
async def test_a_reply_one_over_the_limit_is_fitted_not_refused(  # type: ignore[no-untyped-def]
    env, fake, redis, keys, piece
) -> None:
    """Counted as shorter than the instance counts them, these made a reply one over
    the limit "fit": it went out whole and the instance refused it (422, dead letter)."""
    settings, http = env
    fake.max_characters = 100
    sender = make_sender(settings, redis, keys, http)
    prefix = "@someone "
    body = piece + " " + "a" * (100 - status_length(prefix + piece + " ") + 1)
    assert status_length(prefix + body) == 101
    await deliver(sender, reply("mastodon", "brandm", "dm", recipient_handle="someone", text=body))
    (st,) = fake.statuses
    assert status_length(st["content"]) <= 100 and st["content"] != prefix + body


async def test_a_link_at_the_cut_is_not_run_into_the_ellipsis(env, fake, redis, keys) -> None:  # type: ignore[no-untyped-def]
    """ "…" right after a link becomes part of it on Mastodon (its link pattern takes
    any non-space character): the customer got a link to ".../returns…", a 404."""
    settings, http = env
    fake.max_characters = 74  # the cut falls right after the link
    sender = make_sender(settings, redis, keys, http)
    url = "https://shop.example.com/returns"
    text = f"Start your return at {url} and we will email a label once it is approved"
    await deliver(sender, reply("mastodon", "brandm", "dm", recipient_handle="someone", text=text))
    (st,) = fake.statuses
    assert url in st["content"] and st["content"] != f"@someone {text}"
    assert links(st["content"]) == [url]


@pytest.mark.parametrize("name", ["X-Hub-Signature", "x-hub-signature"])
async def test_webhook_signature_header_any_case_and_hex_in_capitals(  # type: ignore[no-untyped-def]
    client, redis, keys, name
) -> None:
    body = json.dumps({"event": "status.created", "object": status()}).encode()
    sig = mastodon_signature(body)
    for value in (sig, "sha256=" + sig.removeprefix("sha256=").upper()):
        headers = {"Content-Type": "application/json", name: value}
        assert (
            await client.post("/webhooks/mastodon/brandm", data=body, headers=headers)
        ).status == 200
    assert await redis.xlen(keys.inbound) == 1  # the same status twice: stored once
    empty = {"Content-Type": "application/json", name: mastodon_signature(b"")}
    assert (await client.post("/webhooks/mastodon/brandm", data=b"", headers=empty)).status == 400
