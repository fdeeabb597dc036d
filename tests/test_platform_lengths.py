"""Agents' replies and the bot's are counted alike, and never below what the platform
(its fake, written from platforms.md apart from bot.textfit) counts: a reply the
console lets through is one the sender posts uncut and the platform accepts."""

from __future__ import annotations

import unicodedata
from typing import Any

import pytest

import bot.app
from bot.app import build_app
from bot.config import AccountConfig
from bot.platforms import adapter_for
from bot.platforms.common import ApiAdapter
from escalation import lengths
from escalation.agents import AgentStore
from escalation.auth import SESSION_COOKIE
from escalation.lengths import check_length, composed_length
from escalation.tickets import TicketError, TicketStore
from tests.conftest import make_settings
from tests.fakes import FakeMastodon
from tests.fakes.harness import MASTO_TOKEN, accounts, reply
from tests.fakes.mastodon import status_length
from tests.fakes.weibo import message_length
from tests.fakes.x import tweet_length
from tests.support.escalation import event
from tests.support.waiting import until

# Edge cases of platforms.md §1.8 and §3.4: emoji (ZWJ, skin tones, flags, keycaps),
# combining marks, CJK punctuation, links of every shape, remote mentions.
PIECES = [
    "👩\u200d👩\u200d👧 🧑🏻\u200d🤝\u200d🧑🏿 👍🏽 🇯🇵🇺🇸 1️⃣ ©️",
    "q\u0303 e\u0301 \u0915\u094d\u0937",
    "「你好」、。！…",
    "HTTPS://A.CO",
    "acme.com/a(b",
    "https://acme.com/x&",
    "https://help.acme.example/returns/start",
    "https://localhost:8080/x",
    "https://例子.cn谢谢",
    "#https://acme.com/aaaaaaaaaaaaaaaaaaaaaaaaaa",
    "谢谢@alice@example.social",
    "@a@b.social-",
    "@someone@far.away.example hi",
]
FAKE_LENGTH = {"x": tweet_length, "mastodon": status_length, "weibo": message_length}


@pytest.fixture
def settings(tmp_path: Any) -> Any:
    return make_settings("redis://127.0.0.1:9", tmp_path, accounts=accounts())


def _account(settings: Any, platform: str) -> AccountConfig:
    return next(a for a in settings.accounts if a.platform == platform)


@pytest.mark.parametrize("piece", PIECES)
@pytest.mark.parametrize("platform", ["x", "mastodon", "weibo"])
def test_the_agents_count_is_never_below_the_platforms(
    settings: Any, platform: str, piece: str
) -> None:
    account = _account(settings, platform)
    r = reply(platform, account.id, "dm", recipient_handle="someone", text=piece)
    n, _limit, prefix = composed_length(account, r)
    # The sender posts NFC (textfit.fit): e + U+0301 reaches the platform as é.
    assert n >= FAKE_LENGTH[platform](unicodedata.normalize("NFC", prefix + piece))


@pytest.mark.parametrize("piece", PIECES)
@pytest.mark.parametrize("platform", ["x", "mastodon", "weibo"])
def test_what_the_console_accepts_the_sender_posts_uncut(
    settings: Any, platform: str, piece: str
) -> None:
    """At the limit the agent's reply passes and is posted as written; one over, it is
    refused (422) rather than cut by the sender."""
    account = _account(settings, platform)
    adapter = adapter_for(account)
    assert isinstance(adapter, ApiAdapter)
    kind = "mention"
    base = reply(platform, account.id, kind, recipient_handle="someone", text=piece + " a")
    n, limit, _prefix = composed_length(account, base)
    at_limit = reply(
        platform, account.id, kind, recipient_handle="someone", text=base.text + "a" * (limit - n)
    )
    check_length(account, at_limit)
    posted = adapter.compose(at_limit)
    assert posted.endswith(unicodedata.normalize("NFC", at_limit.text.strip()))  # uncut
    assert FAKE_LENGTH[platform](posted) <= limit
    over = reply(platform, account.id, kind, recipient_handle="someone", text=at_limit.text + "a")
    with pytest.raises(TicketError) as e:
        check_length(account, over)
    assert e.value.status == 422


# -- the instance's own rule, learned by the sending process --------------------------


async def test_the_agent_check_and_counter_take_the_instances_rule(
    aiohttp_client: Any,
    aiohttp_server: Any,
    redis_server: Any,
    redis: Any,
    keys: Any,
    tmp_path: Any,
    monkeypatch: Any,
) -> None:
    """The instance allows 400 characters and counts a link 30. Only the sending process
    reads the instance; the web role's check allowed 500 (links 23), so an agent's reply
    of 450 was accepted and then cut by the sender (or refused by the instance)."""
    monkeypatch.setattr(bot.app, "INSTANCE_RULES_REFRESH_S", 0.05, raising=False)
    fake = FakeMastodon(token=MASTO_TOKEN, max_characters=400, url_length=30)
    base = str((await aiohttp_server(fake.app)).make_url("")).rstrip("/")
    masto = [a for a in accounts(masto_base=base) if a["platform"] == "mastodon"]
    settings = make_settings(redis_server.url, tmp_path, accounts=masto)  # no streaming
    web_app = build_app(settings, role="web")
    client = await aiohttp_client(web_app)
    await aiohttp_client(build_app(settings, role="worker"))  # its own process in production
    token = await AgentStore(redis, keys).add("ann", "agent")
    auth = {"Authorization": f"Bearer {token}"}
    store = TicketStore(redis, keys, settings.escalation)
    tid, _ = await store.open_or_append(
        event(platform="mastodon", account="brandm", handle="someone"),
        reason="complaint",
        priority="normal",
        reasons={},
    )
    url = f"/api/v1/tickets/{tid}/reply"

    async def agent_reply(text: str) -> tuple[int, dict[str, Any]]:
        async with client.post(url, json={"text": text}, headers=auth) as r:
            return r.status, await r.json()

    # The first reply goes out: the sender reads the instance on the way and records it.
    assert (await agent_reply("Sorry, looking into it."))[0] == 200
    await until(lambda: bool(fake.statuses), 10, "the first reply to be posted")
    account = settings.account("brandm")
    assert account is not None

    async def learned() -> bool:
        return composed_length(account, reply("mastodon", "brandm", "dm"))[1] == 400

    await until(learned, 10, "the web role to load the instance's rule")
    prefix = "@someone "  # 9
    status, body = await agent_reply("a" * 392)
    assert status == 422 and body["error"]["code"] == "too_long"
    assert (body["error"]["length"], body["error"]["limit"]) == (401, 400)
    link = "https://shop.example.com/returns"  # counts 30 on this instance, not 23
    text = link + " " + "a" * (400 - len(prefix) - 30)
    status, body = await agent_reply(text)
    assert status == 422 and (body["error"]["length"], body["error"]["limit"]) == (401, 400)
    fits = text[:-1]
    assert (await agent_reply(fits))[0] == 200
    await until(lambda: len(fake.statuses) == 2, 10, "the reply at the limit to be posted")
    assert fake.statuses[1]["content"] == prefix + fits  # uncut, and the instance took it
    assert status_length(fake.statuses[1]["content"], 30) == 400

    # The console's counter gets the same rule (textcount.js reads /console/rules.json).
    r = await client.post("/console/login", data={"token": token}, allow_redirects=False)
    sid = r.cookies[SESSION_COOKIE].value
    async with client.get(
        "/console/rules.json", headers={"Cookie": f"{SESSION_COOKIE}={sid}"}
    ) as r:
        rule = (await r.json())["accounts"]["brandm"]
    assert rule["limits"] == {"mention": 400, "dm": 400} and rule["url_length"] == 30


async def test_a_configured_limit_wins_over_the_instances(
    settings: Any, redis: Any, keys: Any
) -> None:
    account = _account(settings, "mastodon")
    r = reply("mastodon", account.id, "dm", recipient_handle="someone")
    await redis.set(keys.instance("mastodon", account.id), '{"max_characters": 400}')
    await lengths.load_instance_rules(redis, keys, [account])
    try:
        assert composed_length(account, r)[1] == 400
        account.options["max_characters"] = 1000
        assert composed_length(account, r)[1] == 1000
    finally:
        lengths.forget_instance_rules([account])
    del account.options["max_characters"]
    assert composed_length(account, r)[1] == 500
