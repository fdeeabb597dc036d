"""The sender's hooks for replies that do not reach the customer: a platform window that
no longer allows them (Weibo 48 h, one reply per mention; ``note_undeliverable``) and
every reply that ends in the dead stream (the platform refused it, its delivery is
unknown, it ran out of tries; ``note_dead``). The agent handling the customer sees a
system note on the ticket, the reply shows as not delivered, and the ticket's clocks say
the customer is still owed an answer (``TicketStore.reply_not_delivered``)."""

from __future__ import annotations

import structlog

from bot.config import EscalationConfig
from bot.models import OutboundReply
from bot.redis import Keys, Redis
from escalation.tickets import TicketError, TicketStore

log = structlog.get_logger(__name__)

_PLATFORM = {"x": "X", "weibo": "Weibo", "mastodon": "Mastodon"}


def reason_for(reply: OutboundReply, error: str, outcome: str) -> str:
    """Why it was not delivered, in an agent's words (the error itself for the rest)."""
    platform = _PLATFORM.get(reply.platform, reply.platform)
    if outcome == "unknown":
        return (
            f"delivery unknown: it may or may not have been posted; check the {platform} "
            "account before sending it again"
        )
    if outcome == "refused":
        return f"{platform} refused it ({error})"
    return error


async def note_undeliverable(
    redis: Redis,
    keys: Keys,
    reply: OutboundReply,
    reason: str,
    *,
    cfg: EscalationConfig | None = None,
) -> None:
    """Note ``reply`` on its ticket, or the customer's open one (logged when there is none).
    ``cfg``: the SLA policies, for a clock this starts.

    Idempotent per reply, so the sender may call it again after a crash."""
    store = TicketStore(redis, keys, cfg)
    tid = reply.ticket_id or await store.open_ticket_for(
        store.conv_of(reply.platform, reply.account, reply.recipient_id)
    )
    if not tid:
        log.info("undeliverable_without_ticket", reply_id=reply.reply_id, platform=reply.platform)
        return
    who = "agent" if reply.source == "agent" else "bot"
    note = {
        "text": f"Not delivered ({who} {reply.kind} reply): {reason}.\n\n{reply.text}",
        "state": "not_delivered",
        "reply_id": reply.reply_id,
        "reason": reason,
    }
    try:
        await store.reply_not_delivered(tid, reply, note)
    except TicketError as e:
        if e.code != "not_found":
            raise


async def note_dead(
    redis: Redis,
    keys: Keys,
    reply: OutboundReply,
    error: str,
    outcome: str,
    *,
    cfg: EscalationConfig | None = None,
) -> None:
    """The sender's ``on_dead`` hook: the same note, in words an agent understands."""
    await note_undeliverable(redis, keys, reply, reason_for(reply, error, outcome), cfg=cfg)
