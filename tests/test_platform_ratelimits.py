"""Rate limits: the defaults are platforms.md's figures (§1.7, §3.4), and the platforms'
own headers are honoured: a 429's Retry-After or reset is waited out, but never for
longer than any platform window (a misread header must not park a reply for ever)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from bot.platforms import adapter_for, mastodon, x
from bot.platforms.common import ApiAdapter
from bot.ratelimit import MAX_WAIT_S, RateLimiter, parse_rate_headers, retry_after
from tests.conftest import make_settings
from tests.fakes import FakeX
from tests.fakes.harness import (
    X_TOKEN,
    FakeClock,
    accounts,
    dead_entries,
    deliver,
    make_sender,
    reply,
)

NOW = 1_700_000_000.0


def test_default_limits_are_the_documented_ones() -> None:
    # X: 100 / 15 min per user, and the older copies' 300 / 3 h; DMs 200 / 15 min and
    # 1000 / 24 h per user (§1.7). Mastodon: 300 / 5 min per account (§3.4).
    assert [(lim.limit, lim.window_s) for lim in x.TWEET_LIMITS] == [(100, 900), (300, 10800)]
    assert [(lim.limit, lim.window_s) for lim in x.DM_LIMITS] == [(200, 900), (1000, 86400)]
    assert [(lim.limit, lim.window_s) for lim in mastodon.API_LIMITS] == [(300, 300)]


def test_a_reset_in_milliseconds_is_read_as_a_time() -> None:
    # Read as seconds it was the year 55,000: the endpoint was blocked for ever.
    headers = {"x-rate-limit-remaining": "0", "x-rate-limit-reset": str(int(NOW + 90) * 1000)}
    assert parse_rate_headers(headers, NOW) == (0, NOW + 90)
    assert retry_after(headers, NOW, rate_refused=True) == 90


@pytest.mark.parametrize(
    "headers",
    [
        {"Retry-After": "inf"},
        {"Retry-After": "1e400"},
        {"Retry-After": "nan"},
        {"x-rate-limit-remaining": "0", "x-rate-limit-reset": "inf"},
    ],
)
def test_a_header_that_is_no_number_is_ignored(headers: dict[str, str]) -> None:
    assert retry_after(headers, NOW, rate_refused=True) is None


@pytest.mark.parametrize(
    "headers",
    [
        {"Retry-After": str(10 * 365 * 86400)},
        {"x-rate-limit-remaining": "0", "x-rate-limit-reset": str(int(NOW) + 10 * 365 * 86400)},
    ],
)
def test_no_wait_is_longer_than_the_longest_window(headers: dict[str, str]) -> None:
    assert retry_after(headers, NOW, rate_refused=True) == MAX_WAIT_S == 24 * 3600


@pytest.fixture
async def fake_x(aiohttp_server):  # type: ignore[no-untyped-def]
    fake = FakeX(token=X_TOKEN)
    server = await aiohttp_server(fake.app)
    return fake, str(server.make_url("")).rstrip("/")


@pytest.mark.parametrize(
    "headers",
    [
        {"Retry-After": "inf"},
        {"x-rate-limit-remaining": "0", "x-rate-limit-reset": "{reset_ms}"},
    ],
)
async def test_a_429_with_a_strange_header_is_waited_out_and_sent(  # type: ignore[no-untyped-def]
    fake_x, redis_server, redis, keys, tmp_path, headers
) -> None:
    """Retry-After "inf" raised OverflowError in the sender (the reply stayed pending and
    was then dead-lettered as "delivery unknown"); a reset in milliseconds made it wait
    50,000 years."""
    fake, url = fake_x
    clock = FakeClock()
    reset_ms = str(int(clock.now + 120) * 1000)
    fake.fail_next(
        429,
        {"title": "Too Many Requests"},
        headers={k: v.format(reset_ms=reset_ms) for k, v in headers.items()},
    )
    settings = make_settings(redis_server.url, tmp_path, accounts=accounts(url))
    async with aiohttp.ClientSession() as http:
        sender = make_sender(settings, redis, keys, http, clock)
        await deliver(sender, reply("x", "brandx", "mention", in_reply_to_id="1"))
    assert len(fake.tweets) == 1 and await dead_entries(redis, keys) == []
    assert sum(clock.sleeps) <= 300


async def test_x_dms_are_limited_per_app_across_its_accounts(  # type: ignore[no-untyped-def]
    redis_server, redis, keys, tmp_path
) -> None:
    """15000 DMs / 24 h per app (platforms.md §1.7) bind every account of the app
    together: two accounts with the same consumer secret share that bucket."""
    x = accounts()[0]
    x["options"] = {"rate_limits": {"dm_app_24h": {"limit": 3, "burst": 3}}}
    other = {**x, "id": "brandx2", "user_id": "1500000000000000000", "handle": "Other"}
    third = {**x, "id": "otherapp", "user_id": "1600000000000000000", "handle": "Third"}
    third["secrets"] = {**x["secrets"], "consumer_secret": "another app's secret"}
    settings = make_settings(redis_server.url, tmp_path, accounts=[x, other, third])
    adapters = {a.id: adapter_for(a) for a in settings.accounts}
    limiter = RateLimiter(redis, keys, clock=FakeClock(NOW).time)

    async def wait(account: str) -> float:
        adapter = adapters[account]
        assert isinstance(adapter, ApiAdapter)
        r: Any = reply("x", account, "dm")
        return await limiter.try_acquire(account, adapter.limits_for(r))

    assert [await wait(a) for a in ("brandx", "brandx2", "brandx")] == [0, 0, 0]
    assert await wait("brandx2") > 0  # the app's fourth DM in the window
    assert await wait("otherapp") == 0  # another app has its own
