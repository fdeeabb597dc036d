/* One ticket: conversation, reasons, clocks, notes, and the agent's actions. */
"use strict";

(() => {
  const { el, api, setStatus, clockTime, duration, liveText } = RD;
  const C = Console;
  const root = document.getElementById("ticket-root");
  const tid = root.dataset.ticketId;
  const base = "/api/v1/tickets/" + encodeURIComponent(tid);
  const me = C.me();
  const $ = (id) => document.getElementById(id);
  const actionStatus = $("action-status");
  const replyText = $("reply-text");
  const counter = $("counter");
  const sendBtn = $("send-reply");

  let ticket = null;
  let rules = null; // textfit rules by account
  let replyKey = newKey(); // one idempotency key per reply being written
  let channelChosen = false;
  // A reply on its way: its text and channel stay as sent until the answer, so nothing
  // typed meanwhile is wiped by the clearing after it, or sent under its idempotency key.
  let sending = false;
  // A supervisor's choice in the Assign to / Priority menus, not yet applied: a live
  // update must not put the menu back, or the button would apply the old value.
  const chosen = { assign: false, priority: false };
  let leaseTimer = null;
  let hasMention = false; // a public mention on the ticket, which a public reply answers

  function newKey() {
    return "c" + Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  const WHO = { customer: "Customer", bot: "Bot", agent: "Agent" };
  const CLOCK = { first_response: "First response", next_response: "Next response", resolution: "Resolution" };

  function holderOf(t) {
    return t.assignee || "";
  }

  function renderHolder(t) {
    const h = $("holder");
    const holder = holderOf(t);
    let kind = "free";
    let text = "Unassigned: claim it to work on it.";
    if (t.status === "resolved") {
      text = `Resolved ${clockTime(t.resolved_at)}. Reopen it to work on it again.`;
    } else if (holder === me.name) {
      kind = "mine";
      text = `You hold this ticket${t.lease_until ? " until " + clockTime(t.lease_until) : ""}.`;
    } else if (holder) {
      kind = "other";
      text = `Held by ${holder}. Only they can reply or resolve it until they release it`
        + (me.role === "supervisor" ? " (or you reassign it)." : ".");
    }
    h.className = `holder ${kind}`;
    liveText(h, text);
  }

  function renderButtons(t) {
    const holder = holderOf(t);
    const open = t.status === "open";
    const mine = holder === me.name;
    const sup = me.role === "supervisor";
    $("claim").hidden = !open || (holder && !mine);
    $("claim").textContent = mine ? "Renew claim" : "Claim";
    $("release").hidden = !open || !holder || (!mine && !sup);
    $("resolve").hidden = !open || (holder && !mine && !sup);
    $("reopen").hidden = open;
    const canReply = open && (!holder || mine);
    for (const n of $("reply-form").elements) n.disabled = !canReply;
    paintChannels();
    $("no-mention").hidden = hasMention;
    for (const n of $("note-form").elements) n.disabled = false;
    updateCounter();
  }

  function renderMessage(m) {
    const who = m.from === "agent" && m.agent ? `Agent ${m.agent}` : (WHO[m.from] || m.from);
    return el("li", { class: `msg msg-${m.from}` },
      el("div", { class: "msg-meta" },
        el("span", { class: "who" }, m.from === "customer" ? `${who} ${C.customerLabel(ticket)}` : who),
        C.kindBadge(m.kind),
        el("time", { datetime: new Date(m.at * 1000).toISOString() }, clockTime(m.at)),
      ),
      // dir=auto: Arabic or Hebrew reads right to left, whatever the page's direction.
      el("p", { class: "msg-text", dir: "auto" }, m.text),
      m.delivery ? renderDelivery(m.delivery) : null,
    );
  }

  // Whether a reply reached the customer (the sender's record or its dead letter).
  const DELIVERY = { queued: "Queued for delivery", sent: "Sent", not_delivered: "Not delivered" };

  function renderDelivery(d) {
    let text = DELIVERY[d.state] || d.state;
    if (d.state === "sent" && d.at) text += ` ${clockTime(d.at)}`;
    if (d.state === "not_delivered" && d.reason) text += `: ${d.reason}`;
    return el("p", { class: `delivery delivery-${d.state}`, dataset: { delivery: d.state } }, text);
  }

  // Turns the ticket does not hold (before it, or while it was resolved), grouped into
  // the page's collapsed sections; open/closed is left as the agent set it on reloads.
  function renderContext(context) {
    for (const when of ["before_ticket", "while_resolved"]) {
      const box = $(`context-${when}`);
      const turns = context.filter((c) => c.when === when);
      box.hidden = !turns.length;
      box.querySelector("summary").dataset.count = String(turns.length);
      box.querySelector("ol").replaceChildren(...turns.map(renderMessage));
    }
  }

  function renderNote(n) {
    return el("li", { class: "msg msg-note" },
      el("div", { class: "msg-meta" }, el("span", { class: "who" }, n.author),
        el("time", { datetime: new Date(n.at * 1000).toISOString() }, clockTime(n.at))),
      el("p", { class: "msg-text", dir: "auto" }, n.text),
    );
  }

  const ACTION = {
    created: "opened the ticket", claimed: "claimed it", renewed: "renewed the claim",
    released: "released it", assigned: "assigned it", priority: "changed the priority",
    replied: "replied", resolved: "resolved it", reopened: "reopened it",
    not_delivered: "found a reply not delivered: the customer is still owed an answer",
    "sla.at_risk": "flagged an SLA at risk", "sla.breach": "flagged an SLA breach",
  };

  function renderHistory(h) {
    let what = ACTION[h.action] || h.action;
    if (h.action === "assigned" && h.to) what += ` to ${h.to}`;
    if (h.action === "priority" && h.to) what += ` from ${h.from} to ${h.to}`;
    if (h.clock) what += ` (${(CLOCK[h.clock] || h.clock).toLowerCase()})`;
    if (h.action === "sla.breach" && h.to) what += ` and raised the priority from ${h.from} to ${h.to}`;
    return el("li", {},
      el("time", { datetime: new Date(h.at * 1000).toISOString() }, clockTime(h.at)), " ",
      el("strong", {}, h.actor), " ", what);
  }

  function fact(dl, term, ...value) {
    dl.append(el("dt", {}, term), el("dd", {}, ...value));
  }

  function renderFacts(t) {
    const dl = $("facts");
    dl.replaceChildren();
    const c = t.customer || {};
    // Their other tickets, by user id: a handle can change, the id does not.
    const theirs = `/console?${new URLSearchParams({ status: t.status, account: t.account, customer: c.id || "" })}`;
    fact(dl, "Customer", C.customerLabel(t), c.verified ? " ✓ verified" : "", ` · ${c.followers || 0} followers · `,
      el("a", { href: theirs }, t.status === "open" ? "their open tickets" : "their resolved tickets"));
    fact(dl, "Account", `${t.account} (${t.platform})`);
    fact(dl, "Opened by", t.channel === "mention" ? "a public mention" : "a direct message");
    fact(dl, "Reason", C.reasonLabel(t.reason));
    fact(dl, "Created", clockTime(t.created_at));
    fact(dl, "Messages", String(t.messages));
  }

  function renderClocks(t) {
    const dl = $("clocks");
    dl.replaceChildren();
    for (const [name, c] of Object.entries(t.sla || {})) {
      let value;
      if (["running", "at_risk", "breached"].includes(c.state) && c.due_at) {
        value = C.countdown(t, { name, ...c });
      } else if (c.state === "met") value = el("span", { class: "sla sla-ok" }, "met");
      else if (c.state === "missed") value = el("span", { class: "sla sla-breached" }, "missed");
      else if (c.state === "not_applicable") value = el("span", { class: "sla sla-none" }, "resolved unanswered");
      else value = el("span", { class: "sla sla-none" }, "not started");
      dl.append(el("dt", {}, CLOCK[name] || name), el("dd", { dataset: { clock: name } }, value));
    }
  }

  function renderWindow(t) {
    const w = t.reply_window;
    const p = $("window");
    p.replaceChildren();
    p.className = "hint";
    if (!w) {
      p.append(`${t.platform}: no reply window limits.`);
      return;
    }
    if (w.dm) {
      let txt = `Direct messages: open for ${duration(w.dm.remaining_s)} (until ${clockTime(w.dm.closes_at)}).`;
      if (!w.dm.open) {
        // The detail says why it closed (unfollowed); a closing time may be unknown.
        txt = "Direct messages: closed"
          + (w.unfollowed ? " (the customer unfollowed)" : "")
          + (w.dm.closes_at && !w.unfollowed ? ` since ${clockTime(w.dm.closes_at)}` : "") + ".";
      }
      p.append(el("span", { class: w.dm.closing_soon || !w.dm.open ? "error-text" : "" }, txt), " ");
    }
    if (w.mention) {
      let txt = "Public reply: 1 reply left to this mention.";
      if (!w.mention.open) txt = w.mention.used === false ? "Public reply: closed for this mention." : "Public reply: already used for this mention.";
      else if (!w.mention.replies_left) txt = "Public reply: allowed while direct messages are open.";
      p.append(txt);
    }
    if (!w.dm && !w.mention) p.append(`${w.platform}: no window is running.`);
  }

  // What each escalation rule means, for the sentence above the raw reasons; keyed by
  // the decision's rule (its last part: "complaints.complaint" is "complaint") or the
  // ticket's reason. See docs/escalation.md, Decisions.
  const RULE = {
    complaint: "Read as a complaint",
    negative: "Read as a negative post",
    answer_tone: (r) => `The bot had an answer${r.held_back ? ` (${r.held_back})` : ""} but held it back: a canned reply does not fit an upset post`,
    unclear_tone: "The bot could not tell what it was about, and a clarifying question does not fit an upset post",
    tone: "The post was too upset for a canned reply",
    follow_up: "The customer is chasing an earlier message",
    human_request: "The customer asked for a person",
    prize_claim: "The customer says they won a prize and asks about it",
    no_answer: "A support question the bot has no answer for",
    unclear_twice: "Still unclear after the bot's clarifying question",
    unclear: "Still unclear after the bot's clarifying question",
    repeat: "The bot's answer had already been sent in the last hour: it did not help",
    busy_thread: "The bot had replied too often in the last hour",
    order_lookup_failed: "The order lookup failed",
    crisis_hold: (r) => "Negative posts about the account were spiking (a crisis alert), so the bot"
      + ` posted nothing canned in public${r.held_back ? ` (it had ${r.held_back})` : ""}`,
    human_owned: (r) => "Written while a person had the conversation"
      + (r.as_new ? `; on its own it would have escalated as ${ruleName(r.as_new)}` : ""),
  };

  function ruleName(rule) {
    return String(rule).split(".").pop();
  }

  /** One sentence from the decision's reasons: the rule in words, then the intent, its
   * confidence and the tone; a rule it does not know is named as it is. */
  function explainReasons(t) {
    const r = t.reasons || {};
    const names = [r.rule, r.rule && ruleName(r.rule), t.reason].filter(Boolean);
    const key = names.find((n) => Object.hasOwn(RULE, n));
    const rule = key === undefined ? null : RULE[key];
    let text = rule === null ? (names[0] ? `Escalated by the rule ${names[0]}` : "Escalated")
      : typeof rule === "function" ? rule(r) : rule;
    if (r.intent) {
      const sure = typeof r.confidence === "number" ? `, ${Math.round(r.confidence * 100)} % sure` : "";
      text += ` (intent ${r.intent}${sure})`;
    }
    if (typeof r.negativity === "number") {
      const score = r.negativity.toFixed(2);
      text += r.negative ? `; the tone scored negative (${score})`
        : r.calm === false ? `; the tone was not calm (${score})`
          : `; the tone was calm (${score})`;
    }
    return text + ".";
  }

  function renderReasons(t) {
    const entries = Object.entries(t.reasons || {});
    $("reasons-summary").textContent = entries.length || t.reason ? explainReasons(t) : "No reasons recorded.";
    // The raw reasons stay in the collapsed Details; only its list is refilled, so a
    // live update leaves it open or closed as the agent set it.
    $("reasons-details").hidden = !entries.length;
    const dl = $("reasons-raw");
    dl.replaceChildren();
    for (const [k, v] of entries) {
      let shown = v;
      if (typeof v === "number") shown = Number.isInteger(v) ? String(v) : v.toFixed(2);
      else if (typeof v !== "string") shown = JSON.stringify(v);
      dl.append(el("dt", {}, k), el("dd", {}, el("code", {}, shown)));
    }
  }

  function render(data) {
    ticket = data.ticket;
    hasMention = data.conversation.some((m) => m.from === "customer" && m.kind !== "dm");
    C.learnSkew(ticket);
    document.title = `Ticket ${ticket.id} · ${C.customerLabel(ticket)} · replydesk`;
    const st = $("t-status");
    st.textContent = ticket.status;
    st.className = `badge state-${ticket.status}`;
    $("t-priority").replaceWith(Object.assign(C.priorityBadge(ticket.priority), { id: "t-priority" }));
    renderHolder(ticket);
    renderButtons(ticket);
    renderContext(data.context || []);
    $("conversation").replaceChildren(...data.conversation.map(renderMessage));
    $("notes").replaceChildren(...data.notes.map(renderNote));
    $("history").replaceChildren(...(data.history || []).slice(-30).reverse().map(renderHistory));
    renderFacts(ticket);
    renderClocks(ticket);
    renderWindow(ticket);
    renderReasons(ticket);
    followCustomer();
    const prio = $("set-priority");
    if (prio && !chosen.priority && document.activeElement !== prio) prio.value = ticket.priority;
    const assignTo = $("assign-to");
    if (assignTo && !chosen.assign && document.activeElement !== assignTo) showHolderInMenu(assignTo);
    // A claim that runs out sends no event: read again when it does.
    leaseTimer = C.afterLeaseEnds([ticket], load, leaseTimer);
    updateCounter();
  }

  /** The Assign to menu on the holder, or on "choose…" when nobody (or a revoked agent,
   * not in the menu) holds the ticket. */
  function showHolderInMenu(menu) {
    menu.value = ticket && ticket.assignee ? ticket.assignee : "";
    if (menu.selectedIndex < 0) menu.value = "";
  }

  /** Answer where the customer last wrote (not where the ticket started): a customer
   * who moved from a public mention to DM gets the answer privately. */
  function followCustomer() {
    if (!channelChosen) {
      const radio = document.querySelector(`input[name="channel"][value="${customerChannel(ticket)}"]`);
      if (radio) radio.checked = true;
    }
    renderChannelNotice();
  }

  async function load() {
    try {
      render(await api("GET", base));
    } catch (err) {
      await C.signedOutGuard(err);
      $("holder").className = "holder other";
      $("holder").textContent = err.status === 404
        ? `There is no ticket ${tid}. Check the number, or find it in the queue (Status: Resolved).`
        : "Could not load the ticket: " + err.message;
      if (err.status === 404) $("reasons-summary").textContent = "—";
    }
  }

  // -- the character counter: what the sender posts, counted as it counts ------------
  function channelKind() {
    const r = document.querySelector('input[name="channel"]:checked');
    return r && r.value === "public" ? "mention" : "dm";
  }

  function updateCounter() {
    if (!ticket || !rules || !rules[ticket.account]) {
      counter.textContent = `${replyText.value.length} characters`;
      return;
    }
    const rule = rules[ticket.account];
    const kind = channelKind();
    const handle = (ticket.customer || {}).handle;
    const n = TextCount.reply(replyText.value, rule, handle);
    const limit = TextCount.limit(rule, kind);
    const over = n > limit;
    counter.textContent = over ? `${n} / ${limit} – ${n - limit} over the limit` : `${n} / ${limit}`;
    const prefix = TextCount.prefix(rule, handle);
    counter.title = prefix ? `Counts the "${prefix.trim()}" that ${ticket.platform} puts first.` : "";
    counter.classList.toggle("over", over);
    counter.dataset.count = String(n);
    counter.dataset.limit = String(limit);
    // Said once when the draft goes over (and cleared when back under), not every key.
    const alert = over ? `Over the ${limit}-character limit: shorten the reply.` : "";
    liveText($("counter-alert"), alert);
    if (!replyText.disabled) sendBtn.disabled = sending || over || !replyText.value.trim();
  }

  // -- the reply channel: follows the customer until the agent picks one or writes -------
  function customerChannel(t) {
    return t.last_kind === "mention" ? "public" : "dm";
  }

  /** Says so when the customer's latest message is not where the reply will go; never
   * changes the selection (a draft may hold what must not go out publicly). */
  function renderChannelNotice() {
    const box = $("channel-notice");
    if (!ticket) return;
    const theirs = customerChannel(ticket);
    const ours = channelKind() === "mention" ? "public" : "dm";
    liveText(box, theirs === ours ? ""
      : theirs === "public"
        ? "The customer's latest message is a public mention; this reply goes as a direct message."
        : "The customer's latest message is a direct message; this reply goes as a public reply.");
  }

  replyText.addEventListener("input", () => {
    // A draft is written for one channel: from its first character the channel stays put.
    if (replyText.value.trim()) channelChosen = true;
    updateCounter();
  });

  function channelRadios() {
    return document.querySelectorAll('input[name="channel"]');
  }

  /** The channel choice is open while the agent may reply and nothing is sending; without
   * a mention to answer, the API refuses a public reply (no_public_mention). */
  function paintChannels() {
    for (const r of channelRadios()) {
      r.disabled = replyText.disabled || sending || (r.value === "public" && !hasMention);
    }
  }

  for (const r of channelRadios()) {
    r.addEventListener("change", () => {
      channelChosen = true;
      renderChannelNotice();
      updateCounter();
    });
  }

  // -- actions ----------------------------------------------------------------------
  async function act(label, path, body) {
    const from = document.activeElement;
    setStatus(actionStatus, `${label}…`);
    try {
      const data = await api("POST", `${base}/${path}`, body || {});
      setStatus(actionStatus, `${label}: done.`, "ok");
      await load();
      keepActionFocus(from);
      return data;
    } catch (err) {
      await C.signedOutGuard(err);
      const owner = err.body && err.body.error && err.body.error.owner;
      // No answer or a server error is not a refusal: the same action may work again.
      const failed = !err.status || err.status >= 500;
      const msg = err.code === "claimed" && owner
        ? `${label} refused: the ticket is held by ${owner}.`
        : failed ? `${label} did not go through: ${err.message}.`
          + (/try again/i.test(err.message) ? "" : " Try again.")
          : `${label} refused: ${err.message}`;
      setStatus(actionStatus, msg.replace(/\.\.$/, "."), "error");
      await load();
      return null;
    }
  }

  /** Resolve, Reopen and Release hide the button pressed (`from`), whose focus would
   * fall to the page's top: it goes to the first action shown now (Resolve → Reopen). */
  function keepActionFocus(from) {
    if (!from || !from.hidden || !$("actions").contains(from)) return;
    const next = [...$("actions").querySelectorAll("button")].find((b) => !b.hidden);
    if (next) next.focus();
  }

  $("claim").addEventListener("click", () => act("Claim", "claim"));
  $("release").addEventListener("click", () => act("Release", "release"));
  $("resolve").addEventListener("click", () => act("Resolve", "resolve"));
  $("reopen").addEventListener("click", () => act("Reopen", "reopen"));

  $("reply-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const text = replyText.value;
    if (!text.trim()) return;
    const channel = channelKind() === "mention" ? "public" : "dm";
    setSending(true);
    let ok = null;
    try {
      ok = await act("Reply", "reply", { text, channel, idempotency_key: replyKey });
    } finally {
      setSending(false);
    }
    if (ok) {
      replyText.value = "";
      replyKey = newKey();
      // The draft went out: the next reply follows the customer again (a customer who
      // moved to DM after a public answer is answered by DM).
      channelChosen = false;
      followCustomer();
      setStatus(actionStatus, "Reply queued for delivery.", "ok");
    }
    updateCounter();
  });

  function setSending(on) {
    sending = on;
    replyText.readOnly = on;
    $("reply-form").setAttribute("aria-busy", String(on));
    sendBtn.textContent = on ? "Sending…" : "Send reply";
    paintChannels();
    updateCounter();
  }

  // Ctrl+Enter (⌘+Enter) sends, as the Send button would.
  replyText.addEventListener("keydown", (ev) => {
    if (ev.key !== "Enter" || !(ev.ctrlKey || ev.metaKey)) return;
    ev.preventDefault();
    if (!sendBtn.disabled) $("reply-form").requestSubmit();
  });

  // -- drafts through a sign-in -------------------------------------------------------
  // A session that ended (expired, signed out in another tab) sends the agent to sign in
  // and back here: the unsent reply and note wait in this tab's sessionStorage meanwhile,
  // and are taken out (deleted) when this page reads them back, for the same agent only.
  const DRAFT_KEY = "replydesk.draft." + tid;

  function hasDraft() {
    return Boolean(replyText.value.trim() || $("note-text").value.trim());
  }

  C.onSignIn(() => {
    if (!hasDraft()) return;
    sessionStorage.setItem(DRAFT_KEY, JSON.stringify({
      agent: me.name, text: replyText.value, note: $("note-text").value, key: replyKey,
      channel: channelChosen ? channelKind() : null,
    }));
  });

  // Leaving with an unsent reply or note (← Queue, another ticket, closing the tab) asks
  // first, as browsers do for a form; the trip through sign-in keeps the draft instead.
  window.addEventListener("beforeunload", (ev) => {
    if (C.leavingForSignIn() || !hasDraft()) return;
    ev.preventDefault();
    ev.returnValue = ""; // older browsers show the prompt only for this
  });

  function restoreDraft() {
    let saved = null;
    try {
      saved = JSON.parse(sessionStorage.getItem(DRAFT_KEY) || "null");
      sessionStorage.removeItem(DRAFT_KEY);
    } catch (_e) {
      return;
    }
    if (!saved || saved.agent !== me.name) return;
    replyText.value = saved.text || "";
    $("note-text").value = saved.note || "";
    if (saved.key) replyKey = saved.key; // a retry of the same reply stays one reply
    if (saved.channel) {
      channelChosen = true;
      const radio = document.querySelector(`input[name="channel"][value="${saved.channel === "mention" ? "public" : "dm"}"]`);
      if (radio) radio.checked = true;
    }
    setStatus(actionStatus, "Your session had ended; your unsent draft is back. Check it and send it.", "ok");
  }

  $("note-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const box = $("note-text");
    if (!box.value.trim()) return;
    if (await act("Note", "notes", { text: box.value })) box.value = "";
  });

  const assignForm = $("assign-form");
  if (assignForm) {
    $("assign-to").addEventListener("change", () => { chosen.assign = true; });
    $("set-priority").addEventListener("change", () => { chosen.priority = true; });
    assignForm.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const to = $("assign-to").value;
      if (!to) {
        setStatus(actionStatus, "Choose an agent to assign the ticket to.", "error");
        $("assign-to").focus();
        return;
      }
      if (await act("Reassign", "assign", { agent: to })) {
        chosen.assign = false;
        showHolderInMenu($("assign-to"));
      }
    });
    $("priority-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (await act("Priority", "priority", { priority: $("set-priority").value })) {
        chosen.priority = false;
        if (ticket) $("set-priority").value = ticket.priority;
      }
    });
    api("GET", "/console/api/agents").then((data) => {
      // Nobody is preselected: a placeholder, as on the supervisor page, until one is chosen.
      const menu = $("assign-to");
      menu.replaceChildren(el("option", { value: "", disabled: true }, "choose…"),
        ...data.agents.map((a) => el("option", { value: a.name }, `${a.name} (${a.role})`)));
      if (!chosen.assign) showHolderInMenu(menu);
    }).catch(() => {});
  }

  api("GET", "/console/rules.json").then((data) => {
    rules = data.accounts;
    updateCounter();
  }).catch(() => {});

  // Back to the queue as the agent left it: its filters are in its address (a crisis
  // banner's link filters it to one account).
  try {
    const from = new URL(document.referrer);
    if (from.origin === window.location.origin && from.pathname === "/console") {
      $("back-to-queue").href = from.pathname + from.search;
    }
  } catch (_e) {
    // no referrer: the plain queue
  }

  const reload = C.debounce(load, 100);
  C.live((type, data) => {
    if (data.ticket_id === tid || data.resync) reload();
  });
  restoreDraft();
  load();
})();
