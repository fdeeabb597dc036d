"""Platform reply windows shown on a ticket: how long an answer can still be delivered.

Weibo lets an account answer a private message only for 48 hours after the customer's
last message, and a mention only once. Other platforms have no window we must respect.
The platforms package keeps the authoritative state (follows, unfollows, mentions
used) in Redis; :func:`describe_window` reads it for the ticket detail, while
:func:`reply_window` estimates from the ticket alone for the queue listing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bot.platforms import windows as _pw
from bot.platforms.windows import ONE_REPLY_PER_MENTION, WINDOW_S
from bot.redis import Keys, Redis

if TYPE_CHECKING:
    from escalation.tickets import Ticket


def reply_window(t: Ticket, now: float, *, warn_s: float) -> dict[str, Any] | None:
    """None when the platform has no window; otherwise when and whether it closes."""
    window = WINDOW_S.get(t.platform)
    if window is None and t.platform not in ONE_REPLY_PER_MENTION:
        return None
    out: dict[str, Any] = {"platform": t.platform}
    if window is not None and t.last_dm_at:
        closes = t.last_dm_at + window
        out["dm"] = {
            "closes_at": closes,
            "open": now < closes,
            "closing_soon": now < closes <= now + warn_s,
            "remaining_s": max(0.0, closes - now),
        }
    if t.platform in ONE_REPLY_PER_MENTION and t.last_kind == "mention":
        used = bool(t.last_event_id) and t.mention_replied == t.last_event_id
        out["mention"] = {"replies_left": 0 if used else 1, "open": not used}
    return out


async def describe_window(
    redis: Redis, keys: Keys, t: Ticket, now: float, *, warn_s: float
) -> dict[str, Any] | None:
    """The window from the platforms package's Redis state, with ``closing_soon``."""
    if not _pw.applies(t.platform):
        return reply_window(t, now, warn_s=warn_s)
    d = await _pw.describe(redis, keys, t.platform, t.account, t.user_id, now=now)
    closes = d.get("closes_at")
    d["closing_soon"] = bool(closes is not None and now < closes <= now + warn_s)
    d["platform"] = t.platform
    return d
