"""The console's character counter on a Mastodon instance with its own length rule
(400 characters, a link 30), as a sending process recorded it (MastodonAdapter.ready):
the counter shows the instance's limit, not Mastodon's default 500."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

import bot.app
from bot.models import OutboundReply
from bot.redis import Keys
from escalation.lengths import composed_length
from tests.conftest import make_settings
from tests.fakes.harness import accounts
from tests.support.browser import (
    LiveServer,
    RulePipeline,
    chromium,
    flush_redis,
    playwright_expect,
    sandbox_accounts,
    sign_in,
)
from tests.test_console_browser import new_ticket

pytestmark = pytest.mark.browser


def test_the_counter_shows_the_instances_limit(
    redis_server: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    import redis as sync_redis

    monkeypatch.setattr(bot.app, "INSTANCE_RULES_REFRESH_S", 0.05)
    expect = playwright_expect()
    flush_redis(redis_server.url)
    with sync_redis.Redis.from_url(redis_server.url) as r:
        rule = {"max_characters": 400, "characters_reserved_per_url": 30}
        r.set(Keys("rd").instance("mastodon", "brandm"), json.dumps(rule))
    masto = [a for a in accounts() if a["platform"] == "mastodon"]  # streaming off
    settings = make_settings(redis_server.url, tmp_path, accounts=sandbox_accounts() + masto)
    account = settings.account("brandm")
    assert account is not None
    probe = OutboundReply("r", "mastodon", "brandm", "dm", "hi", "9", "someone")
    with LiveServer(settings, pipeline_factory=RulePipeline) as srv, chromium() as browser:
        tid = new_ticket(srv, platform="mastodon", account="brandm", handle="someone")
        for _ in range(200):  # the web role loads it at start (bot/app.py)
            if composed_length(account, probe)[1] == 400:
                break
            time.sleep(0.05)
        page = browser.new_context().new_page()
        sign_in(page, srv.url, srv.add_agent("ann"))
        page.goto(f"{srv.url}/console/tickets/{tid}")
        expect(page.locator("#holder")).not_to_have_text("Loading…")
        box = page.get_by_label("Message", exact=True)
        link = "https://shop.example.com/returns"  # 30 here
        text = link + " " + "a" * (400 - len("@someone ") - 31)
        box.fill(text)
        expect(page.locator("#counter")).to_have_text("400 / 400")
        box.fill(text + "a")
        expect(page.locator("#counter")).to_have_text("401 / 400 – 1 over the limit")
        expect(page.locator("#send-reply")).to_be_disabled()
        page.context.close()
