"""Sina Weibo fan service platform (粉丝服务平台) push and customer-service replies
(platforms.md §2).

Secrets: ``app_secret`` (the APPKEY's secret: signs the handshake and every push) and
``access_token`` (the fan-service token, used for ``messages/reply.json``).
Options: ``rate_limits`` overrides (no figure is published for ``messages/reply.json``;
the default 30 / min is a burst guard, docs/accounts.md), ``more_link``,
``timestamp_tolerance_s`` (300: how far a push's signed timestamp may be from our clock).

Replies to DMs *and* to mentions go through ``messages/reply.json``; the sender first
checks the reply window (bot.platforms.windows): Weibo refuses anything outside it.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote

import aiohttp
import structlog

from bot.models import Author, InboundEvent, Kind, OutboundReply
from bot.platforms.base import (
    HandshakeError,
    HttpReply,
    PayloadError,
    SendError,
    SendResult,
    SignatureError,
    json_object,
)
from bot.platforms.common import ApiAdapter, error_text, http_error, rate_headers
from bot.platforms.signing import same
from bot.ratelimit import Limit, retry_after
from bot.redis import Keys, Redis, as_str

log = structlog.get_logger(__name__)

REPLY_LIMITS = [Limit("messages_reply", 30, 60)]
# Non-text user messages still open the window and may need a human (a photo of a
# broken parcel): they become DMs with Weibo's placeholder text.
MESSAGE_TYPES: dict[str, Kind] = {
    "text": "dm",
    "mention": "mention",
    "image": "dm",
    "voice": "dm",
    "position": "dm",
}
EVENT_SUBTYPES: dict[str, Kind] = {
    "follow": "follow",
    "scan_follow": "follow",
    "unfollow": "unfollow",
    # Like a message, these open (or refresh) the 48 h reply window (§2.5); nothing to answer.
    "subscribe": "activity",
    "scan": "activity",
    "click": "activity",
    "view": "activity",
}
# Weibo API error codes that mean "too many requests": retried, not dead-lettered.
RATE_ERROR_CODES = {10022, 10023, 10024}
DEFAULT_TIMESTAMP_TOLERANCE_S = 300.0


def signature(app_secret: str, timestamp: str, nonce: str) -> str:
    return hashlib.sha1("".join(sorted([app_secret, timestamp, nonce])).encode()).hexdigest()


def encode_data(obj: Mapping[str, Any]) -> str:
    """``data`` as platforms.md §2.5: URL-encoded compact UTF-8 JSON."""
    return quote(json.dumps(obj, ensure_ascii=False, separators=(",", ":")), safe="")


def _epoch_s(timestamp: str) -> float | None:
    """A push's ``timestamp`` in epoch seconds. It is in milliseconds (§2.1); a value too
    small for that is read as seconds, so a change of unit cannot lock every push out."""
    try:
        t = float(timestamp)
    except ValueError:
        return None
    if not math.isfinite(t):
        return None
    return t / 1000 if t > 1e11 else t


def _created(s: Any) -> float:
    try:
        return datetime.strptime(str(s), "%a %b %d %H:%M:%S %z %Y").timestamp()
    except ValueError:
        return time.time()


class WeiboAdapter(ApiAdapter):
    name = "weibo"
    default_api_base = "https://m.api.weibo.com"
    required_secrets: ClassVar[tuple[str, ...]] = ("app_secret", "access_token")

    def __init__(self, account: Any) -> None:
        super().__init__(account)
        opt = account.options.get("timestamp_tolerance_s")
        self.tolerance_s = float(opt or DEFAULT_TIMESTAMP_TOLERANCE_S)

    def _check(self, query: Mapping[str, str]) -> None:
        sig, ts, nonce = (
            query.get("signature", ""),
            query.get("timestamp", ""),
            query.get("nonce", ""),
        )
        if not (sig and ts and nonce):
            raise SignatureError("missing signature, timestamp or nonce")
        if not same(sig.lower(), signature(self.account.secret("app_secret"), ts, nonce)):
            raise SignatureError("bad signature")

    # -- inbound ---------------------------------------------------------------
    def handshake(self, query: Mapping[str, str]) -> HttpReply:
        try:
            self._check(query)  # no freshness check: replaying it only echoes echostr
        except SignatureError as e:
            raise HandshakeError(str(e), status=401) from e
        echostr = query.get("echostr")
        if not echostr:
            raise HandshakeError("missing echostr")
        return HttpReply(body=echostr.encode(), content_type="text/plain")

    def verify(self, headers: Mapping[str, str], query: Mapping[str, str], body: bytes) -> None:
        # The signature covers only timestamp and nonce, not the body (§2.1), so a logged
        # push URL would sign any body: its timestamp must be recent, and check_replay()
        # refuses the same signature on another body.
        self._check(query)
        ts = _epoch_s(query["timestamp"])
        if ts is None or abs(time.time() - ts) > self.tolerance_s:
            raise SignatureError("timestamp stale, in the future or not a number")

    async def check_replay(
        self, redis: Redis, keys: Keys, query: Mapping[str, str], body: bytes
    ) -> None:
        # The first body seen under a signature is kept while its timestamp is accepted.
        # The same body again is Weibo's own retry (dedupe drops the event); another one
        # is a forgery riding on a captured URL.
        key = keys.ns("replay", self.name, self.account.id, query["signature"].lower())
        digest = hashlib.sha256(body).hexdigest()
        if await redis.set(key, digest, nx=True, ex=math.ceil(2 * self.tolerance_s)):
            return
        seen = await redis.get(key)
        if seen is None or as_str(seen) != digest:
            raise SignatureError("signature already used for another body")

    def accepted(self) -> HttpReply:
        # An empty body: no passive reply, and Weibo does not retry (§2.3).
        return HttpReply(body=b"", content_type="text/plain")

    def parse(self, body: bytes) -> list[InboundEvent]:
        d = json_object(body)
        mtype = str(d.get("type") or "")
        sender = str(d.get("sender_id") or "")
        receiver = str(d.get("receiver_id") or "")
        created_raw = d.get("created_at")
        if not sender or not created_raw:
            raise PayloadError("sender_id and created_at required")
        raw_data = d.get("data")
        data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
        kind: Kind | None
        if mtype == "event":
            kind = EVENT_SUBTYPES.get(str(data.get("subtype") or ""))
        else:
            kind = MESSAGE_TYPES.get(mtype)
        if kind is None:
            log.debug("weibo_type_ignored", type=mtype, subtype=str(data.get("subtype") or ""))
            return []
        # Our uid: as configured, else the push's receiver (a push is for the bot, §2.7).
        me = self.account.user_id or receiver
        if sender == me or (receiver and receiver != me):
            return []  # our own message echoed, or a push meant for another account
        # Weibo has no message id: §2.3 dedupes on sender + created_at, but that has
        # one-second resolution (a follow and a first DM, or a text and an image, often
        # share it), so a digest of what was sent tells those apart; a retry of the same
        # push has the same digest.
        what = json.dumps([mtype, d.get("text"), raw_data], ensure_ascii=False, sort_keys=True)
        event_id = f"{sender}:{created_raw}:{hashlib.sha1(what.encode()).hexdigest()[:10]}"
        return [
            InboundEvent(
                platform=self.name,
                account=self.account.id,
                kind=kind,
                event_id=event_id,
                author=Author(id=sender, handle=str(d.get("sender_screen_name") or "")),
                text=str(d.get("text") or "") if kind in ("dm", "mention") else "",
                conversation_id=f"dm:{sender}",
                # A mention's reply names it, so the window allows exactly one.
                reply_to_id=event_id if kind == "mention" else None,
                created_at=_created(created_raw),
                raw=d,
            )
        ]

    # -- outbound --------------------------------------------------------------
    def endpoint(self, reply: OutboundReply) -> str:
        return "messages_reply"

    def default_limits(self, reply: OutboundReply) -> list[Limit]:
        return list(REPLY_LIMITS)

    async def send(self, http: aiohttp.ClientSession, reply: OutboundReply) -> SendResult:
        url = f"{self.api_base}/2/messages/reply.json"
        # Built by hand: ``data`` must be encoded exactly once, as the official curl shows.
        form = (
            f"receiver_id={quote(reply.recipient_id, safe='')}&type=text"
            f"&data={encode_data({'text': reply.text})}"
        )
        async with http.post(
            url,
            params={"access_token": self.account.secret("access_token")},
            data=form.encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ) as resp:
            text = await resp.text()
            status, meta = resp.status, rate_headers(resp.headers)
        try:
            body = json.loads(text) if text else {}
        except json.JSONDecodeError:
            body = {}
        code = body.get("error_code") if isinstance(body, dict) else None
        if code and str(code).isdigit() and int(code) in RATE_ERROR_CODES:
            raise SendError(
                f"HTTP {status}: {error_text(text)}",
                status=429,
                retry_after=retry_after(meta, time.time(), rate_refused=True),
            )
        if status >= 400:
            raise http_error(status, meta, text)
        if code:
            raise SendError(f"HTTP {status}: {error_text(text)}", status=status, permanent=True)
        pid = ""
        if isinstance(body, dict):
            pid = str(body.get("id") or body.get("message_id") or body.get("mid") or "")
        return SendResult(platform_id=pid or f"weibo:{reply.reply_id}", rate_limit=meta)
