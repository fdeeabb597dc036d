"""Browser-test support: the real service on a loopback port, and headless chromium.

The service runs ``build_app(role="all")`` in a background thread with its own event
loop (so Playwright's sync API can drive the browser from the test's thread without
meeting pytest's loop). :class:`RulePipeline` is a small, deterministic stand-in for the
NLU brain, used where a test is about the pages rather than about language
understanding: it escalates complaints into real tickets, answers one FAQ, and appends
to an open ticket like the real policy does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from aiohttp import web

from bot import keys as K
from bot.app import build_app
from bot.config import Settings
from bot.models import InboundEvent, OutboundReply
from bot.outbox import enqueue_reply
from bot.pipeline import Outcome
from escalation.agents import AgentStore
from escalation.api import TICKETS
from tests.support.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
AXE_JS = ROOT / "tests" / "vendor" / "axe-core" / "axe.min.js"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]

FAQ_ANSWER = "We are open 9:00-18:00, Monday to Friday."
COMPLAINT_WORDS = ("broken", "terrible", "refund", "angry", "worst", "human", "坏", "差", "退款")


class RulePipeline:
    """Keyword rules over the real ticket store and outbox (see the module docstring)."""

    ready = True

    def __init__(self, app: web.Application) -> None:
        self.app = app

    async def handle(self, event: InboundEvent) -> Outcome:
        app = self.app
        store = app[TICKETS]
        redis, keys = app[K.REDIS], app[K.KEYS]
        conv = store.conv_of(event.platform, event.account, event.author.id)
        open_tid = await store.open_ticket_for(conv)
        if open_tid is not None:
            await store.append_customer_message(open_tid, event, conv=conv)
            return Outcome("append", {"rule": "human_owns_conversation"}, ticket_id=open_tid)
        low = event.text.lower()
        if any(w in low for w in COMPLAINT_WORDS):
            reasons = {
                "rule": "complaint",
                "intent": "complaint",
                "confidence": 0.93,
                "negativity": 0.88,
            }
            tid, _ = await store.open_or_append(
                event, reason="complaint", priority="high", reasons=reasons
            )
            ack = OutboundReply.answering(
                event, "Sorry about this. A person from our team will get back to you."
            )
            ack.ticket_id = tid
            await enqueue_reply(redis, keys, ack)
            await store.add_bot_message(tid, ack)
            return Outcome("escalate", reasons, [ack.reply_id], ticket_id=tid)
        if "opening hours" in low or "营业时间" in low:
            reply = OutboundReply.answering(event, FAQ_ANSWER)
            await enqueue_reply(redis, keys, reply)
            return Outcome("answer", {"rule": "faq", "faq": "opening_hours"}, [reply.reply_id])
        return Outcome("ignore", {"rule": "no_match"})


class LiveServer:
    """``build_app`` on 127.0.0.1:<free port>, served from a thread with its own loop."""

    def __init__(
        self,
        settings: Settings,
        *,
        pipeline_factory: Callable[[web.Application], Any] | None = None,
        prepare: Callable[[web.Application], None] | None = None,
    ) -> None:
        self.settings = settings
        self.port = free_port()
        settings.server.host, settings.server.port = "127.0.0.1", self.port
        self.app = build_app(settings, role="all", pipeline_factory=pipeline_factory)
        if prepare is not None:
            prepare(self.app)
        self.loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="live-server", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(self, fn: Callable[[web.Application], Awaitable[Any]], timeout: float = 30) -> Any:
        """Run ``fn(app)`` on the server's loop (Redis clients belong to that loop)."""
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(_as_coro(fn(self.app)), self.loop)
        return fut.result(timeout)

    def start(self) -> LiveServer:
        self._thread.start()

        async def up() -> None:
            self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2.0)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

        # Long enough for a first NLU training when the brain pipeline is used.
        asyncio.run_coroutine_threadsafe(up(), self.loop).result(300)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(30)
        # Handlers still streaming (server-sent events) end here, not with the loop.
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(_cancel_rest(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def add_agent(self, name: str, role: str = "agent") -> str:
        return str(self.call(lambda app: AgentStore(app[K.REDIS], app[K.KEYS]).add(name, role)))

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _cancel_rest() -> None:
    me = asyncio.current_task()
    rest = [t for t in asyncio.all_tasks() if t is not me]
    for t in rest:
        t.cancel()
    await asyncio.gather(*rest, return_exceptions=True)


async def _as_coro(aw: Awaitable[Any]) -> Any:
    return await aw


def sandbox_accounts() -> list[dict[str, Any]]:
    from tests.conftest import GENERIC_SECRET

    return [
        {
            "id": "acme",
            "platform": "sandbox",
            "user_id": "sandbox-acme",
            "handle": "acme",
            "secrets": {"signing_secret": GENERIC_SECRET},
            "options": {"like": "x", "label": "@acme (English)"},
        },
        {
            "id": "acme-cn",
            "platform": "sandbox",
            "user_id": "sandbox-acme-cn",
            "handle": "Acme官方客服",
            "language": "zh",
            "secrets": {"signing_secret": GENERIC_SECRET},
            "options": {"like": "weibo", "label": "@Acme官方客服 (中文)"},
        },
    ]


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless Debian chromium through Playwright (never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    exe = shutil.which("chromium")
    if exe is None:
        import pytest

        pytest.skip("chromium is not installed (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def shot(page: Any, name: str, *, full_page: bool = True) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def run_axe(page: Any) -> list[dict[str, Any]]:
    """axe-core's violations on the current page (needs a context with bypass_csp)."""
    page.add_script_tag(path=str(AXE_JS))
    result = page.evaluate("async () => (await axe.run(document)).violations")
    return list(result)


def sign_in(page: Any, base_url: str, token: str) -> None:
    page.goto(f"{base_url}/console/login")
    page.get_by_label("Agent token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base_url}/console*")


def csp_violations(page: Any) -> list[str]:
    """Collects console messages about CSP refusals (call before navigating)."""
    seen: list[str] = []
    page.on(
        "console",
        lambda m: seen.append(m.text) if "Content Security Policy" in m.text else None,
    )
    return seen


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false")


def playwright_expect(timeout_ms: int = 15_000) -> Any:
    """Playwright's ``expect`` with a timeout generous enough for shared CI machines."""
    from playwright.sync_api import expect

    expect.set_options(timeout=timeout_ms)
    return expect


def flush_redis(url: str) -> None:
    """Empty the test Redis from synchronous (browser) tests."""
    import redis as sync_redis

    c = sync_redis.Redis.from_url(url)
    c.flushall()
    c.close()
