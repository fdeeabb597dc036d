/* Console pieces shared by the queue, ticket and supervisor pages:
 * the live event stream, SLA countdowns and small renderers. */
"use strict";

const Console = (() => {
  const { el, api } = RD;

  // Server time minus browser time, learned from each API answer (remaining_s is
  // computed at the server's now), so countdowns agree with the SLA scanner.
  let skew = 0;

  function learnSkew(ticket) {
    for (const c of Object.values(ticket.sla || {})) {
      if (c.due_at && c.remaining_s !== null && c.remaining_s !== undefined) {
        skew = (c.due_at - c.remaining_s) - Date.now() / 1000;
        return;
      }
    }
  }

  function now() {
    return Date.now() / 1000 + skew;
  }

  /** The running clock due first: {name, due_at, at_risk_at, state} or null. */
  function nextClock(ticket) {
    let best = null;
    for (const [name, c] of Object.entries(ticket.sla || {})) {
      if (!c.due_at || !["running", "at_risk", "breached"].includes(c.state)) continue;
      if (!best || c.due_at < best.due_at) best = { name, ...c };
    }
    return best;
  }

  const SLA_LABEL = { ok: "on time", "at-risk": "at risk", breached: "breached" };

  function slaState(due, atRisk, serverState) {
    const t = now();
    if (serverState === "breached" || t >= due) return "breached";
    if (serverState === "at_risk" || (atRisk && t >= atRisk)) return "at-risk";
    return "ok";
  }

  function paintCountdown(node) {
    const due = Number(node.dataset.due);
    const state = slaState(due, Number(node.dataset.atRisk) || 0, node.dataset.serverState);
    const left = due - now();
    const text = left >= 0 ? RD.duration(left) : `${RD.duration(-left)} over`;
    node.className = `sla sla-${state}`;
    node.dataset.sla = state;
    node.textContent = text;
    node.title = `${node.dataset.clock.replace("_", " ")}: ${SLA_LABEL[state]}`;
    node.setAttribute("aria-label", `${node.title}, ${text}`);
    const row = node.closest("tr");
    if (row) {
      row.classList.toggle("at-risk", state === "at-risk");
      row.classList.toggle("breached", state === "breached");
    }
  }

  /** A live countdown for one clock (or the ticket's next one). */
  function countdown(ticket, clock) {
    const c = clock || nextClock(ticket);
    if (!c) return el("span", { class: "sla sla-none", dataset: { sla: "none" } }, ticket.status === "resolved" ? "resolved" : "—");
    const node = el("span", {
      class: "sla",
      dataset: { due: c.due_at, atRisk: c.at_risk_at || "", serverState: c.state, clock: c.name },
    });
    paintCountdown(node);
    return node;
  }

  setInterval(() => document.querySelectorAll(".sla[data-due]").forEach(paintCountdown), 1000);

  function priorityBadge(p) {
    return el("span", { class: `badge prio-${p}` }, p);
  }

  function kindBadge(kind) {
    return el("span", { class: `badge kind-${kind}` }, kind === "mention" ? "public" : "DM");
  }

  function customerLabel(t) {
    const c = t.customer || {};
    return "@" + (c.handle || c.id || "?");
  }

  /** Subscribe to /api/v1/events; calls onEvent(type, data) for every event. */
  function live(onEvent) {
    const badge = document.getElementById("live");
    const set = (on, text) => {
      if (!badge) return;
      badge.classList.toggle("on", on);
      badge.classList.toggle("off", !on);
      badge.textContent = text;
    };
    const types = [
      "ticket.created", "ticket.message", "ticket.claimed", "ticket.renewed", "ticket.released",
      "ticket.assigned", "ticket.priority", "ticket.note", "ticket.replied", "ticket.resolved",
      "ticket.reopened", "ticket.delivery", "sla.at_risk", "sla.breach", "alert.raised", "alert.cleared",
    ];
    const src = new EventSource("/api/v1/events");
    src.addEventListener("open", () => set(true, "live"));
    src.addEventListener("error", async () => {
      set(false, "reconnecting…");
      try {
        await api("GET", "/api/v1/me", undefined, { background: true });
      } catch (err) {
        if (err.status === 401) toSignIn();
      }
    });
    const handler = (ev) => {
      let data = {};
      try {
        data = JSON.parse(ev.data);
      } catch (_e) {
        return;
      }
      onEvent(ev.type, data);
    };
    for (const t of types) src.addEventListener(t, handler);
    src.addEventListener("message", handler);
    // Away longer than the server keeps events: what changed meanwhile is unknown, so
    // every page reads its data again (`resync`), as on a fresh load.
    src.addEventListener("events.lost", () => onEvent("events.lost", { resync: true }));
    return src;
  }

  /** fn, called at most once per `ms`, trailing. */
  function debounce(fn, ms) {
    let timer = null;
    return (...args) => {
      clearTimeout(timer);
      timer = setTimeout(() => fn(...args), ms);
    };
  }

  function me() {
    const n = document.querySelector('meta[name="agent-name"]');
    const r = document.querySelector('meta[name="agent-role"]');
    return { name: n ? n.content : "", role: r ? r.content : "agent" };
  }

  function ticketLink(id) {
    return el("a", { href: "/console/tickets/" + encodeURIComponent(id), class: "ticket-id" }, id);
  }

  // What a page must carry through a trip to the sign-in page (an unsent draft).
  const beforeSignIn = [];

  function onSignIn(fn) {
    beforeSignIn.push(fn);
  }

  let leaving = false;

  /** The session ended (expired, signed out elsewhere, token revoked): to the sign-in
   * page, which brings the agent back here (`next`), after the page kept its drafts. */
  function toSignIn() {
    if (leaving) return; // the stream's error and a failed call may both get the 401
    leaving = true;
    for (const fn of beforeSignIn) {
      try {
        fn();
      } catch (_e) {
        // storage full or off: the page still goes to sign in
      }
    }
    const here = window.location.pathname;
    window.location.assign(here === "/console" ? "/console/login"
      : "/console/login?" + new URLSearchParams({ next: here }));
  }

  // Signing out on purpose leaves no draft behind in the tab (a shared desk computer).
  const signOut = document.getElementById("sign-out");
  if (signOut) {
    signOut.form.addEventListener("submit", () => {
      for (const k of Object.keys(sessionStorage)) {
        if (k.startsWith("replydesk.draft.")) sessionStorage.removeItem(k);
      }
    });
  }

  // A ticket's reason in a few words for the queue (the code stays in its tooltip); the
  // ticket page explains it in a sentence. Codes: handlers/ (Escalate, handoff).
  const REASONS = {
    complaint: "Complaint",
    negative: "Negative post",
    tone: "Upset tone",
    follow_up: "Chasing a reply",
    human_request: "Asked for a person",
    prize_claim: "Prize claim",
    no_answer: "No answer",
    unclear: "Unclear",
    repeat: "Answer did not help",
    busy_thread: "Long thread",
    order_lookup_failed: "Order lookup failed",
    crisis_hold: "Crisis hold",
    human_owned: "With a person",
  };

  function reasonLabel(code) {
    if (!code) return "—";
    return Object.hasOwn(REASONS, code) ? REASONS[code] : String(code).replaceAll("_", " ");
  }

  /** True once the page is on its way to sign in (its drafts kept for the way back). */
  function leavingForSignIn() {
    return leaving;
  }

  async function signedOutGuard(err) {
    if (err && err.status === 401) toSignIn();
  }

  const FOCUSABLE = "a[href], button, select, input, textarea";

  /** Runs render(), which replaces the rows (data-ticket-id) inside container, and gives
   * the keyboard focus back to the same control of the same ticket's new row (or of the
   * row now in its place): a live refresh must not throw a keyboard user to the top. */
  function keepFocus(container, render) {
    const active = document.activeElement;
    const row = active && container.contains(active) ? active.closest("[data-ticket-id]") : null;
    if (!row) {
      render();
      return;
    }
    const rows = [...container.querySelectorAll("[data-ticket-id]")];
    const at = { id: row.dataset.ticketId, row: rows.indexOf(row), control: [...row.querySelectorAll(FOCUSABLE)].indexOf(active) };
    render();
    const fresh = [...container.querySelectorAll("[data-ticket-id]")];
    const again = fresh.find((r) => r.dataset.ticketId === at.id) || fresh[Math.min(at.row, fresh.length - 1)];
    const controls = again ? again.querySelectorAll(FOCUSABLE) : [];
    const target = controls[Math.max(0, at.control)] || controls[0];
    if (target) target.focus();
    else document.getElementById("main").focus();
  }

  /** Calls fn just after the first claim lease among tickets runs out: a lease ending
   * changes nothing on the server and sends no event, yet nobody holds the ticket then.
   * Returns the timer, to pass back as `previous` on the next render. */
  function afterLeaseEnds(list, fn, previous) {
    clearTimeout(previous);
    const ends = list.map((t) => t.lease_until).filter((x) => x);
    if (!ends.length) return null;
    return setTimeout(fn, Math.max(0, Math.min(...ends) - now()) * 1000 + 1000);
  }

  /** GET /api/v1/tickets, following `next`, for the first `want` tickets (all of them
   * when omitted): {tickets, more}, more when tickets were left unread. */
  async function tickets(query, want) {
    const out = [];
    let after = null;
    for (;;) {
      const q = new URLSearchParams(query);
      // One more than wanted: whether any are left is then known, not guessed.
      q.set("limit", String(want ? Math.min(500, want - out.length + 1) : 500));
      if (after) q.set("after", after);
      const page = await api("GET", "/api/v1/tickets?" + q.toString());
      out.push(...page.tickets);
      after = page.next;
      if (want && out.length > want) return { tickets: out.slice(0, want), more: true };
      if (!after) return { tickets: out, more: false };
    }
  }

  return {
    learnSkew, now, nextClock, countdown, paintCountdown, priorityBadge, kindBadge,
    customerLabel, reasonLabel, live, debounce, me, ticketLink, signedOutGuard, onSignIn,
    leavingForSignIn, keepFocus, afterLeaseEnds, tickets,
  };
})();
