"""The sender's hook for replies a platform window no longer allows (Weibo 48 h, one
reply per mention): the agent handling the customer sees it as a note on the ticket."""

from __future__ import annotations

import structlog

from bot.models import OutboundReply
from bot.redis import Keys, Redis
from escalation.tickets import TicketError, TicketStore

log = structlog.get_logger(__name__)


async def note_undeliverable(redis: Redis, keys: Keys, reply: OutboundReply, reason: str) -> None:
    """Note ``reply`` on its ticket, or the customer's open one (logged when there is none).

    Idempotent per reply, so the sender may call it again after a crash."""
    store = TicketStore(redis, keys)
    tid = reply.ticket_id or await store.open_ticket_for(
        store.conv_of(reply.platform, reply.account, reply.recipient_id)
    )
    if not tid:
        log.info("undeliverable_without_ticket", reply_id=reply.reply_id, platform=reply.platform)
        return
    who = "agent" if reply.source == "agent" else "bot"
    text = f"Not delivered ({who} {reply.kind} reply): {reason}.\n\n{reply.text}"
    try:
        await store.add_system_note(tid, f"undeliverable:{reply.reply_id}", text)
    except TicketError as e:
        if e.code != "not_found":
            raise
