/* Supervisor view: agents' load, who holds what, reassign and change priority in place. */
"use strict";

(() => {
  const { el, api, setStatus } = RD;
  const C = Console;
  const loadBody = document.getElementById("load-body");
  const heldBody = document.getElementById("held-body");
  const status = document.getElementById("sup-status");
  const PRIORITIES = ["urgent", "high", "normal", "low"];
  let agents = [];
  // Choices not yet applied survive a live refresh of the table: ticket id -> {agent, priority}.
  const draft = new Map();

  function atRisk(t) {
    return Object.values(t.sla || {}).some((c) => c.state === "at_risk" || c.state === "breached");
  }

  function renderLoad(tickets) {
    const by = new Map(agents.map((a) => [a.name, { role: a.role, n: 0, risk: 0 }]));
    const free = { n: 0, risk: 0 };
    for (const t of tickets) {
      // Agents are never deleted, only revoked: a holder missing from the active list
      // was revoked and still holds the ticket until it is reassigned.
      const row = !t.assignee ? free : by.get(t.assignee) || { role: "revoked", n: 0, risk: 0 };
      row.n += 1;
      if (atRisk(t)) row.risk += 1;
      if (t.assignee) by.set(t.assignee, row);
    }
    const rows = [...by.entries()].sort((a, b) => b[1].n - a[1].n || a[0].localeCompare(b[0]))
      .map(([name, r]) => el("tr", { dataset: { agent: name }, class: r.role === "revoked" ? "revoked" : null },
        el("td", {}, name), el("td", {}, r.role), el("td", { class: "load-n" }, String(r.n)), el("td", {}, String(r.risk))));
    rows.push(el("tr", { class: "hint unassigned" }, el("td", {}, "unassigned"), el("td", {}, "—"),
      el("td", { class: "load-n" }, String(free.n)), el("td", {}, String(free.risk))));
    loadBody.replaceChildren(...rows);
  }

  function select(label, options, value) {
    const s = el("select", { "aria-label": label });
    for (const [v, text] of options) s.append(el("option", { value: v }, text));
    if (value) s.value = value;
    return s;
  }

  async function act(t, path, body, label) {
    setStatus(status, `${label} ${t.id}…`);
    try {
      await api("POST", `/api/v1/tickets/${encodeURIComponent(t.id)}/${path}`, body);
      setStatus(status, `${label} ${t.id}: done.`, "ok");
    } catch (err) {
      await C.signedOutGuard(err);
      setStatus(status, `${label} ${t.id} refused: ${err.message}`, "error");
    }
    load();
  }

  function row(t) {
    const d = draft.get(t.id) || {};
    const who = select(`Assign ${t.id} to`, agents.map((a) => [a.name, a.name]), d.agent || t.assignee || "");
    // Unassigned, or held by a revoked agent (not in the menu): nobody is preselected.
    const holderListed = agents.some((a) => a.name === t.assignee);
    if (!holderListed) who.prepend(el("option", { value: "", disabled: true }, "choose…"));
    if (!d.agent && !holderListed) who.value = "";
    const prio = select(`Priority of ${t.id}`, PRIORITIES.map((p) => [p, p]), d.priority || t.priority);
    const remember = () => draft.set(t.id, { agent: who.value, priority: prio.value });
    who.addEventListener("change", remember);
    prio.addEventListener("change", remember);
    const done = () => draft.delete(t.id);
    const assignBtn = el("button", { type: "button" }, "Assign");
    assignBtn.addEventListener("click", () => {
      if (!who.value) {
        setStatus(status, `Choose an agent to assign ${t.id} to.`, "error");
        who.focus();
        return;
      }
      done();
      act(t, "assign", { agent: who.value }, "Reassign");
    });
    const prioBtn = el("button", { type: "button" }, "Set");
    prioBtn.addEventListener("click", () => {
      done();
      act(t, "priority", { priority: prio.value }, "Priority");
    });
    return el("tr", { dataset: { ticketId: t.id } },
      el("td", { "data-label": "Due" }, C.countdown(t)),
      el("td", { "data-label": "Ticket" }, C.ticketLink(t.id)),
      el("td", { "data-label": "Customer", class: "handle" }, C.customerLabel(t)),
      el("td", { "data-label": "Priority" }, C.priorityBadge(t.priority)),
      el("td", { "data-label": "Held by" }, !t.assignee ? el("span", { class: "hint" }, "unassigned")
        : holderListed ? t.assignee : `${t.assignee} (revoked)`),
      el("td", { "data-label": "Reassign" }, who, " ", assignBtn),
      el("td", { "data-label": "Priority" }, prio, " ", prioBtn),
    );
  }

  let leaseTimer = null;

  async function load() {
    try {
      // Every open ticket, past the API's 500 a page: the load counts must add up.
      const [a, q] = await Promise.all([
        api("GET", "/console/api/agents"),
        C.tickets({ status: "open" }),
      ]);
      agents = a.agents;
      q.tickets.forEach(C.learnSkew);
      renderLoad(q.tickets);
      C.keepFocus(heldBody, () => heldBody.replaceChildren(...q.tickets.map(row)));
      // A claim that runs out sends no event: read again when the first one does.
      leaseTimer = C.afterLeaseEnds(q.tickets, load, leaseTimer);
    } catch (err) {
      await C.signedOutGuard(err);
      setStatus(status, "Could not load: " + err.message, "error");
    }
  }

  const reload = C.debounce(load, 200);
  C.live(() => reload());
  load();
})();
