"""Webhook ingest: verify, parse, dedupe and store events durably, then answer at once.

``POST /webhooks/{platform}/{account}`` reads the raw body once, lets the account's
adapter verify and parse it, and hands the events to :class:`IngestWriter`, which
writes them to the ``inbound`` stream. The platform hears 200 only once its events are
in Redis; refused requests (401/400/413/404) store nothing.

The writer batches: requests that arrive while a round trip is in flight are written
together in the next one (group commit), so throughput does not collapse into one
Redis round trip per request. Each event's dedupe key and stream entry (and, for a
message, its place in the customer's order list, which workers decide it by) are written
by one Lua script call, so an event is either stored, listed and marked seen, or neither.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from bot import metrics
from bot.models import InboundEvent
from bot.platforms.base import (
    HandshakeError,
    HttpReply,
    PayloadError,
    PlatformAdapter,
    SignatureError,
)
from bot.redis import Keys, Redis
from bot.storage_down import CANNOT_STORE, OutageLog

log = structlog.get_logger(__name__)

# KEYS: inbound stream, then per event its seen-key and its conversation's order list.
# ARGV: ttl, then per event its payload and '1' for a message ('' for other kinds).
# Returns, per event, the new stream id or 0 for a duplicate. A message's id joins its
# conversation's order list in the same call, so a stored message is always listed.
_STORE_LUA = """
local ttl = tonumber(ARGV[1])
local out = {}
for i = 1, (#KEYS - 1) / 2 do
  if redis.call('SET', KEYS[2 * i], '1', 'NX', 'EX', ttl) then
    local id = redis.call('XADD', KEYS[1], '*', 'event', ARGV[2 * i])
    if ARGV[2 * i + 1] == '1' then
      redis.call('RPUSH', KEYS[2 * i + 1], id)
      redis.call('EXPIRE', KEYS[2 * i + 1], ttl)
    end
    out[#out + 1] = id
  else
    out[#out + 1] = 0
  end
end
return out
"""


@dataclass(slots=True)
class _Pending:
    """One request's events, and the future its handler awaits."""

    events: list[InboundEvent]
    future: asyncio.Future[list[bool]]


class IngestWriter:
    """Group-commit writer: many concurrent requests, few Redis round trips."""

    def __init__(self, redis: Redis, keys: Keys, *, dedupe_ttl_s: int, batch_max: int) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl = dedupe_ttl_s
        self._batch_max = batch_max
        self._queue: list[_Pending] = []
        self._wakeup = asyncio.Event()
        self._script = redis.register_script(_STORE_LUA)
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        # Every request meets the same outage: logged once for all of them.
        self.outage = OutageLog("webhooks")

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ingest-writer")

    async def check_replay(
        self, adapter: PlatformAdapter, query: Mapping[str, str], body: bytes
    ) -> None:
        """The adapter's replay check, for platforms whose signature leaves the body out."""
        await adapter.check_replay(self._redis, self._keys, query, body)

    async def close(self) -> None:
        if self._task is not None:
            # The loop writes what is queued (its requests are still waiting), then ends.
            self._closing = True
            self._wakeup.set()
            await self._task

    async def store(self, events: list[InboundEvent]) -> list[bool]:
        """Store events; True for each new one, False for a duplicate. Raises on Redis errors."""
        if not events:
            return []
        pending = _Pending(events, asyncio.get_running_loop().create_future())
        self._queue.append(pending)
        self._wakeup.set()
        return await pending.future

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                # Whole requests only, so a request's events share one script call.
                batch: list[_Pending] = []
                size = 0
                while self._queue and (
                    not batch or size + len(self._queue[0].events) <= self._batch_max
                ):
                    item = self._queue.pop(0)
                    batch.append(item)
                    size += len(item.events)
                await self._write(batch, size)
            if self._closing:
                return

    async def _write(self, batch: list[_Pending], size: int) -> None:
        keys = [self._keys.inbound]
        args: list[str | int] = [self._ttl]
        for p in batch:
            for e in p.events:
                keys.append(self._keys.seen(e.platform, e.account, e.event_id))
                keys.append(self._keys.conv_order(e.platform, e.account, e.author.id))
                args.extend((e.to_json(), "1" if e.is_message else ""))
        try:
            result = await self._script(keys=keys, args=args)
        except Exception as e:  # Redis down: every waiting request answers 503
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(e)
            return
        self.outage.ok()
        metrics.INGEST_BATCH.observe(size)
        i = 0
        for p in batch:
            n = len(p.events)
            if not p.future.done():
                p.future.set_result([r != 0 for r in result[i : i + n]])
            i += n


# Labelled metric children, cached: labels() costs microseconds on the hot path.
@functools.cache
def _requests(platform: str, result: str) -> Any:
    return metrics.INGEST_REQUESTS.labels(platform, result)


@functools.cache
def _latency(platform: str) -> Any:
    return metrics.INGEST_LATENCY.labels(platform)


@functools.cache
def _events(platform: str, kind: str, outcome: str) -> Any:
    return metrics.INGEST_EVENTS.labels(platform, kind, outcome)


# Weibo's handshake echoes ``echostr``, which its signature does not cover (a logged push
# URL signs any echostr): on the console's origin, no browser may run it as a page.
_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'"}


def _reply(r: HttpReply) -> web.Response:
    return web.Response(status=r.status, body=r.body, content_type=r.content_type, headers=_HEADERS)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=_HEADERS)


def _refused(
    adapter: PlatformAdapter, e: SignatureError | PayloadError
) -> tuple[str, web.Response]:
    unauthorized = isinstance(e, SignatureError)
    log.info(
        "webhook_refused",
        reason="signature" if unauthorized else "malformed",
        platform=adapter.name,
        account=adapter.account.id,
    )
    if unauthorized:
        return "unauthorized", _error(401, str(e))
    return "malformed", _error(400, str(e))


def _parse(adapter: PlatformAdapter, raw: bytes) -> list[InboundEvent]:
    """The adapter's events, or PayloadError: a signed body whose fields have the wrong
    types ("entities": [], "acct": null) is as malformed as one that is not JSON, and a
    500 would have the platform resend it for as long as it retries."""
    try:
        return adapter.parse(raw)
    # OverflowError: an integer too big for a float (a 400-digit "created_at").
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError) as e:
        # Logged with the exception's type, so an adapter bug still shows.
        log.warning(
            "webhook_field_types",
            platform=adapter.name,
            account=adapter.account.id,
            error=type(e).__name__,
        )
        raise PayloadError("a field has the wrong type") from e


class IngestRoutes:
    """The webhook endpoints; adapters are looked up by (platform, account id)."""

    def __init__(
        self, adapters: Mapping[tuple[str, str], PlatformAdapter], *, max_body_bytes: int
    ) -> None:
        self._adapters = adapters
        self._max = max_body_bytes
        # Set once Redis is open (the app's cleanup context); routes exist before that.
        self.writer: IngestWriter | None = None

    def register(self, app: web.Application) -> None:
        app.router.add_post("/webhooks/{platform}/{account}", self.post)
        app.router.add_get("/webhooks/{platform}/{account}", self.get)

    def _adapter(self, request: web.Request) -> PlatformAdapter | None:
        key = (request.match_info["platform"], request.match_info["account"])
        return self._adapters.get(key)

    async def get(self, request: web.Request) -> web.Response:
        adapter = self._adapter(request)
        if adapter is None:
            return _error(404, "unknown platform or account")
        try:
            return _reply(adapter.handshake(request.query))
        except HandshakeError as e:
            return _error(e.status, str(e))

    async def post(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        platform = request.match_info["platform"]
        adapter = self._adapter(request)
        if adapter is None:
            _requests("unknown", "not_found").inc()
            return _error(404, "unknown platform or account")
        result, response = await self._handle(request, adapter)
        _requests(platform, result).inc()
        if result == "ok":
            _latency(platform).observe(time.perf_counter() - started)
        return response

    async def _handle(
        self, request: web.Request, adapter: PlatformAdapter
    ) -> tuple[str, web.Response]:
        if request.content_length is not None and request.content_length > self._max:
            return "too_large", _error(413, f"body larger than {self._max} bytes")
        try:
            # The app's client_max_size equals max_body_bytes: a chunked body that
            # grows past it stops being read here.
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return "too_large", _error(413, f"body larger than {self._max} bytes")
        try:
            adapter.verify(request.headers, request.query, raw)
            events = _parse(adapter, raw)
        except (SignatureError, PayloadError) as e:
            return _refused(adapter, e)
        try:
            assert self.writer is not None, "ingest writer not started"
            # After parse, so a malformed body does not use up a signature.
            await self.writer.check_replay(adapter, request.query, raw)
            stored = await self.writer.store(events)
        except SignatureError as e:
            return _refused(adapter, e)
        except CANNOT_STORE as e:  # the outage's one line (bot/storage_down.py), no traceback
            if self.writer is not None:
                self.writer.outage.failed(e)
            return "error", _error(503, "temporarily unable to store events")
        except Exception:
            log.exception("ingest_store_failed", platform=adapter.name, account=adapter.account.id)
            # Not 200: the platform will retry, and nothing was acknowledged.
            return "error", _error(503, "temporarily unable to store events")
        # No log line per accepted event: at full load it costs a third of the
        # throughput; the worker logs each event's id and outcome at info.
        for ev, new in zip(events, stored, strict=True):
            _events(ev.platform, ev.kind, "accepted" if new else "duplicate").inc()
        return "ok", _reply(adapter.accepted())
