"""The agent console in headless chromium against the real service.

One journey covers the issue's loop (a complaint written in the sandbox appears in the
console live, an agent claims it, a second agent sees who holds it, the reply reaches
the sandbox, the ticket is resolved); the other tests cover sign-in, escaping, the
SLA countdown colours, the character counter, the supervisor view, phones, CSRF and
accessibility. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot import textfit
from bot.models import OutboundReply
from escalation.api import TICKETS
from escalation.lengths import composed_length
from tests.conftest import make_settings
from tests.fakes.harness import accounts
from tests.support.browser import (
    LiveServer,
    RulePipeline,
    chromium,
    csp_violations,
    flush_redis,
    playwright_expect,
    run_axe,
    sandbox_accounts,
    shot,
    sign_in,
)
from tests.support.escalation import event

pytestmark = pytest.mark.browser

VECTORS = Path(__file__).parent / "data" / "textfit_vectors.json"
XSS_TEXT = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2"> help'
XSS_HANDLE = '"><img src=x onerror=window.__xss=3>'


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture
def server(redis_server: Any, tmp_path: Path) -> Iterator[LiveServer]:
    flush_redis(redis_server.url)
    settings = make_settings(
        redis_server.url, tmp_path, **{"accounts": sandbox_accounts(), "sandbox.enabled": True}
    )
    with LiveServer(settings, pipeline_factory=RulePipeline) as srv:
        srv.tokens = {  # type: ignore[attr-defined]
            "ann": srv.add_agent("ann"),
            "bob": srv.add_agent("bob"),
            "sue": srv.add_agent("sue", "supervisor"),
        }
        yield srv


def new_ticket(
    srv: LiveServer,
    *,
    priority: str = "high",
    reason: str = "complaint",
    opened_at: float | None = None,
    **kw: Any,
) -> str:
    """A ticket opened the way the pipeline opens one (now, or at ``opened_at``, on a
    sandbox account)."""
    kw.setdefault("platform", "sandbox")
    kw.setdefault("at", opened_at or time.time())

    async def go(app: Any) -> str:
        store = app[TICKETS]
        real_now = store.now
        if opened_at is not None:  # the store's clock starts the SLA clocks
            store.now = lambda: opened_at
        try:
            tid, _ = await store.open_or_append(
                event(**kw),
                reason=reason,
                priority=priority,
                reasons={"rule": "complaint", "intent": "complaint", "confidence": 0.91},
            )
        finally:
            store.now = real_now
        return str(tid)

    return str(srv.call(go))


def agent_page(browser: Any, srv: LiveServer, who: str, **ctx: Any) -> Any:
    context = browser.new_context(**ctx)
    page = context.new_page()
    sign_in(page, srv.url, srv.tokens[who])  # type: ignore[attr-defined]
    return page


# -- sign in / out -----------------------------------------------------------------
def test_sign_in_cookie_and_sign_out(browser: Any, server: LiveServer) -> None:
    expect = playwright_expect()
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{server.url}/console")
    expect(page).to_have_url(re.compile(r"/console/login"))
    page.get_by_label("Agent token").fill("rdk_wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#login-error")).to_have_text("That token is not valid.")

    token = server.tokens["ann"]  # type: ignore[attr-defined]
    sign_in(page, server.url, token)
    expect(page.locator("#whoami")).to_have_text("ann")
    expect(page.locator("#live")).to_have_text("live")
    (cookie,) = [c for c in context.cookies() if c["name"] == "replydesk_session"]
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    assert cookie["value"] != token
    html = page.content()
    assert token not in html and cookie["value"] not in html
    assert page.evaluate("() => document.cookie") == ""  # nothing readable by scripts
    assert (
        page.evaluate("() => Object.keys(localStorage).length + Object.keys(sessionStorage).length")
        == 0
    )

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/console/login$"))
    page.goto(f"{server.url}/console")
    expect(page).to_have_url(re.compile(r"/console/login"))
    context.close()


def test_state_changes_need_the_csrf_header(browser: Any, server: LiveServer) -> None:
    tid = new_ticket(server)
    page = agent_page(browser, server, "ann")
    status = page.evaluate(
        """async (tid) => (await fetch(`/api/v1/tickets/${tid}/claim`, {method: "POST",
              credentials: "same-origin"})).status""",
        tid,
    )
    assert status == 401
    status = page.evaluate(
        """async (tid) => (await fetch(`/api/v1/tickets/${tid}/claim`, {method: "POST",
              credentials: "same-origin", headers: {"X-CSRF-Token": RD.csrfToken()}})).status""",
        tid,
    )
    assert status == 200
    page.context.close()


# -- the loop: sandbox complaint → live queue → claim → held by → reply → resolve ------
def test_complaint_live_claim_reply_resolve(browser: Any, server: LiveServer) -> None:
    expect = playwright_expect()
    ann = agent_page(browser, server, "ann", viewport={"width": 1280, "height": 860})
    csp = csp_violations(ann)
    expect(ann.locator("#live")).to_have_text("live")
    expect(ann.locator("#queue-empty")).to_be_visible()

    customer = browser.new_context(viewport={"width": 1100, "height": 800}).new_page()
    customer.goto(f"{server.url}/sandbox")
    customer.get_by_label("a public mention").check()
    customer.get_by_label("Message", exact=True).fill(
        "My order arrived broken and nobody answers. Terrible!"
    )
    customer.get_by_role("button", name="Send").click()
    expect(customer.locator(".outcome.escalated")).to_contain_text("Escalated to an agent")
    link = customer.locator(".outcome a.ticket-link")
    tid = link.inner_text().removeprefix("ticket ")
    expect(customer.locator(".msg-bot .msg-text")).to_contain_text("A person from our team")

    # The queue updated without a reload.
    row = ann.locator(f'tr[data-ticket-id="{tid}"]')
    expect(row).to_be_visible()
    expect(row).to_contain_text("Complaint")  # the reason in words
    expect(row).to_contain_text("sandbox · acme")
    expect(row.locator(".prio-high")).to_be_visible()
    expect(row.locator(".sla")).to_have_attribute("data-sla", "ok")
    shot(ann, "console-queue")

    row.locator("a.ticket-id").click()
    expect(ann.locator("#ticket-title")).to_have_text(f"Ticket {tid}")
    expect(ann.locator("#conversation .msg-customer")).to_contain_text("arrived broken")
    expect(ann.locator("#conversation .msg-bot")).to_contain_text("A person from our team")
    expect(ann.locator("#conversation .msg-customer .kind-mention")).to_have_text("public")
    expect(ann.locator("#reasons")).to_contain_text("complaint")
    ann.get_by_role("button", name="Claim").click()
    expect(ann.locator("#holder")).to_have_text(re.compile("You hold this ticket"))
    expect(ann.locator("#history")).to_contain_text("ann claimed it")

    # A second agent sees who holds it and cannot act on it.
    bob = agent_page(browser, server, "bob")
    bob.goto(f"{server.url}/console/tickets/{tid}")
    expect(bob.locator("#holder")).to_have_text(re.compile("Held by ann"))
    expect(bob.get_by_role("button", name="Claim")).to_be_hidden()
    expect(bob.locator("#reply-text")).to_be_disabled()
    # Even a racing request is refused with the holder's name.
    msg = bob.evaluate(
        """async (tid) => { try { await RD.api("POST", `/api/v1/tickets/${tid}/claim`, {}); return "ok"; }
                          catch (e) { return e.status + " " + e.message; } }""",
        tid,
    )
    assert msg.startswith("409") and "ann" in msg
    shot(bob, "console-held-by-other")

    # Reply with the counter running, see it in the sandbox.
    ann.get_by_label("Message", exact=True).fill("So sorry! We are sending a replacement today.")
    expect(ann.locator("#counter")).to_have_text("45 / 280")
    ann.get_by_role("button", name="Send reply").click()
    expect(ann.locator("#conversation .msg-agent")).to_contain_text("replacement today")
    expect(customer.locator(".msg-agent .msg-text")).to_have_text(
        "So sorry! We are sending a replacement today."
    )
    shot(customer, "sandbox-conversation")

    # The customer answers: it lands on the ticket, live.
    customer.get_by_label("Message", exact=True).fill("Thank you, that's kind. When will it ship?")
    customer.get_by_role("button", name="Send").click()
    expect(customer.locator(".outcome").last).to_contain_text("Added to your open case")
    expect(ann.locator("#conversation .msg-customer").last).to_contain_text("When will it ship?")
    ann.get_by_label("Add a note (agents only)").fill("Replacement order R-778 created.")
    ann.get_by_role("button", name="Add note").click()
    expect(ann.locator("#notes")).to_contain_text("R-778")
    shot(ann, "console-ticket")

    ann.get_by_role("button", name="Resolve").click()
    expect(ann.locator("#t-status")).to_have_text("resolved")
    expect(bob.locator("#t-status")).to_have_text("resolved")  # live on the other screen
    ann.get_by_role("button", name="Reopen").click()
    expect(ann.locator("#t-status")).to_have_text("open")
    assert not csp, csp
    for p in (ann, bob, customer):
        p.context.close()


# -- escaping --------------------------------------------------------------------------
def test_xss_payloads_render_as_text(browser: Any, server: LiveServer) -> None:
    expect = playwright_expect()
    tid = new_ticket(server, text=XSS_TEXT, handle=XSS_HANDLE)
    page = agent_page(browser, server, "ann")
    csp = csp_violations(page)
    row = page.locator(f'tr[data-ticket-id="{tid}"]')
    expect(row).to_contain_text(XSS_HANDLE)
    page.goto(f"{server.url}/console/tickets/{tid}")
    expect(page.locator("#conversation .msg-customer .msg-text")).to_have_text(XSS_TEXT)
    page.get_by_label("Add a note (agents only)").fill(XSS_TEXT)
    page.get_by_role("button", name="Add note").click()
    expect(page.locator("#notes .msg-text")).to_have_text(XSS_TEXT)
    assert page.locator("main img").count() == 0
    assert page.locator("main script").count() == 0
    assert page.evaluate("() => window.__xss") is None
    shot(page, "console-xss-as-text")
    assert not csp, csp
    page.context.close()


def test_sandbox_text_is_escaped(browser: Any, server: LiveServer) -> None:
    expect = playwright_expect()
    page = browser.new_context().new_page()
    page.goto(f"{server.url}/sandbox")
    page.get_by_label("Message", exact=True).fill(XSS_TEXT)
    page.get_by_role("button", name="Send").click()
    expect(page.locator(".msg-customer .msg-text")).to_have_text(XSS_TEXT)
    assert page.locator("#messages img").count() == 0
    assert page.evaluate("() => window.__xss") is None
    page.context.close()


# -- SLA countdown colours ------------------------------------------------------------
def test_countdown_turns_amber_then_red(browser: Any, redis_server: Any, tmp_path: Path) -> None:
    expect = playwright_expect()
    flush_redis(redis_server.url)
    # Urgent: 6 s to first response, at risk after 2.4 s; high: 15 s, at risk after 6 s.
    urgent = {"first_response_min": 0.1, "next_response_min": 0.1, "resolution_min": 0.2}
    high = {"first_response_min": 0.25, "next_response_min": 0.25, "resolution_min": 0.5}
    settings = make_settings(
        redis_server.url,
        tmp_path,
        **{
            "accounts": sandbox_accounts(),
            "escalation.policies.urgent": urgent,
            "escalation.policies.high": high,
            "escalation.policies.normal": {"first_response_min": 60},
            "escalation.policies.low": {"first_response_min": 240},
            "escalation.at_risk_share": 0.4,
            "escalation.scan_interval_s": 0.5,
        },
    )
    with LiveServer(settings, pipeline_factory=RulePipeline) as srv:
        srv.tokens = {"ann": srv.add_agent("ann")}  # type: ignore[attr-defined]
        page = agent_page(browser, srv, "ann", viewport={"width": 1280, "height": 600})
        expect(page.locator("#live")).to_have_text("live")
        tid = new_ticket(srv, priority="urgent", handle="maria_g", kind="mention")
        t_high = new_ticket(
            srv, user="7", handle="coffee_fan", reason="negative mention", kind="mention"
        )
        new_ticket(
            srv,
            user="8",
            handle="li_lei",
            account="acme-cn",
            priority="normal",
            reason="asked for a human",
        )
        new_ticket(srv, user="9", handle="dan", priority="low", reason="unclear twice")
        sla = page.locator(f'tr[data-ticket-id="{tid}"] .sla')
        expect(sla).to_have_attribute("data-sla", "ok")
        expect(sla).to_have_attribute("data-sla", "at-risk")
        expect(sla).to_have_class(re.compile(r"\bsla-at-risk\b"))
        shot(page, "console-sla-at-risk")
        expect(sla).to_have_attribute("data-sla", "breached")
        expect(sla).to_have_class(re.compile(r"\bsla-breached\b"))
        expect(sla).to_contain_text("over")
        color = sla.evaluate("n => getComputedStyle(n).color")
        assert color == "rgb(155, 28, 28)"  # --red
        # Queue order is by due time: the breached ticket first, the low one last.
        expect(page.locator("#queue-body tr").first).to_have_attribute("data-ticket-id", tid)
        expect(page.locator(f'tr[data-ticket-id="{t_high}"] .sla')).to_have_attribute(
            "data-sla", "at-risk"
        )
        shot(page, "console-queue-sla")
        page.context.close()


# -- the character counter ----------------------------------------------------------
def test_counter_matches_textfit_vectors(browser: Any, server: LiveServer) -> None:
    expect = playwright_expect()
    # A mention: a public reply needs one to answer (without, the page disables it).
    tid = new_ticket(server, kind="mention")
    page = agent_page(browser, server, "ann")
    page.goto(f"{server.url}/console/tickets/{tid}")
    expect(page.locator("#holder")).not_to_have_text("Loading…")
    vectors = json.loads(VECTORS.read_text(encoding="utf-8"))["vectors"]
    rules = {v["platform"]: textfit.rules_for(v["platform"]) for v in vectors}
    got = page.evaluate(
        "([vs, rules]) => vs.map(v => TextCount.count(v.text, rules[v.platform]))", [vectors, rules]
    )
    bad = [
        (v["platform"], v["text"], n, v["count"])
        for v, n in zip(vectors, got, strict=True)
        if n != v["count"]
    ]
    assert not bad
    # The counter as the agent types: acme is X-like (CJK weighs 2, a URL 23).
    page.get_by_label("public reply").check()
    page.get_by_label("Message", exact=True).fill(
        "你好 https://example.com/a/very/long/path/that/is/long"
    )
    expect(page.locator("#counter")).to_have_text("28 / 280")
    page.get_by_label("Message", exact=True).fill("好" * 141)
    expect(page.locator("#counter")).to_have_text("282 / 280 – 2 over the limit")
    expect(page.get_by_role("button", name="Send reply")).to_be_disabled()
    page.context.close()


def test_mastodon_counter_counts_the_handle_the_sender_adds(
    browser: Any, redis_server: Any, tmp_path: Path
) -> None:
    expect = playwright_expect()
    flush_redis(redis_server.url)
    masto = [a for a in accounts() if a["platform"] == "mastodon"]  # streaming off
    settings = make_settings(redis_server.url, tmp_path, accounts=sandbox_accounts() + masto)
    handle = "customer_handle@other.social"
    with LiveServer(settings, pipeline_factory=RulePipeline) as srv:
        srv.tokens = {"ann": srv.add_agent("ann")}  # type: ignore[attr-defined]
        tid = new_ticket(srv, platform="mastodon", account="brandm", kind="mention", handle=handle)
        page = agent_page(browser, srv, "ann")
        page.goto(f"{srv.url}/console/tickets/{tid}")
        expect(page.locator("#holder")).not_to_have_text("Loading…")
        # The sender posts "@customer_handle@other.social " + text in 500 (the remote
        # handle counts as "@customer_handle").
        room = 500 - textfit.count(f"@{handle} ", "mastodon")
        fits = ("We are very sorry about the delay with your order. " * 20)[: room - 1] + "."
        box, send = page.get_by_label("Message", exact=True), page.locator("#send-reply")
        box.fill(fits)
        expect(page.locator("#counter")).to_have_text("500 / 500")
        expect(send).to_be_enabled()
        box.fill(fits + "!")
        expect(page.locator("#counter")).to_have_text("501 / 500 – 1 over the limit")
        expect(send).to_be_disabled()
        # The API refuses what the counter refuses.
        got = page.evaluate(
            """async ([tid, text]) => { try { await RD.api("POST", `/api/v1/tickets/${tid}/reply`,
                   {text}); return "ok"; } catch (e) { return `${e.status} ${e.code}`; } }""",
            [tid, fits + "!"],
        )
        assert got == "422 too_long"
        # The page's count and the API's are one computation, case by case.
        cases = [
            ("Hi there ", handle),
            (f"@{handle} typed the handle myself", handle),
            (f"@{handle.upper()} SHOUTING", "@" + handle),
            ("see https://example.com/a/very/long/path 好 👍🏽", handle),
            ("no handle known", ""),
        ]
        rule = page.evaluate("async () => (await RD.api('GET', '/console/rules.json')).accounts")
        js = page.evaluate(
            "([cases, rule]) => cases.map(([t, h]) => TextCount.reply(t, rule, h))",
            [cases, rule["brandm"]],
        )
        account = settings.account("brandm")
        assert account is not None
        py = [
            composed_length(
                account, OutboundReply("r", "mastodon", "brandm", "mention", t, "9", h)
            )[0]
            for t, h in cases
        ]
        assert js == py
        page.context.close()


# -- the reply channel ------------------------------------------------------------------
def test_reply_goes_where_the_customer_last_wrote(browser: Any, server: LiveServer) -> None:
    expect = playwright_expect()
    tid = new_ticket(server, kind="mention", text="@acme your delivery is broken")

    def customer_writes(kind: str, text: str) -> None:
        ev = event(text, kind=kind, platform="sandbox", at=time.time())
        server.call(lambda app: app[TICKETS].append_customer_message(tid, ev))

    customer_writes("dm", "My order is A12345, address 1 Main St")  # moved to DM as asked
    page = agent_page(browser, server, "ann")
    page.goto(f"{server.url}/console/tickets/{tid}")
    expect(page.locator("#conversation .msg-customer")).to_have_count(2)
    expect(page.get_by_label("direct message")).to_be_checked()
    expect(page.get_by_label("public reply")).not_to_be_checked()
    # Live: the default follows the customer until the agent picks a channel.
    customer_writes("mention", "@acme still waiting!")
    expect(page.locator("#conversation .msg-customer")).to_have_count(3)
    expect(page.get_by_label("public reply")).to_be_checked()
    customer_writes("dm", "Any news on A12345?")
    expect(page.get_by_label("direct message")).to_be_checked()
    page.get_by_label("Message", exact=True).fill("It ships to 1 Main St tomorrow.")
    page.get_by_role("button", name="Send reply").click()
    expect(page.locator("#conversation .msg-agent .kind-dm")).to_have_text("DM")
    page.context.close()


def test_a_draft_keeps_its_channel_and_a_notice_says_where_the_customer_wrote(
    browser: Any, server: LiveServer
) -> None:
    """A customer's new public mention must not flip a DM draft (private details) to a
    public reply: typing chooses the channel; a notice says where the customer wrote."""
    expect = playwright_expect()
    tid = new_ticket(server, kind="dm", text="My parcel never came")

    def customer_writes(kind: str, text: str) -> None:
        ev = event(text, kind=kind, platform="sandbox", at=time.time())
        server.call(lambda app: app[TICKETS].append_customer_message(tid, ev))

    page = agent_page(browser, server, "ann")
    page.goto(f"{server.url}/console/tickets/{tid}")
    expect(page.locator("#conversation .msg-customer")).to_have_count(1)
    dm, public = page.get_by_label("direct message"), page.get_by_label("public reply")
    notice = page.locator("#channel-notice")
    expect(dm).to_be_checked()
    page.get_by_label("Message", exact=True).fill("Your code is 4471 for 1 Main St, flat 2.")
    customer_writes("mention", "@acme hello??")
    expect(page.locator("#conversation .msg-customer")).to_have_count(2)
    expect(dm).to_be_checked()
    expect(public).not_to_be_checked()
    expect(notice).to_have_text(re.compile(r"The customer's latest message is a public mention"))
    expect(notice).to_be_visible()
    shot(page, "console-channel-notice", full_page=False)
    # The agent answering where the customer wrote clears the notice; a DM brings it back.
    public.check()
    expect(notice).to_be_empty()
    customer_writes("dm", "sent you a DM")
    expect(page.locator("#conversation .msg-customer")).to_have_count(3)
    expect(public).to_be_checked()
    expect(notice).to_have_text(re.compile(r"The customer's latest message is a direct message"))
    page.context.close()


# -- supervisor -----------------------------------------------------------------------
def test_ticket_reassign_needs_a_choice(browser: Any, server: LiveServer) -> None:
    """Nobody holds the ticket: the list starts on a disabled "choose…", and Reassign
    without a choice assigns nobody (not whoever is listed first)."""
    expect = playwright_expect()
    tid = new_ticket(server)
    page = agent_page(browser, server, "sue")
    page.goto(f"{server.url}/console/tickets/{tid}")
    expect(page.locator("#holder")).to_have_text(re.compile("Unassigned"))
    menu = page.get_by_label("Assign to")
    expect(menu.locator("option")).to_have_count(4)  # choose…, ann, bob, sue
    expect(menu).to_have_value("")
    placeholder = menu.locator("option").first
    expect(placeholder).to_have_text("choose…")
    expect(placeholder).to_be_disabled()
    page.get_by_role("button", name="Reassign").click()
    expect(page.locator("#action-status")).to_have_text("Choose an agent to assign the ticket to.")
    expect(menu).to_be_focused()
    page.wait_for_timeout(300)
    expect(page.locator("#holder")).to_have_text(re.compile("Unassigned"))
    menu.select_option("bob")
    page.get_by_role("button", name="Reassign").click()
    expect(page.locator("#holder")).to_have_text(re.compile("Held by bob"))
    expect(menu).to_have_value("bob")
    page.context.close()


def test_supervisor_load_unassigned_risk_revoked_holder_and_phone_width(
    browser: Any, server: LiveServer
) -> None:
    from bot import keys as K
    from escalation.agents import AgentStore

    expect = playwright_expect()
    old = time.time() - 30 * 86400  # every clock long breached
    new_ticket(server, user="1", opened_at=old)
    new_ticket(server, user="2")
    held = new_ticket(server, user="3", opened_at=old)

    async def hand_to_bob_then_revoke(app: Any) -> None:
        await app[TICKETS].assign(held, "bob", "sue")
        await AgentStore(app[K.REDIS], app[K.KEYS]).revoke("bob")

    server.call(hand_to_bob_then_revoke)
    # Not is_mobile: a mobile viewport zooms out to fit, hiding a page that scrolls sideways.
    page = agent_page(browser, server, "sue", viewport={"width": 400, "height": 800})
    page.goto(f"{server.url}/console/supervisor")
    expect(page.locator("#held-body tr")).to_have_count(3)
    unassigned = page.locator("#load-body tr", has_text="unassigned").locator("td")
    expect(unassigned).to_have_text(["unassigned", "—", "2", "1"])
    expect(page.locator('#load-body tr[data-agent="bob"] td')).to_have_text(
        ["bob", "revoked", "1", "1"]
    )
    # Held by a revoked agent: nobody is preselected in the menu.
    expect(page.get_by_label(f"Assign {held} to")).to_have_value("")
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, overflow
    # Every header of the load table can be read: inside the viewport, or in a box that
    # scrolls sideways on its own.
    cut = page.evaluate(
        """() => [...document.querySelectorAll("#load th")].filter((th) => {
             const r = th.getBoundingClientRect();
             const box = th.closest(".table-scroll");
             const fits = r.left >= 0 && r.right <= window.innerWidth;
             return !fits && !(box && box.scrollWidth > box.clientWidth
               && getComputedStyle(box).overflowX === "auto");
           }).map((th) => th.textContent)"""
    )
    assert cut == []
    shot(page, "console-supervisor-phone")
    page.context.close()


def test_supervisor_reassign_priority_and_load(browser: Any, server: LiveServer) -> None:
    expect = playwright_expect()
    t1 = new_ticket(server, user="1")
    new_ticket(server, user="2")
    sue = agent_page(browser, server, "sue")
    sue.get_by_role("link", name="Supervisor").click()
    row = sue.locator(f'#held-body tr[data-ticket-id="{t1}"]')
    expect(row).to_be_visible()
    row.get_by_label(f"Assign {t1} to").select_option("bob")
    row.get_by_role("button", name="Assign").click()
    expect(row).to_contain_text("bob")
    expect(sue.locator('#load-body tr[data-agent="bob"] .load-n')).to_have_text("1")
    row.get_by_label(f"Priority of {t1}").select_option("urgent")
    row.get_by_role("button", name="Set").click()
    expect(row.locator(".prio-urgent")).to_be_visible()
    shot(sue, "console-supervisor")
    # Agents do not get the supervisor view.
    ann = agent_page(browser, server, "ann")
    expect(ann.get_by_role("link", name="Supervisor")).to_have_count(0)
    refused = ann.goto(f"{server.url}/console/supervisor")
    assert refused is not None and refused.status == 403
    expect(ann.locator("#whoami")).to_have_text("ann")  # the console's own layout
    expect(ann.get_by_role("heading", name="Supervisors only")).to_be_visible()
    ann.get_by_role("link", name="Back to the queue").click()
    expect(ann).to_have_url(re.compile(r"/console$"))
    # The holder sees the reassignment on the ticket page.
    bob = agent_page(browser, server, "bob")
    bob.goto(f"{server.url}/console/tickets/{t1}")
    expect(bob.locator("#holder")).to_have_text(re.compile("You hold this ticket"))
    for p in (sue, ann, bob):
        p.context.close()


def test_queue_filters(browser: Any, server: LiveServer) -> None:
    expect = playwright_expect()
    t1 = new_ticket(server, user="1", account="acme")
    t2 = new_ticket(server, user="2", account="acme-cn")
    page = agent_page(browser, server, "ann")
    rows = page.locator("#queue-body tr")
    expect(rows).to_have_count(2)
    page.goto(f"{server.url}/console/tickets/{t1}")
    page.get_by_role("button", name="Claim").click()
    expect(page.locator("#holder")).to_have_text(re.compile("You hold"))
    page.goto(f"{server.url}/console")
    page.get_by_label("Assigned").select_option("me")
    expect(rows).to_have_count(1)
    expect(page.locator(f'tr[data-ticket-id="{t1}"]')).to_be_visible()
    page.get_by_label("Assigned").select_option("none")
    expect(page.locator(f'tr[data-ticket-id="{t2}"]')).to_be_visible()
    expect(rows).to_have_count(1)
    page.get_by_label("Assigned").select_option("")
    page.get_by_label("Account").select_option("acme-cn")
    expect(rows).to_have_count(1)
    expect(page.locator(f'tr[data-ticket-id="{t2}"]')).to_be_visible()
    page.get_by_label("Account").select_option("")
    page.get_by_label("Priority").select_option("low")
    expect(page.locator("#queue-empty")).to_be_visible()
    page.context.close()


# -- phones and accessibility -----------------------------------------------------------
def test_phone_layout(browser: Any, server: LiveServer) -> None:
    expect = playwright_expect()
    tid = new_ticket(server)
    page = agent_page(
        browser,
        server,
        "ann",
        viewport={"width": 390, "height": 844},
        is_mobile=True,
        has_touch=True,
    )
    expect(page.locator(f'tr[data-ticket-id="{tid}"]')).to_be_visible()
    for path in ("/console", f"/console/tickets/{tid}", "/sandbox"):
        page.goto(server.url + path)
        page.wait_for_load_state("networkidle") if path == "/sandbox" else None
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, (path, overflow)
    page.goto(f"{server.url}/console")
    expect(page.locator(f'tr[data-ticket-id="{tid}"]')).to_be_visible()
    shot(page, "console-phone")
    page.context.close()


def test_pages_pass_axe(browser: Any, server: LiveServer) -> None:
    expect = playwright_expect()
    tid = new_ticket(server, text="Where is my order? It is late.")
    # axe is injected as a script, which our CSP forbids: this context bypasses it.
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()
    report: dict[str, list[str]] = {}
    page.goto(f"{server.url}/console/login")
    report["login"] = _serious(run_axe(page))
    sign_in(page, server.url, server.tokens["sue"])  # type: ignore[attr-defined]
    expect(page.locator(f'tr[data-ticket-id="{tid}"]')).to_be_visible()
    report["queue"] = _serious(run_axe(page))
    page.goto(f"{server.url}/console/tickets/{tid}")
    expect(page.locator("#conversation .msg")).to_have_count(1)
    report["ticket"] = _serious(run_axe(page))
    page.goto(f"{server.url}/console/supervisor")
    expect(page.locator("#held-body tr")).to_have_count(1)
    supervisor = run_axe(page)
    report["supervisor"] = _serious(supervisor)
    # Two landmarks of one name (the section and its table's scroll box) read the same.
    assert not [v["id"] for v in supervisor if v["id"] == "landmark-unique"]
    page.goto(f"{server.url}/sandbox")
    report["sandbox"] = _serious(run_axe(page))
    (ARTIFACTS := Path(__file__).parents[1] / "test-artifacts").mkdir(exist_ok=True)
    (ARTIFACTS / "axe-report.json").write_text(json.dumps(report, indent=2))
    critical = {k: [v for v in vs if v.startswith("critical")] for k, vs in report.items()}
    assert not any(critical.values()), critical
    context.close()


def _serious(violations: list[dict[str, Any]]) -> list[str]:
    return [
        f"{v['impact']}: {v['id']} ({len(v['nodes'])} nodes) {v['help']}"
        for v in violations
        if v.get("impact") in ("critical", "serious")
    ]


def test_crisis_banner_appears_and_clears_live(browser: Any, server: LiveServer) -> None:
    """A negative spike (bot.ops) shows as a banner on the open queue, without a reload,
    and goes away when the alert clears."""
    from bot import keys as K
    from bot.config import OpsConfig
    from bot.ops.spikes import SpikeDetector

    expect = playwright_expect()
    cfg = OpsConfig(bucket_s=60, window_s=300, min_count=3, factor=3.0)
    t0 = 1_800_000_000.0

    async def burst(app: Any, now: float, n: int) -> None:
        det = SpikeDetector(app[K.REDIS], app[K.KEYS], cfg)
        for i in range(n):
            await det.observe("acme", now=now, item=json.dumps({"event": f"e{now}-{i}"}))
        if n == 0:
            await det.observe("acme", now=now)

    page = agent_page(browser, server, "ann")
    banner = page.locator("#crisis")
    expect(banner).to_be_hidden()
    server.call(lambda app: burst(app, t0, 8))
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("acme")
    shot(page, "console-crisis-banner")
    server.call(lambda app: burst(app, t0 + 3600, 0))  # an hour of quiet: the alert clears
    expect(banner).to_be_hidden()
    page.context.close()


def test_crisis_banner_links_to_the_accounts_queue_and_says_when_like_the_console(
    browser: Any, server: LiveServer
) -> None:
    """The banner links to the queue filtered to the account (the queue's own filter),
    and its time reads like every other time on the console (RD.clockTime)."""
    from bot import keys as K
    from bot.config import OpsConfig
    from bot.ops.spikes import SpikeDetector

    expect = playwright_expect()
    cfg = OpsConfig(bucket_s=60, window_s=300, min_count=3, factor=3.0)
    t0 = 1_800_000_000.0  # as in the test above: a burst at t0 raises the alert
    mine = new_ticket(server, user="1", account="acme")
    other = new_ticket(server, user="2", account="acme-cn")

    async def burst(app: Any) -> None:
        det = SpikeDetector(app[K.REDIS], app[K.KEYS], cfg)
        for i in range(8):
            await det.observe("acme", now=t0, item=json.dumps({"event": f"e{i}"}))

    page = agent_page(browser, server, "ann")
    expect(page.locator("#queue-body tr")).to_have_count(2)
    server.call(burst)
    banner = page.locator("#crisis")
    expect(banner).to_be_visible()
    when = banner.locator("time")
    expect(when).to_have_text(page.evaluate("(t) => RD.clockTime(t)", t0))
    expect(when).to_have_attribute("datetime", re.compile(r"^\d{4}-\d\d-\d\dT"))
    link = banner.get_by_role("link", name="Show acme's open tickets")
    expect(link).to_have_attribute("href", "/console?account=acme")
    link.click()
    expect(page).to_have_url(re.compile(r"/console\?account=acme$"))
    expect(page.get_by_label("Account")).to_have_value("acme")
    expect(page.locator("#queue-body tr")).to_have_count(1)
    expect(page.locator(f'tr[data-ticket-id="{mine}"]')).to_be_visible()
    expect(page.locator(f'tr[data-ticket-id="{other}"]')).to_have_count(0)
    expect(banner).to_be_visible()  # still there to come back to
    page.context.close()


# -- the queue row: what the customer said last, and where --------------------------------
def test_queue_row_previews_the_latest_customer_message_and_its_channel(
    browser: Any, server: LiveServer
) -> None:
    expect = playwright_expect()
    tid = new_ticket(server, kind="mention", text="@acme where is my order?")
    page = agent_page(browser, server, "ann")
    csp = csp_violations(page)
    row = page.locator(f'tr[data-ticket-id="{tid}"]')
    expect(row.locator(".preview")).to_have_text("@acme where is my order?")
    expect(row.locator(".badge.kind-mention")).to_have_text("public")
    # The customer moves to DM, as asked, with a long message holding markup: the row
    # follows live, on one line, cut with an ellipsis, as text.
    long = XSS_TEXT + "\n\nOrder A12345, 1 Main St. " + "Please help, it has been days. " * 5
    ev = event(long, kind="dm", platform="sandbox", at=time.time())
    server.call(lambda app: app[TICKETS].append_customer_message(tid, ev))
    one_line = " ".join(long.split())
    expect(row.locator(".preview")).to_have_text(one_line[:100].rstrip() + "…")
    assert page.locator("main img").count() == 0
    assert page.evaluate("() => window.__xss") is None
    shot(page, "console-queue-preview")
    assert not csp, csp
    page.context.close()


def test_queue_badge_shows_where_the_customer_last_wrote(browser: Any, server: LiveServer) -> None:
    """The DM/public badge is where the reply goes by default (the latest customer
    message, ``last_kind``), not how the ticket started."""
    expect = playwright_expect()
    tid = new_ticket(server, kind="mention", text="@acme your delivery is broken")

    def customer_writes(kind: str, text: str) -> None:
        ev = event(text, kind=kind, platform="sandbox", at=time.time())
        server.call(lambda app: app[TICKETS].append_customer_message(tid, ev))

    customer_writes("dm", "My order is A12345")  # moved to DM, as asked
    page = agent_page(browser, server, "ann")
    badge = page.locator(f'tr[data-ticket-id="{tid}"] td[data-label="Ticket"] .badge')
    expect(badge).to_have_text("DM")
    expect(badge).to_have_class(re.compile(r"\bkind-dm\b"))
    customer_writes("mention", "@acme still waiting!")  # live, back in public
    expect(badge).to_have_text("public")
    page.context.close()


# -- why the bot escalated ------------------------------------------------------------------
def test_ticket_page_says_why_the_bot_escalated_in_words(browser: Any, server: LiveServer) -> None:
    expect = playwright_expect()

    def ticket(user: str, reason: str, reasons: dict[str, Any]) -> str:
        async def go(app: Any) -> str:
            tid, _ = await app[TICKETS].open_or_append(
                event("so slow", platform="sandbox", user=user, at=time.time()),
                reason=reason,
                priority="high",
                reasons=reasons,
            )
            return str(tid)

        return str(server.call(go))

    complaint = ticket(
        "1",
        "complaint",
        {
            "rule": "complaints.complaint",
            "intent": "complaint",
            "confidence": 0.7912,
            "faq_id": "contact_hotline",
            "faq_score": 0.36,
            "negativity": 0.9712,
            "negative": True,
            "calm": False,
            "language": "en",
            "unclear_before": 0,
        },
    )
    held = ticket(
        "2",
        "tone",
        {
            "rule": "answer_tone",
            "held_back": "faq.faq",
            "intent": "refund_policy",
            "confidence": 0.88,
            "negativity": 0.61,
            "negative": False,
            "calm": False,
        },
    )
    owned = ticket("3", "human_owned", {"rule": "human_owned", "as_new": "complaints.negative"})
    unknown = ticket("4", "brand_new", {"rule": "brand_new.rule", "intent": "shipping"})
    crisis = ticket("5", "crisis_hold", {"rule": "crisis_hold", "held_back": "faq.faq"})

    page = agent_page(browser, server, "ann")
    summary = page.locator("#reasons-summary")
    details = page.locator("#reasons-details")
    page.goto(f"{server.url}/console/tickets/{complaint}")
    expect(summary).to_have_text(
        "Read as a complaint (intent complaint, 79 % sure); the tone scored negative (0.97)."
    )
    # The raw reasons are there, collapsed until asked for.
    expect(details.locator("summary")).to_have_text("Details")
    raw = details.locator("dl")
    expect(raw).to_be_hidden()
    expect(page.get_by_text("contact_hotline")).to_be_hidden()
    details.locator("summary").click()
    expect(raw).to_be_visible()
    expect(raw).to_contain_text("faq_score")
    expect(raw).to_contain_text("contact_hotline")
    # A live update keeps it open.
    ev = event("hello?", platform="sandbox", user="1", at=time.time())
    server.call(lambda app: app[TICKETS].append_customer_message(complaint, ev))
    expect(page.locator("#conversation .msg-customer")).to_have_count(2)
    expect(raw).to_be_visible()
    shot(page, "console-ticket-reasons")

    page.goto(f"{server.url}/console/tickets/{held}")
    expect(summary).to_have_text(
        "The bot had an answer (faq.faq) but held it back: a canned reply does not fit an "
        "upset post (intent refund_policy, 88 % sure); the tone was not calm (0.61)."
    )
    page.goto(f"{server.url}/console/tickets/{owned}")
    expect(summary).to_have_text(
        "Written while a person had the conversation; on its own it would have escalated "
        "as negative."
    )
    page.goto(f"{server.url}/console/tickets/{unknown}")  # a rule the page does not know
    expect(summary).to_have_text("Escalated by the rule brand_new.rule (intent shipping).")
    page.goto(f"{server.url}/console/tickets/{crisis}")
    expect(summary).to_have_text(
        "Negative posts about the account were spiking (a crisis alert), so the bot posted "
        "nothing canned in public (it had faq.faq)."
    )
    page.context.close()


# -- the reply window -------------------------------------------------------------------
def test_ticket_page_shows_the_weibo_reply_window(browser: Any, server: LiveServer) -> None:
    """The ticket page reads the detail's reply_window (the platforms package's state),
    which must have the dm/mention shape the listing has and the page expects."""
    from bot.platforms import windows

    expect = playwright_expect()
    now = time.time()
    dm = event("差评，客服在哪", platform="weibo", account="wb", user="7", at=now - 47 * 3600)

    async def seen(app: Any) -> str:
        from bot import keys as K

        await windows.record(app[K.REDIS], app[K.KEYS], dm)
        tid, _ = await app[TICKETS].open_or_append(
            dm, reason="complaint", priority="high", reasons={}
        )
        return str(tid)

    tid = server.call(seen)
    page = agent_page(browser, server, "ann")
    page.goto(f"{server.url}/console/tickets/{tid}")
    window = page.locator("#window")
    expect(window).to_contain_text("Direct messages: open for 59m")
    expect(window.locator(".error-text")).to_have_count(1)  # closing soon: in red

    unfollow = event("", platform="weibo", account="wb", user="7", kind="unfollow", at=now)

    async def unfollowed(app: Any) -> None:
        from bot import keys as K

        await windows.record(app[K.REDIS], app[K.KEYS], unfollow)

    server.call(unfollowed)
    page.reload()
    expect(window).to_contain_text("Direct messages: closed")
    expect(window).to_contain_text("unfollowed")
    page.context.close()


# -- what the ticket does not hold: the conversation before it; a breach's priority -----
def test_ticket_page_shows_the_conversation_before_it_collapsed(
    browser: Any, server: LiveServer
) -> None:
    expect = playwright_expect()
    now = time.time()
    before = [
        {"at": now - 120, "from": "customer", "kind": "mention", "text": XSS_TEXT},
        {"at": now - 110, "from": "bot", "kind": "mention", "text": "Returns are free."},
    ]

    async def go(app: Any) -> str:
        tid, _ = await app[TICKETS].open_or_append(
            event("where is my order?", platform="sandbox", at=now),
            reason="repeat",
            priority="normal",
            reasons={"rule": "repeat"},
            context=before,
        )
        return str(tid)

    tid = str(server.call(go))
    page = agent_page(browser, server, "ann")
    csp = csp_violations(page)
    page.goto(f"{server.url}/console/tickets/{tid}")
    section = page.locator("#context-before_ticket")
    expect(section).to_be_visible()
    expect(section.locator("summary")).to_have_text("Before this ticket")
    expect(page.locator("#context-while_resolved")).to_be_hidden()
    turns = section.locator(".msg")
    expect(turns).to_have_count(2)
    expect(turns.first).to_be_hidden()  # collapsed until the agent opens it
    expect(page.locator("#conversation .msg-customer .msg-text")).to_have_text("where is my order?")
    section.locator("summary").click()
    expect(turns.first).to_be_visible()
    # Who said it, where, when; the customer's text as text, never as markup.
    expect(turns.nth(0).locator(".who")).to_contain_text("Customer")
    expect(turns.nth(0).locator(".msg-text")).to_have_text(XSS_TEXT)
    expect(turns.nth(0).locator("time")).to_have_attribute(
        "datetime", re.compile(r"^\d{4}-\d\d-\d\dT")
    )
    expect(turns.nth(0).locator(".kind-mention")).to_have_text("public")
    expect(turns.nth(1).locator(".who")).to_have_text("Bot")
    assert page.locator("main img").count() == 0
    assert page.evaluate("() => window.__xss") is None
    # The agent's choice to open it survives a live update of the ticket.
    ev = event("any news?", platform="sandbox", at=time.time())
    server.call(lambda app: app[TICKETS].append_customer_message(tid, ev))
    expect(page.locator("#conversation .msg-customer")).to_have_count(2)
    expect(turns.first).to_be_visible()
    shot(page, "console-ticket-context")
    assert not csp, csp
    page.context.close()


def test_activity_says_which_priority_a_breach_raised(browser: Any, server: LiveServer) -> None:
    expect = playwright_expect()
    tid = new_ticket(server, priority="normal")

    async def breach(app: Any) -> Any:
        """The scanner's breach of the first-response clock (its first run: gen 1), on a
        store clock past the deadline."""
        store = app[TICKETS]
        real = store.now
        store.now = lambda: real() + 7 * 24 * 3600
        try:
            return await store.fire_alert(f"{tid}|first_response|1|breach")
        finally:
            store.now = real

    fired = server.call(breach)
    assert fired is not None and fired["priority"] == "high"
    page = agent_page(browser, server, "ann")
    page.goto(f"{server.url}/console/tickets/{tid}")
    expect(page.locator("#history li").first).to_contain_text(
        "sla flagged an SLA breach (first response) and raised the priority from normal to high"
    )
    page.context.close()


# -- a shift in the console: what got in the agents' way ------------------------------------
def _customer_writes(srv: LiveServer, tid: str, kind: str, text: str, **kw: Any) -> None:
    ev = event(text, kind=kind, platform="sandbox", at=time.time(), **kw)
    srv.call(lambda app: app[TICKETS].append_customer_message(tid, ev))


def test_the_next_reply_follows_the_customer_again_once_one_is_sent(
    browser: Any, server: LiveServer
) -> None:
    """A sent reply ends its draft: the customer then moving to DM (with their address)
    moves the next reply to DM too, not public as the last one went."""
    expect = playwright_expect()
    tid = new_ticket(server, kind="mention", text="@acme my refund never came")
    page = agent_page(browser, server, "ann")
    page.goto(f"{server.url}/console/tickets/{tid}")
    public, dm = page.get_by_label("public reply"), page.get_by_label("direct message")
    expect(public).to_be_checked()
    page.get_by_label("Message", exact=True).fill("Sorry! Please DM us your order number.")
    page.get_by_role("button", name="Send reply").click()
    expect(page.locator("#conversation .msg-agent")).to_have_count(1)
    _customer_writes(server, tid, "dm", "Order A34567, I live at 12 Long Street")
    expect(page.locator("#conversation .msg-customer")).to_have_count(2)
    expect(dm).to_be_checked()
    expect(page.locator("#channel-notice")).to_be_empty()
    page.context.close()


def test_live_refreshes_keep_the_keyboard_focus(browser: Any, server: LiveServer) -> None:
    """A ticket changing elsewhere re-renders the queue and the supervisor's table: the
    keyboard focus stays on the control it was on, not thrown back to the page's top."""
    expect = playwright_expect()
    t1 = new_ticket(server, user="1", text="first")
    t2 = new_ticket(server, user="2", text="second")

    def rerendered_after_customer_writes(rows: str, text: str) -> None:
        """The customer writes on t1; returns once its row is a new one (the old is marked)."""
        old = page.locator(f'{rows} tr[data-ticket-id="{t1}"]')
        old.evaluate("row => { row.dataset.old = '1'; }")
        _customer_writes(server, t1, "dm", text, user="1")
        expect(page.locator(f'{rows} tr[data-ticket-id="{t1}"]:not([data-old])')).to_have_count(1)

    page = agent_page(browser, server, "sue")
    link = page.locator(f'#queue-body tr[data-ticket-id="{t2}"] a.ticket-id')
    link.focus()
    rerendered_after_customer_writes("#queue-body", "still waiting")
    expect(link).to_be_focused()

    page.goto(f"{server.url}/console/supervisor")
    menu = page.get_by_label(f"Assign {t2} to")
    menu.focus()
    rerendered_after_customer_writes("#held-body", "hello??")
    expect(menu).to_be_focused()
    page.context.close()


def test_resolve_and_reopen_leave_the_focus_on_the_actions(
    browser: Any, server: LiveServer
) -> None:
    """Resolve and Reopen hide themselves: by keyboard, the focus goes on to the action
    that replaced them, not to the top of the page."""
    expect = playwright_expect()
    tid = new_ticket(server)
    page = agent_page(browser, server, "ann")
    page.goto(f"{server.url}/console/tickets/{tid}")
    resolve = page.get_by_role("button", name="Resolve")
    resolve.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#t-status")).to_have_text("resolved")
    reopen = page.get_by_role("button", name="Reopen")
    expect(reopen).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#t-status")).to_have_text("open")
    expect(page.get_by_role("button", name="Claim")).to_be_focused()
    page.context.close()


def test_a_supervisors_unapplied_choice_survives_live_updates(
    browser: Any, server: LiveServer
) -> None:
    """The supervisor picks bob and "low", moves to the button, and the customer writes
    meanwhile: the menus keep the choice, so the buttons apply it (not the old values)."""
    expect = playwright_expect()
    tid = new_ticket(server, priority="high")
    server.call(lambda app: app[TICKETS].claim(tid, "ann"))
    page = agent_page(browser, server, "sue")
    page.goto(f"{server.url}/console/tickets/{tid}")
    assign, prio = page.get_by_label("Assign to"), page.get_by_label("Priority")
    expect(assign).to_have_value("ann")
    assign.select_option("bob")
    prio.select_option("low")
    page.get_by_role("button", name="Reassign").focus()
    _customer_writes(server, tid, "dm", "anyone there?")
    expect(page.locator("#conversation .msg-customer")).to_have_count(2)
    expect(assign).to_have_value("bob")
    expect(prio).to_have_value("low")
    page.keyboard.press("Enter")
    expect(page.locator("#holder")).to_have_text(re.compile("Held by bob"))
    page.get_by_role("button", name="Change priority").click()
    expect(page.locator("#t-priority")).to_have_text("low")
    expect(page.locator("#history")).to_contain_text("sue assigned it to bob")
    page.context.close()


def test_a_claim_that_runs_out_shows_as_unassigned(
    browser: Any, redis_server: Any, tmp_path: Path
) -> None:
    """A lease ending sends no event: the ticket page and the queue read again when it
    ends, instead of saying "You hold this ticket" of a ticket nobody holds."""
    expect = playwright_expect()
    flush_redis(redis_server.url)
    settings = make_settings(
        redis_server.url,
        tmp_path,
        **{"accounts": sandbox_accounts(), "escalation.claim_lease_s": 5},
    )
    with LiveServer(settings, pipeline_factory=RulePipeline) as srv:
        srv.tokens = {"ann": srv.add_agent("ann")}  # type: ignore[attr-defined]
        tid = new_ticket(srv)
        page = agent_page(browser, srv, "ann")
        queue = page.context.new_page()
        queue.goto(f"{srv.url}/console")
        page.goto(f"{srv.url}/console/tickets/{tid}")
        page.get_by_role("button", name="Claim").click()
        holder = queue.locator(f'tr[data-ticket-id="{tid}"] td[data-label="Held by"]')
        expect(holder).to_have_text("ann (you)")
        # Then the lease runs out, with nothing else happening.
        expect(page.locator("#holder")).to_have_text(re.compile("Unassigned"))
        expect(holder).to_have_text("unassigned")
        page.context.close()


def test_the_queue_says_when_more_tickets_match_than_it_shows(
    browser: Any, server: LiveServer
) -> None:
    """The API pages at 100: in a crisis the tickets due later must not silently drop
    off the queue."""
    expect = playwright_expect()

    async def many(app: Any) -> None:
        for i in range(103):
            await app[TICKETS].open_or_append(
                event(f"complaint {i}", platform="sandbox", user=f"u{i}", at=time.time()),
                reason="complaint",
                priority="high",
                reasons={"rule": "complaint"},
            )

    server.call(many)
    page = agent_page(browser, server, "ann")
    rows, more = page.locator("#queue-body tr"), page.locator("#queue-more")
    expect(rows).to_have_count(100)
    expect(more).to_be_visible()
    expect(more).to_contain_text("Showing the first 100 tickets; more match the filters.")
    page.get_by_role("button", name="Show 100 more").click()
    expect(rows).to_have_count(103)
    expect(more).to_be_hidden()
    expect(rows.nth(100).locator("a.ticket-id")).to_be_focused()
    page.context.close()


def test_back_to_the_queue_keeps_its_filters(browser: Any, server: LiveServer) -> None:
    """From a filtered queue (the crisis banner's link filters it to one account) to a
    ticket and back: the queue is still filtered."""
    expect = playwright_expect()
    tid = new_ticket(server, user="1", account="acme-cn")
    new_ticket(server, user="2", account="acme")
    page = agent_page(browser, server, "ann")
    page.goto(f"{server.url}/console?account=acme-cn")
    expect(page.locator("#queue-body tr")).to_have_count(1)
    page.locator(f'tr[data-ticket-id="{tid}"] a.ticket-id').click()
    expect(page.locator("#ticket-title")).to_have_text(f"Ticket {tid}")
    page.get_by_role("link", name="← Queue").click()
    expect(page).to_have_url(re.compile(r"/console\?account=acme-cn$"))
    expect(page.get_by_label("Account")).to_have_value("acme-cn")
    expect(page.locator("#queue-body tr")).to_have_count(1)
    page.context.close()


def test_the_queue_reads_again_when_events_were_lost_while_away(
    browser: Any, server: LiveServer
) -> None:
    """Back from longer away than the server keeps events, the stream's first word is
    events.lost (the API's side: tests/test_agent_api.py): the queue then reads its
    tickets again. A ticket opened meanwhile, whose event was trimmed, stayed missing.
    The event stream is played by the test here, so the page sees only what it says."""
    expect = playwright_expect()
    say = {"lost": False}

    def events(route: Any) -> None:
        body = ": connected\n\n"
        if say["lost"]:
            body += 'event: events.lost\ndata: {"since": "1-0"}\n\n'
        route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=body)

    page = agent_page(browser, server, "ann")
    page.route("**/api/v1/events", events)
    page.goto(f"{server.url}/console")
    expect(page.locator("#queue-empty")).to_be_visible()
    missed = new_ticket(server)  # its ticket.created never reaches the page
    page.wait_for_timeout(500)
    expect(page.locator(f'tr[data-ticket-id="{missed}"]')).to_have_count(0)
    say["lost"] = True  # the next reconnect (the fulfilled stream has ended) says so
    expect(page.locator(f'tr[data-ticket-id="{missed}"]')).to_be_visible(timeout=20_000)
    page.context.close()
