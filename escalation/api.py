"""The agent API under ``/api/v1``: JSON over HTTP for the queue, tickets and live events.

Every route but ``/openapi.json`` needs an agent (bearer token or console session, see
``escalation.auth``). Errors are ``{"error": {"code": ..., "message": ...}}`` with 400
(unreadable body), 401, 403 (role), 404, 405 (known path, wrong method; with ``Allow``),
409 (conflict: claimed by someone else, not open, reply window closed...), 413 and 422
(invalid field, reply too long). The shapes are documented in ``escalation/openapi.py``;
keep the two in step.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from bot import keys as K
from bot import metrics
from bot.config import BLOCKING_READ_MAX_MS
from bot.models import OutboundReply
from bot.redis import as_str
from bot.storage_down import UNAVAILABLE
from bot.streams import parse_stream_id
from escalation.agents import NAME_RE, Agent, AgentStore
from escalation.auth import authenticate
from escalation.lengths import check_length
from escalation.openapi import OPENAPI
from escalation.sla import PRIORITIES
from escalation.tickets import TicketError, TicketStore
from escalation.windows import describe_window

log = structlog.get_logger(__name__)

PREFIX = "/api/v1"
TICKETS = web.AppKey("tickets", TicketStore)
CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("ticket_clock")
MAX_BODY = 64 * 1024
MAX_TEXT = 5000
# Each idle wait ends in a keep-alive; below the Redis socket timeout (bot/config.py).
SSE_BLOCK_MS = BLOCKING_READ_MAX_MS
# How often an open event stream checks its caller is still signed in (a revoked token
# or a signed-out session must stop receiving ticket events).
SSE_REAUTH_S = 10.0
# A Redis stream id: two unsigned 64-bit parts (ASCII digits only: ``\d`` would take
# any script's digits, and ``$`` a trailing newline, which Redis then refuses).
_STREAM_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
_SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}

Handler = Callable[[web.Request, Agent], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def error_response(status: int, code: str, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, **extra}}, status=status)


def _op(
    name: str, *, supervisor: bool = False
) -> Callable[[Handler], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """Authenticate, check the role, map errors to JSON; never a 500 for bad input."""

    def wrap(fn: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            try:
                agent = await authenticate(request)
                if agent is None:
                    raise ApiError(
                        401, "unauthorized", "a valid bearer token or session is required"
                    )
                if supervisor and not agent.is_supervisor:
                    raise ApiError(403, "forbidden", f"{name} needs the supervisor role")
                resp = await fn(request, agent)
            except ApiError as e:
                resp = error_response(e.status, e.code, e.message, **e.extra)
            except TicketError as e:
                resp = error_response(e.status, e.code, e.message, **e.extra)
            except (web.HTTPException, *UNAVAILABLE):
                raise  # Redis down: bot.storage_down answers 503
            except Exception:
                log.exception("agent_api_error", op=name)
                resp = error_response(500, "internal", "unexpected error")
            if resp.status == 401:  # RFC 9110: a 401 names the scheme it wants
                resp.headers["WWW-Authenticate"] = 'Bearer realm="replydesk"'
            metrics.AGENT_API_REQUESTS.labels(name, f"{resp.status // 100}xx").inc()
            return resp

        return handler

    return wrap


async def _body(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError(413, "too_large", f"body larger than {MAX_BODY} bytes")
    # read(n) returns what has arrived so far, not n bytes: a body sent in several TCP
    # segments or chunks is read to its end (or just past the limit).
    raw = bytearray()
    while len(raw) <= MAX_BODY:
        chunk = await request.content.read(MAX_BODY + 1 - len(raw))
        if not chunk:
            break
        raw += chunk
    if len(raw) > MAX_BODY:
        raise ApiError(413, "too_large", f"body larger than {MAX_BODY} bytes")
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except RecursionError:
        raise ApiError(400, "bad_json", "body nests too deeply") from None
    except ValueError as e:  # bad UTF-8 or syntax, or an integer too long to convert
        why = (
            ""
            if isinstance(e, json.JSONDecodeError | UnicodeDecodeError)
            else " (a number too long)"
        )
        raise ApiError(400, "bad_json", f"body is not valid JSON{why}") from None
    if not isinstance(data, dict):
        raise ApiError(422, "invalid", "body must be a JSON object")
    try:  # "\ud800" is valid JSON but no text: Redis (UTF-8) could never store it
        json.dumps(data, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise ApiError(
            422, "invalid", "body: a string holds a lone surrogate (\\ud800-\\udfff)"
        ) from None
    return data


def _text(data: dict[str, Any], field: str, *, max_len: int = MAX_TEXT) -> str:
    v = data.get(field)
    if not isinstance(v, str) or not v.strip():
        raise ApiError(422, "invalid", f"{field}: expected a non-empty string", field=field)
    if len(v) > max_len:
        raise ApiError(422, "invalid", f"{field}: longer than {max_len} characters", field=field)
    return v


def _opt_str(
    data: dict[str, Any], field: str, allowed: tuple[str, ...] | None = None
) -> str | None:
    v = data.get(field)
    if v is None:
        return None
    if not isinstance(v, str) or (allowed is not None and v not in allowed) or len(v) > 128:
        hint = f"one of {', '.join(allowed)}" if allowed else "a string of at most 128 characters"
        raise ApiError(422, "invalid", f"{field}: expected {hint}", field=field)
    return v


def _store(request: web.Request) -> TicketStore:
    return request.app[TICKETS]


async def _ticket_or_404(store: TicketStore, tid: str) -> Any:
    t = await store.get(tid)
    if t is None:
        raise ApiError(404, "not_found", f"no ticket {tid!r}")
    return t


def _ok(store: TicketStore, t: Any, **extra: Any) -> web.Response:
    return web.json_response({"ticket": store.view(t), **extra})


# -- routes ---------------------------------------------------------------------
@_op("me")
async def me(request: web.Request, agent: Agent) -> web.Response:
    return web.json_response({"agent": {"name": agent.name, "role": agent.role}})


@_op("list")
async def list_tickets(request: web.Request, agent: Agent) -> web.Response:
    q = request.query
    status = q.get("status", "open")
    if status not in ("open", "resolved"):
        raise ApiError(422, "invalid", "status: expected open or resolved", field="status")
    priority = q.get("priority") or None
    if priority is not None and priority not in PRIORITIES:
        raise ApiError(
            422, "invalid", f"priority: expected one of {', '.join(PRIORITIES)}", field="priority"
        )
    account = q.get("account") or None
    # A handle (any case, @ or not) or a user id; "@" alone filters nothing.
    customer = q.get("customer", "").strip()
    if len(customer) > 128:
        raise ApiError(
            422, "invalid", "customer: expected at most 128 characters", field="customer"
        )
    assignee = q.get("assignee")
    if assignee == "me":
        assignee = agent.name
    elif assignee == "none":
        assignee = ""
    try:
        limit = int(q.get("limit", "100"))
    except ValueError:
        raise ApiError(422, "invalid", "limit: expected an integer", field="limit") from None
    if not 1 <= limit <= 500:
        raise ApiError(422, "invalid", "limit: expected 1..500", field="limit")
    store = _store(request)
    ts, more = await store.search(
        status=status,
        priority=priority,
        account=account,
        assignee=assignee,
        customer=customer if customer.lstrip("@") else None,
        limit=limit,
        after=q.get("after") or None,
    )
    now = store.now()
    # `next`: a full page may have more behind it (same filters, after=next).
    return web.json_response({"tickets": [store.view(t, now=now) for t in ts], "next": more})


@_op("get")
async def get_ticket(request: web.Request, agent: Agent) -> web.Response:
    store = _store(request)
    t = await _ticket_or_404(store, request.match_info["id"])
    lists = await store.lists(t.id)
    await store.add_delivery(lists["messages"], lists["notes"])
    view = store.view(t)
    view["reply_window"] = await describe_window(
        store.redis, store.keys, t, store.now(), warn_s=store.cfg.window_warning_s
    )
    return web.json_response(
        {
            "ticket": view,
            "conversation": lists["messages"],
            "context": lists["context"],
            "notes": lists["notes"],
            "history": lists["history"],
        }
    )


@_op("claim")
async def claim(request: web.Request, agent: Agent) -> web.Response:
    await _body(request)
    store = _store(request)
    return _ok(store, await store.claim(request.match_info["id"], agent.name))


@_op("release")
async def release(request: web.Request, agent: Agent) -> web.Response:
    await _body(request)
    store = _store(request)
    t = await store.release(request.match_info["id"], agent.name, supervisor=agent.is_supervisor)
    return _ok(store, t)


@_op("reply")
async def reply(request: web.Request, agent: Agent) -> web.Response:
    data = await _body(request)
    text = _text(data, "text")
    channel = _opt_str(data, "channel", ("dm", "public"))
    key = _opt_str(data, "idempotency_key") or request.headers.get("Idempotency-Key") or None
    if key is not None and not re.fullmatch(r"[A-Za-z0-9._:-]{1,64}", key):
        raise ApiError(
            422, "invalid", "idempotency_key: 1-64 of A-Z a-z 0-9 . _ : -", field="idempotency_key"
        )
    store = _store(request)
    kind = {"dm": "dm", "public": "mention"}.get(channel or "")
    settings = request.app[K.SETTINGS]

    def fits(r: OutboundReply) -> None:
        account = settings.account(r.account)
        if account is not None:
            check_length(account, r)

    out, new = await store.reply(
        request.match_info["id"], agent.name, text, key=key, channel=kind, check=fits
    )
    # The store queued it for the sender in the transaction that recorded it; a retried
    # request (same key, or without one the same text: see TicketStore.reply) gets the
    # recorded reply back and queues nothing more.
    t = await _ticket_or_404(store, request.match_info["id"])
    return web.json_response({"ticket": store.view(t), "reply_id": out.reply_id, "created": new})


@_op("note")
async def add_note(request: web.Request, agent: Agent) -> web.Response:
    data = await _body(request)
    text = _text(data, "text")
    store = _store(request)
    note = await store.add_note(request.match_info["id"], agent.name, text)
    return web.json_response({"note": note}, status=201)


@_op("assign", supervisor=True)
async def assign(request: web.Request, agent: Agent) -> web.Response:
    data = await _body(request)
    to = _text(data, "agent", max_len=64)
    if not NAME_RE.fullmatch(to):
        raise ApiError(422, "invalid", "agent: not an agent name", field="agent")
    target = await AgentStore(request.app[K.REDIS], request.app[K.KEYS]).get(to)
    if target is None or target.revoked:
        raise ApiError(422, "invalid", f"agent: no active agent {to!r}", field="agent")
    store = _store(request)
    return _ok(store, await store.assign(request.match_info["id"], to, agent.name))


@_op("priority", supervisor=True)
async def set_priority(request: web.Request, agent: Agent) -> web.Response:
    data = await _body(request)
    p = _opt_str(data, "priority", PRIORITIES)
    if p is None:
        raise ApiError(
            422, "invalid", f"priority: expected one of {', '.join(PRIORITIES)}", field="priority"
        )
    store = _store(request)
    return _ok(store, await store.set_priority(request.match_info["id"], p, agent.name))


@_op("resolve")
async def resolve(request: web.Request, agent: Agent) -> web.Response:
    await _body(request)
    store = _store(request)
    t = await store.resolve(request.match_info["id"], agent.name, supervisor=agent.is_supervisor)
    return _ok(store, t)


@_op("reopen")
async def reopen(request: web.Request, agent: Agent) -> web.Response:
    await _body(request)
    store = _store(request)
    return _ok(store, await store.reopen(request.match_info["id"], agent.name))


@_op("events")
async def events(request: web.Request, agent: Agent) -> web.StreamResponse:
    """Server-sent events from the ``events`` stream: ticket changes and SLA alerts.

    Each event: ``id`` (stream id; send it back as Last-Event-ID to resume), ``event``
    (type, e.g. ticket.claimed, sla.breach) and ``data`` (JSON). A resume from before
    the oldest event the stream still holds (it keeps the last ~10,000) starts with an
    ``events.lost`` event, without an id: what happened meanwhile must be read again."""
    redis, stream = request.app[K.REDIS], request.app[K.KEYS].events
    last = request.headers.get("Last-Event-ID") or request.query.get("since") or ""
    if last and not _valid_stream_id(last):
        raise ApiError(422, "invalid", "Last-Event-ID: expected a stream id like 1700000000000-0")
    if request.method == "HEAD":  # the headers a GET would get, and no stream to hold open
        return web.Response(headers=_SSE_HEADERS)
    lost = False
    if not last:
        newest: Any = await redis.xrevrange(stream, count=1)
        last = as_str(newest[0][0]) if newest else "0-0"
    else:
        # The id resumed from was trimmed away, and maybe events after it: Redis 6 (the
        # embedded one) cannot say which, so the client is told to read everything again.
        # (`since=0-0` asks for all the stream holds, whatever it once held.)
        oldest: Any = await redis.xrange(stream, count=1)
        lost = bool(oldest) and (0, 0) < parse_stream_id(last) < parse_stream_id(oldest[0][0])
    resp = web.StreamResponse(headers=_SSE_HEADERS)
    await resp.prepare(request)

    async def still_signed_in() -> bool:
        return await authenticate(request) is not None

    # Once the 200 is sent no error response can follow: a failure ends the stream (the
    # browser's EventSource reconnects with Last-Event-ID).
    try:
        with contextlib.suppress(ConnectionError):  # the agent closed the page
            await _pump(resp, redis, stream, last, still_signed_in, lost=lost)
    except Exception as e:
        log.warning("agent_api_events_ended", error=type(e).__name__)
    return resp


def _valid_stream_id(raw: str) -> bool:
    m = _STREAM_ID.fullmatch(raw)
    return m is not None and all(int(part) < 2**64 for part in m.groups())


async def _pump(
    resp: web.StreamResponse,
    redis: Any,
    stream: str,
    last: str,
    still_signed_in: Callable[[], Awaitable[bool]],
    *,
    lost: bool = False,
) -> None:
    await resp.write(b": connected\n\n")
    if lost:
        await resp.write(f"event: events.lost\ndata: {json.dumps({'since': last})}\n\n".encode())
    checked = time.monotonic()
    while True:
        res: Any = await redis.xread({stream: last}, count=100, block=SSE_BLOCK_MS)
        if time.monotonic() - checked >= SSE_REAUTH_S:
            if not await still_signed_in():
                return  # the browser reconnects, gets 401 and goes to the sign-in page
            checked = time.monotonic()
        if not res:
            await resp.write(b": keep-alive\n\n")
            continue
        for _stream, entries in res:
            for sid, fields in entries:
                last = as_str(sid)
                f = {as_str(k): as_str(v) for k, v in fields.items()}
                chunk = f"id: {last}\nevent: {f.get('type', 'message')}\ndata: {f.get('data', '{}')}\n\n"
                await resp.write(chunk.encode())


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(OPENAPI)


async def _no_route(request: web.Request) -> web.Response:
    """The /api/v1 catch-all: 405 when another route has this path (the catch-all takes
    every method, so it shadows aiohttp's own 405), else 404. Asks the router, so every
    route under /api/v1 counts, whoever added it."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is request.match_info.route.resource:
            continue
        if resource.canonical.startswith(f"{PREFIX}/"):
            _match, methods = await resource.resolve(request)  # methods: empty if no match
            allowed |= methods
    if not allowed:
        return error_response(404, "not_found", "no such API route")
    allow = ", ".join(sorted(allowed))
    resp = error_response(405, "method_not_allowed", f"{request.method} not allowed; use {allow}")
    resp.headers["Allow"] = allow
    return resp


def register_api(app: web.Application, *, clock: Callable[[], float] = time.time) -> None:
    """Add the /api/v1 routes; the ticket store is built once Redis is open."""
    app[CLOCK] = clock
    app.cleanup_ctx.append(_tickets_ctx)
    r = app.router
    r.add_get(f"{PREFIX}/openapi.json", openapi)
    r.add_get(f"{PREFIX}/me", me)
    r.add_get(f"{PREFIX}/tickets", list_tickets)
    r.add_get(f"{PREFIX}/tickets/{{id}}", get_ticket)
    for action, fn in (
        ("claim", claim),
        ("release", release),
        ("reply", reply),
        ("notes", add_note),
        ("assign", assign),
        ("priority", set_priority),
        ("resolve", resolve),
        ("reopen", reopen),
    ):
        r.add_post(f"{PREFIX}/tickets/{{id}}/{action}", fn)
    r.add_get(f"{PREFIX}/events", events)
    r.add_route("*", f"{PREFIX}/{{tail:.*}}", _no_route)


async def _tickets_ctx(app: web.Application) -> AsyncIterator[None]:
    if TICKETS not in app:
        app[TICKETS] = TicketStore(
            app[K.REDIS], app[K.KEYS], app[K.SETTINGS].escalation, clock=app[CLOCK]
        )
    app[K.SERVICES]["tickets"] = app[TICKETS]
    yield
