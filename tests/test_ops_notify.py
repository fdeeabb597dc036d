"""Crisis and SLA notifications outlive a webhook outage, once each, and never log the URL."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import ClientSession

from bot import metrics
from bot.config import Secret
from bot.ops import notify
from tests.support.notify_hook import hook_server
from tests.support.waiting import until

T0 = 1_800_000_000.0


def count(kind: str, result: str) -> float:
    return metrics.NOTIFICATIONS.labels(kind, result)._value.get()


async def queued(redis: Any, keys: Any) -> int:
    return int(await redis.llen(notify.queue_key(keys))) + int(
        await redis.zcard(notify.retry_key(keys))
    )


async def test_an_outage_delays_notifications_and_each_arrives_once(
    redis: Any, keys: Any, aiohttp_server: Any
) -> None:
    # Down for 12 posts: more than the old three tries of any one item.
    refuse = {"n": 12}
    server, got = await hook_server(aiohttp_server, refuse)
    url = Secret(str(server.make_url("/hook")))
    texts = [f"alert {i}" for i in range(4)]
    for i, text in enumerate(texts):
        kind = "crisis" if i % 2 else "sla"
        await notify.enqueue(redis, keys, kind=kind, text=text, data={"n": i})
    dropped = count("crisis", "dropped") + count("sla", "dropped")
    fast = notify.Backoff(first_s=0.02, max_s=0.1, give_up_s=60)
    stop = asyncio.Event()
    async with ClientSession() as http:
        # Two workers' delivery loops, as in production.
        loops = [
            asyncio.create_task(
                notify.run(redis, keys, http, url, stop, interval_s=0.02, backoff=fast)
            )
            for _ in range(2)
        ]
        await until(lambda: refuse["n"] == 0, what="the outage")
        await until(lambda: len(got) >= len(texts), what="every notification")
        stop.set()
        await asyncio.gather(*loops)
    assert sorted(g["text"] for g in got) == texts  # each once
    assert await queued(redis, keys) == 0
    assert count("crisis", "dropped") + count("sla", "dropped") == dropped


async def test_a_failed_notification_waits_its_backoff_and_gives_up_after_an_hour(
    redis: Any, keys: Any, aiohttp_server: Any
) -> None:
    refuse = {"n": 10**6}
    server, _ = await hook_server(aiohttp_server, refuse)
    url = Secret(str(server.make_url("/hook")))
    await notify.enqueue(redis, keys, kind="crisis", text="crisis on acme", data={})
    errors, dropped = count("crisis", "error"), count("crisis", "dropped")
    async with ClientSession() as http:

        async def round_at(t: float) -> int:
            await notify.deliver_pending(redis, keys, http, url, now=T0 + t)
            return refuse.get("seen", 0)

        assert await round_at(0) == 1
        assert await round_at(1.9) == 1  # not due before 2 s
        assert await round_at(2) == 2
        assert await round_at(5.9) == 2  # then 4 s later
        assert await round_at(6) == 3
        assert await round_at(3599) == 4  # still retried within the hour
        assert count("crisis", "dropped") == dropped
        assert await round_at(3615) == 5  # 16 s later, past the hour: given up
    assert count("crisis", "error") == errors + 4
    assert count("crisis", "dropped") == dropped + 1
    assert await queued(redis, keys) == 0


async def test_no_log_line_carries_the_webhook_url(
    redis: Any, keys: Any, aiohttp_server: Any, capsys: Any
) -> None:
    server, _ = await hook_server(aiohttp_server, {"n": 10**6})
    urls = [
        "hooks.example/services/T000/B000/SECRETTOKEN1",  # a paste without the scheme
        "https://hooks.example:99999/services/T000/B000/SECRETTOKEN2",  # a bad port
        str(server.make_url("/hook/SECRETTOKEN3")),  # answers 503
    ]
    async with ClientSession() as http:
        for url in urls:
            await notify.enqueue(redis, keys, kind="crisis", text="t", data={})
            await notify.deliver_pending(redis, keys, http, Secret(url))
    out = capsys.readouterr()
    logs = out.out + out.err
    assert logs.count("notification_failed") == 3
    assert "503" in logs  # the HTTP status is logged ...
    for i in (1, 2, 3):
        assert f"SECRETTOKEN{i}" not in logs  # ... never the URL
    assert "hooks.example" not in logs
