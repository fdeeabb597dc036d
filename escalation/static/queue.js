/* The queue: open tickets by SLA due time, filtered, refreshed live from the event stream. */
"use strict";

(() => {
  const { el, api, setStatus, clockTime } = RD;
  const C = Console;
  const form = document.getElementById("filters");
  const body = document.getElementById("queue-body");
  const empty = document.getElementById("queue-empty");
  const status = document.getElementById("queue-status");
  let known = null; // ticket ids shown last time, to highlight new ones

  // Filters live in the address, so a reload or a shared link keeps them.
  const params = new URLSearchParams(window.location.search);
  for (const name of ["status", "assignee", "account", "priority"]) {
    const v = params.get(name);
    if (v !== null && form.elements[name]) form.elements[name].value = v;
  }

  function query() {
    const q = new URLSearchParams();
    for (const name of ["status", "assignee", "account", "priority"]) {
      const v = form.elements[name].value;
      if (v) q.set(name, v);
    }
    return q;
  }

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
    const q = query();
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
      empty.hidden = rows.length > 0;
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

  document.getElementById("show-more").addEventListener("click", async () => {
    const from = body.children.length;
    shown += PAGE;
    await load();
    // On to the first ticket added: the button may be gone, with the focus it had.
    const first = body.children[from];
    if (first) first.querySelector("a").focus();
  });

  form.addEventListener("change", () => {
    const q = query();
    const qs = q.toString();
    window.history.replaceState(null, "", qs ? "?" + qs : window.location.pathname);
    known = null;
    shown = PAGE;
    load();
  });

  // Crisis banner: active negative-spike alerts (bot.ops), raised and cleared live.
  const crisis = document.getElementById("crisis");
  const crisisList = document.getElementById("crisis-list");
  let alertsSeen = null; // alert ids shown; null until the first read (nothing to announce)

  async function loadAlerts() {
    try {
      const data = await api("GET", "/api/v1/alerts?status=active");
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
