"""Mastodon streaming client: one supervised SSE connection per account.

After every (re)connect the client first polls ``GET /api/v1/notifications
?types[]=mention&since_id=<last>`` (paging back with ``max_id``) and stores what it
missed, oldest first, then reads the stream. Stream and catch-up may overlap: both store
through the same :class:`IngestWriter` keyed by status id, so overlap is deduplicated.
The last notification id stored is kept in Redis (``keys.platform_state``), so a
restarted process catches up from where the previous one stopped. On the very first
start (no stored id) the newest mention becomes the baseline: history is not answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Mapping
from typing import Any

import aiohttp
import structlog

from bot import metrics
from bot.ingest import IngestWriter
from bot.platforms.base import PlatformAdapter, without_lone_surrogates
from bot.platforms.mastodon import MastodonAdapter, id_newer
from bot.redis import Keys, Redis

log = structlog.get_logger(__name__)

PAGE = 40
MAX_LINE = 1024 * 1024


class StreamError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"stream answered HTTP {status}")
        self.status = status


class MastodonStream:
    def __init__(
        self,
        adapter: MastodonAdapter,
        redis: Redis,
        keys: Keys,
        writer: IngestWriter,
        http: aiohttp.ClientSession,
    ) -> None:
        self.adapter = adapter
        self.redis = redis
        self.keys = keys
        self.writer = writer
        self.http = http
        opts = adapter.account.options
        self.backoff_min = float(opts.get("stream_reconnect_min_s", 1.0))
        self.backoff_max = float(opts.get("stream_reconnect_max_s", 60.0))
        self.idle_timeout = float(opts.get("stream_idle_timeout_s", 90.0))  # heartbeats ~10 s
        self.state_key = keys.platform_state(adapter.name, adapter.account.id)
        self.connected = asyncio.Event()  # set while a stream is open (tests, health)
        self.had_session = False
        self.log = log.bind(account=adapter.account.id)

    @property
    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.adapter.account.secret('access_token')}"}

    # -- state -----------------------------------------------------------------
    async def last_id(self) -> str | None:
        v = await self.redis.hget(self.state_key, "last_notification_id")
        return v.decode() if isinstance(v, bytes) else v

    async def _advance(self, nid: str) -> None:
        cur = await self.last_id()
        if id_newer(nid, cur):
            await self.redis.hset(self.state_key, "last_notification_id", nid)

    async def _store(self, notification: Mapping[str, Any]) -> bool:
        """Store one notification's event (if any) and advance the cursor; True if new."""
        new = False
        # From the stream or the catch-up's JSON: half an emoji would fail the store.
        ev = self.adapter.notification_event(without_lone_surrogates(notification))
        if ev is not None:
            (new,) = await self.writer.store([ev])
            metrics.INGEST_EVENTS.labels(
                ev.platform, ev.kind, "accepted" if new else "duplicate"
            ).inc()
            self.log.info(
                "event_accepted" if new else "event_duplicate",
                kind=ev.kind,
                event_id=ev.event_id,
                via="stream",
            )
        nid = str(notification.get("id") or "")
        if nid:
            await self._advance(nid)
        return new

    # -- catch-up --------------------------------------------------------------
    async def _get_notifications(self, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        url = f"{self.adapter.api_base}/api/v1/notifications"
        async with self.http.get(url, params=params, headers=self._auth) as resp:
            if resp.status != 200:
                raise StreamError(resp.status)
            data = await resp.json()
        return [n for n in data if isinstance(n, dict)] if isinstance(data, list) else []

    async def catch_up(self) -> int:
        """Store every mention newer than the cursor, oldest first; returns how many were new."""
        since = await self.last_id()
        if since is None:
            newest = await self._get_notifications([("types[]", "mention"), ("limit", "1")])
            await self.redis.hset(
                self.state_key, "last_notification_id", str(newest[0]["id"]) if newest else "0"
            )
            return 0
        found: list[dict[str, Any]] = []
        max_id: str | None = None
        while True:
            params = [("types[]", "mention"), ("since_id", since), ("limit", str(PAGE))]
            if max_id:
                params.append(("max_id", max_id))
            page = await self._get_notifications(params)
            found += page
            if len(page) < PAGE:
                break
            max_id = str(page[-1]["id"])  # newest first: continue below the oldest seen
        new = 0
        for n in sorted(found, key=lambda n: (len(str(n["id"])), str(n["id"]))):
            new += await self._store(n)
        if new:
            metrics.PLATFORM_STREAM_CATCHUP.labels(self.adapter.name).inc(new)
            self.log.info("stream_caught_up", events=new)
        return new

    # -- stream ----------------------------------------------------------------
    async def _connect_once(self) -> None:
        await self.adapter.ready(self.http)
        base = self.adapter.streaming_base or self.adapter.api_base
        timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=self.idle_timeout)
        async with self.http.get(
            f"{base}/api/v1/streaming/user/notification",
            headers={**self._auth, "Accept": "text/event-stream"},
            timeout=timeout,
        ) as resp:
            if resp.status != 200:
                raise StreamError(resp.status)
            self.connected.set()
            self.had_session = True
            self.log.info("stream_connected")
            try:
                await self.catch_up()
                await self._read(resp)
            finally:
                self.connected.clear()

    async def _read(self, resp: aiohttp.ClientResponse) -> None:
        buf = b""
        event, data = "", list[str]()
        async for chunk in resp.content.iter_any():
            buf += chunk
            if len(buf) > MAX_LINE and b"\n" not in buf:
                raise ValueError("SSE line too long")
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                line = raw.decode("utf-8", "replace").rstrip("\r")
                if not line:  # blank line: dispatch the frame
                    if event == "notification" and data:
                        await self._on_frame("\n".join(data))
                    event, data = "", []
                elif line.startswith(":"):
                    continue  # heartbeat (":thump")
                else:
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "event":
                        event = value
                    elif name == "data":
                        data.append(value)
        self.log.info("stream_closed_by_server")

    async def _on_frame(self, payload: str) -> None:
        try:
            n = json.loads(payload)
        except json.JSONDecodeError:
            self.log.warning("stream_bad_frame")
            return
        if isinstance(n, dict):
            await self._store(n)

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, catch up, read; on any failure reconnect with jittered backoff."""
        delay = self.backoff_min
        while not stop.is_set():
            self.had_session = False
            conn = asyncio.create_task(self._connect_once())
            stopper = asyncio.create_task(stop.wait())
            try:
                await asyncio.wait({conn, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopper.cancel()
            if not conn.done():
                conn.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await conn
                return
            err = conn.exception()
            if self.had_session:
                delay = self.backoff_min  # it worked until now: reconnect promptly
            if isinstance(err, StreamError) and err.status in (401, 403):
                self.log.error("stream_unauthorized", status=err.status)
                delay = self.backoff_max  # a bad token will not fix itself quickly
            elif err is not None:
                self.log.warning("stream_failed", error=type(err).__name__)
            metrics.PLATFORM_STREAM_RECONNECTS.labels(self.adapter.name).inc()
            wait = delay * (0.5 + random.random() / 2)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)
            delay = min(delay * 2, self.backoff_max)


def mastodon_streams(
    redis: Redis,
    keys: Keys,
    writer: IngestWriter,
    adapters: Mapping[str, PlatformAdapter],
    http: aiohttp.ClientSession,
) -> list[MastodonStream]:
    return [
        MastodonStream(a, redis, keys, writer, http)
        for a in adapters.values()
        if isinstance(a, MastodonAdapter) and a.streaming
    ]


async def run_mastodon_streams(
    redis: Redis,
    keys: Keys,
    writer: IngestWriter,
    adapters: Mapping[str, PlatformAdapter],
    http: aiohttp.ClientSession,
    stop: asyncio.Event,
) -> None:
    """Run one stream per Mastodon account until ``stop`` is set (returns at once if none)."""
    streams = mastodon_streams(redis, keys, writer, adapters, http)
    if streams:
        await asyncio.gather(*(s.run(stop) for s in streams))
