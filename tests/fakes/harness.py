"""Test helpers for the platform tests: platform-side signing (written from the
platforms' docs, independent of the adapters), a fake clock, and one-shot delivery."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from bot.config import Settings
from bot.models import OutboundReply
from bot.outbox import Sender, enqueue_reply
from bot.platforms import adapter_for
from bot.redis import Keys, Redis
from bot.streams import ensure_group

X_SECRET = "my_consumer_secret"
X_TOKEN = "x-user-token"
WEIBO_SECRET = "xyz123xyz"
WEIBO_TOKEN = "weibo-token"
MASTO_TOKEN = "masto-token"
MASTO_HOOK_SECRET = "webhook_secret"


def x_signature(body: bytes, secret: str = X_SECRET) -> str:
    return (
        "sha256="
        + base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    )


def weibo_query(secret: str = WEIBO_SECRET, timestamp: str = "", nonce: str = "") -> dict[str, str]:
    """A push's signed query: by default now (in ms, as Weibo sends it) and a new nonce."""
    timestamp = timestamp or str(int(time.time() * 1000))
    nonce = nonce or str(random.randrange(10**8))
    sig = hashlib.sha1("".join(sorted([secret, timestamp, nonce])).encode()).hexdigest()
    return {"signature": sig, "timestamp": timestamp, "nonce": nonce}


def mastodon_signature(body: bytes, secret: str = MASTO_HOOK_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def accounts(
    x_base: str = "", weibo_base: str = "", masto_base: str = "http://127.0.0.1:9", **opts: Any
) -> list[dict[str, Any]]:
    """One account per platform, pointed at the fakes."""
    return [
        {
            "id": "brandx",
            "platform": "x",
            "user_id": "2244994945",
            "handle": "BotAccount",
            "api_base": x_base,
            "secrets": {"consumer_secret": X_SECRET, "access_token": X_TOKEN},
            "options": dict(opts.get("x", {})),
        },
        {
            "id": "brandwb",
            "platform": "weibo",
            "user_id": "1902538057",
            "handle": "品牌客服",
            "language": "zh",
            "api_base": weibo_base,
            "secrets": {"app_secret": WEIBO_SECRET, "access_token": WEIBO_TOKEN},
            "options": dict(opts.get("weibo", {})),
        },
        {
            "id": "brandm",
            "platform": "mastodon",
            "user_id": "109000000000000001",
            "handle": "shop",
            "api_base": masto_base,
            "secrets": {"access_token": MASTO_TOKEN, "webhook_secret": MASTO_HOOK_SECRET},
            "options": {"streaming": False, **opts.get("mastodon", {})},
        },
    ]


class FakeClock:
    """time() and an async sleep() that advances it instantly; records the sleeps."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def make_sender(
    settings: Settings,
    redis: Redis,
    keys: Keys,
    http: aiohttp.ClientSession,
    clock: FakeClock | None = None,
    on_undeliverable: Callable[[OutboundReply, str], Awaitable[None]] | None = None,
    consumer: str = "sender-test",
) -> Sender:
    clock = clock or FakeClock()
    adapters = {a.id: adapter_for(a) for a in settings.accounts}
    return Sender(
        redis,
        keys,
        settings.worker,
        adapters,
        http,
        consumer=consumer,
        clock=clock.time,
        sleep=clock.sleep,
        on_undeliverable=on_undeliverable,
        backoff_base_s=0.5,
    )


async def deliver(sender: Sender, reply: OutboundReply | None = None) -> int:
    """Enqueue ``reply`` (if given) and hand every new outbox entry to the sender once."""
    if reply is not None:
        await enqueue_reply(sender.redis, sender.keys, reply)
    await ensure_group(sender.redis, sender.stream, sender.group)
    resp = await sender.redis.xreadgroup(
        sender.group, sender.consumer, {sender.stream: ">"}, count=100
    )
    n = 0
    for _stream, entries in resp or []:
        for msg_id, fields in entries:
            await sender.handle_entry(
                msg_id.decode(), {k.decode(): v.decode() for k, v in fields.items()}
            )
            n += 1
    return n


async def dead_entries(redis: Redis, keys: Keys) -> list[dict[str, str]]:
    rows = await redis.xrange(keys.dead)
    return [{k.decode(): v.decode() for k, v in f.items()} for _, f in rows]


async def inbound_events(redis: Redis, keys: Keys) -> list[dict[str, Any]]:
    rows = await redis.xrange(keys.inbound)
    return [json.loads(f[b"event"]) for _, f in rows]


def reply(platform: str, account: str, kind: str, **kw: Any) -> OutboundReply:
    base: dict[str, Any] = {
        "reply_id": f"{platform}:{account}:{kw.pop('event', 'e1')}:0",
        "platform": platform,
        "account": account,
        "kind": kind,
        "text": "Thanks, we're on it.",
        "recipient_id": "6253282",
    }
    base.update(kw)
    return OutboundReply(**base)
