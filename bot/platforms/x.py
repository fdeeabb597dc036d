"""X (Twitter) Account Activity API webhooks and v2 replies (platforms.md §1).

Secrets: ``consumer_secret`` (the app's API secret: CRC answers and webhook
signatures) and ``access_token`` (the brand account's user-context token). With
``consumer_key`` and ``access_token_secret`` as well, calls are signed with OAuth 1.0a
(tokens that do not expire); otherwise ``access_token`` is sent as ``Authorization:
Bearer`` (an OAuth 2.0 user token with ``tweet.write dm.write``, which expires after 2 h
unless refreshed outside replydesk).
Options: ``rate_limits`` overrides, ``more_link``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, ClassVar

import aiohttp
import structlog

from bot.models import Author, InboundEvent, OutboundReply
from bot.platforms import oauth1
from bot.platforms.base import (
    HandshakeError,
    HttpReply,
    PayloadError,
    SendResult,
    SignatureError,
    json_object,
)
from bot.platforms.common import ApiAdapter, rate_headers, read_json
from bot.platforms.signing import HANDSHAKE_TOKEN, HANDSHAKE_TOKEN_RULE, hmac_sha256_b64, same
from bot.ratelimit import Limit

log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "x-twitter-webhooks-signature"

# platforms.md §1.7: 100 / 15 min per user now (older copies: 200 / 15 min plus
# 300 / 3 h shared with retweets) — enforce both; DMs 200 / 15 min and 1000 / 24 h per
# user, and 15000 / 24 h per app: a bucket that every account of the app shares.
TWEET_LIMITS = [Limit("tweets", 100, 900), Limit("tweets_3h", 300, 3 * 3600)]
DM_LIMITS = [Limit("dm", 200, 900), Limit("dm_24h", 1000, 24 * 3600)]
DM_APP_LIMIT = Limit("dm_app_24h", 15000, 24 * 3600)


def crc_response(consumer_secret: str, crc_token: str) -> dict[str, str]:
    return {"response_token": "sha256=" + hmac_sha256_b64(consumer_secret, crc_token.encode())}


def sign(consumer_secret: str, body: bytes) -> str:
    return "sha256=" + hmac_sha256_b64(consumer_secret, body)


# v1.1 tweet text carries &, < and > entity-encoded (and nothing else): decoded in one
# pass, so a customer's own "&lt;" stays as written.
_TWEET_ESCAPES = re.compile(r"&(amp|lt|gt);")
_UNESCAPED = {"amp": "&", "lt": "<", "gt": ">"}


def _as_written(text: str, entities: Any, *, escaped: bool) -> str:
    """Text as the customer typed it: entity-decoded (tweets), and every t.co wrapper
    replaced by the link it stands for (``entities.urls``), so an order link or tracking
    number in it reaches the NLU and the agent."""
    if escaped:
        text = _TWEET_ESCAPES.sub(lambda m: _UNESCAPED[m[1]], text)
    urls = entities.get("urls") if isinstance(entities, dict) else None
    for u in urls if isinstance(urls, list) else []:
        if isinstance(u, dict) and isinstance(u.get("url"), str) and u["url"]:
            expanded = u.get("expanded_url")
            if isinstance(expanded, str) and expanded:
                text = text.replace(u["url"], expanded)
    return text


def _created(s: Any) -> float:
    try:
        return datetime.strptime(str(s), "%a %b %d %H:%M:%S %z %Y").timestamp()
    except ValueError:
        return time.time()


class XAdapter(ApiAdapter):
    name = "x"
    default_api_base = "https://api.x.com"
    required_secrets: ClassVar[tuple[str, ...]] = ("consumer_secret", "access_token")

    def __init__(self, account: Any) -> None:
        super().__init__(account)
        self.oauth1 = "access_token_secret" in account.secrets
        # The app's limits are shared by its accounts, known by the app's secret (a digest:
        # it names a Redis key).
        app = hashlib.sha256(account.secret("consumer_secret").encode()).hexdigest()[:16]
        self.dm_limits = [*DM_LIMITS, dataclasses.replace(DM_APP_LIMIT, scope=f"x-app:{app}")]
        # Other configured accounts of the same X app, by user id (link_shared_webhooks).
        self.siblings: dict[str, XAdapter] = {}
        if self.oauth1:
            account.secret("consumer_key")  # ConfigError naming it when missing

    def _auth(self, method: str, url: str) -> str:
        a = self.account
        if not self.oauth1:
            return f"Bearer {a.secret('access_token')}"
        return oauth1.authorization(
            method,
            url,
            consumer_key=a.secret("consumer_key"),
            consumer_secret=a.secret("consumer_secret"),
            token=a.secret("access_token"),
            token_secret=a.secret("access_token_secret"),
        )

    # -- inbound ---------------------------------------------------------------
    def handshake(self, query: Mapping[str, str]) -> HttpReply:
        token = query.get("crc_token")
        if not token:
            raise HandshakeError("missing crc_token")
        if not HANDSHAKE_TOKEN.fullmatch(token):  # X's is a short random token
            raise HandshakeError(f"crc_token: expected {HANDSHAKE_TOKEN_RULE}")
        body = json.dumps(crc_response(self.account.secret("consumer_secret"), token))
        return HttpReply(body=body.encode())

    def verify(self, headers: Mapping[str, str], query: Mapping[str, str], body: bytes) -> None:
        given = headers.get(SIGNATURE_HEADER, "")
        if not given or not same(given, sign(self.account.secret("consumer_secret"), body)):
            raise SignatureError(f"bad or missing {SIGNATURE_HEADER}")

    def parse(self, body: bytes) -> list[InboundEvent]:
        data = json_object(body)
        me = str(data.get("for_user_id") or "")
        if not me:
            raise PayloadError("for_user_id missing")
        if self.account.user_id and me != self.account.user_id:
            # X posts every subscribed user's events to the app's one webhook URL. The
            # signature (same app, same consumer secret) is already checked: hand them to
            # the account they are for, when it is configured.
            sibling = self.siblings.get(me)
            if sibling is not None:
                return sibling.parse(body)
            log.debug("x_other_user_ignored", account=self.account.id)
            return []
        now = time.time()
        out: list[InboundEvent] = []
        for tweet in data.get("tweet_create_events") or []:
            ev = self._mention(tweet, me, now)
            if ev is not None:
                out.append(ev)
        users = data.get("users") or {}
        for dm in data.get("direct_message_events") or []:
            ev = self._dm(dm, me, users, now)
            if ev is not None:
                out.append(ev)
        return out

    def _mention(self, t: Any, me: str, now: float) -> InboundEvent | None:
        if not isinstance(t, dict):
            raise PayloadError("tweet_create_events: expected objects")
        user = t.get("user") or {}
        tid = str(t.get("id_str") or "")
        if not tid or not isinstance(user, dict):
            raise PayloadError("tweet: id_str and user required")
        if str(user.get("id_str")) == me or "retweeted_status" in t:
            return None  # our own post (replies echo back) or a retweet
        ext = t.get("extended_tweet") if t.get("truncated") else None
        ext = ext if isinstance(ext, dict) else {}
        entities = ext.get("entities") or t.get("entities") or {}
        mentioned = {
            str(m.get("id_str")) for m in entities.get("user_mentions") or [] if isinstance(m, dict)
        }
        if me not in mentioned:
            return None  # e.g. a reply in a thread we are in, without @us
        text = ext.get("full_text") or t.get("full_text") or t.get("text") or ""
        lang = t.get("lang")
        return InboundEvent(
            platform=self.name,
            account=self.account.id,
            kind="mention",
            event_id=tid,
            author=Author(
                id=str(user.get("id_str")),
                handle=str(user.get("screen_name") or ""),
                followers=int(user.get("followers_count") or 0),
                verified=bool(user.get("verified") or user.get("verified_type")),
            ),
            text=_as_written(str(text), entities, escaped=True),
            language=lang if isinstance(lang, str) and lang != "und" else None,
            conversation_id=str(t.get("in_reply_to_status_id_str") or tid),
            reply_to_id=tid,
            created_at=_created(t.get("created_at")),
            received_at=now,
            raw=t,
        )

    def _dm(self, e: Any, me: str, users: Mapping[str, Any], now: float) -> InboundEvent | None:
        if not isinstance(e, dict) or e.get("type") != "message_create":
            return None
        mc = e.get("message_create") or {}
        sender = str(mc.get("sender_id") or "")
        eid = str(e.get("id") or "")
        if not sender or not eid:
            raise PayloadError("direct_message_events: id and message_create.sender_id required")
        if sender == me:
            return None  # a DM we sent
        user = users.get(sender) or {}
        data = mc.get("message_data") or {}
        try:
            created = int(str(e.get("created_timestamp"))) / 1000.0
        except (TypeError, ValueError):
            created = now
        return InboundEvent(
            platform=self.name,
            account=self.account.id,
            kind="dm",
            event_id=eid,
            author=Author(
                id=sender,
                handle=str(user.get("screen_name") or ""),
                followers=int(user.get("followers_count") or 0),
                verified=bool(user.get("verified")),
            ),
            # DM text is not known to be entity-encoded: only its links are unwrapped.
            text=_as_written(str(data.get("text") or ""), data.get("entities"), escaped=False),
            conversation_id=f"dm:{sender}",
            created_at=created,
            received_at=now,
            raw=e,
        )

    # -- outbound --------------------------------------------------------------
    def endpoint(self, reply: OutboundReply) -> str:
        return "tweets" if reply.kind == "mention" else "dm"

    def default_limits(self, reply: OutboundReply) -> list[Limit]:
        return list(TWEET_LIMITS if reply.kind == "mention" else self.dm_limits)

    async def send(self, http: aiohttp.ClientSession, reply: OutboundReply) -> SendResult:
        if reply.kind == "mention":
            url = f"{self.api_base}/2/tweets"
            body: dict[str, Any] = {"text": reply.text}
            if reply.in_reply_to_id:
                body["reply"] = {"in_reply_to_tweet_id": reply.in_reply_to_id}
        else:
            url = f"{self.api_base}/2/dm_conversations/with/{reply.recipient_id}/messages"
            body = {"text": reply.text}
        headers = {"Authorization": self._auth("POST", url)}
        async with http.post(url, json=body, headers=headers) as resp:
            data = await read_json(resp, self.name)
            meta = rate_headers(resp.headers)
        d = data.get("data") if isinstance(data, dict) else None
        d = d if isinstance(d, dict) else {}
        pid = str(d.get("id") or d.get("dm_event_id") or "")
        return SendResult(platform_id=pid, rate_limit=meta)


def link_shared_webhooks(adapters: Iterable[Any]) -> None:
    """Let each X route accept events for the other configured accounts of the same app
    (same consumer secret): one registered webhook URL then serves all of them."""
    xs = [a for a in adapters if isinstance(a, XAdapter) and a.account.user_id]
    for a in xs:
        app_secret = a.account.secret("consumer_secret")
        a.siblings = {
            b.account.user_id: b
            for b in xs
            if b is not a and b.account.secret("consumer_secret") == app_secret
        }
