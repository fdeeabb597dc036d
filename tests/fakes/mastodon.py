"""Fake Mastodon instance: statuses (Idempotency-Key), notifications (since_id/max_id
paging, newest first), the SSE notification stream (heartbeats, droppable) and the
instance document."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from typing import Any

import regex
from aiohttp import web

from tests.fakes.base import FakePlatform, error_response

VISIBILITIES = {"public", "unlisted", "private", "direct"}
# Mastodon keeps an Idempotency-Key "for up to 1 hour" (platforms.md §3.3); after that
# the same key posts again.
IDEMPOTENCY_TTL_S = 3600.0

# The instance's length rule as platforms.md §3.4 states it, written apart from
# bot.textfit so that a counting bug there shows up here as Mastodon's 422: grapheme
# clusters; a link counts 23 whatever its length; a remote ``@user@domain`` counts only
# ``@user``. Links and mentions are what Mastodon's extractor finds (twitter-text's, with
# a scheme required and Account::MENTION_RE): a scheme in any case, a host whose last
# label is a TLD (any alphabetic ending but the reserved names of RFC 2606/6761), not
# after a letter, digit, @, $ or #; a mention not after a word character (any script),
# "=" or "/", its username possibly dotted, its domain ending in a word character.
_LINK = regex.compile(
    r"(?<![a-z0-9@＠$#＃])https?://(?:[^\W_]|-)+(?:\.(?:[^\W_]|-)+)*\."
    r"(?!(?:example|test|invalid|localhost|local)(?![a-z0-9-]))"
    r"(?:[a-z]{2,}|xn--[a-z0-9-]+)(?![a-z0-9@+-]|\.[a-z0-9])"
    r"(?::\d+)?(?:/(?:[^\s<>\"]*[^\s<>\".,;:!?')])?)?",
    regex.IGNORECASE,
)
_REMOTE_MENTION = regex.compile(
    r"(?<![=/\w])(@[a-z0-9_]+(?:[a-z0-9_.-]+[a-z0-9_]+)?)@[\w.-]+\w", regex.IGNORECASE
)


def links(text: str) -> list[str]:
    """The links the instance makes of ``text``."""
    return _LINK.findall(text)


def status_length(text: str, url_length: int = 23) -> int:
    links = _LINK.findall(text)
    rest = _REMOTE_MENTION.sub(r"\1", _LINK.sub("", text))
    return url_length * len(links) + len(regex.findall(r"\X", rest))


def _key(i: str) -> tuple[int, str]:
    return (len(i), i)


class FakeMastodon(FakePlatform):
    def __init__(
        self,
        *,
        token: str,
        me_id: str = "109000000000000001",
        me_acct: str = "shop",
        max_characters: int = 500,
        url_length: int = 23,
        latency_s: float = 0.0,
    ) -> None:
        super().__init__(latency_s=latency_s)
        self.token = token
        self.me_id = me_id
        self.me_acct = me_acct
        self.max_characters = max_characters
        self.url_length = url_length  # characters_reserved_per_url
        self._status_ids = itertools.count(110_000_000_000_000_000)
        self._notif_ids = itertools.count(70_000_000)
        self.statuses: list[dict[str, Any]] = []
        self.notifications: list[dict[str, Any]] = []  # oldest first
        self.idempotency: dict[str, tuple[float, dict[str, Any]]] = {}  # key → (at, status)
        self.clock: Callable[[], float] = time.time  # a test's fake clock, for key expiry
        self._streams: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self.stream_connects = 0
        self.refuse_streams = 0  # answer the next N stream connects with 503
        self.refuse_instance = 0  # answer the next N instance reads with 503
        self.base_url = ""  # set by the test once the server runs (for urls.streaming)
        r = self.app.router
        r.add_get("/api/v2/instance", self.instance)
        r.add_post("/api/v1/statuses", self.post_status)
        r.add_get("/api/v1/notifications", self.list_notifications)
        r.add_get("/api/v1/streaming/user/notification", self.stream)

    # -- helpers for tests -----------------------------------------------------
    @property
    def stream_count(self) -> int:
        return len(self._streams)

    def mention(
        self,
        text: str,
        *,
        acct: str = "a@pl.nulled.red",
        account_id: str = "108892712797543112",
        visibility: str = "public",
    ) -> dict[str, Any]:
        """A user mentions the bot: a status and its notification, pushed to open streams."""
        sid = str(next(self._status_ids))
        status = {
            "id": sid,
            "created_at": "2022-08-30T23:09:54.070Z",
            "in_reply_to_id": None,
            "visibility": visibility,
            "language": "en",
            "content": f'<p><span class="h-card"><a href="https://example/@{self.me_acct}" class="u-url mention">'
            f"@<span>{self.me_acct}</span></a></span> {text}</p>",
            "account": {"id": account_id, "acct": acct, "followers_count": 3},
            "mentions": [{"id": self.me_id, "username": self.me_acct, "acct": self.me_acct}],
        }
        n = {
            "id": str(next(self._notif_ids)),
            "type": "mention",
            "created_at": status["created_at"],
            "account": status["account"],
            "status": status,
        }
        self.notifications.append(n)
        for q in self._streams:
            q.put_nowait(n)
        return n

    def drop_streams(self) -> None:
        """The server ends every open stream (the client sees end of stream)."""
        for q in list(self._streams):
            q.put_nowait(None)

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    # -- API -------------------------------------------------------------------
    async def instance(self, request: web.Request) -> web.Response:
        await self.record(request)
        if self.refuse_instance > 0:
            self.refuse_instance -= 1
            return web.json_response({"error": "unavailable"}, status=503)
        streaming = self.base_url.replace("http://", "ws://", 1) if self.base_url else ""
        return web.json_response(
            {
                "domain": "fake.social",
                "configuration": {
                    "urls": {"streaming": streaming},
                    "statuses": {
                        "max_characters": self.max_characters,
                        "characters_reserved_per_url": self.url_length,
                    },
                },
            }
        )

    async def post_status(self, request: web.Request) -> web.StreamResponse:
        call = await self.record(request)
        if not self._authorized(request):
            return web.json_response({"error": "The access token is invalid"}, status=401)
        s = self.scripted()
        if s is not None and s.status:
            return error_response(s)
        key = request.headers.get("Idempotency-Key")
        if key and key in self.idempotency:
            at, kept = self.idempotency[key]
            if self.clock() - at < IDEMPOTENCY_TTL_S:
                return web.json_response(kept)
        body = call.json
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("status"), str)
            or not body["status"].strip()
        ):
            return web.json_response(
                {"error": "Validation failed: Text can't be blank"}, status=422
            )
        if body.get("visibility", "public") not in VISIBILITIES:
            return web.json_response(
                {"error": "Validation failed: Visibility is invalid"}, status=422
            )
        if status_length(body["status"], self.url_length) > self.max_characters:
            return web.json_response(
                {
                    "error": f"Validation failed: Text character limit of {self.max_characters} exceeded"
                },
                status=422,
            )
        status = {
            "id": str(next(self._status_ids)),
            "content": body["status"],
            "visibility": body.get("visibility", "public"),
            "in_reply_to_id": body.get("in_reply_to_id"),
            "idempotency_key": key,
        }
        self.statuses.append(status)
        if key:
            self.idempotency[key] = (self.clock(), status)
        await self.after_record(s, request)
        return web.json_response(
            status,
            headers={
                "X-RateLimit-Limit": "300",
                "X-RateLimit-Remaining": "299",
                "X-RateLimit-Reset": "2030-01-01T00:00:00.000Z",
            },
        )

    async def list_notifications(self, request: web.Request) -> web.Response:
        await self.record(request)
        if not self._authorized(request):
            return web.json_response({"error": "The access token is invalid"}, status=401)
        types = request.query.getall("types[]", [])
        since = request.query.get("since_id")
        max_id = request.query.get("max_id")
        limit = min(int(request.query.get("limit", "40")), 80)
        items = [n for n in reversed(self.notifications) if not types or n["type"] in types]
        if since:
            items = [n for n in items if _key(n["id"]) > _key(since)]
        if max_id:
            items = [n for n in items if _key(n["id"]) < _key(max_id)]
        return web.json_response(items[:limit])

    async def stream(self, request: web.Request) -> web.StreamResponse:
        await self.record(request)
        if not self._authorized(request):
            return web.json_response({"error": "Error: Missing access token"}, status=401)
        if self.refuse_streams > 0:
            self.refuse_streams -= 1
            return web.json_response({"error": "unavailable"}, status=503)
        self.stream_connects += 1
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._streams.add(q)
        try:
            await resp.write(b":)\n")
            while True:
                try:
                    n = await asyncio.wait_for(q.get(), timeout=0.2)
                except TimeoutError:
                    await resp.write(b":thump\n")  # heartbeat
                    continue
                if n is None:
                    break
                # Some events first that the client must skip.
                await resp.write(b"event: filters_changed\n\n")
                data = json.dumps(n)
                await resp.write(f"event: notification\ndata: {data}\n\n".encode())
        finally:
            self._streams.discard(q)
        return resp
