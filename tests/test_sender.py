"""The sender's reliability: retries and backoff, Retry-After, permanent errors, rate
limits, and exactly one reply when a sender dies between sending and acknowledging."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import ConnectionError as RedisConnectionError

from bot import metrics
from bot.models import Author, InboundEvent, OutboundReply
from bot.outbox import Sender, enqueue_reply, sent_record
from bot.platforms import windows
from bot.platforms.x import DM_LIMITS
from bot.ratelimit import Limit, RateLimiter, parse_rate_headers, retry_after
from bot.redis import Keys, connect
from bot.streams import ensure_group, list_dead, replay_dead
from tests.conftest import make_settings
from tests.fakes import FakeMastodon, FakeWeibo, FakeX, max_in_window
from tests.fakes.harness import (
    MASTO_TOKEN,
    WEIBO_TOKEN,
    X_TOKEN,
    FakeClock,
    accounts,
    dead_entries,
    deliver,
    make_sender,
    reply,
)
from tests.support.redis_server import RedisServer
from tests.support.waiting import until


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def fakes(aiohttp_server):  # type: ignore[no-untyped-def]
    x = FakeX(token=X_TOKEN)
    m = FakeMastodon(token=MASTO_TOKEN)
    sx = await aiohttp_server(x.app)
    sm = await aiohttp_server(m.app)
    m.base_url = str(sm.make_url("")).rstrip("/")
    return x, m, str(sx.make_url("")).rstrip("/"), m.base_url


@pytest.fixture
async def env(fakes, redis_server, redis, keys, tmp_path):  # type: ignore[no-untyped-def]
    x, m, xu, mu = fakes
    settings = make_settings(redis_server.url, tmp_path, accounts=accounts(xu, masto_base=mu))
    clock = FakeClock()
    async with aiohttp.ClientSession() as http:
        yield settings, clock, http, x, m


def mention(n: str = "e1", **kw: Any):  # type: ignore[no-untyped-def]
    return reply("x", "brandx", "mention", event=n, in_reply_to_id="1050118621198921728", **kw)


async def test_429_waits_for_retry_after_then_sends_once(env, redis, keys) -> None:  # type: ignore[no-untyped-def]
    settings, clock, http, x, _ = env
    x.fail_next(429, {"title": "Too Many Requests"}, headers={"Retry-After": "7"})
    before = sample("replydesk_outbound_retries_total", platform="x")
    sender = make_sender(settings, redis, keys, http, clock)
    await deliver(sender, mention())
    assert len(x.calls) == 2 and len(x.tweets) == 1
    assert sum(clock.sleeps) >= 7  # waited at least what the platform asked
    assert sample("replydesk_outbound_retries_total", platform="x") == before + 1
    assert await sent_record(redis, keys, mention().reply_id) is not None


async def test_repeated_429s_are_waits_not_failures(env, redis, keys) -> None:  # type: ignore[no-untyped-def]
    settings, clock, http, x, _ = env
    n = settings.worker.max_attempts + 2
    x.fail_next(429, {"title": "Too Many Requests"}, headers={"Retry-After": "60"}, times=n)
    sender = make_sender(settings, redis, keys, http, clock)
    await deliver(sender, mention())
    assert len(x.calls) == n + 1 and len(x.tweets) == 1 and await redis.xlen(keys.dead) == 0
    assert sum(clock.sleeps) >= 60 * n


async def test_429_with_reset_header_blocks_the_endpoint(env, redis, keys) -> None:  # type: ignore[no-untyped-def]
    settings, clock, http, x, _ = env
    reset = clock.now + 120
    x.fail_next(
        429,
        {"title": "Too Many Requests"},
        headers={"x-rate-limit-remaining": "0", "x-rate-limit-reset": str(int(reset))},
    )
    sender = make_sender(settings, redis, keys, http, clock)
    await deliver(sender, mention())
    assert len(x.tweets) == 1
    assert len(x.calls) == 2 and clock.now >= int(reset) - 1  # the retry waited for the reset


async def test_5xx_retries_with_backoff_then_succeeds(env, redis, keys) -> None:  # type: ignore[no-untyped-def]
    settings, clock, http, x, _ = env
    x.fail_next(503, {"title": "Service Unavailable"}, times=2)
    sender = make_sender(settings, redis, keys, http, clock)
    await deliver(sender, mention())
    assert len(x.calls) == 3 and len(x.tweets) == 1
    # exponential with jitter: try n waits in [base*2^(n-1)/2, base*2^(n-1)], base 0.5 s
    assert 0.25 <= clock.sleeps[0] <= 0.5 and 0.5 <= clock.sleeps[1] <= 1.0
    assert await redis.xlen(keys.dead) == 0


async def test_5xx_until_out_of_attempts_goes_dead(env, redis, keys) -> None:  # type: ignore[no-untyped-def]
    settings, clock, http, x, _ = env
    x.fail_next(500, {"title": "Internal Error"}, times=10)
    sender = make_sender(settings, redis, keys, http, clock)
    await deliver(sender, mention())
    assert len(x.calls) == settings.worker.max_attempts
    (dead,) = await dead_entries(redis, keys)
    assert dead["error"].startswith("HTTP 500") and dead["source"] == "outbox"


async def test_permanent_4xx_goes_dead_with_platform_error_no_retry(env, redis, keys) -> None:  # type: ignore[no-untyped-def]
    settings, clock, http, x, _ = env
    sender = make_sender(settings, redis, keys, http, clock)
    await deliver(sender, mention("e1", text="same words"))
    before = sample("replydesk_outbound_errors_total", platform="x", status_class="4xx")
    await deliver(sender, mention("e2", text="same words"))  # X refuses duplicate content
    assert len(x.calls) == 2 and clock.sleeps == []
    (dead,) = await dead_entries(redis, keys)
    assert dead["error"] == (
        "HTTP 403: title=Forbidden; detail=You are not allowed to create a Tweet with duplicate content."
    )
    assert sample("replydesk_outbound_errors_total", platform="x", status_class="4xx") == before + 1
    assert await sent_record(redis, keys, mention("e2").reply_id) is None


async def test_intent_and_result_recorded_but_not_acked_is_not_resent(env, redis, keys) -> None:  # type: ignore[no-untyped-def]
    settings, clock, http, x, _ = env
    sender = make_sender(settings, redis, keys, http, clock)
    r = mention()
    # A sender that sent and recorded, then died before XACK: simulate its last write.
    await redis.set(keys.sending(r.reply_id), json.dumps({"at": clock.now}))
    await redis.set(keys.sent(r.reply_id), json.dumps({"platform_id": "123", "sent_at": clock.now}))
    await deliver(sender, r)
    assert x.calls == []
    assert (await redis.xpending(keys.outbox, keys.SENDERS))["pending"] == 0


async def test_intent_without_result_on_x_is_dead_not_resent(env, redis, keys) -> None:  # type: ignore[no-untyped-def]
    settings, clock, http, x, _ = env
    sender = make_sender(settings, redis, keys, http, clock)
    r = mention()
    await redis.set(keys.sending(r.reply_id), json.dumps({"at": clock.now - 5}))
    await deliver(sender, r)
    assert x.calls == []
    (dead,) = await dead_entries(redis, keys)
    assert dead["error"].startswith("delivery unknown:") and "Check the x account" in dead["error"]


async def test_replaying_an_unknown_delivery_sends_it(env, redis, keys) -> None:  # type: ignore[no-untyped-def]
    """After a human checked the account and replays the dead letter, it is sent."""
    settings, clock, http, x, _ = env
    sender = make_sender(settings, redis, keys, http, clock)
    r = mention()
    await enqueue_reply(redis, keys, r)
    ((first_id, _),) = await redis.xrange(keys.outbox)
    intent = {"at": clock.now - 5, "msg_id": first_id.decode()}  # what a dead sender left
    await redis.set(keys.sending(r.reply_id), json.dumps(intent))
    await deliver(sender)
    assert x.calls == []
    (dead_id, _), *_ = await list_dead(redis, keys)
    await replay_dead(redis, keys, dead_id)
    await deliver(sender)
    assert len(x.tweets) == 1 and await sent_record(redis, keys, r.reply_id) is not None


async def test_intent_without_result_on_mastodon_resends_with_same_key(env, redis, keys) -> None:  # type: ignore[no-untyped-def]
    settings, clock, http, _, m = env
    sender = make_sender(settings, redis, keys, http, clock)
    parent = m.mention("where is my parcel?")["status"]["id"]
    r = reply("mastodon", "brandm", "mention", recipient_handle="alice", in_reply_to_id=parent)
    m.hang_next()  # the instance posts it, but the answer never arrives
    task = asyncio.create_task(deliver(sender, r))
    await asyncio.wait_for(m.hanging.wait(), 5)
    task.cancel()  # the sender "crashes" while waiting for the answer
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await redis.get(keys.sending(r.reply_id)) is not None
    # Another sender takes the entry over (what its reclaim does after the visibility
    # timeout; min-idle 0 here, so no wait).
    await _take_over(make_sender(settings, redis, keys, http, clock, consumer="sender-2"))
    posts = m.calls_to("/api/v1/statuses")
    assert len(posts) == 2 and {c.headers["Idempotency-Key"] for c in posts} == {r.reply_id}
    assert len(m.statuses) == 1  # the instance deduplicated the resend
    rec = await sent_record(redis, keys, r.reply_id)
    assert rec is not None and rec["platform_id"] == m.statuses[0]["id"]


async def test_a_gateway_timeout_on_x_is_unknown_not_resent(env, redis, keys) -> None:  # type: ignore[no-untyped-def]
    """A 504 is a proxy that stopped waiting for X after passing the request on: X may
    still post it, and does not dedupe DMs. Like a read timeout: delivery unknown."""
    settings, clock, http, x, _ = env
    x.fail_next(504, {"title": "Gateway Timeout"})
    await deliver(make_sender(settings, redis, keys, http, clock), reply("x", "brandx", "dm"))
    assert len(x.calls) == 1  # not retried
    (dead,) = await dead_entries(redis, keys)
    assert dead["error"].startswith("delivery unknown: HTTP 504")


async def test_a_gateway_timeout_on_mastodon_is_resent_with_the_same_key(env, redis, keys) -> None:  # type: ignore[no-untyped-def]
    settings, clock, http, _, m = env
    parent = m.mention("where is my parcel?")["status"]["id"]
    r = reply("mastodon", "brandm", "mention", recipient_handle="alice", in_reply_to_id=parent)
    m.fail_next(504, {"error": "Gateway Timeout"})
    await deliver(make_sender(settings, redis, keys, http, clock), r)
    posts = m.calls_to("/api/v1/statuses")
    assert len(posts) == 2 and {c.headers["Idempotency-Key"] for c in posts} == {r.reply_id}
    assert len(m.statuses) == 1 and await sent_record(redis, keys, r.reply_id) is not None


async def test_mastodon_is_not_resent_after_its_idempotency_key_may_have_expired(
    env, redis, keys
) -> None:  # type: ignore[no-untyped-def]
    """A post whose answer was lost may be on the instance, which dedupes a resend only
    while it keeps the Idempotency-Key (up to an hour, platforms.md §3.3). A long
    Retry-After on the next try must not lead to a resend after that."""
    settings, clock, http, _, m = env
    m.clock = clock.time
    parent = m.mention("where is my parcel?")["status"]["id"]
    r = reply("mastodon", "brandm", "mention", recipient_handle="alice", in_reply_to_id=parent)
    m.drop_next()  # posted, then the connection drops before the answer
    m.fail_next(503, headers={"Retry-After": "4000"})  # down for longer than the key lives
    await deliver(make_sender(settings, redis, keys, http, clock), r)
    assert len(m.statuses) == 1
    (dead,) = await dead_entries(redis, keys)
    assert dead["error"].startswith("delivery unknown:")
    assert await sent_record(redis, keys, r.reply_id) is None


async def test_a_reclaim_remembers_an_earlier_try_that_may_have_posted(env, redis, keys) -> None:  # type: ignore[no-untyped-def]
    """The same, with the sender stopped during the long wait: the 503 that followed the
    lost answer does not erase that the reply may be out, so the reclaim an hour later
    does not post it again."""
    settings, clock, http, _, m = env
    m.clock = clock.time
    parent = m.mention("where is my parcel?")["status"]["id"]
    r = reply("mastodon", "brandm", "mention", recipient_handle="alice", in_reply_to_id=parent)
    m.drop_next()
    m.fail_next(503, headers={"Retry-After": "4000"})
    first = make_sender(settings, redis, keys, http, clock, consumer="s1")
    stop = asyncio.Event()
    first._stop = stop  # what run() sets

    async def sleep_then_stop(seconds: float) -> None:
        await clock.sleep(seconds)
        if seconds >= 1000:
            stop.set()  # SIGTERM during the long wait

    first.sleep = sleep_then_stop
    await deliver(first, r)
    assert len(m.statuses) == 1 and await redis.xlen(keys.dead) == 0  # left for a reclaim
    await _take_over(make_sender(settings, redis, keys, http, clock, consumer="s2"))
    assert len(m.statuses) == 1
    (dead,) = await dead_entries(redis, keys)
    assert dead["error"].startswith("delivery unknown:")


async def test_connection_lost_after_send_on_x_is_unknown(env, redis, keys) -> None:  # type: ignore[no-untyped-def]
    settings, clock, http, x, _ = env
    x.drop_next()
    sender = make_sender(settings, redis, keys, http, clock)
    await deliver(sender, mention())
    assert len(x.tweets) == 1 and len(x.calls) == 1  # posted once, never again
    (dead,) = await dead_entries(redis, keys)
    assert dead["error"].startswith("delivery unknown: ServerDisconnectedError")


async def test_unreachable_platform_is_retried_then_dead(
    redis_server, redis, keys, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from tests.support.redis_server import free_port

    settings = make_settings(
        redis_server.url, tmp_path, accounts=accounts(f"http://127.0.0.1:{free_port()}")
    )
    clock = FakeClock()
    async with aiohttp.ClientSession() as http:
        sender = make_sender(settings, redis, keys, http, clock)
        await deliver(sender, mention())
    (dead,) = await dead_entries(redis, keys)
    assert (
        "ClientConnectorError" in dead["error"]
        and len(clock.sleeps) == settings.worker.max_attempts - 1
    )


# -- a real process killed between the platform call and the acknowledgement ----

SENDER_PROC = "tests.fakes.sender_proc"


def _spawn_sender(redis_url: str, x_base: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "REDIS_URL": redis_url, "X_BASE": x_base}
    return subprocess.Popen([sys.executable, "-m", SENDER_PROC], env=env, cwd=os.getcwd())


async def test_sigkill_between_send_and_ack_never_sends_twice(
    env, redis_server, redis, keys, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    settings, clock, http, x, _ = env
    x.hang_next()  # X posts the tweet, the answer never reaches the sender
    r = mention()
    await enqueue_reply(redis, keys, r)
    proc = _spawn_sender(redis_server.url, settings.accounts[0].api_base)
    try:
        await asyncio.wait_for(x.hanging.wait(), 20)
        assert await redis.get(keys.sending(r.reply_id)) is not None  # intent recorded first
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
    finally:
        if proc.poll() is None:
            proc.kill()
    # A fresh sender picks the entry up after the visibility timeout.
    sender = make_sender(settings, redis, keys, http, clock, consumer="sender-after")
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop))
    await until(lambda: redis.xlen(keys.dead), what="the reply to be dead-lettered")
    stop.set()
    await asyncio.wait_for(task, 10)
    assert len(x.tweets) == 1 and len(x.calls_to("/2/tweets")) == 1
    (dead,) = await dead_entries(redis, keys)
    assert dead["error"].startswith("delivery unknown:")


# -- rate limits ----------------------------------------------------------------


async def test_bucket_never_exceeds_the_limit_in_any_window(redis, keys) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock(start=1000.0)
    rl = RateLimiter(redis, keys, clock=clock.time, sleep=clock.sleep)
    lim = [Limit("tweets", 10, 60, burst=3)]
    grants = []
    for _ in range(40):
        await rl.acquire("acct", lim, platform="x")
        grants.append(clock.now)
    assert max_in_window(grants, 60) <= 10
    assert grants[2] == 1000.0 and grants[3] > 1000.0  # the burst, then the refill rate
    # ...and then steadily at (limit - burst) / window: 37 more at 7 per minute.
    assert abs((grants[-1] - grants[0]) - 37 * 60 / 7) < 1


async def test_a_long_window_is_counted_exactly_not_paced(redis, keys) -> None:  # type: ignore[no-untyped-def]
    # X: 1000 DMs per 24 h. Paced by a bucket that is one DM every 86 s after a burst of
    # 20; counted over the window, the short window's pace (200 / 15 min) is all there is.
    clock = FakeClock(start=1000.0)
    rl = RateLimiter(redis, keys, clock=clock.time, sleep=clock.sleep)
    grants = []
    for _ in range(300):
        await rl.acquire("acct", DM_LIMITS, platform="x")
        grants.append(clock.now)
    assert grants[-1] - grants[0] < 1800  # a busy morning's 300 DMs in under half an hour
    assert max_in_window(grants, 900) <= 200


async def test_an_exact_window_never_exceeds_its_limit(redis, keys) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock(start=1000.0)
    rl = RateLimiter(redis, keys, clock=clock.time, sleep=clock.sleep)
    rl = RateLimiter(redis, keys, clock=clock.time, sleep=clock.sleep, max_sleep_s=86400)
    day = Limit("dm_24h", 5, 86400)
    assert day.exact
    grants = []
    for i in range(12):
        await rl.acquire("acct", [day], platform="x")
        grants.append(clock.now)
        clock.now += 3600 * (i % 3)  # sends spread unevenly over the day
    assert grants[:3] == [1000.0, 1000.0, 4600.0]  # admitted as they come
    assert max_in_window(grants, 86400) <= 5
    # Each send past the fifth waits exactly until the send five before it leaves.
    assert grants[5] == grants[0] + 86400


async def test_multiple_buckets_are_charged_together(redis, keys) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock(start=0.0)
    rl = RateLimiter(redis, keys, clock=clock.time, sleep=clock.sleep)
    short, long = Limit("tweets", 5, 10, burst=5), Limit("tweets_3h", 6, 100, burst=6)
    assert [await rl.try_acquire("a", [short, long]) for _ in range(6)][:5] == [0.0] * 5
    # The 6th is refused by the short bucket; the long one was not charged for it.
    waited = await rl.acquire("a", [short, long])
    assert waited > 0
    assert await rl.try_acquire("a", [long]) > 0  # 6 of 6 taken: 5 + the waited one


async def test_server_headers_block_until_reset(redis, keys) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock(start=1_700_000_000.0)
    rl = RateLimiter(redis, keys, clock=clock.time, sleep=clock.sleep)
    lim = [Limit("api", 300, 300)]
    await rl.observe(
        "m", lim, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "2023-11-14T22:14:20.000Z"}
    )
    waited = await rl.acquire("m", lim, platform="mastodon")
    assert clock.now >= 1_700_000_060.0 and waited >= 59


def test_header_parsing() -> None:
    now = 1_700_000_000.0
    assert parse_rate_headers(
        {"x-rate-limit-remaining": "3", "x-rate-limit-reset": "1700000900"}, now
    ) == (3, 1700000900.0)
    assert parse_rate_headers(
        {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "2023-11-14T22:28:20Z"}, now
    ) == (0, now + 900)
    assert retry_after({"Retry-After": "12"}, now) == 12
    assert retry_after({"Retry-After": "Tue, 14 Nov 2023 22:13:40 GMT"}, now) == 20
    reset = {"x-rate-limit-reset": str(int(now + 30))}
    assert retry_after(reset, now, rate_refused=True) == 30
    # X sends the reset on every answer: it is a wait only for a rate refusal or when
    # no calls remain.
    assert retry_after(reset, now) is None
    assert retry_after({**reset, "x-rate-limit-remaining": "12"}, now) is None
    assert retry_after({**reset, "x-rate-limit-remaining": "0"}, now) == 30
    assert retry_after({}, now) is None


async def test_5xx_with_calls_left_backs_off_instead_of_waiting_for_the_reset(
    env, redis, keys
) -> None:  # type: ignore[no-untyped-def]
    settings, clock, http, x, _ = env
    headers = {
        "x-rate-limit-limit": "100",
        "x-rate-limit-remaining": "57",
        "x-rate-limit-reset": str(int(time.time() + 800)),
    }
    x.fail_next(503, {"title": "Service Unavailable"}, headers=headers)
    sender = make_sender(settings, redis, keys, http, clock)
    await deliver(sender, mention())
    assert len(x.calls) == 2 and len(x.tweets) == 1
    assert 0 < sum(clock.sleeps) < 60  # the normal backoff, not ~800 s


async def test_account_options_override_limits(redis_server, redis, keys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from bot.platforms import adapter_for

    accs = accounts(
        x={"rate_limits": {"tweets": {"limit": 5, "window_s": 60, "burst": 1}, "tweets_3h": False}}
    )
    settings = make_settings(redis_server.url, tmp_path, accounts=accs)
    a = adapter_for(settings.accounts[0])
    assert a.limits_for(mention()) == [Limit("tweets", 5, 60.0, 1)]  # type: ignore[attr-defined]
    assert [lim.endpoint for lim in a.limits_for(reply("x", "brandx", "dm"))] == [
        "dm",
        "dm_24h",
        "dm_app_24h",
    ]  # type: ignore[attr-defined]


async def test_stop_during_rate_limit_wait_drains_at_once(
    fakes, redis_server, redis, keys, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    x, _, xu, _ = fakes
    opts = {"rate_limits": {"tweets": {"limit": 1, "window_s": 3600, "burst": 1}}}
    settings = make_settings(redis_server.url, tmp_path, accounts=accounts(xu, x=opts))
    async with aiohttp.ClientSession() as http:
        from bot.outbox import Sender
        from bot.platforms import adapter_for

        adapters = {a.id: adapter_for(a) for a in settings.accounts}
        waiting = asyncio.Event()

        async def sleep(seconds: float) -> None:
            waiting.set()  # nothing fails here: the only waits are for a token
            await asyncio.sleep(seconds)

        sender = Sender(redis, keys, settings.worker, adapters, http, consumer="s1", sleep=sleep)
        for n in ("e1", "e2"):
            await enqueue_reply(redis, keys, mention(n, text=f"text {n}"))
        stop = asyncio.Event()
        task = asyncio.create_task(sender.run(stop))
        labels = {"platform": "x", "kind": "mention", "result": "sent"}
        sent = sample("replydesk_outbound_sends_total", **labels)
        try:
            await until(
                lambda: sample("replydesk_outbound_sends_total", **labels) == sent + 1,
                what="the first reply to be sent",
            )
            await asyncio.wait_for(waiting.wait(), 15)  # the second waits for a token (an hour)
            assert len(x.tweets) == 1
            stop.set()
            await asyncio.wait_for(task, 15)  # not the hour: the wait ends with the stop
        finally:
            task.cancel()
    assert len(x.tweets) == 1 and await redis.xlen(keys.dead) == 0
    assert (await redis.xpending(keys.outbox, keys.SENDERS))["pending"] == 1  # left for a reclaim
    assert await redis.get(keys.sending(mention("e2").reply_id)) is None


async def test_a_long_rate_limit_wait_keeps_the_reply_from_other_senders(
    fakes, redis_server, redis, keys, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """X has no idempotency key: a sender waiting out a Retry-After longer than the
    visibility timeout must keep its reply, or a second sender would post it too (or
    find the first one's send intent and give the reply up as undeliverable)."""
    x, _, xu, _ = fakes
    settings = make_settings(
        redis_server.url,
        tmp_path,
        accounts=accounts(xu),
        **{"worker.visibility_timeout_s": 0.3, "worker.claim_interval_s": 0.05},
    )
    x.fail_next(429, {"title": "Too Many Requests"}, headers={"Retry-After": "2"})
    async with aiohttp.ClientSession() as http:
        from bot.outbox import Sender
        from bot.platforms import adapter_for

        adapters = {a.id: adapter_for(a) for a in settings.accounts}
        senders = [
            Sender(redis, keys, settings.worker, adapters, http, consumer=f"s{n}") for n in (1, 2)
        ]
        handled = {"s1": 0, "s2": 0}  # entries each sender finished
        for sender in senders:

            async def counted(msg_id: str, fields: dict[str, str], s: Sender = sender) -> None:
                await Sender.handle_entry(s, msg_id, fields)
                handled[s.consumer] += 1

            sender.handle_entry = counted  # type: ignore[method-assign]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(senders[0].run(stop))]
        try:
            await enqueue_reply(redis, keys, mention())
            # The first sender met the 429 and now waits 2 s; the second starts meanwhile.
            await until(lambda: x.calls, what="the first sender's 429")
            tasks.append(asyncio.create_task(senders[1].run(stop)))
            await until(lambda: handled["s1"], what="the first sender to finish the reply")
        finally:
            stop.set()
            await asyncio.gather(*tasks)
    assert handled == {"s1": 1, "s2": 0}  # the second sender never took the reply over
    assert len(x.calls) == 2 and len(x.tweets) == 1  # the 429, then one post
    assert await redis.xlen(keys.dead) == 0
    assert (await redis.xpending(keys.outbox, keys.SENDERS))["pending"] == 0


async def _take_over(sender: Sender) -> None:
    """What a sender's reclaim does once the entry sat idle past the visibility timeout."""
    claimed = await sender.redis.xautoclaim(sender.stream, sender.group, sender.consumer, 0)
    for msg_id, fields in claimed[1]:
        await sender.handle_entry(
            msg_id.decode(), {k.decode(): v.decode() for k, v in fields.items()}
        )


@pytest.mark.parametrize("other", ["sent", "sending"])
async def test_a_sender_that_stalled_past_its_lease_does_not_post_the_reply_again(
    env, redis, keys, other
) -> None:  # type: ignore[no-untyped-def]
    """A sender that stalls (a frozen or starved process) after its first look at a reply
    loses the entry to another sender once the visibility timeout passes. When it goes on,
    the other sender has posted the reply (``sent``) or is posting it (``sending``): X has
    no idempotency key, so a post from the stalled one would be a second DM."""
    settings, clock, http, x, _ = env
    r = reply("x", "brandx", "dm", event="e1")
    await enqueue_reply(redis, keys, r)
    stalled = make_sender(settings, redis, keys, http, clock, consumer="stalled")
    taker = make_sender(settings, redis, keys, http, clock, consumer="taker")
    # The stall: after the sent/intent check, before the intent is written.
    at_stall, thaw = asyncio.Event(), asyncio.Event()
    adapter = stalled.adapters["brandx"]
    ready = adapter.ready

    async def stall(h: aiohttp.ClientSession) -> None:
        at_stall.set()
        await thaw.wait()
        await ready(h)

    adapter.ready = stall  # type: ignore[method-assign]
    await ensure_group(redis, keys.outbox, keys.SENDERS)
    ((_, ((msg_id, fields),)),) = await redis.xreadgroup(
        keys.SENDERS, "stalled", {keys.outbox: ">"}, count=1
    )
    first = asyncio.create_task(
        stalled.handle_entry(msg_id.decode(), {k.decode(): v.decode() for k, v in fields.items()})
    )
    await at_stall.wait()
    if other == "sending":
        x.hang_next()  # the taker's post is recorded at X, its answer still on the way
    second = asyncio.create_task(_take_over(taker))
    try:
        if other == "sent":
            await second
            assert await sent_record(redis, keys, r.reply_id) is not None
        else:
            await x.hanging.wait()
        thaw.set()
        await first
    finally:
        second.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await second
    assert len(x.dms) == 1, "the stalled sender posted the reply a second time"
    assert await redis.xlen(keys.dead) == 0


# -- network errors that certainly happened before the request left ----------------


async def _assert_retried_as_unsent(settings, clock, redis, keys, r: OutboundReply) -> None:  # type: ignore[no-untyped-def]
    (dead,) = await dead_entries(redis, keys)
    assert dead["error"].startswith("ConnectionTimeoutError")  # not "delivery unknown"
    assert len(clock.sleeps) == settings.worker.max_attempts - 1  # backed off, retried
    assert await redis.get(keys.sending(r.reply_id)) is None


@contextlib.contextmanager
def _dropping_connects() -> Iterator[str]:
    """The base URL of a host that drops connection attempts (an outage): its accept
    queue is full, so further SYNs go unanswered and the client's connect times out."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    backlog = []
    for _ in range(4):  # fill the accept queue: further SYNs are dropped
        c = socket.socket()
        c.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            c.connect(("127.0.0.1", port))
        backlog.append(c)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for c in (*backlog, listener):
            c.close()


async def test_a_connect_timeout_is_retried_not_unknown(
    redis_server, redis, keys, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """aiohttp's connect timeout is no ClientConnectorError, but the request never left,
    so X's reply is retried."""
    clock = FakeClock()
    timeout = aiohttp.ClientTimeout(total=30, connect=0.3)
    with _dropping_connects() as base:
        settings = make_settings(redis_server.url, tmp_path, accounts=accounts(base))
        async with aiohttp.ClientSession(timeout=timeout) as http:
            await deliver(make_sender(settings, redis, keys, http, clock), mention())
    await _assert_retried_as_unsent(settings, clock, redis, keys, mention())


async def test_a_network_error_keeps_the_access_token_out_of_the_dead_letter(
    redis_server, redis, keys, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """Weibo takes its access_token in the query (platforms.md §2.5), and aiohttp names
    the whole URL in a connect timeout: the dead stream (`replydesk dead list`) must not
    show the token."""
    clock = FakeClock()
    timeout = aiohttp.ClientTimeout(total=30, connect=0.3)
    dm = InboundEvent(
        platform="weibo",
        account="brandwb",
        kind="dm",
        event_id="d1",
        author=Author(id="6253282", handle=""),
        text="在吗",
        created_at=clock.now - 10,
        received_at=clock.now - 10,
    )
    await windows.record(redis, keys, dm)  # the DM opens the reply window
    with _dropping_connects() as base:
        settings = make_settings(redis_server.url, tmp_path, accounts=accounts(weibo_base=base))
        async with aiohttp.ClientSession(timeout=timeout) as http:
            await deliver(
                make_sender(settings, redis, keys, http, clock), OutboundReply.answering(dm, "您好")
            )
    (dead,) = await dead_entries(redis, keys)
    assert dead["error"].startswith("ConnectionTimeoutError")
    assert "/2/messages/reply.json" in dead["error"]  # where it failed is still there
    assert WEIBO_TOKEN not in dead["error"]


async def test_waiting_for_a_pooled_connection_is_retried_not_unknown(
    fakes, aiohttp_server, redis_server, redis, keys, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """All of the session's connections busy past the connect timeout: nothing was sent."""
    x, _, xu, _ = fakes
    entered, release = asyncio.Event(), asyncio.Event()

    async def busy(request: web.Request) -> web.Response:
        entered.set()
        await release.wait()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", busy)
    other = await aiohttp_server(app)
    settings = make_settings(redis_server.url, tmp_path, accounts=accounts(xu))
    clock = FakeClock()
    connector = aiohttp.TCPConnector(limit=1)
    timeout = aiohttp.ClientTimeout(total=30, connect=0.3)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        hold = asyncio.create_task(http.get(other.make_url("/")))
        await asyncio.wait_for(entered.wait(), 10)
        await deliver(make_sender(settings, redis, keys, http, clock), mention())
        release.set()
        (await hold).release()
    assert x.calls == []
    await _assert_retried_as_unsent(settings, clock, redis, keys, mention())


# -- Weibo: a mention's single reply is taken next to the send, by that reply --------


@pytest.fixture
async def weibo(aiohttp_server, redis_server, redis, keys, tmp_path):  # type: ignore[no-untyped-def]
    wb = FakeWeibo(token=WEIBO_TOKEN)
    srv = await aiohttp_server(wb.app)
    base = str(srv.make_url("")).rstrip("/")
    settings = make_settings(redis_server.url, tmp_path, accounts=accounts(weibo_base=base))
    clock = FakeClock()
    mentioned = InboundEvent(
        platform="weibo",
        account="brandwb",
        kind="mention",
        event_id="m1",
        author=Author(id="6253282", handle=""),
        text="@brand hello",
        reply_to_id="m1",
        created_at=clock.now - 10,
        received_at=clock.now - 10,
    )
    await windows.record(redis, keys, mentioned)  # one reply allowed
    async with aiohttp.ClientSession() as http:
        yield settings, clock, http, wb, mentioned


async def test_a_failure_during_the_rate_limit_wait_keeps_the_mention_reply(
    weibo, redis, keys
) -> None:  # type: ignore[no-untyped-def]
    """A sender that fails (a Redis error, or killed) while it waits for a rate-limit
    token has posted nothing: the mention's one reply is still there for the reclaim."""
    settings, clock, http, wb, mentioned = weibo
    r = OutboundReply.answering(mentioned, "Thanks, we're on it.")
    first = make_sender(settings, redis, keys, http, clock, consumer="s1")

    async def redis_gone(*args: Any, **kw: Any) -> float:
        raise RedisConnectionError("Redis went away during the wait")

    first.limiter.acquire = redis_gone  # type: ignore[method-assign]
    with pytest.raises(RedisConnectionError):
        await deliver(first, r)
    await _take_over(make_sender(settings, redis, keys, http, clock, consumer="s2"))
    assert [m["text"] for m in wb.messages] == [r.text]
    assert await redis.xlen(keys.dead) == 0 and await sent_record(redis, keys, r.reply_id)


async def test_a_reclaimed_reply_goes_out_on_the_mention_it_took(
    weibo, redis_server, redis, keys
) -> None:  # type: ignore[no-untyped-def]
    """A sender that took the mention and died before writing its intent posted nothing;
    the mark names its reply, so the reclaim sends it. Another reply still may not."""
    settings, clock, http, wb, mentioned = weibo
    r = OutboundReply.answering(mentioned, "Thanks, we're on it.")
    dying = aioredis.Redis.from_url(redis_server.url)  # its intent write fails
    real_eval, real_set = dying.eval, dying.set

    def no_intent(real: Any) -> Any:
        async def call(*args: Any, **kw: Any) -> Any:
            if keys.sending(r.reply_id) in args:  # a command that writes the intent
                raise RedisConnectionError("killed before the intent was written")
            return await real(*args, **kw)

        return call

    dying.eval, dying.set = no_intent(real_eval), no_intent(real_set)  # type: ignore[method-assign]
    try:
        with pytest.raises(RedisConnectionError):
            await deliver(make_sender(settings, dying, keys, http, clock, consumer="s1"), r)
    finally:
        await dying.aclose()
    state = keys.user_state("weibo", "brandwb", "6253282")
    assert (await redis.hget(state, "mention:m1:used")).decode() == r.reply_id
    second = make_sender(settings, redis, keys, http, clock, consumer="s2")
    await _take_over(second)
    assert [m["text"] for m in wb.messages] == [r.text]
    await deliver(second, OutboundReply.answering(mentioned, "and another", n=1))
    assert len(wb.messages) == 1
    (dead,) = await dead_entries(redis, keys)
    assert dead["error"] == windows.REASONS["mention_used"]
    shown = await windows.describe(redis, keys, "weibo", "brandwb", "6253282", now=clock.now)
    assert shown["mentions_answerable"] == []


# -- Redis outages --------------------------------------------------------------


@pytest.mark.parametrize("stopping", [False, True], ids=["waited-out", "stop-meanwhile"])
async def test_a_redis_outage_after_the_platform_confirmed(fakes, tmp_path, stopping) -> None:  # type: ignore[no-untyped-def]
    """Redis goes away right after X confirmed the post, for longer than the client's own
    retries: the sender keeps trying to record it, instead of leaving the intent to a
    reclaim that would report a posted reply as "delivery unknown". A stop meanwhile
    ends the tries (the drain must not hang on Redis) and leaves exactly that."""
    x, _, xu, _ = fakes
    with RedisServer() as server:  # its own: this test stops it
        redis = connect(server.url)  # the service's client and its retry budget
        keys = Keys("rd")
        settings = make_settings(server.url, tmp_path, accounts=accounts(xu))
        clock = FakeClock()
        backed_off = asyncio.Event()

        async def sleep(seconds: float) -> None:
            if server.proc is None:  # a write failed for good while Redis was away
                backed_off.set()
            await clock.sleep(seconds)

        try:
            async with aiohttp.ClientSession() as http:
                sender = make_sender(settings, redis, keys, http, clock)
                sender.sleep = sleep
                adapter = sender.adapters["brandx"]
                post = adapter.send

                async def post_then_lose_redis(h: Any, out: OutboundReply) -> Any:
                    result = await post(h, out)
                    await asyncio.to_thread(server.stop)
                    return result

                adapter.send = post_then_lose_redis  # type: ignore[method-assign]
                stop = asyncio.Event()
                if stopping:
                    await enqueue_reply(redis, keys, mention())
                    task = asyncio.create_task(sender.run(stop))
                else:
                    task = asyncio.create_task(deliver(sender, mention()))
                await until(lambda: backed_off.is_set() or task.done(), 60, "a failed record")
                if task.done():
                    task.result()  # the failure escaped: the reply is left for "unknown"
                if stopping:
                    stop.set()
                    await asyncio.wait_for(task, 60)  # drained without Redis
                await asyncio.to_thread(server.start)
                await asyncio.wait_for(task, 60)
            assert len(x.tweets) == 1
            rec = await sent_record(redis, keys, mention().reply_id)
            intent = await redis.get(keys.sending(mention().reply_id))
            pending = (await redis.xpending(keys.outbox, keys.SENDERS))["pending"]
            if stopping:  # as a kill would leave it: the reclaim reports it for a check
                assert rec is None and intent is not None and pending == 1
            else:
                assert rec is not None and intent is None and pending == 0
            assert await redis.xlen(keys.dead) == 0
        finally:
            await redis.aclose()


async def test_the_senders_group_is_recreated_when_redis_lost_it(env, redis, keys) -> None:  # type: ignore[no-untyped-def]
    """Redis came back empty: enqueueing makes a bare outbox stream, and the sender must
    create its group again to read it (NOGROUP otherwise, forever)."""
    settings, clock, http, x, _ = env
    stop = asyncio.Event()
    task = asyncio.create_task(make_sender(settings, redis, keys, http, clock).run(stop))
    try:
        await until(lambda: redis.exists(keys.outbox), what="the senders group")
        await redis.flushall()
        await enqueue_reply(redis, keys, mention())
        await until(lambda: sent_record(redis, keys, mention().reply_id), what="the reply sent")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert len(x.tweets) == 1


# -- replies that do not reach the customer reach their ticket ----------------------


async def test_every_dead_reply_goes_to_on_dead_first_with_its_outcome(env, redis, keys) -> None:  # type: ignore[no-untyped-def]
    settings, clock, http, x, _ = env
    seen: list[tuple[str, str, str]] = []

    async def on_dead(r: OutboundReply, error: str, outcome: str) -> None:
        assert await redis.xlen(keys.dead) == len(seen)  # before its dead letter
        seen.append((r.reply_id, outcome, error))

    sender = make_sender(settings, redis, keys, http, clock)
    sender.on_dead = on_dead
    x.fail_next(403, {"title": "Forbidden", "detail": "You cannot send messages to this user."})
    await deliver(sender, mention("refused"))
    x.fail_next(500, {"title": "Internal Error"}, times=settings.worker.max_attempts)
    await deliver(sender, mention("failed"))
    x.drop_next()
    await deliver(sender, mention("unknown"))
    await deliver(sender, reply("x", "gone", "dm", event="noaccount"))
    assert [(i.split(":")[2], o) for i, o, _e in seen] == [
        ("refused", "refused"),
        ("failed", "failed"),
        ("unknown", "unknown"),
        ("noaccount", "failed"),
    ]
    assert "You cannot send messages to this user" in seen[0][2]
    assert seen[2][2].startswith("delivery unknown:")
    assert await redis.xlen(keys.dead) == 4


async def test_a_failing_on_dead_hook_keeps_the_entry_for_another_run(env, redis, keys) -> None:  # type: ignore[no-untyped-def]
    settings, clock, http, x, _ = env
    calls: list[str] = []

    async def on_dead(r: OutboundReply, error: str, outcome: str) -> None:
        calls.append(outcome)
        if len(calls) == 1:
            raise RedisConnectionError("the ticket store is down")

    sender = make_sender(settings, redis, keys, http, clock)
    sender.on_dead = on_dead
    x.fail_next(403, {"title": "Forbidden"}, times=2)
    with pytest.raises(RedisConnectionError):
        await deliver(sender, mention())
    assert await redis.xlen(keys.dead) == 0
    assert (await redis.xpending(keys.outbox, keys.SENDERS))["pending"] == 1
    # Its reclaim runs the hook again, then dead-letters it.
    ((msg_id, fields),) = await redis.xrange(keys.outbox)
    await sender.handle_entry(msg_id.decode(), {k.decode(): v.decode() for k, v in fields.items()})
    assert calls == ["refused", "refused"] and await redis.xlen(keys.dead) == 1


async def test_a_ticket_reply_sent_is_announced_to_the_console(env, redis, keys) -> None:  # type: ignore[no-untyped-def]
    settings, clock, http, _x, _ = env
    sender = make_sender(settings, redis, keys, http, clock)
    await deliver(sender, mention("e1", ticket_id="T7", source="agent"))
    await deliver(sender, mention("e2"))  # not a ticket's: nothing to announce
    rows = await redis.xrange(keys.events)
    assert [(f[b"type"], json.loads(f[b"data"])["ticket_id"]) for _, f in rows] == [
        (b"ticket.delivery", "T7")
    ]
    assert json.loads(rows[0][1][b"data"])["state"] == "sent"
