"""Order status through the order-lookup hook (bot.orders documents the HTTP contract).

Order details are private: a public mention is asked to move to DM, never answered
with a status, and the lookup names the asking customer (platform, id, handle) so the
shop answers only about that customer's own orders.
"""

from __future__ import annotations

from bot.models import InboundEvent
from bot.nlu.types import NluResult
from bot.orders import OrderLookup, OrderLookupError, find_order_number
from handlers.decisions import Answer, Escalate
from handlers.responses import Say
from handlers.router import Router

router = Router("orders")


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
    status = say.word("statuses", info.status) or info.status
    return Answer(
        say(
            "order_status",
            order=info.order,
            status=status,
            eta_part=say.part("order_eta_part", eta=info.eta) if info.eta else "",
            tracking_part=say.part("order_tracking_part", tracking_url=info.tracking_url)
            if info.tracking_url
            else "",
        ),
        {"order_rule": "status", "order_status": info.status},
    )
