/* The customer sandbox: post as a customer, poll for the conversation and outcomes. */
"use strict";

(() => {
  const { el, api, setStatus, clockTime } = RD;
  const form = document.getElementById("compose-form");
  const accountSel = document.getElementById("account");
  const textArea = document.getElementById("text");
  const handleInput = document.getElementById("handle");
  const list = document.getElementById("messages");
  const empty = document.getElementById("empty");
  const status = document.getElementById("compose-status");
  const sendBtn = document.getElementById("send");
  const POLL_MS = 1000;

  let cursor = "";
  let generation = 0; // bumps on account switch, so stale responses are dropped
  const pending = new Set(); // customer message refs without an outcome yet
  const outcomeNodes = new Map(); // ref -> status <p>
  // Set by Send: the next turns are brought into view (on a phone the conversation is
  // below the form, and each answer would otherwise arrive off-screen).
  let followNewest = false;

  const WHO = { customer: "You", bot: "Bot", agent: "Agent" };
  const KIND = { mention: "public mention", dm: "direct message" };

  function account() {
    return accountSel.value;
  }

  function accountLang() {
    const opt = accountSel.selectedOptions[0];
    return opt ? opt.dataset.lang : "en";
  }

  function kind() {
    const r = form.querySelector('input[name="kind"]:checked');
    return r ? r.value : "mention";
  }

  function renderOutcome(ref, outcome) {
    const node = outcomeNodes.get(ref);
    if (!node) return;
    node.replaceChildren();
    node.className = "outcome";
    if (!outcome) {
      node.classList.add("waiting");
      node.append("Waiting for the bot…");
      return;
    }
    pending.delete(ref);
    const d = outcome.decision;
    if (d === "escalate" && outcome.ticket_id) {
      node.classList.add("escalated");
      node.append("Escalated to an agent · ");
      node.append(el("a", {
        href: "/console/tickets/" + encodeURIComponent(outcome.ticket_id),
        class: "ticket-link",
        target: "_blank",
        rel: "noopener",
      }, "ticket " + outcome.ticket_id));
    } else if (d === "escalate") {
      node.classList.add("escalated");
      node.append("Escalated to an agent");
    } else if (d === "append") {
      node.classList.add("escalated");
      node.append("Added to your open case");
      if (outcome.ticket_id) {
        node.append(" · ", el("a", {
          href: "/console/tickets/" + encodeURIComponent(outcome.ticket_id),
          class: "ticket-link", target: "_blank", rel: "noopener",
        }, "ticket " + outcome.ticket_id));
      }
    } else if (d === "answer") {
      node.classList.add("answered");
      node.append("Answered by the bot");
    } else if (d === "ignore") {
      node.append("Ignored by the bot (not something it answers)");
    } else {
      node.append("Received (" + d + ")");
    }
  }

  function renderEntry(e) {
    const lang = e.who === "customer" ? null : accountLang();
    const item = el("li", { class: `msg msg-${e.who}`, dataset: { id: e.id, ref: e.ref } },
      el("div", { class: "msg-meta" },
        el("span", { class: "who" }, WHO[e.who] || e.who, e.handle ? ` @${e.handle}` : ""),
        el("span", { class: `badge kind-${e.kind}` }, KIND[e.kind] || e.kind),
        el("time", { datetime: new Date(e.at * 1000).toISOString() }, clockTime(e.at)),
      ),
      el("p", { class: "msg-text", lang }, e.text),
    );
    if (e.who === "customer") {
      const st = el("p", { class: "outcome waiting" }, "Waiting for the bot…");
      outcomeNodes.set(e.ref, st);
      pending.add(e.ref);
      item.append(st);
    }
    list.append(item);
    empty.hidden = true;
  }

  async function poll() {
    const gen = generation;
    if (!account()) return;
    const q = new URLSearchParams({ account: account(), after: cursor });
    if (pending.size) q.set("pending", [...pending].slice(0, 50).join(","));
    try {
      const data = await api("GET", "/sandbox/api/messages?" + q.toString(), undefined, {
        background: true,
      });
      if (gen !== generation) return;
      // Keep following while the newest turn is on screen, unless the visitor is writing.
      const last = list.lastElementChild;
      const follow = followNewest || (last && inView(last) && document.activeElement !== textArea);
      let added = false;
      for (const e of data.entries) {
        if (!list.querySelector(`li[data-id="${CSS.escape(e.id)}"]`)) {
          renderEntry(e);
          added = true;
        }
        cursor = e.id;
      }
      if (added && follow) {
        followNewest = false;
        list.lastElementChild.scrollIntoView({ block: "nearest" });
      }
      for (const [ref, outcome] of Object.entries(data.outcomes || {})) renderOutcome(ref, outcome);
    } catch (err) {
      if (err.status === 403) setStatus(status, "Your sandbox session expired: reload the page.", "error");
    }
  }

  function inView(node) {
    const r = node.getBoundingClientRect();
    return r.bottom > 0 && r.top < window.innerHeight;
  }

  function reset() {
    generation += 1;
    cursor = "";
    followNewest = false;
    pending.clear();
    outcomeNodes.clear();
    list.replaceChildren();
    empty.hidden = false;
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const text = textArea.value.trim();
    if (!text) {
      setStatus(status, "Write a message first.", "error");
      textArea.focus();
      return;
    }
    sendBtn.disabled = true;
    followNewest = true; // before the post: the poll loop may show the turn first
    setStatus(status, "Sending…");
    try {
      await api("POST", "/sandbox/api/messages", {
        account: account(), kind: kind(), text, handle: handleInput.value.trim(),
      });
      textArea.value = "";
      setStatus(status, "Sent.", "ok");
      await poll();
    } catch (err) {
      followNewest = false;
      setStatus(status, "Not sent: " + err.message, "error");
    } finally {
      sendBtn.disabled = false;
    }
  });

  for (const chip of document.querySelectorAll("[data-example]")) {
    chip.addEventListener("click", () => {
      textArea.value = accountLang() === "zh" ? chip.dataset.exampleZh : chip.dataset.example;
      textArea.focus();
    });
  }

  document.getElementById("new-conversation").addEventListener("click", async () => {
    try {
      const data = await api("POST", "/sandbox/api/new");
      // The handle belongs to the customer: the new one gets its own at once.
      handleInput.value = data.handle;
      reset();
      setStatus(status, "You are a new customer now.", "ok");
    } catch (err) {
      setStatus(status, err.message, "error");
    }
  });

  accountSel.addEventListener("change", () => {
    reset();
    poll();
  });

  async function loop() {
    await poll();
    setTimeout(loop, POLL_MS);
  }
  loop();
})();
