"""Outbound rate limits: per-account, per-endpoint limits in Redis.

A limit whose window is an hour or less is a token bucket: it holds ``burst`` tokens and
refills at ``(limit - burst) / window``, so any window of ``window_s`` seconds admits at
most ``burst + (limit - burst) = limit`` requests however they are spread, whichever way
the platform's windows are aligned, and sends are paced (no flood). A longer window (X:
300 tweets per 3 h, 1000 DMs per 24 h) is counted exactly instead, over a sliding
window (a log of send times): a bucket's pace there, one DM every 86 s, would hold a
busy morning's replies for hours although the platform allows them at once; the short
window's bucket still paces them. Several limits can guard one call (X: 100 per 15 min
*and* 300 per 3 h); they are checked and charged together by one Lua script, so every
sender process shares them atomically.

The platform's own answer wins over our model: ``remaining: 0`` with a reset time, or a
429's ``Retry-After``, block the endpoint's bucket until then. Callers wait (async)
rather than fail; waits are counted in metrics.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot import metrics
from bot.redis import Keys, Redis

# Windows longer than this are counted exactly (a log of send times) instead of paced.
PACED_WINDOW_S = 3600.0
# The longest wait a platform's headers can mean: X's longest window is 24 h (DMs, 1000 /
# 24 h, platforms.md §1.7). A reset further away is a misread (a reset in milliseconds
# read as seconds would block an account for 50,000 years), so waits stop there.
MAX_WAIT_S = 24 * 3600.0


@dataclass(frozen=True)
class Limit:
    """At most ``limit`` calls per ``window_s`` seconds on ``endpoint``; per account, or
    per ``scope`` where several accounts share the limit (X: DMs per app)."""

    endpoint: str
    limit: int
    window_s: float
    burst: int | None = None
    scope: str = ""

    @property
    def exact(self) -> bool:
        """Counted over a sliding window, not paced by a bucket (``burst`` unused)."""
        return self.window_s > PACED_WINDOW_S

    @property
    def capacity(self) -> int:
        if self.burst is not None:
            return max(1, min(self.burst, self.limit))
        return max(1, min(self.limit // 10, 20))

    @property
    def refill_per_ms(self) -> float:
        # A bucket with burst == limit still refills (slowly) rather than never.
        return max(self.limit - self.capacity, 1) / (self.window_s * 1000.0)

    @classmethod
    def from_option(cls, endpoint: str, base: Limit | None, opt: Mapping[str, Any]) -> Limit:
        return cls(
            endpoint=endpoint,
            limit=int(opt.get("limit", base.limit if base else 60)),
            window_s=float(opt.get("window_s", base.window_s if base else 60.0)),
            burst=int(opt["burst"]) if "burst" in opt else (base.burst if base else None),
            scope=base.scope if base else "",
        )


def apply_overrides(defaults: Sequence[Limit], options: Mapping[str, Any]) -> list[Limit]:
    """Account option ``rate_limits: {endpoint: {limit, window_s, burst} | false}``."""
    over = options.get("rate_limits") or {}
    out = []
    for lim in defaults:
        o = over.get(lim.endpoint)
        if o is False:
            continue  # explicitly disabled
        out.append(Limit.from_option(lim.endpoint, lim, o) if isinstance(o, Mapping) else lim)
    return out


# KEYS: per limit its hash (bucket state, blocked_until) and its log (a zset of send
# times, used by exact limits). ARGV: now_ms, then per limit: mode ('b' bucket, 'w'
# exact window), capacity or limit, refill per ms or window ms, ttl ms.
# Returns 0 when every limit admitted the call (all charged), else the ms to wait
# (nothing charged).
_ACQUIRE_LUA = """
local now = tonumber(ARGV[1])
local wait = 0
local state = {}
for i = 1, #KEYS / 2 do
  local hash, log = KEYS[2 * i - 1], KEYS[2 * i]
  local mode, a, b = ARGV[4 * i - 2], tonumber(ARGV[4 * i - 1]), tonumber(ARGV[4 * i])
  local v = redis.call('HMGET', hash, 'tokens', 'ts', 'blocked_until')
  local blocked = tonumber(v[3]) or 0
  local w = 0
  if blocked > now then w = blocked - now end
  if mode == 'b' then
    local tokens = tonumber(v[1]) or a
    local ts = tonumber(v[2]) or now
    if now > ts then tokens = math.min(a, tokens + (now - ts) * b) end
    state[i] = tokens
    if tokens < 1 then w = math.max(w, math.ceil((1 - tokens) / b)) end
  else
    redis.call('ZREMRANGEBYSCORE', log, '-inf', now - b)
    local n = redis.call('ZCARD', log)
    if n >= a then
      -- the send whose expiry leaves a - 1 in the window
      local oldest = redis.call('ZRANGE', log, n - a, n - a, 'WITHSCORES')
      w = math.max(w, tonumber(oldest[2]) + b - now)
    end
  end
  if w > wait then wait = w end
end
if wait > 0 then return wait end
for i = 1, #KEYS / 2 do
  local hash, log = KEYS[2 * i - 1], KEYS[2 * i]
  local ttl = tonumber(ARGV[4 * i + 1])
  if ARGV[4 * i - 2] == 'b' then
    redis.call('HSET', hash, 'tokens', tostring(state[i] - 1), 'ts', tostring(now))
    redis.call('PEXPIRE', hash, ttl)
  else
    local seq = redis.call('HINCRBY', hash, 'seq', 1)
    redis.call('ZADD', log, now, now .. '-' .. seq)
    redis.call('PEXPIRE', log, ttl)
    redis.call('PEXPIRE', hash, ttl)
  end
end
return 0
"""

# KEYS: bucket. ARGV: blocked-until ms, ttl ms. Only ever extends a block.
_BLOCK_LUA = """
local cur = tonumber(redis.call('HGET', KEYS[1], 'blocked_until')) or 0
if tonumber(ARGV[1]) > cur then
  redis.call('HSET', KEYS[1], 'blocked_until', ARGV[1])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
end
return 0
"""


class RateLimiter:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        max_sleep_s: float = 5.0,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.clock = clock
        self.sleep = sleep
        self.max_sleep_s = max_sleep_s
        self._acquire = redis.register_script(_ACQUIRE_LUA)
        # One waiter per bucket set polls Redis; the others queue here (FIFO) instead of
        # all waking at once for the same token.
        self._queues: dict[tuple[str, ...], asyncio.Lock] = {}
        self._block = redis.register_script(_BLOCK_LUA)

    async def try_acquire(self, account: str, limits: Sequence[Limit]) -> float:
        """Take one token from every bucket, or none; returns 0 or the seconds to wait."""
        if not limits:
            return 0.0
        args: list[Any] = [int(self.clock() * 1000)]
        keys: list[str] = []
        for lim in limits:
            ttl = int(lim.window_s * 2000) + 60_000
            if lim.exact:
                args += ["w", lim.limit, int(lim.window_s * 1000), ttl]
            else:
                args += ["b", lim.capacity, repr(lim.refill_per_ms), ttl]
            bucket = self.keys.bucket(lim.scope or account, lim.endpoint)
            keys += [bucket, f"{bucket}:log"]
        wait_ms = int(await self._acquire(keys=keys, args=args))
        return wait_ms / 1000.0

    async def acquire(self, account: str, limits: Sequence[Limit], *, platform: str = "") -> float:
        """Wait until every bucket has a token and take it; returns the seconds waited."""
        if not limits:
            return 0.0
        waited = 0.0
        wait = await self.try_acquire(account, limits)  # the common case: no wait, no lock
        if wait > 0:
            qkey = (account, *(lim.endpoint for lim in limits))
            async with self._queues.setdefault(qkey, asyncio.Lock()):
                while True:
                    wait = await self.try_acquire(account, limits)
                    if wait <= 0:
                        break
                    step = min(wait, self.max_sleep_s)
                    await self.sleep(step)
                    waited += step
        if waited:
            metrics.OUTBOUND_RATELIMIT_WAITS.labels(platform).inc()
            metrics.OUTBOUND_RATELIMIT_WAIT.labels(platform).observe(waited)
        return waited

    async def block(
        self, account: str, endpoint: str, until: float, window_s: float = 3600
    ) -> None:
        """No call on ``endpoint`` before epoch ``until`` (platform said so)."""
        ttl = int(max(until - self.clock(), 0) * 1000 + window_s * 1000)
        await self._block(keys=[self.keys.bucket(account, endpoint)], args=[int(until * 1000), ttl])

    async def observe(
        self, account: str, limits: Sequence[Limit], headers: Mapping[str, str]
    ) -> None:
        """Honour ``x-rate-limit-*`` / ``X-RateLimit-*``: remaining 0 blocks until reset."""
        now = self.clock()
        remaining, reset = parse_rate_headers(headers, now)
        if remaining is not None and remaining <= 0 and reset is not None and limits:
            await self.block(account, limits[0].endpoint, min(reset, now + MAX_WAIT_S))


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def parse_rate_headers(headers: Mapping[str, str], now: float) -> tuple[int | None, float | None]:
    """(remaining, reset as epoch seconds) from X (epoch) or Mastodon (ISO 8601) headers."""
    h = _lower(headers)
    rem_raw = h.get("x-rate-limit-remaining", h.get("x-ratelimit-remaining"))
    reset_raw = h.get("x-rate-limit-reset", h.get("x-ratelimit-reset"))
    remaining: int | None = None
    reset: float | None = None
    if rem_raw is not None:
        try:
            remaining = int(float(rem_raw))
        except ValueError:
            remaining = None
    if reset_raw:
        reset = _parse_time(reset_raw, now)
    return remaining, reset


def _parse_time(v: str, now: float) -> float | None:
    v = v.strip()
    try:
        x = float(v)
    except ValueError:
        try:
            return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    if not math.isfinite(x):
        return None
    # Epoch milliseconds, epoch seconds, or (some servers) seconds from now.
    if x > 1e11:
        return x / 1000
    return x if x > 1e9 else now + x


def retry_after(
    headers: Mapping[str, str], now: float, *, rate_refused: bool = False
) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or HTTP date), else until the reset
    header's time, but only when the request was refused for rate (``rate_refused``: a
    429) or no calls remain. X sends ``x-rate-limit-reset`` on every answer: after a 5xx
    with calls left it says when the window rolls over, not when to try again."""
    h = _lower(headers)
    ra = h.get("retry-after")
    if ra:
        try:
            seconds = float(ra)
        except ValueError:
            try:
                seconds = email.utils.parsedate_to_datetime(ra).timestamp() - now
            except (TypeError, ValueError):
                seconds = math.nan
        if math.isfinite(seconds):
            return min(max(0.0, seconds), MAX_WAIT_S)
    remaining, reset = parse_rate_headers(headers, now)
    if reset is not None and (rate_refused or (remaining is not None and remaining <= 0)):
        return min(max(0.0, math.ceil(reset - now)), MAX_WAIT_S)
    return None
