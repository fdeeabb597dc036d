"""Webhook bodies as the platforms really send them: the text stored is what the customer
wrote, and JSON that is not JSON is refused (400, nothing stored)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from bot.app import build_app
from tests.conftest import GENERIC_SECRET, make_settings
from tests.fakes.harness import accounts, inbound_events, mastodon_signature, x_signature
from tests.support.webhooks import generic_event, signed

BRAND = "2244994945"


@pytest.fixture
async def client(aiohttp_client, redis_server, redis, tmp_path):  # type: ignore[no-untyped-def]
    settings = make_settings(redis_server.url, tmp_path, accounts=accounts("http://127.0.0.1:9"))
    return await aiohttp_client(build_app(settings, role="web"))


async def post_x(client: Any, payload: dict[str, Any]) -> Any:
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "x-twitter-webhooks-signature": x_signature(body),
    }
    return await client.post("/webhooks/x/brandx", data=body, headers=headers)


TWEET: dict[str, Any] = {
    "created_at": "Wed Oct 10 20:19:24 +0000 2018",
    "id_str": "1050118621198921728",
    # v1.1 entity-encodes &, < and > in tweet text; links are t.co wrappers.
    "text": "@BotAccount parcel &lt;3 days late &amp; no reply, I typed &amp;lt;3 "
    "https://t.co/AbC123",
    "truncated": False,
    "user": {"id_str": "6253282", "screen_name": "customer"},
    "entities": {
        "user_mentions": [{"id_str": BRAND, "screen_name": "BotAccount"}],
        "urls": [
            {
                "url": "https://t.co/AbC123",
                "expanded_url": "https://shop.example/track?order=A12345&region=eu",
                "display_url": "shop.example/track?order=A1…",
            }
        ],
    },
}


async def test_x_mention_text_is_decoded_and_its_links_unwrapped(client, redis, keys) -> None:  # type: ignore[no-untyped-def]
    """Stored as it was: "&amp;" reached the NLU and the agent's console, and the order
    number in the tracking link hid behind t.co."""
    assert (
        await post_x(client, {"for_user_id": BRAND, "tweet_create_events": [TWEET]})
    ).status == 200
    (ev,) = await inbound_events(redis, keys)
    assert ev["text"] == (
        "@BotAccount parcel <3 days late & no reply, I typed &lt;3 "
        "https://shop.example/track?order=A12345&region=eu"
    )


async def test_x_long_tweet_unwraps_the_links_of_its_full_text(client, redis, keys) -> None:  # type: ignore[no-untyped-def]
    tweet = copy.deepcopy(TWEET)
    full, entities = tweet["text"], tweet["entities"]
    tweet.update(
        truncated=True,
        text="@BotAccount parcel &lt;3 days… https://t.co/self",
        entities={"user_mentions": [], "urls": []},
        extended_tweet={"full_text": full, "entities": entities},
    )
    assert (
        await post_x(client, {"for_user_id": BRAND, "tweet_create_events": [tweet]})
    ).status == 200
    (ev,) = await inbound_events(redis, keys)
    assert ev["text"].endswith("&lt;3 https://shop.example/track?order=A12345&region=eu")


async def test_x_dm_links_are_unwrapped(client, redis, keys) -> None:  # type: ignore[no-untyped-def]
    dm = {
        "for_user_id": BRAND,
        "direct_message_events": [
            {
                "type": "message_create",
                "id": "1234858592",
                "created_timestamp": "1392078023603",
                "message_create": {
                    "target": {"recipient_id": BRAND},
                    "sender_id": "3805104374",
                    "message_data": {
                        "text": "where is it? https://t.co/Zz9",
                        "entities": {
                            "urls": [
                                {
                                    "url": "https://t.co/Zz9",
                                    "expanded_url": "https://shop.example/o/A23456",
                                }
                            ]
                        },
                    },
                },
            }
        ],
    }
    assert (await post_x(client, dm)).status == 200
    (ev,) = await inbound_events(redis, keys)
    assert ev["kind"] == "dm" and ev["text"] == "where is it? https://shop.example/o/A23456"


async def test_mastodon_html_is_unescaped_once(client, redis, keys) -> None:  # type: ignore[no-untyped-def]
    """A second unescape read the link's "&region=" as "®ion=" and "&currency=" as
    "¤cy=", and the customer's typed "&lt;3" as "<3"."""
    link = "https://shop.example/track?order=A1&amp;region=eu&amp;currency=EUR"
    status = {
        "id": "108914343542683797",
        "created_at": "2022-08-30T23:09:54.070Z",
        "visibility": "public",
        "content": f'<p>@shop typed &amp;lt;3 <a href="{link}">{link}</a></p>',
        "account": {"id": "108892712797543112", "acct": "a@pl.nulled.red"},
        "mentions": [{"id": "109000000000000001", "acct": "shop"}],
    }
    body = json.dumps({"event": "status.created", "object": status}).encode()
    headers = {"Content-Type": "application/json", "X-Hub-Signature": mastodon_signature(body)}
    assert (
        await client.post("/webhooks/mastodon/brandm", data=body, headers=headers)
    ).status == 200
    (ev,) = await inbound_events(redis, keys)
    assert ev["text"] == (
        "@shop typed &lt;3 https://shop.example/track?order=A1&region=eu&currency=EUR"
    )


@pytest.mark.parametrize(
    "number",
    [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"1" * 5000],
    ids=["nan", "infinity", "minus-infinity", "overflow", "int-too-long"],
)
async def test_numbers_json_does_not_have_are_400_and_store_nothing(  # type: ignore[no-untyped-def]
    aiohttp_client, settings, redis, number
) -> None:
    """Python's parser reads NaN, Infinity and 1e400 (a NaN time reached the ticket, whose
    JSON the console cannot parse) and fails on a 5000-digit integer with a 500."""
    client = await aiohttp_client(build_app(settings, role="web"))
    raw = json.dumps(generic_event("n1", created_at=0.5)).encode().replace(b"0.5", number)
    body, headers = signed(GENERIC_SECRET, raw)
    resp = await client.post("/webhooks/generic/acme", data=body, headers=headers)
    assert resp.status == 400 and "error" in await resp.json()
    assert await redis.dbsize() == 0


def _x_mention(**changes: Any) -> dict[str, Any]:
    tweet = copy.deepcopy(TWEET)
    for path, value in changes.items():
        where, _, key = path.rpartition("__")
        (tweet[where] if where else tweet)[key] = value
    return {"for_user_id": BRAND, "tweet_create_events": [tweet]}


@pytest.mark.parametrize(
    "payload",
    [
        _x_mention(entities=["not", "an", "object"]),
        _x_mention(user__followers_count="many"),
    ],
    ids=["entities-list", "followers-not-a-number"],
)
async def test_signed_x_body_with_fields_of_the_wrong_type_is_400(  # type: ignore[no-untyped-def]
    client, redis, keys, payload
) -> None:
    """Signed, JSON, but not what X sends: it was a 500, which X retries."""
    resp = await post_x(client, payload)
    assert resp.status == 400 and "wrong type" in (await resp.json())["error"]
    assert await inbound_events(redis, keys) == []


async def test_signed_mastodon_body_with_a_null_account_is_400(client, redis, keys) -> None:  # type: ignore[no-untyped-def]
    status = {
        "id": "108914343542683797",
        "created_at": "2022-08-30T23:09:54.070Z",
        "visibility": "direct",
        "content": "<p>@shop hi</p>",
        "account": {"id": "108892712797543112", "acct": None},
        "mentions": [{"id": "109000000000000001", "acct": "shop"}],
    }
    body = json.dumps({"event": "status.created", "object": status}).encode()
    headers = {"Content-Type": "application/json", "X-Hub-Signature": mastodon_signature(body)}
    resp = await client.post("/webhooks/mastodon/brandm", data=body, headers=headers)
    assert resp.status == 400
    assert await inbound_events(redis, keys) == []
