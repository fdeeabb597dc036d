/* The queue: open tickets by SLA due time, filtered, refreshed live from the event stream. */
"use strict";

(() => {
  const { el, api, setStatus, clockTime, liveText } = RD;
  const C = Console;
  const form = document.getElementById("filters");
  const body = document.getElementById("queue-body");
  const empty = document.getElementById("queue-empty");
  const status = document.getElementById("queue-status");
  let known = null; // ticket ids shown last time, to highlight new ones

  // Filters live in the address, so a reload or a shared link keeps them.
  const FILTERS = ["status", "assignee", "account", "priority", "customer"];
  const params = new URLSearchParams(window.location.search);
  for (const name of FILTERS) {
    const v = params.get(name);
    if (v !== null && form.elements[name]) form.elements[name].value = v;
  }

  function query() {
    const q = new URLSearchParams();
    for (const name of FILTERS) {
      const v = form.elements[name].value.trim();
      if (v) q.set(name, v);
    }
    return q;
  }

  // The filters the list shows: a search still being typed is not one (a live refresh
  // meanwhile must not filter by half a handle).
  let applied = query().toString();

  function row(t) {
    const holder = t.assignee
      ? el("span", { class: t.assignee === C.me().name ? "mine" : "" }, t.assignee === C.me().name ? `${t.assignee} (you)` : t.assignee)
      : el("span", { class: "hint" }, "unassigned");
    return el("tr", { dataset: { ticketId: t.id, priority: t.priority } },
      el("td", { "data-label": "Due" }, C.countdown(t)),
      // The badge is where the customer last wrote (where a reply goes by default),
      // not how the ticket started.
      el("td", { "data-label": "Ticket" }, C.ticketLink(t.id), " ", C.kindBadge(t.last_kind || t.channel)),
      el("td", { "data-label": "Customer" },
        el("span", { class: "handle" }, C.customerLabel(t)),
        // Customer text: el() puts it in as text only.
        t.last_preview ? el("div", { class: "preview", dir: "auto" }, t.last_preview) : null),
      el("td", { "data-label": "Account" }, `${t.platform} · ${t.account}`),
      el("td", { "data-label": "Priority" }, C.priorityBadge(t.priority)),
      el("td", { "data-label": "Reason", class: "reason", title: t.reason || null }, C.reasonLabel(t.reason)),
      el("td", { "data-label": "Held by" }, holder),
    );
  }

  let loads = 0; // the latest load's number: an older answer arriving late is dropped
  const PAGE = 100;
  let shown = PAGE; // how many tickets the table shows; "Show more" adds a page
  let leaseTimer = null;
  const more = document.getElementById("queue-more");

  async function load() {
    const q = new URLSearchParams(applied);
    const mine = ++loads;
    try {
      const data = await C.tickets(q, shown);
      // Two filter changes in a row: the first answer must not overwrite the second's.
      if (mine !== loads) return;
      const rows = data.tickets.map((t) => {
        C.learnSkew(t);
        const r = row(t);
        if (known && !known.has(t.id)) r.classList.add("flash");
        return r;
      });
      known = new Set(data.tickets.map((t) => t.id));
      C.keepFocus(body, () => body.replaceChildren(...rows));
      // Always there and replaced only when it changes: a screen reader hears the outcome
      // of a search once (a region shown from hidden may not be read at all).
      liveText(empty, rows.length ? "" : emptyText(q));
      emptyLink(q, rows.length === 0);
      // Resolved tickets come newest resolution first, and have no clock running.
      document.getElementById("queue-caption").textContent = q.get("status") === "resolved"
        ? "Resolved tickets, the most recently resolved first."
        : "Ordered by SLA due time; the countdown turns amber when at risk and red when breached.";
      // Tickets past the shown ones are due later, but they are there: say so.
      more.hidden = !data.more;
      document.getElementById("queue-shown").textContent = String(rows.length);
      // A claim that runs out sends no event: read again when the first one does.
      leaseTimer = C.afterLeaseEnds(data.tickets, load, leaseTimer);
      setStatus(status, "");
    } catch (err) {
      await C.signedOutGuard(err);
      setStatus(status, "Could not load the queue: " + err.message, "error");
    }
  }

  /** "No open tickets for @dana.": who was searched, in the handle's usual form. */
  function emptyText(q) {
    const who = q.get("customer");
    if (!who) return "No tickets match.";
    const others = [...q.keys()].some((k) => k !== "customer" && k !== "status");
    const which = q.get("status") === "resolved" ? "resolved" : "open";
    return `No ${which} tickets for @${who.replace(/^@+/, "")}${others ? " with these filters" : ""}.`;
  }

  /** A searched customer with no open tickets may have resolved ones ("where is my
   * answer?" after it was sent): a link to them, outside the announced text. */
  const resolvedLink = document.getElementById("queue-empty-resolved");
  function emptyLink(q, none) {
    resolvedLink.hidden = !(none && q.get("customer") && q.get("status") !== "resolved");
    if (resolvedLink.hidden) return;
    resolvedLink.querySelector("a").href = "/console?" + new URLSearchParams({ status: "resolved", customer: q.get("customer") });
  }

  document.getElementById("show-more").addEventListener("click", async () => {
    const from = body.children.length;
    shown += PAGE;
    await load();
    // On to the first ticket added: the button may be gone, with the focus it had.
    const first = body.children[from];
    if (first) first.querySelector("a").focus();
  });

  function apply() {
    const qs = query().toString();
    // Enter in the search box fires both change and submit: one load.
    if (qs === applied) return;
    applied = qs;
    window.history.replaceState(null, "", qs ? "?" + qs : window.location.pathname);
    known = null;
    shown = PAGE;
    load();
  }

  form.addEventListener("change", apply);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault(); // without script, the form's GET to /console does the same
    apply();
  });
  // Clearing the search box (its ✕, or deleting the text) shows everyone again.
  form.elements.customer.addEventListener("input", () => {
    if (!form.elements.customer.value.trim()) apply();
  });

  // Crisis banner: active negative-spike alerts (bot.ops), raised and cleared live.
  const crisis = document.getElementById("crisis");
  const crisisList = document.getElementById("crisis-list");
  let alertsSeen = null; // alert ids shown; null until the first read (nothing to announce)

  async function loadAlerts() {
    try {
      const data = await api("GET", "/api/v1/alerts?status=active", undefined, { background: true });
      // window_count is the count that raised the alert, not today's: the running total
      // is message_count (the spike's messages so far), read again as tickets arrive.
      const items = data.alerts.map((a) => el("li", { dataset: { alertId: a.id } },
        el("strong", {}, a.account), ": negative mentions spiking since ",
        el("time", { datetime: new Date(a.raised_at * 1000).toISOString() }, clockTime(a.raised_at)),
        ` (${a.window_count} in the window that raised it, usually ${a.baseline.toFixed(1)}; `,
        el("span", { class: "crisis-count" }, `${a.message_count} so far`), "). ",
        "Acknowledge publicly at most, move customers to DM, and hand it to a person. ",
        // The queue's own account filter, read from the address like a shared link.
        el("a", { href: "/console?" + new URLSearchParams({ account: a.account }), class: "crisis-link" },
          `Show ${a.account}'s open tickets`)));
      crisisList.replaceChildren(...items);
      crisis.hidden = items.length === 0;
      // Said once per alert raised while the page is open (not at every count update).
      const fresh = data.alerts.filter((a) => alertsSeen && !alertsSeen.has(a.id));
      if (fresh.length) {
        document.getElementById("crisis-live").textContent =
          `Crisis alert: negative mentions spiking on ${fresh.map((a) => a.account).join(", ")}.`;
      }
      alertsSeen = new Set(data.alerts.map((a) => a.id));
    } catch (err) {
      await C.signedOutGuard(err);
    }
  }

  const reload = C.debounce(load, 150);
  const reloadAlerts = C.debounce(loadAlerts, 150);
  C.live((type, data) => {
    // Back from longer away than the server keeps events: both may have changed.
    if (data.resync || type.startsWith("alert.")) reloadAlerts();
    // A spike's new messages send no alert event, but they come with tickets: the count.
    else if (!crisis.hidden && (type === "ticket.created" || type === "ticket.message")) reloadAlerts();
    if (data.resync || !type.startsWith("alert.")) reload();
  });
  load();
  loadAlerts();
})();
