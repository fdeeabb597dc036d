"""The customer sandbox (``/sandbox``): a page that plays the customer.

The page posts what the visitor types to ``POST /sandbox/api/messages``; the server
signs it with the account's signing secret and posts it to our own
``/webhooks/sandbox/{account}``, so it takes the real path (ingest → inbound stream →
worker → outbox → :class:`bot.platforms.sandbox.SandboxAdapter`). The page polls
``GET /sandbox/api/messages`` for the conversation and for what the bot decided about
each message (answered, escalated with a ticket, ignored).

The visitor is a pretend customer identified by a random id in a cookie; a second
cookie carries a CSRF token that state-changing requests repeat in ``X-CSRF-Token``
(the page gets it from a meta tag, so both cookies stay HttpOnly).
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

import structlog
from aiohttp import web

from bot import keys as K
from bot.config import AccountConfig, Settings
from bot.pipeline import Outcome
from bot.platforms.generic import SIGNATURE_HEADER, sign
from bot.platforms.sandbox import LIKES, SandboxAdapter, SandboxInbox, event_body
from bot.platforms.signing import same
from escalation.pages import render, setup_pages

log = structlog.get_logger(__name__)

CUSTOMER_COOKIE = "replydesk_sandbox"
CSRF_COOKIE = "replydesk_sandbox_csrf"
CSRF_HEADER = "X-CSRF-Token"
COOKIE_MAX_AGE = 7 * 24 * 3600
MAX_TEXT = 2000
MAX_PENDING = 50
# Used with fullmatch: ``$`` in re.match also accepts a trailing newline.
HANDLE_RE = re.compile(r"[A-Za-z0-9_\u4e00-\u9fff]{1,30}")
ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
CURSOR_RE = re.compile(r"(\d{1,20})-(\d{1,20})")
MAX_STREAM_PART = 2**64 - 1  # a stream id is two 64-bit numbers


def sandbox_accounts(settings: Settings) -> list[AccountConfig]:
    return [a for a in settings.accounts if a.platform == SandboxAdapter.name]


def _customer(request: web.Request) -> str | None:
    cid = request.cookies.get(CUSTOMER_COOKIE, "")
    return cid if ID_RE.fullmatch(cid) else None


def _set_cookie(response: web.StreamResponse, request: web.Request, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        max_age=COOKIE_MAX_AGE,
        path="/sandbox",
        httponly=True,
        secure=True,  # browsers accept Secure cookies on http://localhost too
        samesite="Strict",
    )


def _account(request: web.Request, account_id: str) -> AccountConfig | None:
    account = request.app[K.SETTINGS].account(account_id)
    if account is None or account.platform != SandboxAdapter.name:
        return None
    return account


def _inbox(request: web.Request) -> SandboxInbox:
    return SandboxInbox(request.app[K.REDIS], request.app[K.KEYS])


# How the account menu names a language and the platform imitated; the first name of a
# language is the one it adds, any of them in the label means the label already says it.
LANGUAGE_NAMES = {"en": ("English",), "zh": ("Chinese", "中文")}
LIKE_NAMES = {"x": "X", "weibo": "Weibo", "mastodon": "Mastodon"}


def menu_text(label: str, language: str, like: str) -> str:
    """The account menu's text: the label, with the language and the platform it imitates
    said once, in one parenthesis ("@acme (English)" → "@acme (English, X-like)")."""
    names = LANGUAGE_NAMES.get(language, (language,))
    said = label.casefold()
    extra = [] if any(n.casefold() in said for n in names) else [names[0]]
    extra.append(f"{LIKE_NAMES.get(like, like)}-like")
    if label.endswith(")") and "(" in label:  # the label's own parenthesis takes them
        return f"{label[:-1]}, {', '.join(extra)})"
    return f"{label} ({', '.join(extra)})"


def _account_view(a: AccountConfig) -> dict[str, str]:
    like = str(a.options.get("like", "x"))
    like = like if like in LIKES else "x"  # as the adapter reads it
    label = str(a.options.get("label", "")) or f"@{a.handle or a.id}"
    return {
        "id": a.id,
        "handle": a.handle or a.id,
        "like": like,
        "language": a.language,
        "label": label,
        "menu": menu_text(label, a.language, like),
    }


def _cookies_dropped(request: web.Request) -> bool:
    """Plain http on a non-local host: the browser drops the Secure cookies, and every post
    would fail its CSRF check however often the visitor reloads."""
    if request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https":
        return False
    host = (request.host or "").rsplit(":", 1)[0].strip("[]")
    return host not in ("localhost", "127.0.0.1", "::1") and not host.endswith(".localhost")


def guest_handle(customer: str) -> str:
    """The handle a pretend customer starts with, from its id (the page can change it)."""
    return "guest" + customer[-4:]


async def page(request: web.Request) -> web.Response:
    settings = request.app[K.SETTINGS]
    customer = _customer(request)
    csrf = request.cookies.get(CSRF_COOKIE, "")
    new_customer = customer is None
    if customer is None:
        customer = "sb" + secrets.token_hex(8)
    if not ID_RE.fullmatch(csrf):
        csrf = secrets.token_urlsafe(24)
    accounts = [_account_view(a) for a in sandbox_accounts(settings)]
    resp = render(
        request,
        "sandbox.html",
        accounts=accounts,
        csrf_token=csrf,
        handle=guest_handle(customer),
        new_customer=new_customer,
        cookies_dropped=_cookies_dropped(request),
    )
    _set_cookie(resp, request, CUSTOMER_COOKIE, customer)
    _set_cookie(resp, request, CSRF_COOKIE, csrf)
    return resp


def _csrf_ok(request: web.Request) -> bool:
    expected = request.cookies.get(CSRF_COOKIE, "")
    given = request.headers.get(CSRF_HEADER, "")
    return bool(expected) and bool(given) and same(given, expected)


def _bad(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _webhook_base(request: web.Request) -> str:
    """Where our own ingest listens: configured, or the socket this request came in on."""
    configured = request.app[K.SETTINGS].sandbox.webhook_base
    if configured:
        return configured.rstrip("/")
    sock = request.transport.get_extra_info("sockname") if request.transport else None
    if isinstance(sock, tuple) and len(sock) >= 2:
        host = str(sock[0])
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"http://[{host}]:{sock[1]}" if ":" in host else f"http://{host}:{sock[1]}"
    s = request.app[K.SETTINGS].server
    return f"http://{s.host}:{s.port}"


async def _over_limit(request: web.Request) -> bool:
    """Whether this client address has posted its ``sandbox.max_messages_per_minute``
    this minute (counted per clock minute in Redis, so every web process shares it)."""
    cap = request.app[K.SETTINGS].sandbox.max_messages_per_minute
    if cap <= 0:
        return False
    minute = int(time.time() // 60)
    key = request.app[K.KEYS].ns("sandbox_rate", request.remote or "-", str(minute))
    tx = request.app[K.REDIS].pipeline(transaction=True)
    tx.incr(key)
    tx.expire(key, 120)
    count, _ = await tx.execute()
    return int(count) > cap


async def post_message(request: web.Request) -> web.Response:
    if not _csrf_ok(request):
        return _bad(403, "missing or wrong CSRF token; reload the page")
    customer = _customer(request)
    if customer is None:
        return _bad(403, "no sandbox session; reload the page")
    try:
        data = await request.json()
    except (ValueError, RecursionError):  # RecursionError: nested too deep to parse
        return _bad(400, "expected a JSON body")
    if not isinstance(data, dict):
        return _bad(400, "expected a JSON object")
    account = _account(request, str(data.get("account", "")))
    if account is None:
        return _bad(404, "unknown sandbox account")
    kind = data.get("kind")
    if kind not in ("mention", "dm"):
        return _bad(400, "kind must be mention or dm")
    text = data.get("text")
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
        return _bad(400, f"text must be 1 to {MAX_TEXT} characters")
    if not _utf8(text):
        return _bad(400, "text is not valid Unicode")
    handle = str(data.get("handle") or "")
    if not HANDLE_RE.fullmatch(handle):
        return _bad(400, "handle: 1 to 30 letters, digits or _")
    if await _over_limit(request):
        limited = _bad(429, "too many messages; wait a minute")
        limited.headers["Retry-After"] = "60"
        return limited

    event_id = "sb-" + secrets.token_hex(8)
    inbox = _inbox(request)
    # Shown to the customer at once; the bot's answer follows through the pipeline.
    entry_id = await inbox.append(
        account.id, customer, who="customer", kind=kind, text=text, ref=event_id, handle=handle
    )
    body = event_body(
        event_id=event_id,
        kind=kind,
        customer_id=customer,
        handle=handle,
        text=text,
        thread_id=f"{customer}-{kind}",
    )
    url = f"{_webhook_base(request)}/webhooks/{SandboxAdapter.name}/{account.id}"
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(account.secret("signing_secret"), body),
    }
    try:
        async with request.app[K.HTTP].post(url, data=body, headers=headers) as resp:
            status = resp.status
    except Exception as e:
        log.warning("sandbox_webhook_failed", account=account.id, error=type(e).__name__)
        status = 0
    if status != 200:
        log.warning("sandbox_webhook_refused", account=account.id, status=status)
        # The page says "not sent" and keeps the text for another try: the turn must
        # not stay in the conversation, waiting for a bot that never heard of it.
        await inbox.remove(account.id, customer, entry_id)
        return _bad(502, f"the webhook answered {status or 'nothing'}")
    log.info("sandbox_message_posted", account=account.id, event_id=event_id, kind=kind)
    return web.json_response({"id": entry_id, "ref": event_id})


def _utf8(text: str) -> bool:
    """False for text JSON can carry but UTF-8 cannot (lone surrogates, "\\ud800")."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _cursor_ok(cursor: str) -> bool:
    """A stream id Redis accepts as an exclusive start (the largest one has no successor)."""
    m = CURSOR_RE.fullmatch(cursor)
    if m is None:
        return False
    parts = (int(m[1]), int(m[2]))
    return max(parts) <= MAX_STREAM_PART and parts != (MAX_STREAM_PART, MAX_STREAM_PART)


def _outcome_view(raw: bytes | str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        o = Outcome.from_json(raw)
    except (ValueError, TypeError):
        return None
    return {"decision": o.decision, "ticket_id": o.ticket_id or ""}


async def get_messages(request: web.Request) -> web.Response:
    customer = _customer(request)
    if customer is None:
        return _bad(403, "no sandbox session; reload the page")
    account = _account(request, request.query.get("account", ""))
    if account is None:
        return _bad(404, "unknown sandbox account")
    after = request.query.get("after", "")
    if after and not _cursor_ok(after):
        return _bad(400, "bad cursor")
    pending = [p for p in request.query.get("pending", "").split(",") if ID_RE.fullmatch(p)]
    entries = await _inbox(request).read(account.id, customer, after=after or "-")
    refs = list(
        dict.fromkeys([*pending[:MAX_PENDING], *(e.ref for e in entries if e.who == "customer")])
    )
    outcomes: dict[str, Any] = {}
    if refs:
        keys = request.app[K.KEYS]
        raws = await request.app[K.REDIS].mget(
            [keys.outcome(f"{SandboxAdapter.name}:{account.id}:{r}") for r in refs]
        )
        for ref, raw in zip(refs, raws, strict=True):
            view = _outcome_view(raw)
            if view is not None:
                outcomes[ref] = view
    return web.json_response({"entries": [e.to_dict() for e in entries], "outcomes": outcomes})


async def new_conversation(request: web.Request) -> web.Response:
    """Forget the pretend customer and start a new one at once.

    Answers the new customer's handle, which the page puts in its handle field: the
    previous customer's handle must not go out under the new id.
    """
    if not _csrf_ok(request):
        return _bad(403, "missing or wrong CSRF token; reload the page")
    customer = "sb" + secrets.token_hex(8)
    resp = web.json_response({"ok": True, "handle": guest_handle(customer)})
    _set_cookie(resp, request, CUSTOMER_COOKIE, customer)
    return resp


def setup_sandbox(app: web.Application) -> None:
    """Register ``/sandbox`` and its JSON endpoints (only when ``sandbox.enabled``)."""
    setup_pages(app)
    app.router.add_get("/sandbox", page)
    app.router.add_get("/sandbox/api/messages", get_messages)
    app.router.add_post("/sandbox/api/messages", post_message)
    app.router.add_post("/sandbox/api/new", new_conversation)
