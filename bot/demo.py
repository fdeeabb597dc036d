"""The one-minute demo (``make run``, ``replydesk serve --demo``).

:func:`enable_demo` (before ``build_app``) turns the customer sandbox on and adds two
sandbox accounts when they are not configured: ``acme`` (English, X-like) and
``acme-cn`` (Chinese, Weibo-like). Their signing secret is generated once and kept in
``<redis.data_dir>/demo-secrets.json`` (mode 0600), so webhooks keep verifying across
restarts. The same file records that ``serve --demo`` runs on that data dir, so the
operator commands run beside it (``replydesk insights --account acme``, ``replydesk
config``) see the demo accounts too (:func:`demo_for_commands`); a ``serve`` without
``--demo`` on the data dir clears that (:func:`forget_demo`).

:func:`install_demo` (after ``build_app``) makes sure a ``demo-supervisor`` agent exists
once Redis is open, and prints the sandbox and console addresses with its token. The
token is kept in the same file, so a restart prints the same one; the demo is for a
laptop, not for production, which is why it is printed at all.

Without a configured ``dialog.order_lookup_url`` the demo answers order questions from a
pretend shop it serves itself (:func:`demo_shop`, the hook contract of bot/orders.py):
"Where is my order A12345?" gets a status, as it would against a real shop.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TextIO

import structlog
from aiohttp import web

from bot import keys as K
from bot.config import AccountConfig, Secret, Settings
from bot.runner import STARTING

log = structlog.get_logger(__name__)

DEMO_AGENT = "demo-supervisor"
SECRETS_FILE = "demo-secrets.json"
# The state file's key saying the last `serve` on this data dir ran with --demo.
SERVED = "served_with_demo"
# The pretend shop's orders: status and days to delivery (None: delivered).
DEMO_SHOP_PATH = "/sandbox/demo-shop/orders"
DEMO_ORDERS: dict[str, tuple[str, int | None]] = {
    "A12345": ("shipped", 2),
    "A23456": ("processing", 5),
    "A34567": ("delivered", None),
}

DEMO_ACCOUNTS: tuple[dict[str, Any], ...] = (
    {
        "id": "acme",
        "handle": "acme",
        "user_id": "sandbox-acme",
        "language": "en",
        "persona": "Acme support",
        "options": {"like": "x", "label": "@acme (English)"},
    },
    {
        "id": "acme-cn",
        "handle": "Acme官方客服",
        "user_id": "sandbox-acme-cn",
        "language": "zh",
        "persona": "Acme 客服",
        "options": {"like": "weibo", "label": "@Acme官方客服 (中文)"},
    },
)


def state_path(settings: Settings) -> Path:
    return Path(settings.redis.data_dir) / SECRETS_FILE


def _load_state(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _save_state(path: Path, state: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(state, f)
    tmp.replace(path)


def enable_demo(settings: Settings) -> list[str]:
    """Sandbox on, demo sandbox accounts added (unless accounts with those ids exist), the
    pretend shop as the order lookup (unless one is configured), and the data dir marked
    as a demo's for the commands run beside it. Returns the ids added."""
    settings.sandbox.enabled = True
    if not settings.dialog.order_lookup_url:
        settings.dialog.order_lookup_url = base_url(settings) + DEMO_SHOP_PATH
    path = state_path(settings)
    state = _load_state(path)
    before = dict(state)
    if not state.get("signing_secret"):
        state["signing_secret"] = secrets.token_urlsafe(32)
    state[SERVED] = "yes"
    if state != before:
        _save_state(path, state)
    return _add_accounts(settings, state)


def _add_accounts(settings: Settings, state: dict[str, str]) -> list[str]:
    added = []
    for spec in DEMO_ACCOUNTS:
        if settings.account(spec["id"]) is not None:
            continue
        settings.accounts.append(
            AccountConfig(
                platform="sandbox",
                secrets={"signing_secret": Secret(state["signing_secret"])},
                **spec,
            )
        )
        added.append(spec["id"])
    settings.demo_accounts.extend(added)
    settings.validate()
    return added


def forget_demo(settings: Settings) -> None:
    """``serve`` without ``--demo``: the commands beside it stop seeing the demo accounts
    (the secret and the agent token stay, for the next ``serve --demo``)."""
    path = state_path(settings)
    state = _load_state(path)
    if state.pop(SERVED, None) is not None:
        _save_state(path, state)


def demo_for_commands(settings: Settings) -> list[str]:
    """Every command but ``serve``: when the last ``serve`` on this data dir ran with
    ``--demo``, the same demo accounts (and sandbox) as it has. Writes nothing. Returns the
    ids added."""
    state = _load_state(state_path(settings))
    if state.get(SERVED) != "yes" or not state.get("signing_secret"):
        return []
    settings.sandbox.enabled = True
    return _add_accounts(settings, state)


def base_url(settings: Settings) -> str:
    if settings.server.public_url:
        return settings.server.public_url.rstrip("/")
    host = settings.server.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    elif ":" in host:  # an IPv6 address goes in brackets in a URL
        host = f"[{host}]"
    return f"http://{host}:{settings.server.port}"


async def ensure_demo_agent(redis: Any, keys: Any, state_path: Path) -> str:
    """The demo supervisor's token: the saved one while it still works, else a new one."""
    from escalation.agents import AgentStore  # the human side; only the demo needs it here

    store = AgentStore(redis, keys)
    state = _load_state(state_path)
    saved = state.get("agent_token", "")
    if saved and await store.by_token(saved) is not None:
        return saved
    existing = await store.get(DEMO_AGENT)
    if existing is not None and not existing.revoked:
        await store.revoke(DEMO_AGENT)  # its token was lost with the state file
    token = await store.add(DEMO_AGENT, "supervisor")
    state["agent_token"] = token
    _save_state(state_path, state)
    return token


async def demo_shop(request: web.Request) -> web.Response:
    """The pretend shop's order lookup: a few sample orders, for sandbox customers only (a
    real account's customer is never told a made-up status); 404 for anything else, as
    the hook contract says for an unknown order or one that is not the customer's."""
    order = request.query.get("order", "").upper()
    if request.query.get("platform") != "sandbox" or order not in DEMO_ORDERS:
        return web.json_response({"error": "no such order"}, status=404)
    status, days = DEMO_ORDERS[order]
    body = {"order": order, "status": status, "tracking_url": f"https://lumo.example/track/{order}"}
    if days is not None:
        body["eta"] = (date.today() + timedelta(days=days)).isoformat()
    return web.json_response(body)


def serve_demo_shop(app: web.Application) -> None:
    """The pretend shop's route, where enable_demo made it the order lookup: on every
    role, since the lookup URL is this process's own address (a worker's too)."""
    settings = app[K.SETTINGS]
    if settings.dialog.order_lookup_url == base_url(settings) + DEMO_SHOP_PATH:
        app.router.add_get(DEMO_SHOP_PATH, demo_shop)


def retire_demo(app: web.Application) -> None:
    """``serve`` without ``--demo``: once Redis is open, revoke the demo supervisor if one
    is active. Its token was printed to a terminal, and it would otherwise keep working
    on a service that is no longer a demo (a production Redis, when ``--demo`` ran against
    it). The next ``serve --demo`` makes a new one."""

    async def retire() -> None:
        from escalation.agents import AgentStore  # the human side; only the demo needs it

        store = AgentStore(app[K.REDIS], app[K.KEYS])
        agent = await store.get(DEMO_AGENT)
        if agent is not None and not agent.revoked:
            await store.revoke(DEMO_AGENT)
            log.warning("demo_supervisor_revoked", reason="serve without --demo")

    async def retire_ctx(app: web.Application) -> AsyncIterator[None]:
        # A task the runner waits for after the listener is up (bot/runner.py), not an
        # await here: a SIGINT during startup cancels the startup, and redis-py can
        # swallow a cancellation that lands inside a command, leaving the process up.
        app[STARTING].append(asyncio.create_task(retire(), name="retire-demo"))
        yield

    app.cleanup_ctx.append(retire_ctx)


def install_demo(app: web.Application, *, out: TextIO | None = None) -> None:
    """Once Redis is open: create the demo supervisor and print the addresses and token.
    Serves the pretend shop too (:func:`serve_demo_shop`)."""
    settings = app[K.SETTINGS]
    serve_demo_shop(app)

    async def demo_ctx(app: web.Application) -> AsyncIterator[None]:
        token = await ensure_demo_agent(app[K.REDIS], app[K.KEYS], state_path(settings))
        url = base_url(settings)
        stream = out or sys.stdout
        print(
            "\n"
            "  replydesk demo is starting\n"
            f"    customer sandbox: {url}/sandbox\n"
            f"    agent console:    {url}/console\n"
            f"    agent token ({DEMO_AGENT}): {token}\n"
            "  Ask a FAQ in the sandbox, then complain; answer the ticket in the console.\n",
            file=stream,
            flush=True,
        )
        yield

    app.cleanup_ctx.append(demo_ctx)
