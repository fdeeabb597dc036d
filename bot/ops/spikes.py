"""Crisis alerts: a per-account spike in negative messages, raised once and cleared.

Each account has, in Redis (all under ``keys.ns("ops", ...)``):

* ``negb:{account}``   hash bucket-index → negatives in that bucket (``ops.bucket_s``);
* ``spike:{account}``  hash with the baseline (EWMA of negatives per bucket), the last
  bucket folded into it, and the active alert id, threshold and peak;
* ``negrecent:{account}`` zset of the window's negative messages (compact JSON), so a
  raised alert can take the messages that made it;
* ``alerts`` zset of alert ids by raise time; ``alert:{id}`` hash; ``alert:{id}:events``
  list of the spike's messages (the window at raise time, then every negative message
  while it stays active);
* ``spiked:{event key}`` string with a TTL: the message was counted (a redelivered event
  is not counted twice).

One Lua script counts, folds the baseline, decides the transition and writes everything
the transition implies: the alert, its messages, the console banner event on
``keys.events`` and the queued notification (``ops:notify``). So any number of worker
processes can call it, exactly one caller sees ``raised`` (and later ``cleared``), and a
process killed at any point leaves either nothing or the whole transition; only the
process-local metric and log line follow the script. The caller reads the active alert id
first (the script needs that alert's keys) and the script refuses with ``retry`` if
another worker changed it in between.

Window count >= max(factor * max(baseline, floor), min_count) raises; falling below
``clear_ratio`` of that threshold clears. The baseline is frozen while an alert is active
so that a long crisis does not become the new normal and clear itself. It is bias-
corrected (an EWMA started at zero would call a busy account's normal rate a spike and
then, frozen, never clear it). It folds only buckets that have left the window, so the
window is compared with the time before it, and a new account raises nothing until its
first bucket has (one window after its first message).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

import structlog

from bot import metrics
from bot.config import OpsConfig
from bot.models import InboundEvent
from bot.ops import notify
from bot.redis import EVENTS_MAXLEN, Keys, Redis, as_str

log = structlog.get_logger(__name__)

# Idle accounts' spike state disappears after this long.
STATE_TTL_S = 30 * 24 * 3600
# Tries when another worker raises or clears this account's alert between read and script.
_RETRIES = 5

# KEYS: 1 state, 2 buckets, 3 recent, 4 alerts index, 5 new alert hash, 6 new alert events,
#       7 active alert hash, 8 active alert events (both = 5, 6 when none is active),
#       9 console events stream, 10 notification queue, 11 the message's "counted once"
#       marker (any key when ARGV[20] is '')
# ARGV: 1 now, 2 bucket_s, 3 nwin, 4 alpha, 5 floor, 6 factor, 7 min_count, 8 clear_ratio,
#       9 increment (0|1), 10 item json, 11 events_max, 12 new alert id, 13 account, 14 ttl,
#       15 active alert id the caller read ('' for none), 16 events stream maxlen,
#       17 notification queue max, 18 raised text format (count, baseline, threshold, id),
#       19 cleared text format (id, peak), 20 marker ttl ('': count without a marker)
# Returns {transition, alert id, window count, baseline, threshold, peak} as strings, or
# {'retry'} when the active alert is no longer the one the caller read.
_SPIKE_LUA = """
local now = tonumber(ARGV[1])
local bs = tonumber(ARGV[2])
local nwin = tonumber(ARGV[3])
local alpha = tonumber(ARGV[4])
local floor = tonumber(ARGV[5])
local factor = tonumber(ARGV[6])
local min_count = tonumber(ARGV[7])
local clear_ratio = tonumber(ARGV[8])
local events_max = tonumber(ARGV[11])
local ttl = tonumber(ARGV[14])
local cur = math.floor(now / bs)
local st = redis.call('HMGET', KEYS[1], 'ewma', 'last', 'alert', 'thr', 'peak', 'n')
local ewma = tonumber(st[1]) or 0
local last = tonumber(st[2]) or (cur - 1)
local n = tonumber(st[6]) or 0
local active = st[3] or ''
if active ~= ARGV[15] then
  return {'retry'}
end
-- A message counts once, whichever run of its event gets here first (the marker is set
-- with the count, so a run that failed before this line counts it on the next one).
local inc = ARGV[9] == '1'
if inc and ARGV[20] ~= '' then
  inc = redis.call('SET', KEYS[11], '1', 'NX', 'EX', tonumber(ARGV[20])) ~= false
end
if inc then
  redis.call('HINCRBY', KEYS[2], tostring(cur), 1)
  redis.call('ZADD', KEYS[3], now, ARGV[10])
end
local raw = redis.call('HGETALL', KEYS[2])
local order, counts = {}, {}
for i = 1, #raw, 2 do
  local b = tonumber(raw[i])
  counts[b] = tonumber(raw[i + 1])
  order[#order + 1] = b
end
table.sort(order)
-- Fold the buckets that have left the window, (last, cur-nwin], into the EWMA (empty
-- ones count as zero): the window is compared with what came before it, so a burst never
-- raises its own baseline. A new account's first bucket is folded one window later.
local upto = cur - nwin
if upto > last then
  if active == '' then
    local p = last
    for _, b in ipairs(order) do
      if b > last and b <= upto then
        ewma = ewma * (1 - alpha) ^ (b - p - 1)
        ewma = (1 - alpha) * ewma + alpha * counts[b]
        p = b
      end
    end
    ewma = ewma * (1 - alpha) ^ (upto - p)
    n = math.min(n + (upto - last), 1000000)
  end
  last = upto
end
local count = 0
for _, b in ipairs(order) do
  if b > cur - nwin and b <= cur then
    count = count + counts[b]
  elseif b <= cur - nwin and b <= last then
    redis.call('HDEL', KEYS[2], tostring(b))
  end
end
local win_start = (cur - nwin + 1) * bs
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. win_start)
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -(events_max + 1))
-- An EWMA started at zero understates the rate until it has seen many buckets: divide
-- by the weight its n buckets carry (the usual bias correction), so a busy account's
-- baseline is right from its first buckets. No alert before one bucket has left the
-- window: with no history, a busy account's normal rate would look like a spike (and,
-- the baseline frozen, stay raised).
local base = 0
if n > 0 then base = ewma / (1 - (1 - alpha) ^ n) * nwin end
local thr = math.max(factor * math.max(base, floor), min_count)
local result = 'none'
local peak = tonumber(st[5]) or 0
if active == '' then
  if count >= thr and n >= 1 then
    result = 'raised'
    active = ARGV[12]
    peak = count
    redis.call('HSET', KEYS[1], 'alert', active, 'thr', tostring(thr), 'peak', tostring(peak))
    redis.call('HSET', KEYS[5], 'id', active, 'account', ARGV[13], 'status', 'active',
      'raised_at', ARGV[1], 'count', tostring(count), 'baseline', tostring(base),
      'threshold', tostring(thr))
    redis.call('ZADD', KEYS[4], now, active)
    local items = redis.call('ZRANGEBYSCORE', KEYS[3], win_start, '+inf')
    for i = 1, #items, 100 do
      redis.call('RPUSH', KEYS[6], unpack(items, i, math.min(i + 99, #items)))
    end
  end
else
  thr = tonumber(st[4]) or thr
  if count < thr * clear_ratio then
    result = 'cleared'
    redis.call('HDEL', KEYS[1], 'alert', 'thr', 'peak')
    redis.call('HSET', KEYS[7], 'status', 'cleared', 'cleared_at', ARGV[1], 'peak',
      tostring(peak))
  else
    result = 'active'
    if count > peak then
      peak = count
      redis.call('HSET', KEYS[1], 'peak', tostring(peak))
      -- the alert's own record too: the API and console show the peak while it lasts
      redis.call('HSET', KEYS[7], 'peak', tostring(peak))
    end
    if inc then
      -- later messages of the same spike join it
      redis.call('RPUSH', KEYS[8], ARGV[10])
      redis.call('LTRIM', KEYS[8], -events_max, -1)
    end
  end
end
-- The baseline learns from every call (frozen while an alert is active, above), and an
-- idle account's state goes away.
redis.call('HSET', KEYS[1], 'ewma', tostring(ewma), 'last', tostring(last), 'n', tostring(n))
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
redis.call('EXPIRE', KEYS[3], ttl)
if result == 'raised' or result == 'cleared' then
  local kind, text = 'alert.raised', ''
  if result == 'raised' then
    text = string.format(ARGV[18], count, base, thr, active)
  else
    kind = 'alert.cleared'
    text = string.format(ARGV[19], active, peak)
  end
  local function r3(x) return tonumber(string.format('%.3f', x)) end
  local payload = {alert_id = active, account = ARGV[13], window_count = count,
    baseline = r3(base), threshold = r3(thr), peak = peak, at = now}
  -- the console shows an active alert as a banner; fields mirror the ticket events
  redis.call('XADD', KEYS[9], 'MAXLEN', '~', ARGV[16], '*', 'type', kind,
    'account', ARGV[13], 'alert_id', active, 'data', cjson.encode(payload))
  -- the same item shape as bot.ops.notify.queue_in
  payload.event = kind
  redis.call('RPUSH', KEYS[10], cjson.encode({kind = 'crisis', text = text, data = payload,
    attempts = 0}))
  redis.call('LTRIM', KEYS[10], -tonumber(ARGV[17]), -1)
end
return {result, active, tostring(count), tostring(base), tostring(thr), tostring(peak)}
"""


def ops_key(keys: Keys, *parts: str) -> str:
    return keys.ns("ops", *parts)


@dataclass(slots=True)
class SpikeState:
    transition: str  # none | raised | active | cleared
    alert_id: str
    count: int
    baseline: float
    threshold: float
    peak: int


def message_item(event: InboundEvent, *, intent: str, now: float) -> str:
    """What an alert keeps of a message: enough for agents to read the spike together."""
    return json.dumps(
        {
            "key": event.key,
            "event_id": event.event_id,
            "platform": event.platform,
            "kind": event.kind,
            "author": event.author.handle or event.author.id,
            "followers": event.author.followers,
            "text": event.text[:500],
            "intent": intent,
            "at": round(now, 3),
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


class SpikeDetector:
    def __init__(self, redis: Redis, keys: Keys, cfg: OpsConfig) -> None:
        self.redis = redis
        self.keys = keys
        self.cfg = cfg
        self._script = redis.register_script(_SPIKE_LUA)
        self._alpha = 1.0 - 0.5 ** (cfg.bucket_s / cfg.baseline_half_life_s)

    async def observe(
        self,
        account: str,
        *,
        now: float,
        item: str | None = None,
        once: str | None = None,
        once_ttl_s: int = 24 * 3600,
    ) -> SpikeState:
        """Count one negative message (``item``) or just re-evaluate (``item`` None). The
        script records a transition with its banner event and notification; this process
        then updates its metrics and logs it. ``once``: the message's event key; another
        call with it (a redelivered event) re-evaluates without counting it again."""
        k = self.keys
        state_key = ops_key(k, "spike", account)
        marker = ops_key(k, "spiked", once or "-")
        for _ in range(_RETRIES):
            new_id = f"{int(now)}-{secrets.token_hex(4)}"
            active = await active_alert(self.redis, k, account) or ""
            raw = await self._script(
                keys=[
                    state_key,
                    ops_key(k, "negb", account),
                    ops_key(k, "negrecent", account),
                    ops_key(k, "alerts"),
                    ops_key(k, "alert", new_id),
                    ops_key(k, "alert", new_id, "events"),
                    ops_key(k, "alert", active or new_id),
                    ops_key(k, "alert", active or new_id, "events"),
                    k.events,
                    notify.queue_key(k),
                    marker,
                ],
                args=[
                    repr(float(now)),
                    self.cfg.bucket_s,
                    self.cfg.window_s // self.cfg.bucket_s,
                    repr(self._alpha),
                    repr(float(self.cfg.baseline_floor)),
                    repr(float(self.cfg.factor)),
                    self.cfg.min_count,
                    repr(float(self.cfg.clear_ratio)),
                    "1" if item is not None else "0",
                    item or "",
                    self.cfg.alert_events_max,
                    new_id,
                    account,
                    STATE_TTL_S,
                    active,
                    EVENTS_MAXLEN,
                    notify.MAX_QUEUED,
                    self._raised_text(account),
                    self._cleared_text(account),
                    once_ttl_s if once else "",
                ],
            )
            if as_str(raw[0]) != "retry":
                break
        else:
            raise RuntimeError(f"crisis state of {account!r} kept changing; gave up")
        tr, alert_id, count, base, thr, peak = (as_str(v) for v in raw)
        state = SpikeState(tr, alert_id, int(count), float(base), float(thr), int(float(peak)))
        metrics.NEGATIVE_WINDOW.labels(account).set(state.count)
        metrics.NEGATIVE_BASELINE.labels(account).set(state.baseline)
        metrics.CRISIS_ACTIVE.labels(account).set(1 if tr in ("raised", "active") else 0)
        if tr == "raised":
            metrics.CRISIS_ALERTS.labels(account, "raised").inc()
            log.warning(
                "crisis_alert_raised",
                alert_id=alert_id,
                account=account,
                window_count=state.count,
                baseline=round(state.baseline, 2),
                threshold=round(state.threshold, 2),
            )
        elif tr == "cleared":
            metrics.CRISIS_ALERTS.labels(account, "cleared").inc()
            log.info("crisis_alert_cleared", alert_id=alert_id, account=account, peak=state.peak)
        return state

    # Notification texts as string.format patterns the script fills in (account names are
    # ours, from the config, but a '%' in one must not become a format directive).
    def _raised_text(self, account: str) -> str:
        acct = account.replace("%", "%%")
        return (
            f":rotating_light: replydesk crisis alert for account {acct}: "
            f"%d negative messages in the last {self.cfg.window_s // 60} min "
            "(baseline %.1f, threshold %.0f). Alert %s."
        )

    @staticmethod
    def _cleared_text(account: str) -> str:
        acct = account.replace("%", "%%")
        return (
            f":white_check_mark: replydesk crisis alert %s for account {acct} "
            "cleared (peak %d negative messages per window)."
        )


async def get_alert(
    redis: Redis, keys: Keys, alert_id: str, *, events: int = 200
) -> dict[str, Any] | None:
    raw = await redis.hgetall(ops_key(keys, "alert", alert_id))
    if not raw:
        return None
    alert = _alert_dict({as_str(k): as_str(v) for k, v in raw.items()})
    ev_key = ops_key(keys, "alert", alert_id, "events")
    tx = redis.pipeline(transaction=False)
    tx.llen(ev_key)
    tx.lrange(ev_key, -max(1, events), -1)
    n, items = await tx.execute()
    alert["message_count"] = int(n)
    alert["messages"] = [json.loads(i) for i in items] if events > 0 else []
    return alert


async def list_alerts(
    redis: Redis,
    keys: Keys,
    *,
    status: str | None = None,
    account: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Alerts, newest first, without their messages (``get_alert`` has them). Read a
    page at a time until ``limit`` match: an alert still active under many newer ones
    (other accounts') is found however far down it is."""
    out: list[dict[str, Any]] = []
    start, page = 0, max(limit * 4, 200)
    while True:
        ids = await redis.zrevrange(ops_key(keys, "alerts"), start, start + page - 1)
        tx = redis.pipeline(transaction=False)
        for i in ids:
            tx.hgetall(ops_key(keys, "alert", as_str(i)))
            tx.llen(ops_key(keys, "alert", as_str(i), "events"))
        res = await tx.execute() if ids else []
        for raw, n in zip(res[::2], res[1::2], strict=True):
            if not raw:
                continue
            a = _alert_dict({as_str(k): as_str(v) for k, v in raw.items()})
            if (status and a["status"] != status) or (account and a["account"] != account):
                continue
            a["message_count"] = int(n)
            out.append(a)
            if len(out) >= limit:
                return out
        if len(ids) < page:
            return out
        start += page


async def active_alert(redis: Redis, keys: Keys, account: str) -> str | None:
    """The id of ``account``'s active crisis alert, if it has one (one read)."""
    raw = await redis.hget(ops_key(keys, "spike", account), "alert")
    return as_str(raw) if raw else None


async def purge_alerts(redis: Redis, keys: Keys, *, before: float, limit: int = 500) -> int:
    """Delete up to ``limit`` cleared alerts raised before ``before``, with their copies of
    the customers' messages; returns how many. An active one stays, however old."""
    index = ops_key(keys, "alerts")
    ids = [as_str(i) for i in await redis.zrangebyscore(index, "-inf", before, 0, limit)]
    tx = redis.pipeline(transaction=False)
    for i in ids:
        tx.hget(ops_key(keys, "alert", i), "status")
    gone = [
        i for i, st in zip(ids, await tx.execute() if ids else [], strict=True) if st != b"active"
    ]
    if not gone:
        return 0
    # A cleared alert never becomes active again (a new spike raises a new one), so no
    # watch is needed between the read and the delete.
    tx = redis.pipeline(transaction=True)
    for i in gone:
        tx.delete(ops_key(keys, "alert", i), ops_key(keys, "alert", i, "events"))
    tx.zrem(index, *gone)
    await tx.execute()
    return len(gone)


def _alert_dict(h: dict[str, str]) -> dict[str, Any]:
    return {
        "id": h.get("id", ""),
        "account": h.get("account", ""),
        "status": h.get("status", ""),
        "raised_at": float(h.get("raised_at", 0)),
        "cleared_at": float(h["cleared_at"]) if h.get("cleared_at") else None,
        "window_count": int(h.get("count", 0)),
        "peak": int(h.get("peak", h.get("count", 0))),
        "baseline": float(h.get("baseline", 0)),
        "threshold": float(h.get("threshold", 0)),
    }
