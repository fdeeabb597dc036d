"""How long a burst of replies waits for X's default rate limits, on a simulated clock.

    .venv/bin/python -m bench.ratelimits [--replies 50,100,300]

A real redis-server and the real limiter script (bot/ratelimit.py); only time is
simulated, so a day of waiting takes a second. Each row sends N replies back to back on
one account (public replies: tweets 100 / 15 min + 300 / 3 h; DMs: 200 / 15 min + 1000 /
24 h + the app's 15000 / 24 h) and reports when the last one was admitted and the most
sent in any window of each limit. "paced" is the baseline, measured in the same run:
every window a token bucket, as before session 32; "exact": windows over an hour
counted over a sliding window.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any
from unittest import mock

from bot import ratelimit
from bot.platforms.x import DM_APP_LIMIT, DM_LIMITS, TWEET_LIMITS
from bot.ratelimit import Limit, RateLimiter
from bot.redis import Keys
from tests.fakes.base import max_in_window
from tests.support.redis_server import RedisServer


class SimClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


async def last_admitted(redis: Any, limits: list[Limit], n: int, prefix: str) -> list[float]:
    clock = SimClock()
    rl = RateLimiter(redis, Keys(prefix), clock=clock.time, sleep=clock.sleep, max_sleep_s=1e9)
    start, times = clock.now, []
    for _ in range(n):
        await rl.acquire("acct", limits)
        times.append(clock.now - start)
    return times


def minutes(s: float) -> str:
    return f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


async def main(sizes: list[int]) -> None:
    import redis.asyncio as aioredis

    server = RedisServer(appendfsync="no")
    server.start()
    redis = aioredis.Redis.from_url(server.url)
    kinds = {"public replies": TWEET_LIMITS, "DMs": [*DM_LIMITS, DM_APP_LIMIT]}
    print(
        "| replies | kind | last admitted, paced | last admitted, exact | most in any window (exact) |"
    )
    print("|---:|---|---:|---:|---|")
    try:
        for n in sizes:
            for kind, limits in kinds.items():
                with mock.patch.object(ratelimit, "PACED_WINDOW_S", float("inf")):
                    paced = await last_admitted(redis, limits, n, f"paced{n}{kind}")
                exact = await last_admitted(redis, limits, n, f"exact{n}{kind}")
                peaks = ", ".join(
                    f"{max_in_window(exact, lim.window_s)} / {lim.limit} per {minutes(lim.window_s)}"
                    for lim in limits
                )
                print(f"| {n} | {kind} | {minutes(paced[-1])} | {minutes(exact[-1])} | {peaks} |")
    finally:
        await redis.aclose()
        server.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--replies", default="50,100,300")
    args = ap.parse_args()
    asyncio.run(main([int(x) for x in args.replies.split(",")]))
