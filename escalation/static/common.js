/* replydesk pages: small shared helpers. Plain ES2020, no build step.
 *
 * Safety rule for every page script: text that came from a customer, an agent or the
 * server is put in the DOM with textContent (via el()), never innerHTML.
 */
"use strict";

const RD = (() => {
  /** el("li", {class: "x", dataset: {id: 1}}, "text", child) – children are text or nodes. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) throw new Error("no inline handlers: use addEventListener");
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function csrfToken() {
    const m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.getAttribute("content") : "";
  }

  class HttpError extends Error {
    constructor(status, body) {
      // The agent API answers {"error": {"code", "message"}}; the page helpers {"error": "..."}.
      const e = body && body.error;
      super((e && (e.message || (typeof e === "string" ? e : ""))) || `HTTP ${status}`);
      this.code = e && typeof e === "object" ? e.code : undefined;
      this.status = status;
      this.body = body;
    }
  }

  /** No answer at all: the server was unreachable, or silent past `config.timeoutMs`.
   * No status, like a 5xx: not a refusal, the same call may work again. */
  class NetworkError extends Error {
    constructor(timedOut) {
      super(timedOut ? "the server did not answer in time" : "could not reach the server (network error)");
      this.timedOut = timedOut;
    }
  }

  // After slowMs a request says "Still working…" (so the agent does not click again);
  // after timeoutMs it gives up: a stuck request must not leave the page waiting for ever.
  const config = { slowMs: 1500, timeoutMs: 30000 };
  let slow = 0; // requests past slowMs, not answered yet

  /** A live region's text, replaced only when it changes: a screen reader reads a
   * replaced text again, and every live refresh would repeat it. */
  function liveText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  /** One status for every slow request of the page (base.html's #busy): said once
   * however many are slow, emptied when the last one ends. */
  function busy(delta) {
    slow += delta;
    const node = document.getElementById("busy");
    if (!node) return;
    node.dataset.slow = String(slow); // how many, for a look in the inspector (and tests)
    liveText(node, slow > 0 ? "Still working…" : "");
  }

  /** JSON fetch with the session cookie and the CSRF header on state-changing calls.
   * `background`: a poll the agent did not ask for, which never says "Still working…". */
  async function api(method, url, body, { background = false } = {}) {
    const headers = { Accept: "application/json" };
    if (method !== "GET") headers["X-CSRF-Token"] = csrfToken();
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const abort = new AbortController();
    const giveUp = setTimeout(() => abort.abort(), config.timeoutMs);
    let isSlow = false;
    const slowTimer = background ? null : setTimeout(() => { isSlow = true; busy(1); }, config.slowMs);
    try {
      const resp = await fetch(url, {
        method,
        headers,
        credentials: "same-origin",
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: abort.signal,
      }).catch(() => { throw new NetworkError(abort.signal.aborted); });
      let data = null;
      const type = resp.headers.get("Content-Type") || "";
      if (type.includes("json")) data = await resp.json().catch(() => null);
      if (abort.signal.aborted) throw new NetworkError(true); // cut off in the body
      if (!resp.ok) throw new HttpError(resp.status, data);
      return data;
    } finally {
      clearTimeout(giveUp);
      clearTimeout(slowTimer);
      if (isSlow) busy(-1);
    }
  }

  /** "1h 05m", "4m 09s", "12s" – compact, for countdowns. */
  function duration(seconds) {
    const s = Math.max(0, Math.floor(Math.abs(seconds)));
    const d = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    const sec = s % 60;
    const p2 = (n) => String(n).padStart(2, "0");
    if (d) return `${d}d ${h}h`;
    if (h) return `${h}h ${p2(m)}m`;
    if (m) return `${m}m ${p2(sec)}s`;
    return `${sec}s`;
  }

  function clockTime(epoch) {
    if (!epoch) return "";
    return new Date(epoch * 1000).toLocaleString([], {
      month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
    });
  }

  function setStatus(node, text, kind) {
    node.textContent = text || "";
    node.classList.toggle("error", kind === "error");
    node.classList.toggle("ok", kind === "ok");
  }

  return { el, api, config, csrfToken, HttpError, NetworkError, liveText, duration, clockTime, setStatus };
})();
