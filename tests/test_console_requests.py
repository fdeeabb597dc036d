"""The console during a real shift, in headless chromium: finding a customer's tickets
from the queue ("I wrote yesterday, where is my answer?"), and requests that are slow,
time out or never reach the server.

Fixtures and helpers are test_console_browser.py's (the real service on loopback). Slow
and failing requests are held or cut off in the browser (``page.route``): deterministic,
with no sleeping.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import pytest

from escalation.api import TICKETS
from tests.support.browser import LiveServer, playwright_expect
from tests.test_console_browser import agent_page, browser, new_ticket, server
from tests.test_console_shift import claimed

pytestmark = pytest.mark.browser
__all__ = ["browser", "server"]  # fixtures, imported for pytest


def resolve(srv: LiveServer, tid: str) -> None:
    srv.call(lambda app: app[TICKETS].resolve(tid, "sue", supervisor=True))


def test_the_queue_finds_a_customers_tickets_and_keeps_the_search_in_the_address(
    browser: Any, server: LiveServer
) -> None:
    expect = playwright_expect()
    earlier = new_ticket(server, user="42", handle="Dana_K", account="acme")
    resolve(server, earlier)
    dana = [
        new_ticket(server, user="42", handle="Dana_K", account="acme"),
        new_ticket(server, user="42", handle="Dana_K", account="acme-cn"),
    ]
    others = [
        new_ticket(server, user="7", handle="dana_k2", account="acme"),
        new_ticket(server, user="8", handle="bob", account="acme"),
    ]
    page = agent_page(browser, server, "ann")
    rows = page.locator("#queue-body tr")
    expect(rows).to_have_count(4)

    search = page.get_by_label("Customer")
    search.fill("@DANA_k")
    search.press("Enter")
    expect(rows).to_have_count(2)
    for tid in dana:
        expect(page.locator(f'tr[data-ticket-id="{tid}"]')).to_be_visible()
    expect(page).to_have_url(re.compile(r"customer=%40DANA_k"))

    # A reload (or the link, shared) keeps the search.
    page.reload()
    expect(page.get_by_label("Customer")).to_have_value("@DANA_k")
    expect(rows).to_have_count(2)
    page.get_by_label("Status").select_option("resolved")
    expect(page.locator(f'tr[data-ticket-id="{earlier}"]')).to_be_visible()
    expect(rows).to_have_count(1)
    expect(page).to_have_url(re.compile(r"status=resolved&customer=%40DANA_k"))

    # Nobody by that handle: said so, by name, and (open) where else to look.
    search.fill("carol")
    page.get_by_role("button", name="Find").click()
    empty = page.locator("#queue-empty")
    expect(empty).to_have_text("No resolved tickets for @carol.")
    expect(empty).to_have_attribute("role", "status")
    expect(rows).to_have_count(0)
    page.get_by_label("Status").select_option("open")
    expect(empty).to_have_text("No open tickets for @carol.")
    link = page.get_by_role("link", name="Show their resolved tickets")
    expect(link).to_have_attribute("href", "/console?status=resolved&customer=carol")

    # Cleared: everyone's open tickets again.
    search.fill("")
    expect(rows).to_have_count(4)
    expect(empty).to_have_text("")
    expect(link).to_be_hidden()
    for tid in others:
        expect(page.locator(f'tr[data-ticket-id="{tid}"]')).to_be_visible()
    # Half typed, not yet searched: a live refresh meanwhile still lists everyone.
    search.fill("eve")
    new_ticket(server, user="9", handle="eve", account="acme")
    expect(rows).to_have_count(5)
    page.goto(f"{server.url}/console?customer={quote('@dana_k')}")
    expect(rows).to_have_count(2)
    page.context.close()


def test_a_slow_request_says_still_working_once_until_it_ends(
    browser: Any, server: LiveServer
) -> None:
    expect = playwright_expect()
    tid = new_ticket(server)
    page = agent_page(browser, server, "ann")
    page.goto(f"{server.url}/console/tickets/{tid}")
    expect(page.locator("#holder")).to_have_text(re.compile("Unassigned"))
    busy = page.locator("#busy")
    expect(busy).to_have_attribute("role", "status")
    expect(busy).to_have_text("")
    # Every text the status region takes, to count what a screen reader is told.
    page.evaluate(
        """() => { window.busySaid = [];
        new MutationObserver(() => window.busySaid.push(document.getElementById("busy").textContent))
          .observe(document.getElementById("busy"), {childList: true, characterData: true, subtree: true}); }"""
    )
    held: list[Any] = []
    page.route(f"**/api/v1/tickets/{tid}/claim", lambda route: held.append(route))
    page.route(f"**/api/v1/tickets/{tid}/notes", lambda route: held.append(route))
    page.get_by_role("button", name="Claim").click()
    expect(busy).to_have_text("Still working…")
    expect(busy).to_be_visible()
    # A second slow request meanwhile: still one "Still working…", not said again.
    page.get_by_label("Add a note (agents only)").fill("Customer called too.")
    page.get_by_role("button", name="Add note").click()
    expect(busy).to_have_attribute("data-slow", "2")  # both held and past the delay
    assert len(held) == 2
    held[0].continue_()
    expect(page.locator("#holder")).to_have_text(re.compile("You hold this ticket"))
    expect(busy).to_have_text("Still working…")  # the note is still on its way
    held[1].continue_()
    expect(page.locator("#notes .msg-text")).to_have_text("Customer called too.")
    expect(busy).to_have_text("")
    expect(busy).to_be_hidden()
    assert page.evaluate("() => window.busySaid") == ["Still working…", ""]
    page.context.close()


def test_a_send_that_never_reaches_the_server_keeps_the_draft_and_says_so(
    browser: Any, server: LiveServer
) -> None:
    expect = playwright_expect()
    tid, page = claimed(browser, server)
    box = page.get_by_label("Message", exact=True)
    draft = "Dana, your refund is approved."
    box.fill(draft)
    page.route(f"**/api/v1/tickets/{tid}/reply", lambda route: route.abort("internetdisconnected"))
    page.get_by_role("button", name="Send reply").click()
    expect(page.locator("#action-status")).to_have_text(
        "Reply did not go through: could not reach the server (network error). Try again."
    )
    expect(box).to_have_value(draft)
    expect(box).to_be_editable()
    expect(page.locator("#busy")).to_have_text("")
    # Back online: the same draft goes, once.
    page.unroute(f"**/api/v1/tickets/{tid}/reply")
    page.get_by_role("button", name="Send reply").click()
    expect(page.locator("#conversation .msg-agent .msg-text")).to_have_text(draft)
    expect(box).to_have_value("")
    page.context.close()


def test_a_send_with_no_answer_gives_up_keeps_the_draft_and_says_so(
    browser: Any, server: LiveServer
) -> None:
    expect = playwright_expect()
    tid, page = claimed(browser, server)
    box = page.get_by_label("Message", exact=True)
    box.fill("On its way.")
    # A server that never answers, and a page that waits 1 s (30 s in service) for it.
    held: list[Any] = []
    page.route(f"**/api/v1/tickets/{tid}/reply", lambda route: held.append(route))
    page.evaluate("() => { if (RD.config) RD.config.timeoutMs = 1000; }")
    page.get_by_role("button", name="Send reply").click()
    expect(page.locator("#action-status")).to_have_text(
        "Reply did not go through: the server did not answer in time. Try again."
    )
    expect(box).to_have_value("On its way.")
    expect(box).to_be_editable()
    expect(page.locator("#send-reply")).to_have_text("Send reply")
    page.context.close()


def test_a_ticket_links_to_the_customers_other_tickets_by_id(
    browser: Any, server: LiveServer
) -> None:
    # The customer wrote before under another handle: the link finds them by user id.
    expect = playwright_expect()
    before = new_ticket(server, user="77", handle="old_name", account="acme")
    resolve(server, before)
    now = new_ticket(server, user="77", handle="new_name", account="acme")
    new_ticket(server, user="78", handle="someone", account="acme")
    page = agent_page(browser, server, "ann")
    page.goto(f"{server.url}/console/tickets/{now}")
    page.get_by_role("link", name="their open tickets").click()
    rows = page.locator("#queue-body tr")
    expect(rows).to_have_count(1)
    expect(page.locator(f'tr[data-ticket-id="{now}"]')).to_be_visible()
    page.get_by_label("Status").select_option("resolved")
    expect(page.locator(f'tr[data-ticket-id="{before}"]')).to_be_visible()
    expect(rows).to_have_count(1)
    page.context.close()
