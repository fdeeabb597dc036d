"""The agent console (``/console``): server-rendered pages over the agent API.

Signing in exchanges an agent token for a session (``escalation.auth``): the session id
goes into an HttpOnly, Secure, SameSite=Strict cookie, never into the page or local
storage. Pages carry only the session's CSRF token (a meta tag), which the scripts send
as ``X-CSRF-Token`` on every state-changing ``/api/v1`` call; the API refuses a cookie
without it. The page scripts read ``/api/v1`` for tickets and its server-sent event
stream for live changes; customer text is put in the DOM as text only.

Routes: ``GET/POST /console/login``, ``POST /console/logout``, ``GET /console`` (queue),
``GET /console/tickets/{id}``, ``GET /console/supervisor``, and two small JSON helpers
for the scripts: ``/console/rules.json`` (length rules per account, for the counter,
from ``escalation.lengths``)
and ``/console/api/agents`` (agents and their roles, for supervisors).
"""

from __future__ import annotations

import re
from typing import Any

import structlog
from aiohttp import web

from bot import keys as K
from bot.config import AccountConfig, Settings
from bot.platforms.signing import same
from escalation.agents import Agent, AgentStore
from escalation.auth import (
    SESSION_COOKIE,
    Session,
    create_session,
    delete_session,
    session_agent,
)
from escalation.lengths import account_rules, rules_platform
from escalation.pages import render, same_origin, setup_pages

log = structlog.get_logger(__name__)

LOGIN_PATH = "/console/login"
# ASCII digits and fullmatch: ``\d`` takes any script's digits, ``$`` a trailing newline.
_TICKET_ID = re.compile(r"T[0-9]{1,22}")
# Used with fullmatch: ``$`` in re.match also accepts a trailing newline.
_NEXT = re.compile(r"/console(?:/[A-Za-z0-9/_-]*)?")


# -- sessions -------------------------------------------------------------------
async def _current(request: web.Request) -> tuple[Session, Agent] | None:
    sid = request.cookies.get(SESSION_COOKIE, "")
    if not sid:
        return None
    return await session_agent(request.app[K.REDIS], request.app[K.KEYS], sid)


def _set_session_cookie(response: web.StreamResponse, session_id: str, ttl_s: int) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=ttl_s,
        path="/",  # the API under /api/v1 reads it too
        httponly=True,
        secure=True,  # browsers accept Secure cookies on http://localhost and 127.0.0.1
        samesite="Strict",
    )


def _to_login(request: web.Request) -> web.HTTPSeeOther:
    nxt = request.path if _NEXT.fullmatch(request.path) and request.path != LOGIN_PATH else ""
    return web.HTTPSeeOther(f"{LOGIN_PATH}?next={nxt}" if nxt and nxt != "/console" else LOGIN_PATH)


async def _page(
    request: web.Request, template: str, status: int = 200, **context: Any
) -> web.Response:
    current = await _current(request)
    if current is None:
        raise _to_login(request)
    session, agent = current
    return render(
        request,
        template,
        status=status,
        csrf_token=session.csrf_token,
        agent_name=agent.name,
        agent_role=agent.role,
        is_supervisor=agent.is_supervisor,
        accounts=[_account_view(a) for a in request.app[K.SETTINGS].accounts],
        **context,
    )


# -- pages ----------------------------------------------------------------------
async def login_form(request: web.Request) -> web.Response:
    if await _current(request) is not None:
        raise web.HTTPSeeOther("/console")
    return render(
        request,
        "login.html",
        error="",
        next=_safe_next(request.query.get("next", "")),
        insecure=_insecure_origin(request),
    )


def _insecure_origin(request: web.Request) -> bool:
    """Plain http on a non-local host: the browser will refuse the Secure session cookie."""
    if request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https":
        return False
    host = (request.host or "").rsplit(":", 1)[0].strip("[]")
    return host not in ("localhost", "127.0.0.1", "::1") and not host.endswith(".localhost")


def _safe_next(nxt: str) -> str:
    return nxt if _NEXT.fullmatch(nxt) else "/console"


async def login(request: web.Request) -> web.Response:
    if not same_origin(request):
        return render(
            request,
            "login.html",
            status=403,
            error="Sign in from this site's own page.",
            next="/console",
        )
    form = await request.post()
    token = str(form.get("token", "")).strip()
    nxt = _safe_next(str(form.get("next", "")))
    redis, keys = request.app[K.REDIS], request.app[K.KEYS]
    agent = await AgentStore(redis, keys).by_token(token) if token else None
    if agent is None:
        # Where from, to spot someone trying tokens (never the token itself).
        log.warning("console_login_refused", remote=request.remote)
        return render(request, "login.html", status=401, error="That token is not valid.", next=nxt)
    old = request.cookies.get(SESSION_COOKIE)
    if old:  # never reuse a session id from before sign-in
        await delete_session(redis, keys, old)
    ttl = request.app[K.SETTINGS].escalation.session_ttl_s
    session = await create_session(redis, keys, agent, token, ttl_s=ttl)
    log.info("console_login", agent=agent.name)
    resp = web.HTTPSeeOther(nxt)
    _set_session_cookie(resp, session.session_id, ttl)
    raise resp


async def logout(request: web.Request) -> web.Response:
    current = await _current(request)
    if current is not None:
        session, agent = current
        form = await request.post()
        given = str(form.get("csrf_token", ""))
        if not given or not same(given, session.csrf_token):
            raise web.HTTPForbidden(text="missing or wrong CSRF token")
        await delete_session(request.app[K.REDIS], request.app[K.KEYS], session.session_id)
        log.info("console_logout", agent=agent.name)
    resp = web.HTTPSeeOther(LOGIN_PATH)
    resp.del_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
    raise resp


async def queue_page(request: web.Request) -> web.Response:
    return await _page(request, "queue.html", page="queue")


async def ticket_page(request: web.Request) -> web.Response:
    tid = request.match_info["id"]
    if not _TICKET_ID.fullmatch(tid):
        raise web.HTTPNotFound(text="no such ticket")
    return await _page(request, "ticket.html", page="ticket", ticket_id=tid)


async def supervisor_page(request: web.Request) -> web.Response:
    current = await _current(request)
    if current is not None and not current[1].is_supervisor:
        # The console's own page (top bar, way back), still a 403.
        return await _page(
            request,
            "forbidden.html",
            status=403,
            page="forbidden",
            title="Supervisors only",
            reason="The supervisor view needs the supervisor role. Ask a supervisor if you "
            "need a ticket reassigned or its priority changed.",
        )
    return await _page(request, "supervisor.html", page="supervisor")


# -- JSON helpers for the scripts -----------------------------------------------
def _account_view(a: AccountConfig) -> dict[str, str]:
    return {
        "id": a.id,
        "platform": a.platform,
        "handle": a.handle or a.id,
        "like": rules_platform(a),
    }


async def rules_json(request: web.Request) -> web.Response:
    if await _current(request) is None:
        return web.json_response({"error": "sign in first"}, status=401)
    settings: Settings = request.app[K.SETTINGS]
    return web.json_response({"accounts": {a.id: account_rules(a) for a in settings.accounts}})


async def agents_json(request: web.Request) -> web.Response:
    current = await _current(request)
    if current is None:
        return web.json_response({"error": "sign in first"}, status=401)
    if not current[1].is_supervisor:
        return web.json_response({"error": "supervisors only"}, status=403)
    agents = await AgentStore(request.app[K.REDIS], request.app[K.KEYS]).all()
    return web.json_response(
        {"agents": [{"name": a.name, "role": a.role} for a in agents if not a.revoked]}
    )


async def console_root_slash(request: web.Request) -> web.Response:
    raise web.HTTPPermanentRedirect("/console")


def setup_console(app: web.Application) -> None:
    """Register the console pages (the agent API itself is ``escalation.api``)."""
    setup_pages(app)
    r = app.router
    r.add_get("/console", queue_page)
    r.add_get("/console/", console_root_slash)
    r.add_get(LOGIN_PATH, login_form)
    r.add_post(LOGIN_PATH, login)
    r.add_post("/console/logout", logout)
    r.add_get("/console/tickets/{id}", ticket_page)
    r.add_get("/console/supervisor", supervisor_page)
    r.add_get("/console/rules.json", rules_json)
    r.add_get("/console/api/agents", agents_json)
