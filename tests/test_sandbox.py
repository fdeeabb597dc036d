"""The sandbox platform and the sandbox page's endpoints (no browser)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.app import build_app
from bot.config import AccountConfig, Secret
from bot.models import OutboundReply
from bot.pipeline import Outcome
from bot.platforms import adapter_for
from bot.platforms.base import SignatureError
from bot.platforms.generic import SIGNATURE_HEADER, sign
from bot.platforms.sandbox import SandboxAdapter, SandboxInbox, event_body
from escalation.sandbox import CSRF_COOKIE, CUSTOMER_COOKIE
from tests.conftest import GENERIC_SECRET, make_settings
from tests.support.browser import sandbox_accounts
from tests.support.redis_server import free_port


def _account(**kw: Any) -> AccountConfig:
    return AccountConfig(
        id="acme", platform="sandbox", secrets={"signing_secret": Secret(GENERIC_SECRET)}, **kw
    )


def _reply(n: int = 0, **kw: Any) -> OutboundReply:
    base: dict[str, Any] = dict(
        reply_id=f"r{n}",
        platform="sandbox",
        account="acme",
        kind="dm",
        text=f"hello {n}",
        recipient_id="c1",
    )
    base.update(kw)
    return OutboundReply(**base)


async def test_inbox_delivers_once_and_reads_after_a_cursor(redis: Any, keys: Any) -> None:
    inbox = SandboxInbox(redis, keys)
    first = await inbox.append(
        "acme", "c1", who="customer", kind="dm", text="hi", ref="sb-1", handle="al"
    )
    a = await inbox.deliver(_reply(1))
    assert await inbox.deliver(_reply(1)) == a  # a redelivered reply is not shown twice
    b = await inbox.deliver(_reply(2, source="agent", ticket_id="T1"))
    entries = await inbox.read("acme", "c1")
    assert [(e.who, e.text) for e in entries] == [
        ("customer", "hi"),
        ("bot", "hello 1"),
        ("agent", "hello 2"),
    ]
    assert entries[2].ticket_id == "T1"
    assert [e.entry_id for e in await inbox.read("acme", "c1", after=first)] == [a, b]
    assert await inbox.read("acme", "c2") == []


async def test_adapter_is_generic_inbound_and_stores_outbound(redis: Any, keys: Any) -> None:
    adapter = adapter_for(_account())
    assert isinstance(adapter, SandboxAdapter)
    body = event_body(
        event_id="sb-1", kind="mention", customer_id="c1", handle="al", text="hi", thread_id="t"
    )
    with pytest.raises(SignatureError):
        adapter.verify({SIGNATURE_HEADER: "sha256=00"}, {}, body)
    adapter.verify({SIGNATURE_HEADER: sign(GENERIC_SECRET, body)}, {}, body)
    (ev,) = adapter.parse(body)
    assert (ev.platform, ev.account, ev.kind, ev.reply_to_id) == (
        "sandbox",
        "acme",
        "mention",
        "sb-1",
    )
    with pytest.raises(Exception, match="not bound"):
        await adapter.send(None, _reply())  # type: ignore[arg-type]
    adapter.bind(redis, keys)
    result = await adapter.send(None, _reply())  # type: ignore[arg-type]
    (entry,) = await SandboxInbox(redis, keys).read("acme", "c1")
    assert entry.entry_id == result.platform_id and entry.text == "hello 0"


def test_fit_follows_the_imitated_platform() -> None:
    x_like = SandboxAdapter(_account(options={"like": "x"}))
    weibo_like = SandboxAdapter(_account(options={"like": "weibo"}, language="zh"))
    long_zh = "您好，" + "我们已经收到您的反馈。" * 40
    assert len(weibo_like.fit(long_zh, "mention")) < 300
    short = x_like.fit(long_zh, "mention")
    assert len(short) <= 140 and short.endswith("详情请私信我们")  # CJK weighs 2 on X
    assert SandboxAdapter(_account(options={"like": "nonsense"})).like == "x"


@pytest.fixture
async def client(aiohttp_client: Any, redis_server: Any, redis: Any, tmp_path: Any) -> Any:
    settings = make_settings(
        redis_server.url, tmp_path, **{"accounts": sandbox_accounts(), "sandbox.enabled": True}
    )
    return await aiohttp_client(build_app(settings, role="web"))


async def _session(client: Any) -> tuple[str, str]:
    r = await client.get("/sandbox")
    assert r.status == 200
    cookies = {c.key: c for c in r.cookies.values()}
    for name in (CUSTOMER_COOKIE, CSRF_COOKIE):
        c = cookies[name]
        assert (
            c["httponly"] and c["secure"] and c["samesite"] == "Strict" and c["path"] == "/sandbox"
        )
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert "'unsafe-inline'" not in r.headers["Content-Security-Policy"]
    html = await r.text()
    csrf = cookies[CSRF_COOKIE].value
    assert f'<meta name="csrf-token" content="{csrf}">' in html
    assert GENERIC_SECRET not in html
    return cookies[CUSTOMER_COOKIE].value, csrf


def _h(customer: str, csrf: str | None = None, token: str | None = None) -> dict[str, str]:
    """Cookies by hand: aiohttp's client jar does not send Secure cookies over http."""
    h = {"Cookie": f"{CUSTOMER_COOKIE}={customer}; {CSRF_COOKIE}={csrf or ''}"}
    if token is not None:
        h["X-CSRF-Token"] = token
    return h


async def test_post_goes_through_the_signed_webhook(client: Any, redis: Any, keys: Any) -> None:
    customer, csrf = await _session(client)
    msg = {"account": "acme-cn", "kind": "dm", "text": "你好 <b>hi</b>", "handle": "小明"}
    r = await client.post("/sandbox/api/messages", json=msg, headers=_h(customer, csrf))
    assert r.status == 403  # no CSRF header
    r = await client.post("/sandbox/api/messages", json=msg, headers=_h(customer, csrf, "wrong"))
    assert r.status == 403
    r = await client.post("/sandbox/api/messages", json=msg, headers=_h(customer, csrf, csrf))
    assert r.status == 200, await r.text()
    ref = (await r.json())["ref"]
    # The real ingest stored it: a signed webhook reached /webhooks/sandbox/acme-cn.
    ((_, fields),) = await redis.xrange(keys.inbound)
    ev = json.loads(fields[b"event"])
    assert (ev["platform"], ev["account"], ev["event_id"], ev["text"]) == (
        "sandbox",
        "acme-cn",
        ref,
        msg["text"],
    )
    assert ev["author"] == {"id": customer, "handle": "小明", "followers": 0, "verified": False}

    r = await client.get(
        "/sandbox/api/messages", params={"account": "acme-cn"}, headers=_h(customer)
    )
    data = await r.json()
    assert [(e["who"], e["text"], e["ref"]) for e in data["entries"]] == [
        ("customer", msg["text"], ref)
    ]
    assert data["outcomes"] == {}
    outcome = Outcome("escalate", {"rule": "complaint"}, ticket_id="T7")
    await redis.set(keys.outcome(f"sandbox:acme-cn:{ref}"), outcome.to_json())
    r = await client.get(
        "/sandbox/api/messages",
        params={"account": "acme-cn", "after": data["entries"][0]["id"], "pending": ref},
        headers=_h(customer),
    )
    data = await r.json()
    assert data["entries"] == [] and data["outcomes"] == {
        ref: {"decision": "escalate", "ticket_id": "T7"}
    }


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"account": "nope", "kind": "dm", "text": "x", "handle": "a"}, 404),
        ({"account": "acme", "kind": "follow", "text": "x", "handle": "a"}, 400),
        ({"account": "acme", "kind": "dm", "text": "  ", "handle": "a"}, 400),
        ({"account": "acme", "kind": "dm", "text": "x" * 2001, "handle": "a"}, 400),
        ({"account": "acme", "kind": "dm", "text": "x", "handle": "<img>"}, 400),
        ({"account": "acme", "kind": "dm", "text": "x", "handle": "al\n"}, 400),
        ({"account": "acme", "kind": "dm", "text": "lone \ud800 surrogate", "handle": "a"}, 400),
        (["not", "an", "object"], 400),
    ],
)
async def test_post_refuses_bad_input(
    client: Any, redis: Any, keys: Any, body: Any, status: int
) -> None:
    customer, csrf = await _session(client)
    r = await client.post("/sandbox/api/messages", json=body, headers=_h(customer, csrf, csrf))
    assert r.status == status
    assert await redis.xlen(keys.inbound) == 0
    assert await redis.keys("rd:sandbox:*") == []  # nothing shown in the conversation


async def test_post_refuses_json_nested_too_deep(client: Any, redis: Any) -> None:
    customer, csrf = await _session(client)
    h = _h(customer, csrf, csrf) | {"Content-Type": "application/json"}
    r = await client.post("/sandbox/api/messages", data=b"[" * 100_000, headers=h)
    assert r.status == 400  # was 500 (RecursionError)
    assert await redis.keys("rd:sandbox:*") == []


async def test_a_refused_webhook_leaves_no_turn_behind(
    aiohttp_client: Any, redis_server: Any, redis: Any, keys: Any, tmp_path: Any
) -> None:
    """The page says "not sent" and keeps the text to try again: the turn must not also
    sit in the conversation, waiting forever (and doubled by the retry)."""
    settings = make_settings(
        redis_server.url,
        tmp_path,
        **{
            "accounts": sandbox_accounts(),
            "sandbox.enabled": True,
            "sandbox.webhook_base": f"http://127.0.0.1:{free_port()}",  # nobody listens
        },
    )
    client = await aiohttp_client(build_app(settings, role="web"))
    customer, csrf = await _session(client)
    msg = {"account": "acme", "kind": "dm", "text": "hello?", "handle": "al"}
    r = await client.post("/sandbox/api/messages", json=msg, headers=_h(customer, csrf, csrf))
    assert r.status == 502 and "webhook" in (await r.json())["error"]
    r = await client.get("/sandbox/api/messages", params={"account": "acme"}, headers=_h(customer))
    assert (await r.json())["entries"] == []


async def test_reads_need_the_sandbox_cookie_and_a_sane_cursor(client: Any) -> None:
    r = await client.get("/sandbox/api/messages", params={"account": "acme"})
    assert r.status == 403
    customer, _ = await _session(client)
    r = await client.get(
        "/sandbox/api/messages",
        params={"account": "acme", "after": "x) OR 1"},
        headers=_h(customer),
    )
    assert r.status == 400
    # Shaped like a stream id but not one Redis takes (was a 500), or with a newline.
    for after in ("99999999999999999999-0", f"{2**64 - 1}-{2**64 - 1}", "1-0\n"):
        q = {"account": "acme", "after": after}
        r = await client.get("/sandbox/api/messages", params=q, headers=_h(customer))
        assert r.status == 400, after
    r = await client.get(
        "/sandbox/api/messages", params={"account": "acme", "after": f"{2**64 - 1}-0"},
        headers=_h(customer),
    )  # fmt: skip
    assert r.status == 200
    r = await client.get("/sandbox/api/messages", params={"account": "other"}, headers=_h(customer))
    assert r.status == 404


async def test_new_customer_needs_csrf_and_changes_the_id(client: Any) -> None:
    customer, csrf = await _session(client)
    assert (await client.post("/sandbox/api/new", headers=_h(customer, csrf))).status == 403
    r = await client.post("/sandbox/api/new", headers=_h(customer, csrf, csrf))
    assert r.status == 200
    assert r.cookies[CUSTOMER_COOKIE].value != customer


async def test_new_customer_answers_the_new_customers_handle(client: Any) -> None:
    """The page puts the handle in the form at once: it must be the new customer's, the
    one a reload would show, not the previous customer's."""
    customer, csrf = await _session(client)
    r = await client.post("/sandbox/api/new", headers=_h(customer, csrf, csrf))
    new_id = r.cookies[CUSTOMER_COOKIE].value
    assert (await r.json())["handle"] == "guest" + new_id[-4:]
    page = await client.get("/sandbox", headers=_h(new_id, csrf))
    assert f'value="guest{new_id[-4:]}"' in await page.text()


async def test_sandbox_is_off_unless_enabled(aiohttp_client: Any, settings: Any) -> None:
    client = await aiohttp_client(build_app(settings, role="web"))
    assert (await client.get("/sandbox")).status == 404
    assert (await client.get("/console/login")).status == 200  # the console is always there


async def test_page_warns_when_the_browser_will_drop_its_cookies(client: Any) -> None:
    """Served on a LAN address over http (serve --host 0.0.0.0), the Secure cookies are
    refused and every post fails its CSRF check: the page says so up front."""
    assert "will not keep" not in await (await client.get("/sandbox")).text()
    r = await client.get("/sandbox", headers={"Host": "192.168.1.20:8080"})
    assert "will not keep the sandbox's cookies" in await r.text()
    r = await client.get("/sandbox", headers={"Host": "demo.example", "X-Forwarded-Proto": "https"})
    assert "will not keep" not in await r.text()


async def test_account_menu_says_language_and_platform_once(client: Any) -> None:
    """The demo's labels already name the language: the menu read "@acme (English)
    (x-like, en)". Each is said once, in the label's own parenthesis."""
    import re

    html = await (await client.get("/sandbox")).text()
    options = re.findall(r"<option [^>]*>([^<]*)</option>", html)
    assert options == ["@acme (English, X-like)", "@Acme官方客服 (中文, Weibo-like)"]


def test_account_menu_text_without_a_language_in_the_label() -> None:
    from escalation.sandbox import menu_text

    assert menu_text("@acme", "en", "x") == "@acme (English, X-like)"
    assert (
        menu_text("@acme (support)", "zh", "mastodon") == "@acme (support, Chinese, Mastodon-like)"
    )
    assert menu_text("@acme", "fr", "weibo") == "@acme (fr, Weibo-like)"


async def test_posting_is_limited_per_client_address(
    aiohttp_client: Any, redis_server: Any, redis: Any, keys: Any, tmp_path: Any
) -> None:
    """A sandbox left open on a public host let anyone fill the agents' queue: a client
    address gets sandbox.max_messages_per_minute posts a minute, then 429 (nothing
    stored) with Retry-After."""
    settings = make_settings(
        redis_server.url,
        tmp_path,
        **{
            "accounts": sandbox_accounts(),
            "sandbox.enabled": True,
            "sandbox.max_messages_per_minute": 3,
        },
    )
    client = await aiohttp_client(build_app(settings, role="web"))
    customer, csrf = await _session(client)
    statuses = []
    for i in range(5):
        msg = {"account": "acme", "kind": "dm", "text": f"hello {i}", "handle": "amy"}
        r = await client.post("/sandbox/api/messages", json=msg, headers=_h(customer, csrf, csrf))
        statuses.append(r.status)
    assert statuses == [200, 200, 200, 429, 429]
    assert r.headers["Retry-After"] == "60" and "wait" in (await r.json())["error"]
    assert await redis.xlen(keys.inbound) == 3
