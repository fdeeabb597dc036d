"""Platform reply windows shown on a ticket: how long an answer can still be delivered.

Weibo lets an account answer a private message only for 48 hours after the customer's
last message, and a mention only once. Other platforms have no window we must respect.
The platforms package keeps the authoritative state (follows, unfollows, mentions
used) in Redis; :func:`describe_window` reads it for the ticket detail, while
:func:`reply_window` estimates from the ticket alone for the queue listing.
:func:`window_refusal` tells, from the same state, why an agent's reply could not be
delivered, so the store refuses it (409) instead of recording a reply nobody gets; the
store reads that state inside the reply's transaction, under :func:`watch_window`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bot.platforms import windows as _pw
from bot.platforms.windows import ONE_REPLY_PER_MENTION, REASONS, WINDOW_S
from bot.redis import Keys, Redis

if TYPE_CHECKING:
    from bot.models import OutboundReply
    from escalation.tickets import Ticket


def reply_window(t: Ticket, now: float, *, warn_s: float) -> dict[str, Any] | None:
    """None when the platform has no window; otherwise when and whether it closes."""
    window = WINDOW_S.get(t.platform)
    if window is None and t.platform not in ONE_REPLY_PER_MENTION:
        return None
    out: dict[str, Any] = {"platform": t.platform}
    if window is not None and t.last_dm_at:
        out["dm"] = _dm_view(t.last_dm_at + window, now, warn_s)
    if t.platform in ONE_REPLY_PER_MENTION and t.mention_event_id:
        used = t.mention_replied == t.mention_event_id
        out["mention"] = {"replies_left": 0 if used else 1, "open": not used}
    return out


async def describe_window(
    redis: Redis, keys: Keys, t: Ticket, now: float, *, warn_s: float
) -> dict[str, Any] | None:
    """The window for the ticket detail: the listing's shape (``dm``, ``mention``, which
    the console shows) from the platforms package's Redis state, plus that state's own
    fields (``applies``, ``open``, ``closes_at``, ``closing_soon``, ``unfollowed``,
    ``mentions_answerable``)."""
    estimate = reply_window(t, now, warn_s=warn_s)
    d = await window_state(redis, keys, t, now)
    if d is None:
        return estimate
    closes = d.get("closes_at")  # set while open only
    d["closing_soon"] = bool(closes is not None and now < closes <= now + warn_s)
    d["platform"] = t.platform
    dm = (estimate or {}).get("dm")
    if closes is not None:
        d["dm"] = _dm_view(closes, now, warn_s)
    elif dm is not None or d.get("unfollowed"):
        # Closed: by an unfollow (whenever the 48 h would end) or by time.
        ended = dm["closes_at"] if dm is not None and dm["closes_at"] <= now else None
        d["dm"] = _dm_view(ended, now, warn_s)
    mention = (estimate or {}).get("mention")
    if mention is not None:
        # As window_refusal decides a public reply: any while the window is open, else
        # the mention's one reply if it is unused and still answerable.
        used = not mention["open"]
        answerable = t.mention_reply_to_id in d.get("mentions_answerable", ())
        d["mention"] = {
            "replies_left": 0 if used or not answerable else 1,
            "open": bool(d.get("open")) or (not used and answerable),
            "used": used,
        }
    return d


def _dm_view(closes: float | None, now: float, warn_s: float) -> dict[str, Any]:
    """The DM window as the console shows it; ``closes`` None: closed, end unknown."""
    if closes is None:
        return {"closes_at": None, "open": False, "closing_soon": False, "remaining_s": 0.0}
    return {
        "closes_at": closes,
        "open": now < closes,
        "closing_soon": now < closes <= now + warn_s,
        "remaining_s": max(0.0, closes - now),
    }


async def window_state(redis: Redis, keys: Keys, t: Ticket, now: float) -> dict[str, Any] | None:
    """The customer's window state (``bot.platforms.windows.describe``); None where the
    platform has no window."""
    if not _pw.applies(t.platform):
        return None
    return await _pw.describe(redis, keys, t.platform, t.account, t.user_id, now=now)


async def watch_window(pipe: Any, keys: Keys, t: Ticket) -> None:
    """WATCH the customer's window state on ``pipe`` (a transaction in its WATCH phase),
    so a change to it (an unfollow, a mention's reply taken) aborts the EXEC."""
    if _pw.applies(t.platform):
        await pipe.watch(keys.user_state(t.platform, t.account, t.user_id))


def window_refusal(state: dict[str, Any] | None, t: Ticket, reply: OutboundReply) -> str | None:
    """Why the sender's window check would refuse ``reply`` (None: it may go), by the
    rules of ``bot.platforms.windows.reserve``: an open window allows any reply; else
    only a public reply to a mention that still has its one reply."""
    if state is None or state.get("open", True):
        return None
    mention = reply.kind == "mention"
    # Recorded but maybe not sent yet (the bot's ack or an agent's reply) uses it too.
    used = mention and t.mention_replied == t.mention_event_id
    if mention and not used and reply.in_reply_to_id in state.get("mentions_answerable", ()):
        return None
    if state.get("unfollowed"):
        code = "unfollowed"
    elif used:
        code = "mention_used"
    elif mention and reply.in_reply_to_id and reply.in_reply_to_id == t.mention_reply_to_id:
        code = "mention_expired"  # the ticket's mention, no longer answerable
    else:
        code = "expired"
    return f"{REASONS[code]}; the reply was not sent or recorded"
