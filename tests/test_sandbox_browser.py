"""The customer sandbox in headless chromium, through the real pipeline.

The first test runs the real brain (embedded NLU trained from nlu_data, the handlers,
the ticket store): a FAQ in English and in Chinese answered by the bot, a complaint
escalated with a ticket link, and an agent's answer from the console arriving back in
the sandbox. The NLU artifact is shared per machine (tests/support/trained_nlu.py), so
only the first run on a machine trains it.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_settings
from tests.support.browser import (
    LiveServer,
    RulePipeline,
    chromium,
    csp_violations,
    flush_redis,
    playwright_expect,
    sandbox_accounts,
    shot,
)
from tests.support.trained_nlu import nlu_data_dir

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def _send(page: Any, text: str, *, kind: str = "a direct message") -> None:
    page.get_by_label(kind).check()
    page.get_by_label("Message", exact=True).fill(text)
    page.get_by_role("button", name="Send").click()


def _wait_ready(url: str, within_s: float = 300) -> None:
    """Until /readyz says the brain is ready. With no current NLU artifact (a first run, or
    nlu_data changed) the service trains one after it starts listening, for longer than
    the page's expectations wait: the bot's first answer timed out."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2):
                return
        except OSError:  # 503 (HTTPError) while training, or not listening yet
            assert time.monotonic() < deadline, "the service never became ready"
            time.sleep(0.5)


def test_real_pipeline_faq_complaint_and_agent_answer(browser: Any, redis_server: Any) -> None:
    expect = playwright_expect()
    flush_redis(redis_server.url)
    settings = make_settings(
        redis_server.url,
        nlu_data_dir(),  # redis.data_dir: where the trained NLU artifact is kept
        **{
            "accounts": sandbox_accounts(),
            "sandbox.enabled": True,
            "dialog.pipeline": "brain",
            "dialog.responses_path": str(ROOT / "nlu_data" / "responses"),
            "nlu.data_path": str(ROOT / "nlu_data"),
        },
    )
    with LiveServer(settings) as srv:
        _wait_ready(srv.url)
        token = srv.add_agent("ann", "supervisor")
        customer = browser.new_context(viewport={"width": 1100, "height": 860}).new_page()
        csp = csp_violations(customer)
        customer.goto(f"{srv.url}/sandbox")

        # A FAQ, answered by the bot through webhook → stream → worker → outbox → sandbox.
        _send(customer, "What are your opening hours?")
        expect(customer.locator(".msg-bot .msg-text")).to_contain_text("10:00-22:00")
        expect(customer.locator(".outcome").first).to_have_text("Answered by the bot")

        # A complaint: escalated, with the ticket's link.
        _send(
            customer,
            "My order arrived broken and nobody answers. This is terrible, I want a refund!",
        )
        outcome = customer.locator(".outcome").nth(1)
        expect(outcome).to_contain_text("Escalated to an agent")
        tid = outcome.locator("a.ticket-link").inner_text().removeprefix("ticket ")
        assert re.fullmatch(r"T\d+", tid)

        # The agent follows the link, signs in, lands on the ticket and answers.
        agent = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        agent.goto(f"{srv.url}/console/tickets/{tid}")
        agent.get_by_label("Agent token").fill(token)
        agent.get_by_role("button", name="Sign in").click()
        expect(agent.locator("#ticket-title")).to_have_text(f"Ticket {tid}")
        expect(agent.locator("#conversation .msg-customer")).to_contain_text("arrived broken")
        expect(agent.locator("#reasons")).to_contain_text("negativity")
        agent.get_by_label("direct message").check()
        agent.get_by_label("Message", exact=True).fill(
            "I'm sorry about that! A replacement ships today, no need to return the broken one."
        )
        agent.get_by_role("button", name="Send reply").click()
        expect(customer.locator(".msg-agent .msg-text")).to_contain_text(
            "A replacement ships today"
        )
        shot(customer, "sandbox-real-pipeline")
        shot(agent, "console-ticket-real-pipeline")

        # The Chinese, Weibo-like account answers in Chinese.
        customer.get_by_label("Brand account").select_option("acme-cn")
        expect(customer.locator("#messages .msg")).to_have_count(0)
        _send(customer, "营业时间是几点")
        expect(customer.locator(".msg-bot .msg-text")).to_contain_text("10:00-22:00营业")
        expect(customer.locator(".msg-bot .msg-text")).to_have_attribute("lang", "zh")
        shot(customer, "sandbox-chinese-account")
        assert not csp, csp
        customer.context.close()
        agent.context.close()


def test_switching_account_and_new_customer(
    browser: Any, redis_server: Any, tmp_path: Path
) -> None:
    expect = playwright_expect()
    flush_redis(redis_server.url)
    settings = make_settings(
        redis_server.url, tmp_path, **{"accounts": sandbox_accounts(), "sandbox.enabled": True}
    )
    with LiveServer(settings, pipeline_factory=RulePipeline) as srv:
        page = browser.new_context().new_page()
        page.goto(f"{srv.url}/sandbox")
        page.get_by_role("button", name="a FAQ").click()
        expect(page.get_by_label("Message", exact=True)).to_have_value(
            "What are your opening hours?"
        )
        page.get_by_role("button", name="Send").click()
        expect(page.locator(".msg-bot")).to_have_count(1)
        page.get_by_label("Brand account").select_option("acme-cn")
        expect(page.locator("#messages .msg")).to_have_count(0)
        page.get_by_role("button", name="a FAQ").click()
        expect(page.get_by_label("Message", exact=True)).to_have_value("你们的营业时间是什么？")
        page.get_by_label("Brand account").select_option("acme")
        expect(page.locator(".msg-bot")).to_have_count(1)  # the conversation is kept per account
        page.reload()
        expect(page.locator(".msg-bot")).to_have_count(1)  # and across reloads
        page.get_by_role("button", name="New customer").click()
        expect(page.locator("#compose-status")).to_have_text("You are a new customer now.")
        expect(page.locator("#messages .msg")).to_have_count(0)
        page.reload()
        expect(page.locator("#messages .msg")).to_have_count(0)
        page.context.close()


def test_new_customer_gets_its_own_handle_at_once(
    browser: Any, redis_server: Any, tmp_path: Path
) -> None:
    """The handle field follows the new customer id without a reload: one customer, one
    handle."""
    expect = playwright_expect()
    flush_redis(redis_server.url)
    settings = make_settings(
        redis_server.url, tmp_path, **{"accounts": sandbox_accounts(), "sandbox.enabled": True}
    )

    def customer_id(context: Any) -> str:
        (c,) = [c for c in context.cookies() if c["name"] == "replydesk_sandbox"]
        return str(c["value"])

    with LiveServer(settings, pipeline_factory=RulePipeline) as srv:
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{srv.url}/sandbox")
        handle = page.get_by_label("Your handle")
        expect(handle).to_have_value("guest" + customer_id(context)[-4:])
        first = customer_id(context)
        page.get_by_role("button", name="New customer").click()
        expect(page.locator("#compose-status")).to_have_text("You are a new customer now.")
        second = customer_id(context)
        assert second != first
        expect(handle).to_have_value("guest" + second[-4:])
        page.reload()
        expect(handle).to_have_value("guest" + second[-4:])
        context.close()


def test_narrow_screen_shows_the_newest_message_after_send(
    browser: Any, redis_server: Any, tmp_path: Path
) -> None:
    """At 400 px the conversation is below the form: after Send, the customer's message
    and then the bot's answer must come into view, not arrive off-screen."""
    expect = playwright_expect()
    flush_redis(redis_server.url)
    settings = make_settings(
        redis_server.url, tmp_path, **{"accounts": sandbox_accounts(), "sandbox.enabled": True}
    )
    with LiveServer(settings, pipeline_factory=RulePipeline) as srv:
        page = browser.new_context(viewport={"width": 400, "height": 740}).new_page()
        page.goto(f"{srv.url}/sandbox")
        _send(page, "What are your opening hours?")
        expect(page.locator("#messages .msg-customer")).to_be_in_viewport()
        expect(page.locator("#messages .msg-bot")).to_have_count(1)
        expect(page.locator("#messages .msg-bot")).to_be_in_viewport()
        _send(page, "Thanks! And on Sundays?")
        expect(page.locator("#messages .msg-customer").nth(1)).to_be_in_viewport()
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, overflow
        shot(page, "sandbox-narrow-after-send", full_page=False)
        page.context.close()
