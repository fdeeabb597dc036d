"""Reply windows: when a platform lets the brand answer a user at all.

Weibo (fan service platform, §2.5 of platforms.md): a user's message, follow, subscribe,
menu click or scan opens **48 h of unlimited replies**; a user's @-mention allows **one** reply within
48 h; after an unfollow the brand cannot reply (until the user writes or follows again).
Other platforms have no window, so every check passes without touching Redis.

State lives in one hash per user, ``keys.user_state(platform, account, user)``:
``active_at`` (last window-opening action), ``followed_at``, ``unfollowed_at``, and
``mention:<event_id>`` (+ ``mention:<event_id>:used``) per mention. The pipeline calls
:func:`record` (or the two functions it dispatches to) for every inbound event; the
sender calls :func:`reserve` right before a send, which atomically checks the window and
uses up a mention's single reply, and :func:`release` if that send certainly failed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from bot.models import InboundEvent, OutboundReply
from bot.redis import Keys, Redis

WINDOW_S: dict[str, float] = {"weibo": 48 * 3600.0}
# Platforms where an @-mention allows a single reply within the window.
ONE_REPLY_PER_MENTION = frozenset({"weibo"})
STATE_TTL_S = 7 * 24 * 3600

REASONS = {
    "unfollowed": "reply window closed: the user unfollowed the account",
    "mention_used": "reply window closed: the one reply allowed for this mention was already sent",
    "mention_expired": "reply window closed: the mention is more than 48 h old, and the user "
    "has not written, followed or used the menu since",
    # Also the answer for a user who only ever mentioned the account: a mention allows a
    # reply to that mention, not a private message.
    "expired": "reply window closed: the user has not written, followed or used the menu "
    "in the last 48 h",
}

# KEYS: state hash. ARGV: now, window seconds, mention field ('' for none), reply id.
# A mention's mark holds the reply id that took it: the same reply, reclaimed after its
# sender died before sending, may go on; any other reply may not.
_RESERVE_LUA = """
local h = redis.call('HMGET', KEYS[1], 'active_at', 'unfollowed_at')
local active = tonumber(h[1]) or 0
local unf = tonumber(h[2]) or 0
local now = tonumber(ARGV[1])
local win = tonumber(ARGV[2])
if active > unf and now - active < win then return 'ok' end
local m = nil
if ARGV[3] ~= '' then
  m = tonumber(redis.call('HGET', KEYS[1], ARGV[3]))
  if m and m > unf and now - m < win then
    local by = redis.call('HGET', KEYS[1], ARGV[3] .. ':used')
    if not by then redis.call('HSET', KEYS[1], ARGV[3] .. ':used', ARGV[4]) end
    if not by or by == ARGV[4] then return 'ok_mention' end
    return 'mention_used'
  end
end
if unf > 0 and unf >= active then return 'unfollowed' end
if m and now - m >= win then return 'mention_expired' end
return 'expired'
"""

# KEYS: state hash. ARGV: field, ts. Keeps the newest timestamp.
_MAX_LUA = """
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1])) or 0
if tonumber(ARGV[2]) > cur then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 0
"""


def applies(platform: str) -> bool:
    return platform in WINDOW_S


def _key(keys: Keys, platform: str, account: str, user: str) -> str:
    return keys.user_state(platform, account, user)


def _ts(event: InboundEvent) -> float:
    # The platform's time; never later than we received it (clock skew).
    return min(event.created_at or event.received_at, event.received_at)


async def _bump(redis: Redis, key: str, field: str, ts: float) -> None:
    await redis.eval(_MAX_LUA, 1, key, field, repr(ts), STATE_TTL_S)


async def record_inbound_message(redis: Redis, keys: Keys, event: InboundEvent) -> None:
    """A DM opens the unlimited window; a mention earns its one reply."""
    if not applies(event.platform) or not event.is_message:
        return
    key = _key(keys, event.platform, event.account, event.author.id)
    if event.kind == "mention":
        tx = redis.pipeline(transaction=True)
        tx.hsetnx(key, f"mention:{event.event_id}", repr(_ts(event)))
        tx.expire(key, STATE_TTL_S)
        await tx.execute()
    else:
        await _bump(redis, key, "active_at", _ts(event))


async def record_user_event(redis: Redis, keys: Keys, event: InboundEvent) -> None:
    """follow or activity (opens the window) / unfollow (closes it)."""
    if not applies(event.platform):
        return
    key = _key(keys, event.platform, event.account, event.author.id)
    if event.kind in ("follow", "activity"):
        if event.kind == "follow":
            await _bump(redis, key, "followed_at", _ts(event))
        await _bump(redis, key, "active_at", _ts(event))
    elif event.kind == "unfollow":
        await _bump(redis, key, "unfollowed_at", _ts(event))


async def record(redis: Redis, keys: Keys, event: InboundEvent) -> None:
    """Update window state for any inbound event (no-op where windows don't apply)."""
    if event.is_message:
        await record_inbound_message(redis, keys, event)
    else:
        await record_user_event(redis, keys, event)


@dataclass(frozen=True)
class Reservation:
    ok: bool
    reason: str = ""  # human-readable, for the dead letter or ticket note
    mention_field: str = ""  # set when a mention's single reply was taken


def _mention_field(reply: OutboundReply) -> str:
    return (
        f"mention:{reply.in_reply_to_id}"
        if reply.kind == "mention" and reply.in_reply_to_id
        else ""
    )


async def reserve(
    redis: Redis, keys: Keys, reply: OutboundReply, *, now: float | None = None
) -> Reservation:
    """May ``reply`` be sent now? Takes a mention's single reply when that is what allows
    it, marked with ``reply.reply_id``; a mark this same reply already holds is no refusal."""
    if not applies(reply.platform):
        return Reservation(ok=True)
    now = time.time() if now is None else now
    field = _mention_field(reply)
    key = _key(keys, reply.platform, reply.account, reply.recipient_id)
    res = await redis.eval(
        _RESERVE_LUA, 1, key, repr(now), WINDOW_S[reply.platform], field, reply.reply_id
    )
    code = res.decode() if isinstance(res, bytes) else str(res)
    if code == "ok":
        return Reservation(ok=True)
    if code == "ok_mention":
        return Reservation(ok=True, mention_field=field)
    return Reservation(ok=False, reason=REASONS.get(code, f"reply window closed: {code}"))


# KEYS: state hash. ARGV: mark field, reply id. Deletes the mark only if it is this reply's.
_RELEASE_LUA = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
"""


async def release(redis: Redis, keys: Keys, reply: OutboundReply, reservation: Reservation) -> None:
    """Give a mention's reply back after a send that certainly did not go out (only if
    this reply still holds it: a late release never frees another reply's mark)."""
    if reservation.mention_field:
        key = _key(keys, reply.platform, reply.account, reply.recipient_id)
        await redis.eval(_RELEASE_LUA, 1, key, reservation.mention_field + ":used", reply.reply_id)


async def describe(
    redis: Redis, keys: Keys, platform: str, account: str, user: str, *, now: float | None = None
) -> dict[str, Any]:
    """The user's window for display on a ticket: open, closes_at, mention replies left."""
    if not applies(platform):
        return {"applies": False, "open": True}
    now = time.time() if now is None else now
    raw = await redis.hgetall(_key(keys, platform, account, user))
    # Times, except a mention's ``:used`` mark, which holds the reply id that took it.
    h = {
        k: 0.0 if k.endswith(":used") else float(v)
        for k, v in ((k.decode() if isinstance(k, bytes) else k, v) for k, v in raw.items())
    }
    win = WINDOW_S[platform]
    unf = h.get("unfollowed_at", 0.0)
    active = h.get("active_at", 0.0)
    open_until = active + win if active > unf and now - active < win else None
    mentions = [
        k.removeprefix("mention:")
        for k, ts in h.items()
        if k.startswith("mention:")
        and not k.endswith(":used")
        and f"{k}:used" not in h
        and ts > unf
        and now - ts < win
    ]
    return {
        "applies": True,
        "open": open_until is not None,
        "closes_at": open_until,
        "unfollowed": unf > 0 and unf >= active,
        "mentions_answerable": mentions,
    }
