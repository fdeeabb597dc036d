"""The generic adapter: replydesk's own documented JSON event format.

For integrators whose platform has no adapter yet, and for the tests. Requests are
signed with ``X-Replydesk-Signature: sha256=<hex HMAC-SHA256(signing_secret, raw body)>``.
``GET ?challenge=<token>`` (1-256 of ``A-Z a-z 0-9 . _ ~ + / = -``) answers
``{"response": sign(signing_secret, challenge)}``.

Body: one event object, or ``{"events": [ ... ]}`` with up to 100 of them::

    {"type": "mention" | "dm",              # other types are ignored
     "id": "evt-123",                       # unique per account; the dedupe key
     "author": {"id": "42", "handle": "alice", "followers": 10, "verified": false},
     "text": "where is my order?",
     "thread_id": "t-1",                    # optional; conversation grouping
     "reply_to_id": "post-9",               # optional; what a public reply answers
     "created_at": 1700000000.0,            # optional; epoch seconds
     "language": "en"}                      # optional

Replies go to ``POST {api_base}/replies`` as JSON ``{reply_id, kind, recipient_id,
recipient_handle, in_reply_to_id, conversation_id, text}``, signed the same way, with
``Idempotency-Key: <reply_id>``; the receiver answers ``{"id": "<its id>"}``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import aiohttp

from bot.config import AccountConfig
from bot.models import Author, InboundEvent, OutboundReply
from bot.platforms.base import (
    HandshakeError,
    HttpReply,
    PayloadError,
    PlatformAdapter,
    SendError,
    SendResult,
    SignatureError,
    json_object,
)
from bot.platforms.common import error_text
from bot.platforms.signing import HANDSHAKE_TOKEN, HANDSHAKE_TOKEN_RULE, hmac_sha256_hex, same

SIGNATURE_HEADER = "X-Replydesk-Signature"
MAX_EVENTS = 100
KINDS = ("mention", "dm")


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac_sha256_hex(secret, body)


def _str(obj: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str:
    v = obj.get(key)
    if v is None and not required:
        return ""
    if isinstance(v, bool) or not isinstance(v, str | int) or (required and str(v) == ""):
        raise PayloadError(f"{where}.{key}: expected a non-empty string")
    return str(v)


class GenericAdapter(PlatformAdapter):
    name = "generic"

    def __init__(self, account: AccountConfig) -> None:
        super().__init__(account)
        # Checked at start-up, naming the key: without it every webhook would fail (500),
        # where a bad setting must stop the service instead.
        account.secret("signing_secret")

    def handshake(self, query: Mapping[str, str]) -> HttpReply:
        challenge = query.get("challenge")
        if not challenge:
            raise HandshakeError("missing challenge parameter")
        if not HANDSHAKE_TOKEN.fullmatch(challenge):
            raise HandshakeError(f"challenge: expected {HANDSHAKE_TOKEN_RULE}")
        # Proves we hold the secret without revealing it.
        body = json.dumps(
            {"response": sign(self.account.secret("signing_secret"), challenge.encode())}
        )
        return HttpReply(body=body.encode())

    def verify(self, headers: Mapping[str, str], query: Mapping[str, str], body: bytes) -> None:
        given = headers.get(SIGNATURE_HEADER, "")
        if not given or not same(given, sign(self.account.secret("signing_secret"), body)):
            raise SignatureError("bad or missing X-Replydesk-Signature")

    def parse(self, body: bytes) -> list[InboundEvent]:
        data = json_object(body)
        items = data.get("events", [data])
        if not isinstance(items, list) or len(items) > MAX_EVENTS:
            raise PayloadError(f"events must be a list of at most {MAX_EVENTS} objects")
        now = time.time()
        out: list[InboundEvent] = []
        for i, item in enumerate(items):
            where = f"events[{i}]"
            if not isinstance(item, dict):
                raise PayloadError(f"{where}: expected an object")
            kind = item.get("type")
            if kind not in KINDS:
                continue  # unknown event types are ignored, not refused
            author = item.get("author")
            if not isinstance(author, dict):
                raise PayloadError(f"{where}.author: expected an object")
            text = item.get("text", "")
            if not isinstance(text, str):
                raise PayloadError(f"{where}.text: expected a string")
            followers = author.get("followers", 0)
            if isinstance(followers, bool) or not isinstance(followers, int):
                raise PayloadError(f"{where}.author.followers: expected an integer")
            created = item.get("created_at", now)
            if isinstance(created, bool) or not isinstance(created, int | float):
                raise PayloadError(f"{where}.created_at: expected epoch seconds")
            ev = InboundEvent(
                platform=self.name,
                account=self.account.id,
                kind=kind,
                event_id=_str(item, "id", where),
                author=Author(
                    id=_str(author, "id", f"{where}.author"),
                    handle=_str(author, "handle", f"{where}.author", required=False),
                    followers=followers,
                    verified=bool(author.get("verified", False)),
                ),
                text=text,
                language=_str(item, "language", where, required=False) or None,
                conversation_id=_str(item, "thread_id", where, required=False),
                reply_to_id=_str(item, "reply_to_id", where, required=False) or None,
                created_at=float(created),
                received_at=now,
                raw=item,
            )
            if not ev.conversation_id:
                ev.conversation_id = ev.reply_to_id or ev.event_id
            if self.account.user_id and ev.author.id == self.account.user_id:
                continue  # our own post echoed back
            out.append(ev)
        return out

    async def send(self, http: aiohttp.ClientSession, reply: OutboundReply) -> SendResult:
        if not self.account.api_base:
            raise SendError("accounts.api_base is not set for a generic account", permanent=True)
        body = json.dumps(
            {
                "reply_id": reply.reply_id,
                "kind": reply.kind,
                "recipient_id": reply.recipient_id,
                "recipient_handle": reply.recipient_handle,
                "in_reply_to_id": reply.in_reply_to_id,
                "conversation_id": reply.conversation_id,
                "text": reply.text,
            },
            ensure_ascii=False,
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": reply.reply_id,
            SIGNATURE_HEADER: sign(self.account.secret("signing_secret"), body),
        }
        url = self.account.api_base.rstrip("/") + "/replies"
        async with http.post(url, data=body, headers=headers) as resp:
            payload = await resp.text()
            if resp.status == 429 or resp.status >= 500:
                ra = resp.headers.get("Retry-After")
                raise SendError(
                    f"HTTP {resp.status}",
                    status=resp.status,
                    retry_after=float(ra) if ra and ra.replace(".", "", 1).isdigit() else None,
                )
            if resp.status >= 400:
                # Not the body itself: a receiver may answer with the request (the reply).
                raise SendError(
                    f"HTTP {resp.status}: {error_text(payload)}", status=resp.status, permanent=True
                )
            try:
                pid = str(json.loads(payload).get("id", ""))
            except (json.JSONDecodeError, AttributeError):
                pid = ""
            return SendResult(platform_id=pid or reply.reply_id, rate_limit=dict(resp.headers))
