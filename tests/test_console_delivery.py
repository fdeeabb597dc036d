"""The ticket page shows whether each agent reply reached the customer, live: sent (the
sender's record) or not delivered with the reason (a reply the sender gave up on). The
real service on loopback with its sender (test_console_browser.py's fixtures)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support.browser import LiveServer, playwright_expect
from tests.test_console_browser import agent_page, browser, new_ticket, server

pytestmark = pytest.mark.browser
__all__ = ["browser", "server"]  # fixtures, imported for pytest


def send(browser: Any, server: LiveServer, text: str, **ticket: Any) -> Any:
    tid = new_ticket(server, **ticket)
    page = agent_page(browser, server, "ann")
    page.goto(f"{server.url}/console/tickets/{tid}")
    page.get_by_label("Message", exact=True).fill(text)
    page.get_by_role("button", name="Send reply").click()
    playwright_expect()(page.locator("#conversation .msg-agent .msg-text")).to_have_text(text)
    return page


def test_a_sent_reply_says_sent(browser: Any, server: LiveServer) -> None:
    page = send(browser, server, "Your refund is on its way.")
    delivery = page.locator("#conversation .msg-agent .delivery")
    playwright_expect()(delivery).to_have_text(re.compile(r"^Sent \S"))
    page.context.close()


def test_a_reply_the_sender_gave_up_on_says_not_delivered_and_why(
    browser: Any, server: LiveServer
) -> None:
    expect = playwright_expect()
    # An account this server does not run: the sender dead-letters the reply.
    page = send(browser, server, "We have refunded you.", account="retired")
    delivery = page.locator("#conversation .msg-agent .delivery")
    expect(delivery).to_have_text(
        re.compile(r"^Not delivered: no account 'retired' configured")
    )  # without a reload: the ticket.delivery event
    expect(page.locator("#notes .msg-note .msg-text")).to_contain_text("Not delivered (agent")
    page.context.close()
