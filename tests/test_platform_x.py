"""X: CRC, webhook signatures, mention/DM parsing and both reply endpoints."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import aiohttp
import pytest

from bot.app import build_app
from bot.outbox import sent_record
from bot.platforms.x import crc_response
from tests.conftest import make_settings
from tests.fakes import FakeX
from tests.fakes.harness import (
    X_SECRET,
    X_TOKEN,
    accounts,
    dead_entries,
    deliver,
    inbound_events,
    make_sender,
    reply,
    x_signature,
)
from tests.fakes.x import tweet_length

MENTION: dict[str, Any] = {
    "for_user_id": "2244994945",
    "user_has_blocked": "false",
    "tweet_create_events": [
        {
            "created_at": "Wed Oct 10 20:19:24 +0000 2018",
            "id_str": "1050118621198921728",
            "text": "@BotAccount my order #123 has not arrived",
            "truncated": False,
            "in_reply_to_status_id_str": None,
            "user": {"id_str": "6253282", "screen_name": "customer"},
            "entities": {
                "user_mentions": [{"id_str": "2244994945", "screen_name": "BotAccount"}],
                "hashtags": [],
                "urls": [],
                "symbols": [],
            },
        }
    ],
}
DM: dict[str, Any] = {
    "for_user_id": "2244994945",
    "direct_message_events": [
        {
            "type": "message_create",
            "id": "1234858592",
            "created_timestamp": "1392078023603",
            "message_create": {
                "target": {"recipient_id": "2244994945"},
                "sender_id": "3805104374",
                "source_app_id": "268278",
                "message_data": {"text": "Blue Bird", "entities": {}},
            },
        }
    ],
    "users": {"3805104374": {"id": "3805104374", "screen_name": "customer"}},
    "apps": {"268278": {"id": "268278", "name": "Some App"}},
}


def test_crc_reproduces_the_documented_example() -> None:
    assert crc_response("my_consumer_secret", "test_crc_token_123") == {
        "response_token": "sha256=oL5oWowcD7nob73oFfRtxNvaT6USCwJR5mG7VgrPxdk="
    }


def test_signature_reproduces_the_documented_example() -> None:
    body = b'{"for_user_id":"2244994945","direct_message_events":[]}'
    assert x_signature(body) == "sha256=5KSOU67dtBOg6BQqjmTZiad23xHyhfj2Ia5chtZ5eTg="


@pytest.fixture
async def client(aiohttp_client, redis_server, redis, tmp_path):  # type: ignore[no-untyped-def]
    settings = make_settings(redis_server.url, tmp_path, accounts=accounts("http://127.0.0.1:9"))
    return await aiohttp_client(build_app(settings, role="web"))


async def post(client: Any, payload: dict[str, Any] | bytes, sig: str | None = None) -> Any:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    headers["x-twitter-webhooks-signature"] = sig if sig is not None else x_signature(body)
    return await client.post("/webhooks/x/brandx", data=body, headers=headers)


async def test_crc_over_http(client) -> None:  # type: ignore[no-untyped-def]
    resp = await client.get("/webhooks/x/brandx", params={"crc_token": "test_crc_token_123"})
    assert resp.status == 200
    assert await resp.json() == {
        "response_token": "sha256=oL5oWowcD7nob73oFfRtxNvaT6USCwJR5mG7VgrPxdk="
    }
    assert (await client.get("/webhooks/x/brandx")).status == 400


@pytest.mark.parametrize("sig", ["", "sha256=AAAA", x_signature(b"other body")])
async def test_bad_signature_is_401_and_stores_nothing(client, redis, keys, sig) -> None:  # type: ignore[no-untyped-def]
    resp = await post(client, MENTION, sig=sig)
    assert resp.status == 401
    assert await redis.xlen(keys.inbound) == 0


async def test_documented_signature_example_is_accepted(client, redis, keys) -> None:  # type: ignore[no-untyped-def]
    body = b'{"for_user_id":"2244994945","direct_message_events":[]}'
    resp = await post(client, body, sig="sha256=5KSOU67dtBOg6BQqjmTZiad23xHyhfj2Ia5chtZ5eTg=")
    assert resp.status == 200
    assert await redis.xlen(keys.inbound) == 0


async def test_mention_becomes_event_and_duplicates_are_dropped(client, redis, keys) -> None:  # type: ignore[no-untyped-def]
    for _ in range(3):
        assert (await post(client, MENTION)).status == 200
    (ev,) = await inbound_events(redis, keys)
    assert ev["platform"] == "x" and ev["account"] == "brandx" and ev["kind"] == "mention"
    assert ev["event_id"] == "1050118621198921728" and ev["reply_to_id"] == "1050118621198921728"
    assert ev["author"] == {
        "id": "6253282",
        "handle": "customer",
        "followers": 0,
        "verified": False,
    }
    assert ev["text"] == "@BotAccount my order #123 has not arrived"
    assert ev["created_at"] == 1539202764.0


def _tweet(**changes: Any) -> dict[str, Any]:
    p = copy.deepcopy(MENTION)
    p["tweet_create_events"][0].update(changes)
    return p


async def test_own_posts_retweets_and_non_mentions_are_dropped(client, redis, keys) -> None:  # type: ignore[no-untyped-def]
    own = _tweet(id_str="1", user={"id_str": "2244994945", "screen_name": "BotAccount"})
    retweet = _tweet(id_str="2", retweeted_status={"id_str": "9"})
    other = _tweet(id_str="3", entities={"user_mentions": [{"id_str": "42"}]})
    for p in (own, retweet, other):
        assert (await post(client, p)).status == 200
    assert await redis.xlen(keys.inbound) == 0


async def test_truncated_tweet_uses_extended_full_text(client, redis, keys) -> None:  # type: ignore[no-untyped-def]
    full = "@BotAccount " + "long complaint " * 30
    p = _tweet(
        truncated=True,
        text="@BotAccount long complaint long…",
        entities={"user_mentions": []},
        extended_tweet={
            "full_text": full,
            "entities": {"user_mentions": [{"id_str": "2244994945"}]},
        },
    )
    assert (await post(client, p)).status == 200
    (ev,) = await inbound_events(redis, keys)
    assert ev["text"] == full


async def test_dm_becomes_event_with_handle_from_users_map(client, redis, keys) -> None:  # type: ignore[no-untyped-def]
    assert (await post(client, DM)).status == 200
    own = copy.deepcopy(DM)
    own["direct_message_events"][0]["id"] = "999"
    own["direct_message_events"][0]["message_create"]["sender_id"] = "2244994945"
    assert (await post(client, own)).status == 200
    assert (await post(client, DM)).status == 200  # redelivery
    (ev,) = await inbound_events(redis, keys)
    assert ev["kind"] == "dm" and ev["event_id"] == "1234858592"
    assert ev["author"]["id"] == "3805104374" and ev["author"]["handle"] == "customer"
    assert ev["text"] == "Blue Bird" and ev["conversation_id"] == "dm:3805104374"


async def test_malformed_is_400(client, redis, keys) -> None:  # type: ignore[no-untyped-def]
    assert (await post(client, b"not json")).status == 400
    assert (await post(client, {"tweet_create_events": []})).status == 400
    assert await redis.xlen(keys.inbound) == 0


# -- outbound -------------------------------------------------------------------


@pytest.fixture
async def fake_x(aiohttp_server):  # type: ignore[no-untyped-def]
    fake = FakeX(token=X_TOKEN)
    server = await aiohttp_server(fake.app)
    fake.url = str(server.make_url("")).rstrip("/")  # type: ignore[attr-defined]
    return fake


@pytest.fixture
async def sender(fake_x, redis_server, redis, keys, tmp_path):  # type: ignore[no-untyped-def]
    settings = make_settings(redis_server.url, tmp_path, accounts=accounts(fake_x.url))
    async with aiohttp.ClientSession() as http:
        yield make_sender(settings, redis, keys, http)


async def test_mention_reply_posts_tweet_in_reply(sender, fake_x, redis, keys) -> None:  # type: ignore[no-untyped-def]
    r = reply("x", "brandx", "mention", in_reply_to_id="1050118621198921728")
    await deliver(sender, r)
    (call,) = fake_x.calls
    assert call.path == "/2/tweets" and call.headers["Authorization"] == f"Bearer {X_TOKEN}"
    assert call.json == {"text": r.text, "reply": {"in_reply_to_tweet_id": "1050118621198921728"}}
    rec = await sent_record(redis, keys, r.reply_id)
    assert rec is not None and rec["platform_id"] == fake_x.tweets[0]["id"]
    assert await redis.get(keys.sending(r.reply_id)) is None


async def test_dm_reply_posts_to_participant(sender, fake_x, redis, keys) -> None:  # type: ignore[no-untyped-def]
    r = reply("x", "brandx", "dm", recipient_id="3805104374", text="Hello!")
    await deliver(sender, r)
    (call,) = fake_x.calls
    assert call.path == "/2/dm_conversations/with/3805104374/messages"
    assert call.json == {"text": "Hello!"}
    rec = await sent_record(redis, keys, r.reply_id)
    assert rec is not None and rec["platform_id"] == fake_x.dms[0]["id"]


async def test_long_mention_reply_is_fitted_to_280(sender, fake_x) -> None:  # type: ignore[no-untyped-def]
    text = "您的订单已经发货，预计三到五个工作日送达。" * 20 + " https://example.com/track"
    await deliver(sender, reply("x", "brandx", "mention", in_reply_to_id="1", text=text))
    (tweet,) = fake_x.tweets
    assert str(tweet["text"]).endswith("详情请私信我们")


async def test_bare_domains_with_unlisted_endings_still_fit(sender, fake_x, redis, keys) -> None:  # type: ignore[no-untyped-def]
    """X links acme.in and help.acme.eu (23 each) though the bot's TLD list lacks them:
    counted as written, this reply "fit" and X refused it (403, dead-lettered)."""
    text = (
        "Sorry about your order! Returns are free within 30 days of delivery and refunds "
        "usually land within 5 business days once the item is scanned at our warehouse. "
        "Start a return and print the label at acme.in/returns or help.acme.eu, then reply "
        "here if anything looks off!"
    )
    assert len(text) <= 280 < tweet_length(text)
    await deliver(sender, reply("x", "brandx", "mention", in_reply_to_id="1", text=text))
    assert await redis.xlen(keys.dead) == 0
    (tweet,) = fake_x.tweets
    assert tweet_length(str(tweet["text"])) <= 280


def test_missing_secret_names_the_key(redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from bot.config import ConfigError

    accs = accounts()
    del accs[0]["secrets"]["access_token"]
    settings = make_settings(redis_server.url, tmp_path, accounts=accs)
    with pytest.raises(ConfigError, match=re.escape("accounts[brandx].secrets.access_token")):
        build_app(settings, role="web")


def test_oauth1_reproduces_the_documented_example() -> None:
    from bot.platforms import oauth1

    params = {
        "status": "Hello Ladies + Gentlemen, a signed OAuth request!",
        "include_entities": "true",
        "oauth_consumer_key": "xvz1evFS4wEEPTGEFPHBog",
        "oauth_nonce": "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg",
        "oauth_signature_method": "HMAC-SHA1",
        "oauth_timestamp": "1318622958",
        "oauth_token": "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb",
        "oauth_version": "1.0",
    }
    sig = oauth1.signature(
        "POST",
        "https://api.twitter.com/1.1/statuses/update.json",
        params,
        "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw",
        "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE",
    )
    assert sig == "hCtSmYh+iHYCEqBWrE7C7hYmtUk="


async def test_oauth1_account_signs_its_calls(
    aiohttp_server, redis_server, redis, keys, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    creds = ("ck-123", X_SECRET, "tok-456", "tok-secret-789")
    fake = FakeX(token="no-bearer-here", oauth1_keys=creds)
    server = await aiohttp_server(fake.app)
    accs = accounts(str(server.make_url("")).rstrip("/"))
    accs[0]["secrets"].update(
        consumer_key="ck-123", access_token="tok-456", access_token_secret="tok-secret-789"
    )
    settings = make_settings(redis_server.url, tmp_path, accounts=accs)
    async with aiohttp.ClientSession() as http:
        sender = make_sender(settings, redis, keys, http)
        await deliver(sender, reply("x", "brandx", "mention", in_reply_to_id="1"))
        await deliver(sender, reply("x", "brandx", "dm", event="e2", recipient_id="3805104374"))
    assert len(fake.tweets) == 1 and len(fake.dms) == 1
    assert all(c.headers["Authorization"].startswith("OAuth ") for c in fake.calls)
    # A wrong token secret is refused by the fake exactly as X would (401, not retried).
    accs[0]["secrets"]["access_token_secret"] = "wrong"
    settings = make_settings(redis_server.url, tmp_path, accounts=accs)
    async with aiohttp.ClientSession() as http:
        sender = make_sender(settings, redis, keys, http)
        await deliver(
            sender, reply("x", "brandx", "mention", event="e3", in_reply_to_id="1", text="other")
        )
    (dead,) = await dead_entries(redis, keys)
    assert dead["error"].startswith("HTTP 401")


async def test_one_app_webhook_serves_every_configured_account(  # type: ignore[no-untyped-def]
    aiohttp_client, redis_server, redis, keys, tmp_path
) -> None:
    """X posts all subscribed users' events to the app's single webhook URL: an event for
    a second configured account of the same app, arriving on the first one's route, is
    stored for the second; a user of another app (other consumer secret) stays ignored."""
    accs = accounts("http://127.0.0.1:9")
    second = copy.deepcopy(accs[0]) | {"id": "brandx_help", "user_id": "783214", "handle": "Help"}
    other_app = copy.deepcopy(accs[0]) | {"id": "otherapp", "user_id": "555"}
    other_app["secrets"] = {"consumer_secret": "another app", "access_token": X_TOKEN}
    settings = make_settings(redis_server.url, tmp_path, accounts=[*accs, second, other_app])
    client = await aiohttp_client(build_app(settings, role="web"))

    for_second = _tweet(text="@Help my refund?", id_str="77")
    for_second["for_user_id"] = "783214"
    for_second["tweet_create_events"][0]["entities"]["user_mentions"] = [
        {"id_str": "783214", "screen_name": "Help"}
    ]
    assert (await post(client, for_second)).status == 200
    (ev,) = await inbound_events(redis, keys)
    assert ev["account"] == "brandx_help" and ev["event_id"] == "77"

    for_other_app = copy.deepcopy(for_second)
    for_other_app["for_user_id"] = "555"
    for_other_app["tweet_create_events"][0]["id_str"] = "78"
    assert (await post(client, for_other_app)).status == 200
    assert len(await inbound_events(redis, keys)) == 1


@pytest.mark.parametrize(
    "link",
    [
        "HTTPS://ACME.COM/R",  # a link in capitals: 23, not the 18 it has
        "acme.com/a(b",  # the link ends before "(": "(b" counts on top of its 23
        "https://acme.com/x&",  # a trailing "&" is not part of the link
        "https://help.acme.example/ret",  # no TLD, no link: 29 as written, not 23
    ],
)
async def test_replies_at_the_limit_and_one_over_are_accepted(  # type: ignore[no-untyped-def]
    sender, fake_x, redis, keys, link
) -> None:
    """A reply at exactly 280 (as X counts it) goes out as written; one character more is
    fitted. These links were counted as shorter than X counts them, so the reply one
    over "fit", went out whole and X refused it (403, dead-lettered)."""
    filler = 280 - 1 - tweet_length(link)
    at_limit = f"{link} " + "a" * filler
    over = at_limit + "a"
    assert tweet_length(at_limit) == 280
    await deliver(sender, reply("x", "brandx", "mention", in_reply_to_id="1", text=at_limit))
    await deliver(
        sender, reply("x", "brandx", "mention", in_reply_to_id="2", event="e2", text=over)
    )
    assert await dead_entries(redis, keys) == []
    first, second = fake_x.tweets
    assert first["text"] == at_limit
    assert second["text"] != over and tweet_length(str(second["text"])) <= 280


async def test_a_dm_over_10000_characters_is_fitted(sender, fake_x, redis, keys) -> None:  # type: ignore[no-untyped-def]
    text = "Here is everything about your order. " * 300
    await deliver(sender, reply("x", "brandx", "dm", recipient_id="3805104374", text=text))
    assert await dead_entries(redis, keys) == []
    (dm,) = fake_x.dms
    assert 9000 < len(str(dm["text"])) <= 10_000


@pytest.mark.parametrize(
    "name",
    [
        "x-twitter-webhooks-signature",
        "X-Twitter-Webhooks-Signature",
        "X-TWITTER-WEBHOOKS-SIGNATURE",
    ],
)
async def test_the_signature_header_is_found_in_any_case(client, redis, keys, name) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps(MENTION).encode()
    headers = {"Content-Type": "application/json", name: x_signature(body)}
    assert (await client.post("/webhooks/x/brandx", data=body, headers=headers)).status == 200
    assert await redis.xlen(keys.inbound) == 1


async def test_empty_body_is_refused_signed_or_not(client, redis, keys) -> None:  # type: ignore[no-untyped-def]
    assert (await post(client, b"", sig="")).status == 401
    assert (await post(client, b"")).status == 400  # signed, but not an event
    # A signature is case-sensitive base64: another case is another signature.
    assert (
        await post(client, MENTION, sig=x_signature(json.dumps(MENTION).encode()).upper())
    ).status == 401
    assert await redis.xlen(keys.inbound) == 0


async def test_a_replayed_event_is_stored_once(client, redis, keys) -> None:  # type: ignore[no-untyped-def]
    """The signature covers the body and has no timestamp (§1.2): a replay is the same
    event, and dedupe on its id drops it."""
    for _ in range(2):
        assert (await post(client, MENTION)).status == 200
    assert await redis.xlen(keys.inbound) == 1
