"""The built-in ``sandbox`` platform: a pretend microblog for the customer sandbox page.

Inbound it is the generic platform (signed JSON webhooks, same format and signature),
so a message typed in the sandbox takes the real path: webhook → inbound stream →
worker → outbox → sender. Outbound, :meth:`SandboxAdapter.send` appends the reply to
the customer's sandbox conversation in Redis (:class:`SandboxInbox`) instead of calling
a platform API; the sandbox page reads it from there.

A sandbox account imitates a real platform's length rules through
``options.like`` (``x``, ``weibo`` or ``mastodon``; default ``x``), so the bot and the
console's counter behave as they would there.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from bot import textfit
from bot.models import OutboundReply
from bot.platforms.base import SendError, SendResult
from bot.platforms.generic import GenericAdapter
from bot.redis import Keys, Redis, as_str

LIKES = ("x", "weibo", "mastodon")
# A sandbox conversation is a demo: keep the last turns for a week.
INBOX_MAXLEN = 500
INBOX_TTL_S = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """One turn as the sandbox customer sees it."""

    entry_id: str  # the stream id: orders entries and is the page's cursor
    who: str  # customer | bot | agent
    kind: str  # mention | dm
    text: str
    ref: str  # the event id (customer) or reply id (bot, agent)
    handle: str = ""
    ticket_id: str = ""
    at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.entry_id,
            "who": self.who,
            "kind": self.kind,
            "text": self.text,
            "ref": self.ref,
            "handle": self.handle,
            "ticket_id": self.ticket_id,
            "at": self.at,
        }


class SandboxInbox:
    """Per account and customer, the sandbox conversation as a capped Redis stream."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    def key(self, account: str, customer_id: str) -> str:
        return self.keys.ns("sandbox", account, customer_id)

    def _delivered_key(self, reply_id: str) -> str:
        return self.keys.ns("sandbox", "delivered", reply_id)

    async def append(
        self,
        account: str,
        customer_id: str,
        *,
        who: str,
        kind: str,
        text: str,
        ref: str,
        handle: str = "",
        ticket_id: str = "",
    ) -> str:
        key = self.key(account, customer_id)
        fields = {
            "who": who,
            "kind": kind,
            "text": text,
            "ref": ref,
            "handle": handle,
            "ticket_id": ticket_id,
            "at": repr(time.time()),
        }
        tx = self.redis.pipeline(transaction=True)
        tx.xadd(key, fields, maxlen=INBOX_MAXLEN, approximate=True)  # type: ignore[arg-type]
        tx.expire(key, INBOX_TTL_S)
        res = await tx.execute()
        return as_str(res[0])

    async def remove(self, account: str, customer_id: str, entry_id: str) -> None:
        """Take back an entry (a customer turn the webhook refused)."""
        await self.redis.xdel(self.key(account, customer_id), entry_id)

    async def deliver(self, reply: OutboundReply) -> str:
        """Append a bot or agent reply once per reply_id; returns its entry id."""
        marker = self._delivered_key(reply.reply_id)
        if not await self.redis.set(marker, "", nx=True, ex=INBOX_TTL_S):
            prev = await self.redis.get(marker)
            if prev:
                return as_str(prev)
        entry_id = await self.append(
            reply.account,
            reply.recipient_id,
            who=reply.source,
            kind=reply.kind,
            text=reply.text,
            ref=reply.reply_id,
            ticket_id=reply.ticket_id or "",
        )
        await self.redis.set(marker, entry_id, ex=INBOX_TTL_S)
        return entry_id

    async def read(
        self, account: str, customer_id: str, *, after: str = "-", count: int = 200
    ) -> list[InboxEntry]:
        """Entries after the stream id ``after`` (exclusive), oldest first."""
        start = "-" if after in ("", "-", "0") else f"({after}"
        rows = await self.redis.xrange(self.key(account, customer_id), min=start, count=count)
        out: list[InboxEntry] = []
        for entry_id, raw in rows or []:
            f = {as_str(k): as_str(v) for k, v in (raw or {}).items()}
            out.append(
                InboxEntry(
                    entry_id=as_str(entry_id),
                    who=f.get("who", ""),
                    kind=f.get("kind", ""),
                    text=f.get("text", ""),
                    ref=f.get("ref", ""),
                    handle=f.get("handle", ""),
                    ticket_id=f.get("ticket_id", ""),
                    at=float(f.get("at", "0") or 0),
                )
            )
        return out


class SandboxAdapter(GenericAdapter):
    """Generic inbound; outbound into :class:`SandboxInbox` (bound once Redis is open)."""

    name = "sandbox"

    def __init__(self, account: Any) -> None:
        super().__init__(account)
        self.inbox: SandboxInbox | None = None

    @property
    def like(self) -> str:
        like = str(self.account.options.get("like", "x"))
        return like if like in LIKES else "x"

    def bind(self, redis: Redis, keys: Keys) -> None:
        """Called by the composition root once Redis is open (the adapter is built before)."""
        self.inbox = SandboxInbox(redis, keys)

    def fit(self, text: str, kind: str) -> str:
        # The imitated platform's rule, so a reply is shortened as it would be there.
        return textfit.fit(
            text, textfit.fitter(self.like, kind), language=self.account.language, kind=kind
        )

    async def send(self, http: aiohttp.ClientSession, reply: OutboundReply) -> SendResult:
        if self.inbox is None:
            raise SendError("sandbox inbox not bound to Redis yet")
        try:
            entry_id = await self.inbox.deliver(reply)
        except Exception as e:  # Redis hiccup: let the sender retry with backoff
            raise SendError(f"sandbox store failed: {type(e).__name__}") from e
        return SendResult(platform_id=entry_id)


def event_body(
    *,
    event_id: str,
    kind: str,
    customer_id: str,
    handle: str,
    text: str,
    thread_id: str,
    language: str | None = None,
) -> bytes:
    """The generic webhook body the sandbox page's server endpoint signs and posts."""
    item: dict[str, Any] = {
        "type": kind,
        "id": event_id,
        "author": {"id": customer_id, "handle": handle, "followers": 0, "verified": False},
        "text": text,
        "thread_id": thread_id,
        "created_at": time.time(),
    }
    if kind == "mention":
        item["reply_to_id"] = event_id
    if language:
        item["language"] = language
    return json.dumps(item, ensure_ascii=False).encode()
