"""Order status through the order-lookup hook (bot.orders documents the HTTP contract).

Order details are private: a public mention is asked to move to DM, never answered
with a status, and the lookup names the asking customer (platform, id, handle) so the
shop answers only about that customer's own orders. It also names the reply's language:
a status the templates cannot translate is shown as the shop wrote it.
"""

from __future__ import annotations

import datetime
import re

from bot.models import InboundEvent
from bot.nlu.types import NluResult
from bot.orders import OrderLookup, OrderLookupError, find_order_number
from handlers.decisions import Answer, Escalate
from handlers.responses import Say
from handlers.router import Router

router = Router("orders")

# An order that arrived, was cancelled or came back has no delivery date to expect:
# "Order A12345 is cancelled. Estimated delivery: ..." contradicts itself.
SETTLED = frozenset({"delivered", "cancelled", "returned", "refunded"})
_ISO_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})(?:$|[T ])")


def status_key(status: str) -> str:
    """The shop's status as a key of the ``statuses`` table: "Shipped", "on-hold" and
    "On hold" are ``shipped`` and ``on_hold``."""
    return re.sub(r"[\s-]+", "_", status.strip().lower())


def eta_text(eta: str, say: Say) -> str:
    """An ISO date (or a timestamp starting with one) as the reader writes dates; any
    other ETA ("next week") as the shop wrote it."""
    m = _ISO_DATE.match(eta.strip())
    try:
        day = datetime.date.fromisoformat(m.group(1)) if m else None
    except ValueError:
        day = None
    return say.date(day) if day else eta.strip()


@router.intent("order_status", "shipping")
async def order_status(
    message: InboundEvent, nlu: NluResult, orders: OrderLookup | None, say: Say
) -> Answer | Escalate | None:
    number = find_order_number(message.text)
    if orders is None:
        return None  # no hook configured: let the FAQ answer, or a person
    if nlu.intent == "shipping" and number is None:
        return None  # a general shipping question is the FAQ's
    if message.is_public:
        return Answer(say("order_dm"), {"order_rule": "move_to_dm"})
    if number is None:
        return Answer(say("order_ask_number"), {"order_rule": "ask_number"})
    try:
        info = await orders.lookup(
            number,
            platform=message.platform,
            customer_id=message.author.id,
            customer_handle=message.author.handle,
            lang=say.language,
        )
    except OrderLookupError as e:
        return Escalate(
            "order_lookup_failed",
            "normal",
            say("order_unavailable", order=number),
            {"order_error": str(e)},
        )
    if info is None:
        return Answer(say("order_not_found", order=number), {"order_rule": "not_found"})
    key = status_key(info.status)
    status = say.word("statuses", key) or info.status.strip().replace("_", " ")
    eta = info.eta.strip() if key not in SETTLED else ""
    return Answer(
        say(
            "order_status",
            order=info.order,
            status=status,
            eta_part=say.part("order_eta_part", eta=eta_text(eta, say)) if eta else "",
            tracking_part=say.part("order_tracking_part", tracking_url=info.tracking_url)
            if info.tracking_url
            else "",
        ),
        {"order_rule": "status", "order_status": info.status},
    )
