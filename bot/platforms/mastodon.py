"""Mastodon: mentions and DMs from the streaming API (bot.platforms.mastodon_stream) or
admin webhooks, replies through ``POST /api/v1/statuses`` (platforms.md §3).

``api_base`` is the instance URL and is required. Secrets: ``access_token`` (the bot
user's token: ``read:statuses read:notifications write:statuses``) and, only for admin
webhooks, ``webhook_secret``. Options: ``max_characters`` (default: read from the
instance, else 500; a link counts the instance's ``characters_reserved_per_url``, else
23), ``mention_visibility`` (``unlisted``; a reply never gets wider than its parent: a
followers-only mention is answered followers-only), ``streaming`` (true),
``streaming_base`` (default: the instance's ``urls.streaming`` when it is the instance's
host or a subdomain of it, not downgraded from https; else ``api_base``),
``stream_reconnect_min_s`` / ``stream_reconnect_max_s`` / ``stream_idle_timeout_s``,
``rate_limits``, ``more_link``.

Events from the stream and from a webhook use the **status id** as event id, so the
same post seen both ways is stored once.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from datetime import datetime
from html.parser import HTMLParser
from typing import Any, ClassVar
from urllib.parse import urlsplit

import aiohttp
import structlog
from redis.exceptions import RedisError

from bot import textfit
from bot.config import ConfigError
from bot.models import Author, InboundEvent, OutboundReply
from bot.nlu.lang import resolve_language
from bot.platforms.base import (
    HttpReply,
    PayloadError,
    SendError,
    SendResult,
    SignatureError,
    json_object,
)
from bot.platforms.common import ApiAdapter, rate_headers, read_json
from bot.platforms.signing import hmac_sha256_hex, same
from bot.ratelimit import Limit
from bot.redis import Keys, Redis

log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "X-Hub-Signature"
# 300 requests / 5 min per account for all of /api/* (§3.4).
API_LIMITS = [Limit("api", 300, 300)]
# What every reply starts with (the console's counter shows it too).
REPLY_PREFIX = "@{handle} "
# Most restrictive first: a reply takes the narrower of its parent's and the configured.
VISIBILITIES = ("direct", "private", "unlisted", "public")
# After a failed read of the instance document: retry no sooner than this, doubling.
INSTANCE_RETRY_MIN_S = 30.0
INSTANCE_RETRY_MAX_S = 900.0


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac_sha256_hex(secret, body)


class _Text(HTMLParser):
    """Status HTML → plain text: tags dropped (mention and link text kept), <br> and
    paragraph breaks as newlines, entities unescaped once (``convert_charrefs``): a
    second pass would read a link's "&region=" as "®ion=" and a typed "&lt;" as "<"."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.parts.append("\n")
        elif tag == "p" and self.parts:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_to_text(content: str) -> str:
    p = _Text()
    p.feed(content)
    p.close()
    return "".join(p.parts).strip()


def _created(s: Any) -> float:
    try:
        return datetime.fromisoformat(str(s).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return time.time()


def addressed(reply: OutboundReply) -> tuple[str, str]:
    """(the ``@acct `` a reply starts with, the rest of its text). Direct posts reach only
    the accounts they mention, and a public reply notifies the user; an agent who typed
    the handle gets it once."""
    handle = reply.recipient_handle.lstrip("@")
    text = reply.text.strip()
    if not handle:
        return "", text
    prefix = REPLY_PREFIX.format(handle=handle)
    if text.lower().startswith(prefix.lower()):
        text = text[len(prefix) :]
    return prefix, text


def length_rule(statuses: Any) -> dict[str, int]:
    """The length settings of an instance's ``configuration.statuses`` (also the record
    kept in Redis), the valid ones only."""
    if not isinstance(statuses, dict):
        return {}
    names = ("max_characters", "characters_reserved_per_url")
    return {k: v for k in names if type(v := statuses.get(k)) is int and v > 0}


def streaming_url_ok(api_base: str, streaming: str) -> bool:
    """Whether the instance document's streaming URL (as http/https) may get the access
    token: the instance's own host or a subdomain of it, and no downgrade from https. The
    document is not signed: a hijacked or misconfigured instance page must not send the
    bot's token to another host or over plain HTTP (``streaming_base`` overrides)."""
    api, st = urlsplit(api_base), urlsplit(streaming)
    host, api_host = (st.hostname or "").lower(), (api.hostname or "").lower()
    if st.scheme not in ("http", "https") or (api.scheme == "https" and st.scheme != "https"):
        return False
    return bool(host) and (host == api_host or host.endswith("." + api_host))


def narrowest(*visibilities: str) -> str:
    """The most restrictive visibility; an unknown one counts as ``direct``."""
    return min(visibilities, key=lambda v: VISIBILITIES.index(v) if v in VISIBILITIES else 0)


def id_newer(a: str, b: str | None) -> bool:
    """Mastodon ids are numeric strings (snowflakes): compare by length, then text."""
    return b is None or (len(a), a) > (len(b), b)


class MastodonAdapter(ApiAdapter):
    name = "mastodon"
    idempotent_resend = True  # Idempotency-Key = reply_id makes a resend safe (1 h)
    required_secrets: ClassVar[tuple[str, ...]] = ("access_token",)

    def __init__(self, account: Any) -> None:
        super().__init__(account)
        opts = account.options
        self.max_characters = int(opts.get("max_characters") or 500)
        self._limits_known = "max_characters" in opts
        self.streaming = bool(opts.get("streaming", True))
        self.streaming_base = str(opts.get("streaming_base") or "").rstrip("/")
        self.mention_visibility = str(opts.get("mention_visibility") or "unlisted")
        if self.mention_visibility not in VISIBILITIES:
            raise ConfigError(
                f"accounts[{account.id}].options.mention_visibility: one of {VISIBILITIES}"
            )
        self._ready = False
        self._record: tuple[Redis, Keys] | None = None
        self.clock = time.monotonic
        self._retry_at = 0.0
        self._retry_s = INSTANCE_RETRY_MIN_S

    # -- instance --------------------------------------------------------------
    def bind(self, redis: Redis, keys: Keys) -> None:
        """Where to record what the instance reports: the web role's agent check
        (escalation.lengths) reads it there, as it does not read the instance itself."""
        self._record = (redis, keys)

    async def ready(self, http: aiohttp.ClientSession) -> None:
        """Read the length rule and the streaming host from the instance (and record the
        rule, see :meth:`bind`), once it succeeds; after a failure, again on a later call
        (backing off, 30 s to 15 min)."""
        if self._ready or self.clock() < self._retry_at:
            return
        try:
            async with http.get(f"{self.api_base}/api/v2/instance") as resp:
                if resp.status != 200:
                    raise ValueError(f"HTTP {resp.status}")
                doc = await resp.json()
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            log.warning(
                "mastodon_instance_unreadable",
                account=self.account.id,
                error=str(e) or type(e).__name__,
                retry_in_s=self._retry_s,
            )
            self._retry_at = self.clock() + self._retry_s
            self._retry_s = min(self._retry_s * 2, INSTANCE_RETRY_MAX_S)
            return
        self._ready = True
        conf = doc.get("configuration") or {}
        reported = length_rule(conf.get("statuses"))
        if not self._limits_known and "max_characters" in reported:
            self.max_characters = reported["max_characters"]
        if "characters_reserved_per_url" in reported:
            self.rule = dataclasses.replace(
                self.rule, url_length=reported["characters_reserved_per_url"]
            )
        streaming = (conf.get("urls") or {}).get("streaming")
        if not self.streaming_base and isinstance(streaming, str) and streaming:
            url = streaming.replace("wss://", "https://", 1).replace("ws://", "http://", 1)
            if streaming_url_ok(self.api_base, url):
                self.streaming_base = url.rstrip("/")
            else:  # the stream goes to api_base, which serves it too
                log.warning("mastodon_streaming_host_refused", account=self.account.id)
        await self._save(reported)

    async def _save(self, reported: dict[str, int]) -> None:
        if self._record is None:
            return
        redis, keys = self._record
        try:
            await redis.set(keys.instance(self.name, self.account.id), json.dumps(reported))
        except (RedisError, OSError) as e:  # sending goes on; another process records it
            log.warning("mastodon_instance_unrecorded", account=self.account.id, error=str(e))

    def limit(self, kind: str) -> int:
        return self.max_characters

    # -- inbound: admin webhooks ----------------------------------------------
    def verify(self, headers: Mapping[str, str], query: Mapping[str, str], body: bytes) -> None:
        secret = self.account.secrets.get("webhook_secret")
        if secret is None or not secret.get():
            raise SignatureError("admin webhooks are not configured (no webhook_secret)")
        given = headers.get(SIGNATURE_HEADER, "")
        if not given or not same(given.lower(), sign(secret.get(), body)):
            raise SignatureError(f"bad or missing {SIGNATURE_HEADER}")

    def parse(self, body: bytes) -> list[InboundEvent]:
        d = json_object(body)
        if not isinstance(d.get("object"), dict):
            raise PayloadError("expected {event, created_at, object}")
        if d.get("event") != "status.created":
            log.debug("mastodon_webhook_ignored", webhook_event=str(d.get("event")))
            return []
        ev = self.status_event(d["object"])
        return [ev] if ev is not None else []

    def accepted(self) -> HttpReply:
        return HttpReply(body=b"", status=200, content_type="text/plain")

    # -- inbound: shared by stream, catch-up and webhook ----------------------
    def notification_event(self, n: Mapping[str, Any]) -> InboundEvent | None:
        if n.get("type") != "mention" or not isinstance(n.get("status"), dict):
            return None
        return self.status_event(n["status"])

    def _mentions_me(self, status: Mapping[str, Any]) -> bool:
        me_id, me_handle = self.account.user_id, self.account.handle.lstrip("@").lower()
        for m in status.get("mentions") or []:
            if not isinstance(m, dict):
                continue
            if me_id and str(m.get("id")) == me_id:
                return True
            if me_handle and str(m.get("acct", "")).lower() == me_handle:
                return True
        return False

    def status_event(self, status: Mapping[str, Any]) -> InboundEvent | None:
        acc = status.get("account") or {}
        sid = str(status.get("id") or "")
        if not sid or not isinstance(acc, dict):
            raise PayloadError("status: id and account required")
        if self.account.user_id and str(acc.get("id")) == self.account.user_id:
            return None  # our own post
        if acc.get("acct", "").lower() == self.account.handle.lstrip("@").lower():
            return None
        if not self._mentions_me(status):
            return None
        direct = status.get("visibility") == "direct"
        lang = status.get("language")
        return InboundEvent(
            platform=self.name,
            account=self.account.id,
            kind="dm" if direct else "mention",
            event_id=sid,
            author=Author(
                id=str(acc.get("id") or ""),
                handle=str(acc.get("acct") or ""),
                followers=int(acc.get("followers_count") or 0),
                bot=acc.get("bot") is True,
            ),
            text=html_to_text(str(status.get("content") or "")),
            language=lang if isinstance(lang, str) and lang else None,
            conversation_id=f"dm:{acc.get('id')}"
            if direct
            else str(status.get("in_reply_to_id") or sid),
            reply_to_id=sid,
            created_at=_created(status.get("created_at")),
            raw=dict(status),
            audience=str(status.get("visibility") or ""),
        )

    # -- outbound --------------------------------------------------------------
    def endpoint(self, reply: OutboundReply) -> str:
        return "api"

    def default_limits(self, reply: OutboundReply) -> list[Limit]:
        return list(API_LIMITS)

    def compose(self, reply: OutboundReply) -> str:
        """``@acct`` first, then the text fitted into what is left."""
        prefix, text = addressed(reply)
        if not prefix:
            return self.fit(text, reply.kind)
        room = self.limit(reply.kind) - textfit.count(prefix, self.rule)
        body = textfit.fit(
            text,
            lambda s: textfit.count(s, self.rule) <= room,
            language=self.account.language,
            kind=reply.kind,
            more=self.account.options.get("more_link") or None,
        )
        return prefix + body

    def visibility(self, reply: OutboundReply) -> str:
        """``direct`` for a DM; for a mention the configured visibility, narrowed to the
        parent's (§3.3): an answer to a followers-only post must not be unlisted."""
        if reply.kind == "dm":
            return "direct"
        if not reply.audience:  # queued before replies carried it
            return self.mention_visibility
        return narrowest(self.mention_visibility, reply.audience)

    async def send(self, http: aiohttp.ClientSession, reply: OutboundReply) -> SendResult:
        visibility = self.visibility(reply)
        if visibility == "direct" and not reply.text.startswith("@"):
            # A direct status reaches only the accounts it mentions: without the @acct
            # it would be visible to nobody but us.
            raise SendError(
                "a direct reply needs the user's @acct (recipient_handle)", permanent=True
            )
        body: dict[str, Any] = {"status": reply.text, "visibility": visibility}
        if reply.in_reply_to_id:
            body["in_reply_to_id"] = reply.in_reply_to_id
        # The reply's own language (a Chinese answer from an "en" account is tagged zh:
        # readers filter by it); the account's where the text cannot tell.
        lang = resolve_language(reply.text, self.account.language)
        if lang != "other":
            body["language"] = lang
        headers = {
            "Authorization": f"Bearer {self.account.secret('access_token')}",
            # The instance keeps keys ~1 h: a resend after an ambiguous failure is a no-op.
            "Idempotency-Key": reply.reply_id,
        }
        async with http.post(
            f"{self.api_base}/api/v1/statuses", json=body, headers=headers
        ) as resp:
            data = await read_json(resp, self.name)
            meta = rate_headers(resp.headers)
        return SendResult(
            platform_id=str(data.get("id") or "") if isinstance(data, dict) else "", rate_limit=meta
        )
