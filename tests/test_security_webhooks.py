"""Security review of the webhook side, each finding with the attack that proved it: a
handshake that signs what the attacker asks, a streaming host taken from the instance
document, and the body limits (chunked, lying Content-Length, compression bombs)."""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

import aiohttp
import pytest

from bot.app import build_app
from bot.platforms import adapter_for
from bot.platforms.mastodon import MastodonAdapter
from tests.conftest import GENERIC_SECRET, make_settings
from tests.fakes import FakeMastodon
from tests.fakes.harness import MASTO_TOKEN, accounts, inbound_events

GENERIC = {
    "id": "acme",
    "platform": "generic",
    "user_id": "1000",
    "handle": "acme",
    "secrets": {"signing_secret": GENERIC_SECRET},
}
X_EVENT = {
    "for_user_id": "2244994945",
    "tweet_create_events": [
        {
            "id_str": "1050118621198921728",
            "text": "@BotAccount forged",
            "user": {"id_str": "666", "screen_name": "mallory"},
            "entities": {"user_mentions": [{"id_str": "2244994945"}]},
        }
    ],
}
GENERIC_EVENT = {"type": "dm", "id": "forged-1", "author": {"id": "666"}, "text": "forged"}


@pytest.fixture
async def client(aiohttp_client: Any, redis_server: Any, redis: Any, tmp_path: Any) -> Any:
    settings = make_settings(redis_server.url, tmp_path, accounts=[GENERIC, *accounts()])
    return await aiohttp_client(build_app(settings, role="web"))


# -- critical: the handshake signed forged webhooks ------------------------------------
@pytest.mark.parametrize(
    ("path", "param", "answer", "header", "event", "fine"),
    [
        # X: the CRC answer is base64 HMAC-SHA256(consumer_secret, crc_token), exactly
        # the x-twitter-webhooks-signature of a body equal to crc_token.
        (
            "/webhooks/x/brandx",
            "crc_token",
            "response_token",
            "x-twitter-webhooks-signature",
            X_EVENT,
            "ok_Token-123=",
        ),
        # The generic (and sandbox) handshake: the signature of the challenge as a body.
        (
            "/webhooks/generic/acme",
            "challenge",
            "response",
            "X-Replydesk-Signature",
            GENERIC_EVENT,
            "abc-123_x",
        ),
    ],
)
async def test_a_handshake_cannot_be_used_to_sign_a_forged_webhook(
    client: Any,
    redis: Any,
    keys: Any,
    path: str,
    param: str,
    answer: str,
    header: str,
    event: dict[str, Any],
    fine: str,
) -> None:
    """Anyone could GET the signature of an event of their own making and POST it as
    the brand's customer."""
    body = json.dumps(event, separators=(",", ":"))
    r = await client.get(path, params={param: body})
    if r.status == 200:  # the old code: post the event under the signature it gave
        sig = (await r.json())[answer]
        r2 = await client.post(path, data=body, headers={header: sig})
        assert r2.status != 200, "a forged event was accepted with the handshake's signature"
    assert r.status == 400
    assert await inbound_events(redis, keys) == []
    ok = await client.get(path, params={param: fine})
    assert ok.status == 200
    if answer == "response_token":
        assert (await ok.json())[answer].startswith("sha256=")


# -- low: the Weibo handshake reflects echostr on the console's origin ---------------------
async def test_weibo_echostr_is_never_a_page(client: Any) -> None:
    """The signature covers timestamp and nonce, not echostr, and the handshake has no
    freshness check: a push URL from a proxy log reflects any echostr. It must never be
    read as HTML (nor any other webhook answer)."""
    from bot.platforms.weibo import signature
    from tests.fakes.harness import WEIBO_SECRET

    q = {"timestamp": "1700000000000", "nonce": "42"}
    q["signature"] = signature(WEIBO_SECRET, q["timestamp"], q["nonce"])
    r = await client.get("/webhooks/weibo/brandwb", params={**q, "echostr": "<script>x</script>"})
    assert r.status == 200 and r.content_type == "text/plain"
    for resp in (r, await client.post("/webhooks/weibo/brandwb", data=b"{}")):
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Content-Security-Policy"] == "default-src 'none'"


# -- medium: the instance document chose where the access token went -------------------
@pytest.fixture
async def instance(aiohttp_server: Any) -> FakeMastodon:
    fake = FakeMastodon(token=MASTO_TOKEN)
    server = await aiohttp_server(fake.app)
    fake.api = str(server.make_url("")).rstrip("/")  # type: ignore[attr-defined]
    return fake


@pytest.mark.parametrize(
    "streaming",
    [
        "wss://collector.evil.example",  # another host
        "wss://127.0.0.1.evil.example",  # a host that starts like ours
        "ftp://127.0.0.1",  # not HTTP
    ],
)
async def test_instance_streaming_url_on_another_host_gets_no_token(
    instance: FakeMastodon, streaming: str
) -> None:
    """The bearer token follows ``urls.streaming``: an unsigned instance document (a
    hijacked page, a proxy's) naming another host got the token sent there."""
    instance.base_url = streaming  # what the fake reports as urls.streaming
    settings = make_settings("redis://unused", accounts=accounts(masto_base=instance.api))  # type: ignore[attr-defined]
    adapter = adapter_for(settings.accounts[2])
    assert isinstance(adapter, MastodonAdapter)
    async with aiohttp.ClientSession() as http:
        await adapter.ready(http)
    assert adapter.max_characters == instance.max_characters  # the document was read
    assert adapter.streaming_base == ""  # the stream goes to api_base


def test_streaming_url_rule() -> None:
    from bot.platforms.mastodon import streaming_url_ok as ok

    assert ok("https://mastodon.social", "https://mastodon.social")
    assert ok("https://mastodon.social", "https://streaming.mastodon.social/")
    assert ok("http://127.0.0.1:8080", "http://127.0.0.1:4000")
    assert not ok("https://mastodon.social", "http://mastodon.social")  # downgrade
    assert not ok("https://mastodon.social", "https://evilmastodon.social")
    assert not ok("https://mastodon.social", "https://mastodon.social.evil.example")
    assert not ok("https://mastodon.social", "https://user@")


# -- checked and sound: body limits ---------------------------------------------------
async def _post_raw(client: Any, path: str, body: Any, headers: dict[str, str]) -> int:
    r = await client.post(path, data=body, headers=headers)
    return int(r.status)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_compression_bomb_is_cut_at_the_body_limit(client: Any, encoding: str) -> None:
    """aiohttp decompresses a request body (Content-Encoding) before we read it; the
    limit counts what it decompressed, so 64 MiB of zeros in 64 KiB is a 413."""
    raw = b"{" + b" " * (64 * 1024 * 1024) + b"}"
    packed = gzip.compress(raw, 9) if encoding == "gzip" else zlib.compress(raw, 9)
    assert len(packed) < 1024 * 1024  # under the limit as sent
    status = await _post_raw(
        client, "/webhooks/generic/acme", packed, {"Content-Encoding": encoding}
    )
    assert status == 413


async def test_chunked_body_over_the_limit_is_413(client: Any) -> None:
    async def chunks() -> Any:
        for _ in range(40):
            yield b" " * 64 * 1024  # 2.5 MiB in all, no Content-Length

    status = await _post_raw(client, "/webhooks/generic/acme", chunks(), {})
    assert status == 413


async def test_deep_nesting_and_huge_numbers_are_400_not_500(client: Any) -> None:
    from bot.platforms.generic import sign

    for body in (b"[" * 100_000 + b"]" * 100_000, b'{"a": ' + b"9" * 50_000 + b"}"):
        sig = sign(GENERIC_SECRET, body)
        status = await _post_raw(
            client, "/webhooks/generic/acme", body, {"X-Replydesk-Signature": sig}
        )
        assert status == 400


async def test_an_integer_too_big_for_a_float_is_400_not_500(client: Any) -> None:
    """A signed body whose created_at has 400 digits: float() raised OverflowError, a 500
    the platform would resend for as long as it retries."""
    from bot.platforms.generic import sign

    body = json.dumps({**GENERIC_EVENT, "created_at": 10**400}).encode()
    sig = sign(GENERIC_SECRET, body)
    status = await _post_raw(client, "/webhooks/generic/acme", body, {"X-Replydesk-Signature": sig})
    assert status == 400


async def test_unknown_account_or_platform_is_404(client: Any) -> None:
    for path in ("/webhooks/generic/nobody", "/webhooks/nope/acme", "/webhooks/x/acme"):
        assert await _post_raw(client, path, b"{}", {}) == 404
