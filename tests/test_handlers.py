"""The router and the decision policy, with plain NLU values (no model, no Redis)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot.config import AccountConfig
from bot.conversation import Conversation
from bot.orders import OrderLookup, find_order_number
from handlers.decisions import Answer, Escalate, Ignore, decision_from_dict
from handlers.policy import decide
from handlers.responses import Responses
from handlers.router import Router
from tests.support.escalation import event
from tests.support.nlu_values import nlu

RESPONSES = Responses.load(Path(__file__).resolve().parents[1] / "nlu_data" / "responses")
ACME = AccountConfig(id="acme", platform="generic", handle="acme")


def say(language: str = "en", persona: str = "") -> Any:
    return RESPONSES.sayer(
        language=language,
        persona=persona,
        seed="s",
        handle="@alice",
        sla_promise="an agent will reply within 30 minutes",
    )


def conv(**kw: Any) -> Conversation:
    return Conversation("generic", "acme", "42", **kw)


async def run(
    text: str,
    result: Any,
    *,
    kind: str = "dm",
    c: Conversation | None = None,
    account: AccountConfig = ACME,
    orders: Any = None,
    language: str = "en",
    **ev: Any,
) -> Any:
    return await decide(
        message=event(text, kind=kind, **ev),
        nlu=result,
        conversation=c or conv(),
        account=account,
        say=say(language),
        orders=orders,
    )


async def test_router_passes_only_declared_arguments_and_first_wins() -> None:
    r = Router("t")
    seen: list[tuple[str, ...]] = []

    @r.intent("greet")
    def first(nlu: Any) -> None:
        seen.append(("first",))
        return None

    @r.intent("greet")
    async def second(message: Any, say: Any) -> Answer:
        seen.append(("second", message))
        return Answer("hi")

    @r.intent()
    def never(nlu: Any) -> Answer:
        return Answer("not reached")

    d = await r.dispatch("greet", message="m", say="s", nlu="n", orders=None)
    assert isinstance(d, Answer) and d.text == "hi" and d.reasons["rule"] == "t.second"
    assert seen == [("first",), ("second", "m")]
    with pytest.raises(TypeError, match="asks for"):

        @r.intent("x")
        def bad(database: Any) -> None: ...


async def test_spam_and_lottery_ignored() -> None:
    d = await run("buy followers cheap", nlu("spam"))
    assert isinstance(d, Ignore) and d.reason == "spam"
    d = await run("转发抽奖 求中奖 @acme", nlu("out_of_scope", 0.4, language="zh"))
    assert isinstance(d, Ignore) and d.reason == "lottery"
    # A real complaint that mentions a giveaway is not ignored.
    d = await run(
        "I won your giveaway and never got the prize, terrible", nlu("complaint", negativity=0.9)
    )
    assert isinstance(d, Escalate)


async def test_human_owned_conversation_joins_ticket_silently() -> None:
    d = await run("hello again", nlu("greet"), c=conv(ticket_id="T7"))
    assert isinstance(d, Escalate) and d.reason == "human_owned" and d.ack is None
    assert d.reasons["ticket_id"] == "T7"


async def test_complaint_dm_escalates_with_ack_and_reasons() -> None:
    d = await run(
        "this is the worst service",
        nlu("complaint", 0.97, negativity=0.9, faq=("x", 0.9, "canned")),
    )
    assert isinstance(d, Escalate) and d.reason == "complaint"
    assert d.ack is not None and "30 minutes" in d.ack
    assert d.reasons["intent"] == "complaint" and d.reasons["negativity"] == 0.9
    assert d.reasons["rule"] == "complaints.complaint" and d.reasons["faq_score"] == 0.9
    assert decision_from_dict(d.to_dict()) == d


async def test_negative_public_mention_never_gets_canned_answer() -> None:
    # Even with a confident FAQ hit, a negative public post gets an ack moving to DM.
    d = await run(
        "your return policy is a scam",
        nlu("returns_refunds", faq=("return_policy", 0.95, "Returns are free."), negativity=0.8),
        kind="mention",
    )
    assert isinstance(d, Escalate) and d.reason == "negative"
    assert d.ack is not None and "DM" in d.ack and "Returns are free" not in d.ack
    assert d.priority == "high"  # public and negative


@pytest.mark.parametrize("kind", ["dm", "mention"])
async def test_an_uncalm_post_gets_a_person_not_the_faq_text(kind: str) -> None:
    """Under the negativity threshold but over the answer guard: a FAQ matches, yet the
    post goes to a person with the acknowledgement, not the canned answer."""
    faq = ("refund_time", 0.9, "Refunds reach your card in 5-10 working days.")
    d = await run(
        "Refund approved on the 3rd, now the 28th. Where is my money??",
        nlu("returns_refunds", faq=faq, negativity=0.4),
        kind=kind,
    )
    assert isinstance(d, Escalate) and d.reason == "tone" and d.reasons["rule"] == "faq.faq"
    assert d.ack is not None and "working days" not in d.ack
    assert d.reasons["calm"] is False and d.priority == "normal"
    calm = await run("how long do refunds take?", nlu("returns_refunds", faq=faq, negativity=0.2))
    assert isinstance(calm, Answer) and calm.text == faq[2]


async def test_weibo_mentions_get_no_ack_by_default_and_option_wins() -> None:
    weibo = AccountConfig(id="wb", platform="weibo")
    d = await decide(
        message=event("差评！", kind="mention", platform="weibo", account="wb"),
        nlu=nlu("complaint", negativity=0.9, language="zh"),
        conversation=conv(),
        account=weibo,
        say=say("zh"),
    )
    assert isinstance(d, Escalate) and d.ack is None
    weibo_on = AccountConfig(id="wb", platform="weibo", options={"ack_negative_mentions": True})
    d = await decide(
        message=event("差评！", kind="mention", platform="weibo", account="wb"),
        nlu=nlu("complaint", negativity=0.9, language="zh"),
        conversation=conv(),
        account=weibo_on,
        say=say("zh"),
    )
    assert isinstance(d, Escalate) and d.ack is not None and "私信" in d.ack
    x_off = AccountConfig(id="x1", platform="x", options={"ack_negative_mentions": False})
    d = await run("awful", nlu("complaint", negativity=0.9), kind="mention", account=x_off)
    assert isinstance(d, Escalate) and d.ack is None


async def test_priority_from_reach_and_negativity() -> None:
    d = await run("worst ever", nlu("complaint", negativity=0.95), kind="mention", followers=50_000)
    assert isinstance(d, Escalate) and d.priority == "urgent"
    d = await run("I'd like a person please", nlu("human_request", negativity=0.1))
    assert isinstance(d, Escalate) and d.priority == "normal" and d.reason == "human_request"
    assert d.ack is not None and "30 minutes" in d.ack


async def test_confident_intents_answered() -> None:
    d = await run("hi", nlu("greet"))
    assert isinstance(d, Answer) and "@alice" in d.text
    d = await run("谢谢", nlu("thanks", language="zh"), language="zh")
    assert isinstance(d, Answer) and "不客气" in d.text
    d = await run(
        "how do returns work",
        nlu("returns_refunds", faq=("return_policy", 0.8, "Returns are free within 30 days.")),
    )
    assert isinstance(d, Answer) and d.text == "Returns are free within 30 days."
    assert d.reasons["faq_id"] == "return_policy" and d.reasons["rule"] == "faq.faq"
    # Below the FAQ threshold: not answered.
    d = await run(
        "how do returns work", nlu("returns_refunds", faq=("return_policy", 0.4, "Returns..."))
    )
    assert isinstance(d, Answer) and d.reasons["rule"] == "clarify"


async def test_unclear_asks_once_then_escalates() -> None:
    d = await run("hmm", nlu("out_of_scope", 0.3))
    assert isinstance(d, Answer) and d.reasons["rule"] == "clarify"
    d = await run("hmm", nlu("out_of_scope", 0.3), c=conv(unclear=1))
    assert isinstance(d, Escalate) and d.reason == "unclear" and d.priority == "low"
    assert d.reasons["rule"] == "unclear_twice"


@pytest.mark.parametrize("kind", ["dm", "mention"])
async def test_an_unclear_uncalm_post_gets_a_person_not_a_clarifying_question(kind: str) -> None:
    """Over the answer guard and nothing answers it: "could you tell me a bit more?" would
    be a canned reply to an upset customer, so it goes to a person at once."""
    d = await run(
        "so this is how you treat people?", nlu("out_of_scope", 0.3, negativity=0.4), kind=kind
    )
    assert isinstance(d, Escalate) and d.reason == "tone" and d.reasons["rule"] == "unclear_tone"
    assert d.ack is not None and "tell me a bit more" not in d.ack
    assert d.reasons["calm"] is False and d.priority == "normal"
    # The same words under the guard still get one clarifying question.
    d = await run("so this is how you treat people?", nlu("out_of_scope", 0.3, negativity=0.2))
    assert isinstance(d, Answer) and d.reasons["rule"] == "clarify"


async def test_persona_override_and_missing_variables() -> None:
    s = RESPONSES.sayer(language="en", persona="playful", seed="x", handle="@bo")
    assert "✨" in s("greet")
    assert s("sla_promise") == "an agent will reply within"  # unknown {duration} left empty
    assert RESPONSES.sla_promise(30, "zh") == "客服将在30分钟内回复您"
    assert RESPONSES.sla_promise(240, "en") == "an agent will reply within 4 hours"


def test_order_numbers() -> None:
    assert find_order_number("where is order A12345?") == "A12345"
    assert find_order_number("订单号 #20261122001 到哪了") == "20261122001"
    assert find_order_number("order ab-99887 please") == "AB-99887"
    assert find_order_number("it's been 3 days") is None


@pytest.fixture
async def shop(aiohttp_server: Any) -> Any:
    seen: list[dict[str, str]] = []

    async def lookup(request: web.Request) -> web.Response:
        seen.append(
            {
                "order": request.query.get("order", ""),
                "auth": request.headers.get("Authorization", ""),
            }
        )
        order = request.query.get("order")
        if order == "A12345":
            return web.json_response(
                {
                    "order": "A12345",
                    "status": "shipped",
                    "eta": "2026-11-25",
                    "tracking_url": "https://t.example/A12345",
                }
            )
        if order == "B00000":
            return web.Response(status=500)
        return web.json_response({"error": "not found"}, status=404)

    app = web.Application()
    app.router.add_get("/orders", lookup)
    server = await aiohttp_server(app)
    server.seen = seen
    return server


async def test_order_status_through_the_hook(shop: Any) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        orders = OrderLookup(http, str(shop.make_url("/orders")), "tok-1")
        d = await run("where is my order A12345", nlu("order_status"), orders=orders)
        assert isinstance(d, Answer)
        assert (
            "A12345" in d.text
            and "on its way" in d.text
            and "2026-11-25" in d.text
            and "t.example" in d.text
        )
        assert shop.seen[-1] == {"order": "A12345", "auth": "Bearer tok-1"}
        d = await run(
            "订单A12345到哪了", nlu("order_status", language="zh"), orders=orders, language="zh"
        )
        assert isinstance(d, Answer) and "已发货" in d.text
        d = await run("where is my order Z99999", nlu("order_status"), orders=orders)
        assert isinstance(d, Answer) and d.reasons["order_rule"] == "not_found"
        d = await run("where is my order B00000", nlu("order_status"), orders=orders)
        assert isinstance(d, Escalate) and d.reason == "order_lookup_failed" and d.ack
        d = await run("where is my order?", nlu("order_status"), orders=orders)
        assert isinstance(d, Answer) and d.reasons["order_rule"] == "ask_number"
        n = len(shop.seen)
        d = await run(
            "@acme where is my order A12345", nlu("order_status"), orders=orders, kind="mention"
        )
        assert (
            isinstance(d, Answer) and "DM" in d.text and len(shop.seen) == n
        )  # nothing public, no lookup
