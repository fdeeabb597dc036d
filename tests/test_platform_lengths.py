"""Agents' replies and the bot's are counted alike, and never below what the platform
(its fake, written from platforms.md apart from bot.textfit) counts: a reply the
console lets through is one the sender posts uncut and the platform accepts."""

from __future__ import annotations

import unicodedata
from typing import Any

import pytest

from bot.config import AccountConfig
from bot.platforms import adapter_for
from bot.platforms.common import ApiAdapter
from escalation.lengths import check_length, composed_length
from escalation.tickets import TicketError
from tests.conftest import make_settings
from tests.fakes.harness import accounts, reply
from tests.fakes.mastodon import status_length
from tests.fakes.weibo import message_length
from tests.fakes.x import tweet_length

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
