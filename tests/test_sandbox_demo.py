"""The demo bootstrap (``make run``): sandbox accounts, a persisted secret, a supervisor token."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import stat
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.app import build_app
from bot.demo import DEMO_AGENT, DEMO_SHOP_PATH, SECRETS_FILE, base_url, enable_demo, install_demo
from bot.runner import STARTING
from escalation.agents import AgentStore
from tests.conftest import make_settings
from tests.support.cli import serving
from tests.support.redis_server import env_with_redis, free_port


def test_enable_demo_adds_accounts_with_a_persisted_secret(
    redis_server: Any, tmp_path: Path
) -> None:
    s = make_settings(redis_server.url, tmp_path, accounts=[])
    assert s.sandbox.enabled is False  # off unless configured
    enable_demo(s)
    assert s.sandbox.enabled
    accounts = {a.id: a for a in s.accounts}
    assert set(accounts) == {"acme", "acme-cn"}
    assert {a.platform for a in accounts.values()} == {"sandbox"}
    assert (
        accounts["acme"].options["like"] == "x" and accounts["acme-cn"].options["like"] == "weibo"
    )
    assert accounts["acme-cn"].language == "zh"
    path = tmp_path / SECRETS_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    secret = accounts["acme"].secret("signing_secret")
    assert json.loads(path.read_text())["signing_secret"] == secret

    again = make_settings(redis_server.url, tmp_path, accounts=[])
    enable_demo(again)
    assert again.account("acme").secret("signing_secret") == secret  # type: ignore[union-attr]


def test_enable_demo_keeps_configured_accounts(redis_server: Any, tmp_path: Path) -> None:
    s = make_settings(redis_server.url, tmp_path)  # has a generic "acme"
    enable_demo(s)
    assert s.account("acme").platform == "generic"  # type: ignore[union-attr]
    assert s.account("acme-cn").platform == "sandbox"  # type: ignore[union-attr]


async def test_install_demo_prints_addresses_and_a_working_token(
    aiohttp_client: Any, redis_server: Any, redis: Any, keys: Any, tmp_path: Path
) -> None:
    s = make_settings(redis_server.url, tmp_path, accounts=[])
    s.server.port = 8123
    enable_demo(s)
    out = io.StringIO()
    app = build_app(s, role="web")
    install_demo(app, out=out)
    client = await aiohttp_client(app)
    text = out.getvalue()
    assert "http://127.0.0.1:8123/sandbox" in text and "http://127.0.0.1:8123/console" in text
    token = re.search(r"\((demo-supervisor)\): (\S+)", text).group(2)  # type: ignore[union-attr]
    agent = await AgentStore(redis, keys).by_token(token)
    assert agent is not None and agent.name == DEMO_AGENT and agent.is_supervisor
    assert (await client.get("/sandbox")).status == 200
    await client.close()

    # A restart prints the same token; a lost state file gets a fresh one.
    out2 = io.StringIO()
    app2 = build_app(s, role="web")
    install_demo(app2, out=out2)
    await (await aiohttp_client(app2)).close()
    assert token in out2.getvalue()
    (tmp_path / SECRETS_FILE).unlink()
    out3 = io.StringIO()
    app3 = build_app(s, role="web")
    install_demo(app3, out=out3)
    await (await aiohttp_client(app3)).close()
    assert token not in out3.getvalue()
    assert await AgentStore(redis, keys).by_token(token) is None


async def test_serve_without_demo_revokes_the_demo_supervisor(
    aiohttp_client: Any, redis_server: Any, redis: Any, keys: Any, tmp_path: Path
) -> None:
    """The demo's printed supervisor token kept working on a later plain serve (on a
    production Redis too, if --demo had run against it); the next demo makes a new one."""
    from bot.demo import retire_demo

    s = make_settings(redis_server.url, tmp_path, accounts=[])
    enable_demo(s)
    out = io.StringIO()
    app = build_app(s, role="web")
    install_demo(app, out=out)
    await (await aiohttp_client(app)).close()
    token = re.search(r"\((demo-supervisor)\): (\S+)", out.getvalue()).group(2)  # type: ignore[union-attr]
    assert await AgentStore(redis, keys).by_token(token) is not None

    plain = make_settings(redis_server.url, tmp_path, accounts=[])
    app2 = build_app(plain, role="web")
    retire_demo(app2)
    client = await aiohttp_client(app2)
    await asyncio.gather(*app2[STARTING])  # as the runner waits for startup work
    assert await AgentStore(redis, keys).by_token(token) is None
    r = await client.get("/api/v1/tickets", headers={"Authorization": f"Bearer {token}"})
    assert r.status == 401
    await client.close()
    retire_demo(app3 := build_app(plain, role="web"))  # nothing to revoke: no error
    client3 = await aiohttp_client(app3)
    await asyncio.gather(*app3[STARTING])
    await client3.close()

    out2 = io.StringIO()
    app4 = build_app(s, role="web")
    install_demo(app4, out=out2)
    await (await aiohttp_client(app4)).close()
    fresh = re.search(r"\((demo-supervisor)\): (\S+)", out2.getvalue()).group(2)  # type: ignore[union-attr]
    assert fresh != token and await AgentStore(redis, keys).by_token(fresh) is not None


@pytest.mark.parametrize(("role", "prints"), [("web", True), ("worker", False)])
def test_serve_demo_prints_addresses_only_where_they_are_served(
    redis_server: Any, tmp_path: Path, role: str, prints: bool
) -> None:
    """`serve --demo --role worker` printed a sandbox and console address it does not serve
    (the worker has neither page). Every role serves the pretend shop: the worker, which
    looks orders up, asks its own address, where nothing answered."""
    config = tmp_path / "replydesk.yml"
    settings = {"dialog": {"pipeline": "pass-through"}, "redis": {"data_dir": str(tmp_path)}}
    config.write_text(yaml.safe_dump(settings))
    port, log = free_port(), tmp_path / "serve.log"
    with serving(
        config, "--demo", "--role", role, port=port, env=env_with_redis(redis_server.url), log=log
    ):
        shop = f"http://127.0.0.1:{port}{DEMO_SHOP_PATH}?order=A12345&platform=sandbox"
        with urllib.request.urlopen(shop, timeout=5) as resp:
            assert json.load(resp)["status"] == "shipped"
    out = log.read_text()
    assert ("customer sandbox:" in out) is prints, out
    assert (f"http://127.0.0.1:{port}/console" in out) is prints, out


def test_printed_addresses_are_urls_for_every_listen_host(
    redis_server: Any, tmp_path: Path
) -> None:
    s = make_settings(redis_server.url, tmp_path)
    for host, shown in [("0.0.0.0", "127.0.0.1"), ("::", "127.0.0.1"), ("::1", "[::1]")]:
        s.server.host = host
        assert base_url(s) == f"http://{shown}:{s.server.port}"  # was http://::1:8080


async def test_the_demo_answers_order_questions_from_its_pretend_shop(
    aiohttp_client: Any, redis_server: Any, tmp_path: Path
) -> None:
    """`make run` has no shop: the demo serves a pretend one as its order lookup, so
    "Where is my order A12345?" gets a status; never for a real platform's customer."""
    from bot.orders import OrderLookup

    s = make_settings(redis_server.url, tmp_path, accounts=[])
    enable_demo(s)
    assert s.dialog.order_lookup_url == base_url(s) + DEMO_SHOP_PATH
    app = build_app(s, role="web")
    install_demo(app, out=io.StringIO())
    client = await aiohttp_client(app)
    lookup = OrderLookup(client.session, str(client.make_url(DEMO_SHOP_PATH)))
    info = await lookup.lookup("a12345", platform="sandbox", customer_id="sb1")
    assert info is not None and info.status == "shipped" and info.eta and info.tracking_url
    delivered = await lookup.lookup("A34567", platform="sandbox", customer_id="sb1")
    assert delivered is not None and delivered.status == "delivered" and not delivered.eta
    assert await lookup.lookup("A99999", platform="sandbox", customer_id="sb1") is None
    assert await lookup.lookup("A12345", platform="x", customer_id="42") is None

    # A configured shop is left alone, and the pretend one is not served.
    s2 = make_settings(redis_server.url, tmp_path / "2", accounts=[])
    s2.dialog.order_lookup_url = "https://shop.example/orders"
    enable_demo(s2)
    assert s2.dialog.order_lookup_url == "https://shop.example/orders"
    app2 = build_app(s2, role="web")
    install_demo(app2, out=io.StringIO())
    client2 = await aiohttp_client(app2)
    assert (await client2.get(DEMO_SHOP_PATH, params={"order": "A12345"})).status == 404
