"""The ticket page through a support agent's shift in headless chromium: a session that
ends mid-draft, a slow or failing API while a reply is sent, right-to-left customers,
the keyboard and what a screen reader hears from the counter.

Fixtures and helpers are test_console_browser.py's (the real service on loopback).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from bot import keys as K
from escalation.api import TICKETS
from escalation.auth import delete_session
from tests.support.browser import LiveServer, playwright_expect
from tests.test_console_browser import agent_page, browser, new_ticket, server

pytestmark = pytest.mark.browser
__all__ = ["browser", "server"]  # fixtures, imported for pytest

ARABIC = "لم يصل طلبي منذ أسبوعين! خدمة سيئة جدا، أريد استرداد المال."


def end_session(srv: LiveServer, page: Any) -> None:
    """What a session expiring (or signed out in another tab) does: gone from Redis."""
    (sid,) = [c["value"] for c in page.context.cookies() if c["name"] == "replydesk_session"]
    srv.call(lambda app: delete_session(app[K.REDIS], app[K.KEYS], sid))


def claimed(browser: Any, server: LiveServer, **ticket: Any) -> tuple[str, Any]:
    """A new ticket, open in ann's page and claimed by her."""
    expect = playwright_expect()
    tid = new_ticket(server, **ticket)
    page = agent_page(browser, server, "ann")
    page.goto(f"{server.url}/console/tickets/{tid}")
    page.get_by_role("button", name="Claim").click()
    expect(page.locator("#holder")).to_have_text(re.compile("You hold this ticket"))
    return tid, page


def test_a_draft_survives_a_session_that_ended(browser: Any, server: LiveServer) -> None:
    expect = playwright_expect()
    tid, page = claimed(browser, server, kind="mention")
    page.get_by_label("direct message").check()
    draft = "So sorry, Dana. Your refund of 49.90 is on its way; DM me the card's last 4 digits."
    page.get_by_label("Message", exact=True).fill(draft)
    page.get_by_label("Add a note (agents only)").fill("Refund approved by finance.")

    end_session(server, page)
    # Sending (or the live stream, whichever meets the 401 first) goes to sign in ...
    page.get_by_label("Message", exact=True).press("Control+Enter")
    expect(page).to_have_url(re.compile(rf"/console/login\?next=%2Fconsole%2Ftickets%2F{tid}$"))
    page.get_by_label("Agent token").fill(server.tokens["ann"])  # type: ignore[attr-defined]
    page.get_by_role("button", name="Sign in").click()

    # ... and back to the same ticket, with the draft, its channel and the note.
    expect(page).to_have_url(f"{server.url}/console/tickets/{tid}")
    expect(page.get_by_label("Message", exact=True)).to_have_value(draft)
    expect(page.get_by_label("direct message")).to_be_checked()
    expect(page.get_by_label("Add a note (agents only)")).to_have_value(
        "Refund approved by finance."
    )
    expect(page.locator("#action-status")).to_contain_text("your unsent draft is back")
    assert page.evaluate("() => Object.keys(sessionStorage).length") == 0  # taken out

    page.get_by_role("button", name="Send reply").click()
    expect(page.locator("#conversation .msg-agent .msg-text")).to_have_text(draft)
    expect(page.locator("#conversation .msg-agent .kind-dm")).to_have_text("DM")
    page.context.close()


def test_another_agent_on_the_same_tab_does_not_get_the_draft(
    browser: Any, server: LiveServer
) -> None:
    expect = playwright_expect()
    tid = new_ticket(server)
    page = agent_page(browser, server, "ann")
    page.goto(f"{server.url}/console/tickets/{tid}")
    expect(page.locator("#live")).to_have_text("live")
    page.get_by_label("Message", exact=True).fill("ann's words, for ann only")
    end_session(server, page)
    page.get_by_label("Message", exact=True).press("Control+Enter")
    expect(page).to_have_url(re.compile(r"/console/login\?next="))
    page.get_by_label("Agent token").fill(server.tokens["bob"])  # type: ignore[attr-defined]
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{server.url}/console/tickets/{tid}")
    expect(page.locator("#whoami")).to_have_text("bob")
    expect(page.locator("#holder")).not_to_have_text("Loading…")
    expect(page.get_by_label("Message", exact=True)).to_have_value("")
    assert page.evaluate("() => Object.keys(sessionStorage).length") == 0
    page.context.close()


def test_a_failed_send_keeps_the_draft_and_says_it_did_not_go_through(
    browser: Any, server: LiveServer
) -> None:
    expect = playwright_expect()
    tid, page = claimed(browser, server)
    box = page.get_by_label("Message", exact=True)
    send = page.locator("#send-reply")
    box.fill("We are on it.")

    # Redis away: the API answers 503. Not a refusal: the draft stays, to send again.
    def unavailable(route: Any) -> None:
        route.fulfill(
            status=503,
            headers={"Retry-After": "5"},
            content_type="application/json",
            body=json.dumps(
                {
                    "error": {
                        "code": "unavailable",
                        "message": "storage is temporarily unavailable; try again in a few seconds",
                    }
                }
            ),
        )

    page.route(f"**/api/v1/tickets/{tid}/reply", unavailable)
    send.click()
    expect(page.locator("#action-status")).to_have_text(
        "Reply did not go through: storage is temporarily unavailable; try again in a few seconds."
    )
    expect(box).to_have_value("We are on it.")
    expect(box).to_be_editable()
    page.unroute(f"**/api/v1/tickets/{tid}/reply")
    page.context.close()


def test_text_typed_while_a_slow_reply_is_sending_is_not_lost(
    browser: Any, server: LiveServer
) -> None:
    expect = playwright_expect()
    tid, page = claimed(browser, server)
    box = page.get_by_label("Message", exact=True)
    send = page.locator("#send-reply")
    box.fill("We are on it.")
    # A slow answer: what the agent types meanwhile must not be wiped by the clearing
    # after it, nor a second Send post the edited text under the first one's key.
    held: list[Any] = []
    page.route(f"**/api/v1/tickets/{tid}/reply", lambda route: held.append(route))
    send.click()
    expect(send).to_be_disabled()
    box.press("End")
    page.keyboard.type(" and more")
    expect(box).to_have_value("We are on it.")
    expect(box).not_to_be_editable()
    expect(send).to_have_text("Sending…")
    expect(send).to_be_disabled()
    expect(page.locator("#reply-form")).to_have_attribute("aria-busy", "true")
    assert len(held) == 1
    held[0].continue_()
    expect(page.locator("#conversation .msg-agent .msg-text")).to_have_text("We are on it.")
    expect(box).to_have_value("")
    expect(box).to_be_editable()
    expect(send).to_have_text("Send reply")
    page.unroute(f"**/api/v1/tickets/{tid}/reply")
    page.context.close()


def test_right_to_left_customers_read_right_to_left(browser: Any, server: LiveServer) -> None:
    expect = playwright_expect()
    tid = new_ticket(server, text=ARABIC, kind="dm")
    page = agent_page(browser, server, "ann")
    preview = page.locator(f'tr[data-ticket-id="{tid}"] .preview')
    expect(preview).to_have_text(ARABIC)
    # to_have_css retries: a live refresh may replace the node between two looks.
    expect(preview).to_have_css("direction", "rtl")
    page.goto(f"{server.url}/console/tickets/{tid}")
    text = page.locator("#conversation .msg-customer .msg-text")
    expect(text).to_have_text(ARABIC)
    expect(text).to_have_css("direction", "rtl")
    # English stays left to right.
    page.get_by_label("Add a note (agents only)").fill("Customer writes Arabic; replied in Arabic.")
    page.get_by_role("button", name="Add note").click()
    expect(page.locator("#notes .msg-text")).to_have_text(re.compile("replied in Arabic"))
    expect(page.locator("#notes .msg-text")).to_have_css("direction", "ltr")
    page.context.close()


def test_the_counter_speaks_only_when_the_reply_goes_over(browser: Any, server: LiveServer) -> None:
    expect = playwright_expect()
    tid = new_ticket(server, kind="mention")
    page = agent_page(browser, server, "ann")
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.url.endswith("/reply") else None)
    page.goto(f"{server.url}/console/tickets/{tid}")
    counter, alert = page.locator("#counter"), page.locator("#counter-alert")
    box = page.get_by_label("Message", exact=True)
    # Read with the textarea (its description), not announced at every key.
    assert counter.get_attribute("aria-live") is None
    assert "counter" in (box.get_attribute("aria-describedby") or "").split()
    box.fill("x" * 279)
    expect(counter).to_have_text("279 / 280")
    expect(alert).to_have_text("")
    box.press("End")
    page.keyboard.type("xx")
    expect(counter).to_have_text("281 / 280 – 1 over the limit")
    expect(alert).to_have_attribute("role", "status")
    expect(alert).to_have_text("Over the 280-character limit: shorten the reply.")
    page.keyboard.press("Backspace")
    expect(alert).to_have_text("")
    # Ctrl+Enter sends, like the button; over the limit it sends nothing.
    page.keyboard.type("y")
    expect(counter).to_have_text("281 / 280 – 1 over the limit")
    page.keyboard.press("Control+Enter")
    page.keyboard.press("Backspace")
    page.keyboard.press("Backspace")
    expect(counter).to_have_text("279 / 280")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#conversation .msg-agent")).to_have_count(1)
    expect(box).to_have_value("")
    assert len(posts) == 1, posts  # the over-limit Ctrl+Enter posted nothing
    page.context.close()


def test_the_crisis_banner_counts_the_spike_as_it_goes_on(browser: Any, server: LiveServer) -> None:
    """The banner's count that raised the alert is not the spike's size an hour on:
    it says how many negative messages the spike holds so far, and keeps counting."""
    from bot.config import OpsConfig
    from bot.ops.spikes import SpikeDetector

    expect = playwright_expect()
    cfg = OpsConfig(bucket_s=60, window_s=300, min_count=3, factor=3.0)
    t0 = 1_800_000_000.0  # as in test_console_browser: a burst at t0 raises the alert

    async def negatives(app: Any, first: int, n: int) -> None:
        det = SpikeDetector(app[K.REDIS], app[K.KEYS], cfg)
        for i in range(first, first + n):
            await det.observe("acme", now=t0 + 1, item=json.dumps({"event": f"e{i}"}))

    page = agent_page(browser, server, "ann")
    expect(page.locator("#live")).to_have_text("live")
    server.call(lambda app: negatives(app, 0, 8))
    banner = page.locator("#crisis")
    expect(banner).to_contain_text("6 in the window that raised it")
    expect(banner.locator(".crisis-count")).to_have_text("8 so far")
    # 6 raised it (3 x the floor of 2); the 2 after it joined the spike. It goes on: each negative message comes with a ticket (or a message on one).
    server.call(lambda app: negatives(app, 8, 5))
    new_ticket(server, user="77", text="still broken, worst service")
    expect(banner.locator(".crisis-count")).to_have_text("13 so far")
    expect(banner).to_contain_text("6 in the window that raised it")
    page.context.close()


def test_a_live_refresh_does_not_repeat_the_status_lines(browser: Any, server: LiveServer) -> None:
    """The holder line and the channel notice are live regions: a screen reader reads
    them whenever their text is replaced, so a refresh that changes neither leaves them."""
    expect = playwright_expect()
    tid, page = claimed(browser, server, kind="mention")
    page.get_by_label("direct message").check()
    expect(page.locator("#channel-notice")).to_contain_text("public mention")
    page.evaluate(
        """() => { window.__spoken = [];
             for (const id of ["holder", "channel-notice"]) {
               new MutationObserver(() => window.__spoken.push(id)).observe(
                 document.getElementById(id), {childList: true, characterData: true, subtree: true});
             } }"""
    )
    # bob's note: a ticket event, and the page reads the ticket again.
    server.call(lambda app: app[TICKETS].add_note(tid, "bob", "Checked the courier."))
    expect(page.locator("#notes")).to_contain_text("Checked the courier.")
    assert page.evaluate("() => window.__spoken") == []
    page.context.close()


def test_nothing_to_act_on_before_the_ticket_is_read_or_when_there_is_none(
    browser: Any, server: LiveServer
) -> None:
    expect = playwright_expect()
    tid = new_ticket(server)
    page = agent_page(browser, server, "ann")
    actions = ("Claim", "Release", "Resolve", "Reopen")
    # A slow API: until the ticket is read, no action on it and no reply.
    held: list[Any] = []
    page.route(f"**/api/v1/tickets/{tid}", lambda route: held.append(route))
    page.goto(f"{server.url}/console/tickets/{tid}")
    expect(page.locator("#holder")).to_have_text("Loading…")
    for name in actions:
        expect(page.get_by_role("button", name=name, exact=True)).to_be_hidden()
    expect(page.get_by_label("Message", exact=True)).to_be_disabled()
    expect(page.get_by_role("button", name="Send reply")).to_be_disabled()
    expect(page.get_by_role("button", name="Add note")).to_be_disabled()
    assert len(held) == 1
    held[0].continue_()
    expect(page.get_by_role("button", name="Claim")).to_be_visible()
    expect(page.get_by_label("Message", exact=True)).to_be_enabled()
    expect(page.get_by_role("button", name="Add note")).to_be_enabled()
    page.unroute(f"**/api/v1/tickets/{tid}")

    page.goto(f"{server.url}/console/tickets/T99999")
    expect(page.locator("#holder")).to_contain_text("There is no ticket T99999.")
    for name in actions:
        expect(page.get_by_role("button", name=name, exact=True)).to_be_hidden()
    expect(page.get_by_label("Message", exact=True)).to_be_disabled()
    expect(page.get_by_role("button", name="Add note")).to_be_disabled()
    expect(page.locator("#reasons-summary")).not_to_have_text("Loading…")
    page.context.close()


def test_a_ticket_without_a_public_mention_offers_no_public_reply(
    browser: Any, server: LiveServer
) -> None:
    """The API refuses a public reply with no mention to answer (no_public_mention): the
    page says so before the agent writes one, and offers it once the customer posts."""
    expect = playwright_expect()
    tid = new_ticket(server, kind="dm", user="9", text="I was charged twice")
    page = agent_page(browser, server, "ann")
    page.goto(f"{server.url}/console/tickets/{tid}")
    public = page.get_by_label("public reply")
    expect(page.get_by_label("direct message")).to_be_checked()
    expect(public).to_be_disabled()
    expect(page.locator("#no-mention")).to_be_visible()
    # The customer posts publicly too: there is a mention to answer now.
    new_ticket(server, kind="mention", user="9", text="@acme charged twice, still no refund")
    expect(public).to_be_enabled()
    expect(page.locator("#no-mention")).to_be_hidden()
    page.context.close()


def test_the_resolved_queue_says_how_it_is_ordered(browser: Any, server: LiveServer) -> None:
    expect = playwright_expect()
    page = agent_page(browser, server, "ann")
    caption = page.locator("#queue caption")
    expect(caption).to_contain_text("Ordered by SLA due time")
    page.get_by_label("Status").select_option("resolved")
    expect(caption).to_have_text("Resolved tickets, the most recently resolved first.")
    page.context.close()


def test_signing_out_leaves_no_draft_in_the_tab(browser: Any, server: LiveServer) -> None:
    expect = playwright_expect()
    tid = new_ticket(server)
    page = agent_page(browser, server, "ann")
    page.goto(f"{server.url}/console/tickets/{tid}")
    expect(page.locator("#live")).to_have_text("live")
    page.get_by_label("Message", exact=True).fill("half a reply")
    end_session(server, page)
    page.get_by_label("Message", exact=True).press("Control+Enter")
    expect(page).to_have_url(re.compile(r"/console/login\?next="))
    assert page.evaluate("() => Object.keys(sessionStorage)") == [f"replydesk.draft.{tid}"]
    # Signed in from the plain sign-in page: the queue, not the ticket; then signed out.
    page.goto(f"{server.url}/console/login")
    page.get_by_label("Agent token").fill(server.tokens["ann"])  # type: ignore[attr-defined]
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{server.url}/console")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/console/login$"))
    assert page.evaluate("() => Object.keys(sessionStorage).length") == 0
    page.context.close()


def test_a_crisis_that_starts_while_the_queue_is_open_is_announced(
    browser: Any, server: LiveServer
) -> None:
    """The banner is hidden until a spike: a screen reader hears nothing of it appearing,
    so an alert region outside it says so, once per alert."""
    from bot.config import OpsConfig
    from bot.ops.spikes import SpikeDetector

    expect = playwright_expect()
    cfg = OpsConfig(bucket_s=60, window_s=300, min_count=3, factor=3.0)
    t0 = 1_800_000_000.0

    async def negatives(app: Any, first: int, n: int) -> None:
        det = SpikeDetector(app[K.REDIS], app[K.KEYS], cfg)
        for i in range(first, first + n):
            await det.observe("acme", now=t0 + 1, item=json.dumps({"event": f"e{i}"}))

    page = agent_page(browser, server, "ann")
    expect(page.locator("#live")).to_have_text("live")
    said = page.locator("#crisis-live")
    expect(said).to_have_attribute("role", "alert")
    expect(said).to_have_text("")
    server.call(lambda app: negatives(app, 0, 8))
    expect(said).to_have_text("Crisis alert: negative mentions spiking on acme.")
    page.evaluate("() => { document.getElementById('crisis-live').textContent = ''; }")
    server.call(lambda app: negatives(app, 8, 3))
    new_ticket(server, user="78")
    expect(page.locator("#crisis .crisis-count")).to_have_text("11 so far")
    expect(said).to_have_text("")  # the same alert: not said again
    page.context.close()


def test_leaving_with_an_unsent_reply_asks_first(browser: Any, server: LiveServer) -> None:
    """ "← Queue" with a reply written and not sent lost it without a word."""
    expect = playwright_expect()
    tid, page = claimed(browser, server)
    box = page.get_by_label("Message", exact=True)
    box.press_sequentially("Refund approved, it")  # typed: the page has had a gesture
    asked: list[str] = []

    def stay(dialog: Any) -> None:
        asked.append(dialog.type)
        dialog.dismiss()

    page.once("dialog", stay)
    page.locator("#back-to-queue").click()  # returns once the prompt is answered
    assert asked == ["beforeunload"]
    expect(page).to_have_url(f"{server.url}/console/tickets/{tid}")
    expect(box).to_have_value("Refund approved, it")
    # Nothing unsent: no question (an unhandled dialog would be dismissed: no navigation).
    box.fill("")
    page.locator("#back-to-queue").click()
    expect(page).to_have_url(f"{server.url}/console")
    page.context.close()


def test_the_queue_names_reasons_in_words(browser: Any, server: LiveServer) -> None:
    """The Reason column showed the code (human_request, crisis_hold); the code stays in
    the cell's tooltip, and an unknown code is shown with spaces."""
    expect = playwright_expect()
    person = new_ticket(server, user="31", reason="human_request")
    crisis = new_ticket(server, user="32", reason="crisis_hold", kind="mention")
    other = new_ticket(server, user="33", reason="some_new_rule")
    page = agent_page(browser, server, "ann")
    for tid, words, code in (
        (person, "Asked for a person", "human_request"),
        (crisis, "Crisis hold", "crisis_hold"),
        (other, "some new rule", "some_new_rule"),
    ):
        cell = page.locator(f'tr[data-ticket-id="{tid}"] td.reason')
        expect(cell).to_have_text(words)
        expect(cell).to_have_attribute("title", code)
    page.goto(f"{server.url}/console/tickets/{person}")
    expect(page.locator("#facts")).to_contain_text("ReasonAsked for a person")
    page.context.close()
