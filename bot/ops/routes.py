"""Ops routes (``/api/v1/alerts``, ``/api/v1/insights``) and the alert monitor task.

Both routes need an agent (escalation.auth's ``authenticate``, imported when a request
comes so ``bot`` does not import ``escalation`` at import time). In worker roles a background task re-evaluates every account each
``ops.tick_s`` (alerts clear when traffic stops, not only on the next message) and
delivers queued notifications.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog
from aiohttp import web

from bot import keys as K
from bot.ops import notify
from bot.ops.insights import account_insights
from bot.ops.recorder import configure
from bot.ops.spikes import SpikeDetector, get_alert, list_alerts
from bot.storage_down import OutageLog, round_failed

log = structlog.get_logger(__name__)

Clock = Callable[[], float]
CLOCK: web.AppKey[Clock] = web.AppKey("ops_clock")


def register_ops_routes(app: web.Application, *, clock: Clock = time.time) -> None:
    """Add the ops routes (``all``/``web`` roles) and the alert monitor task (``all``/
    ``worker``). Call it before the agent API registers its ``/api/v1`` catch-all."""
    configure(app[K.SETTINGS].ops)
    app[CLOCK] = clock
    if app[K.ROLE] in ("all", "web"):
        app.router.add_get("/api/v1/alerts", alerts_view)
        app.router.add_get("/api/v1/alerts/{alert_id}", alert_view)
        app.router.add_get("/api/v1/insights", insights_view)
    if app[K.ROLE] in ("all", "worker"):
        app.cleanup_ctx.append(_monitor_ctx)


def _error(status: int, code: str, message: str) -> web.HTTPException:
    """The agent API's error shape: ``{"error": {"code", "message"}}``."""
    cls = {400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 404: web.HTTPNotFound}[status]
    body = json.dumps({"error": {"code": code, "message": message}})
    return cls(text=body, content_type="application/json")


async def _require_agent(request: web.Request) -> Any:
    from escalation.auth import authenticate

    agent = await authenticate(request)
    if not agent:
        raise _error(401, "unauthorized", "a valid bearer token or session is required")
    return agent


def _int(request: web.Request, name: str, default: int, hi: int, *, lo: int = 0) -> int:
    """A query integer, at least ``lo`` (else 400), at most ``hi`` (larger is capped)."""
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < lo:
        raise _error(400, "invalid", f"{name}: expected an integer of at least {lo}")
    return min(int(raw), hi)


async def alerts_view(request: web.Request) -> web.Response:
    """Crisis alerts, newest first; ``?status=active|cleared&account=&limit=``."""
    await _require_agent(request)
    status = request.query.get("status") or None
    if status not in (None, "active", "cleared"):
        raise _error(400, "invalid", "status: expected active or cleared")
    alerts = await list_alerts(
        request.app[K.REDIS],
        request.app[K.KEYS],
        status=status,
        account=request.query.get("account") or None,
        limit=_int(request, "limit", 50, 500, lo=1),
    )
    return web.json_response({"alerts": alerts})


async def alert_view(request: web.Request) -> web.Response:
    """One alert with the spike's messages grouped (``?messages=`` newest N, default 200)."""
    await _require_agent(request)
    alert = await get_alert(
        request.app[K.REDIS],
        request.app[K.KEYS],
        request.match_info["alert_id"],
        events=_int(request, "messages", 200, 1000),
    )
    if alert is None:
        raise _error(404, "not_found", "no such alert")
    return web.json_response(alert)


async def insights_view(request: web.Request) -> web.Response:
    """The account's hot words, top intents, auto-answer rate and first responses."""
    await _require_agent(request)
    settings = request.app[K.SETTINGS]
    account = request.query.get("account", "")
    if not account:
        raise _error(400, "invalid", "account: required")
    if settings.account(account) is None:
        raise _error(404, "not_found", f"no account {account!r}")
    body = await account_insights(
        request.app[K.REDIS],
        request.app[K.KEYS],
        settings.ops,
        account,
        now=request.app[CLOCK](),
        limit=_int(request, "limit", 15, 100, lo=1),
    )
    return web.json_response(body)


async def tick(app: web.Application) -> None:
    """Re-evaluate every account's spike state (clears alerts once traffic has stopped)."""
    detector = SpikeDetector(app[K.REDIS], app[K.KEYS], app[K.SETTINGS].ops)
    now = app[CLOCK]()
    for account in app[K.SETTINGS].accounts:
        await detector.observe(account.id, now=now)


async def _tick_loop(app: web.Application, stop: asyncio.Event) -> None:
    interval = app[K.SETTINGS].ops.tick_s
    outage = OutageLog("crisis_monitor")  # one line per Redis outage, not one a tick
    while not stop.is_set():
        try:
            await tick(app)
            outage.ok()
        except Exception as e:  # Redis hiccup: try again next tick
            round_failed(outage, "ops_tick_failed", e)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)


async def _monitor_ctx(app: web.Application) -> AsyncIterator[None]:
    s = app[K.SETTINGS]
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(_tick_loop(app, stop), name="ops-tick"),
        asyncio.create_task(
            notify.run(
                app[K.REDIS],
                app[K.KEYS],
                app[K.HTTP],
                s.secrets.get("notify_webhook_url"),
                stop,
                timeout_s=s.ops.notify_timeout_s,
            ),
            name="ops-notify",
        ),
    ]
    try:
        yield
    finally:
        stop.set()
        for t in tasks:
            with contextlib.suppress(Exception):
                await t
