"""Erasing one customer's data on request (GDPR art. 17): ``replydesk erase-customer``.

A customer is (platform, account, platform user id). :func:`find` collects everything
stored about them; :func:`erase` removes it and writes an audit record. What is kept, and
why: aggregate counters (insights stats and term counts per hour, first-response samples,
spike buckets and alert totals, the console's ticket change events) hold no text and
name nobody, and they expire on their own.

Safe beside running workers, senders and the SLA scanner, and safe to re-run after a
crash at any point:

* it runs under the customer's conversation lease (``ConversationStore.turn``), so no
  event of theirs is being decided meanwhile;
* a stream entry is acknowledged and deleted in one transaction (never left pending for
  a consumer group); an entry a worker or sender holds gets a short-lived "done" marker
  first (an ``erased`` outcome, a ``sent`` record), so that process drops it instead of
  deciding or posting it again;
* each ticket leaves every index (open, resolved, SLA alerts, the conversation's and its
  events' pointers) in the same transaction that deletes it, watched: an index never
  points at a deleted ticket, and an agent's change meanwhile makes it try again;
* every other step is a delete or a removal of exact values, and records go before the
  records that lead to them: a run cut short leaves what the next run needs to find the
  rest, and a run that finds nothing changes nothing.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import structlog
from redis.exceptions import ResponseError

from bot.config import Settings
from bot.conversation import Conversation, ConversationStore
from bot.ops import notify
from bot.ops.spikes import ops_key
from bot.redis import Keys, Redis, as_str
from escalation.tickets import TicketStore, handle_key

log = structlog.get_logger(__name__)

# How long an in-flight entry's "done" marker lives: far longer than any handling, and
# short, since its key names the event (on Weibo, the event id holds the sender's id).
MARKER_TTL_S = 3600
# Records keyed by an event key or a reply id (``{prefix}:{kind}:{ref}``), and how the
# summary names them.
REF_KINDS = {
    "outcome": "outcome records",
    "decided": "decision records",
    "seen": "dedupe markers",
    "event_ticket": "event-to-ticket pointers",
    "enq": "reply-queued markers",
    "sending": "send intents",
    "sent": "sent records",
    "ops:counted": "insights-counted markers",
    "ops:spiked": "spike-counted markers",
    "sandbox:delivered": "sandbox delivery markers",
}
# Keys that lead to the customer's other records, deleted after those.
LINKING = ("conversation context", "conversation ticket pointers")
# A bot reply's id is ``{event key}:{n}`` (OutboundReply.answering); n is 0 but for the
# rare multi-part reply.
BOT_REPLY_PARTS = 3
PAGE = 500


@dataclass(frozen=True)
class Customer:
    platform: str
    account: str
    user_id: str

    @property
    def parts(self) -> tuple[str, str, str]:
        return self.platform, self.account, self.user_id

    @property
    def conv(self) -> str:
        return ":".join(self.parts)

    def event_key(self, event_id: str) -> str:
        return f"{self.platform}:{self.account}:{event_id}"


@dataclass
class Found:
    """What is stored about one customer (key names, stream ids and values; no text is
    ever printed from it)."""

    inbound: list[str] = field(default_factory=list)  # stream ids
    outbox: list[str] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)
    in_flight_events: list[str] = field(default_factory=list)  # event keys
    in_flight_replies: list[str] = field(default_factory=list)  # reply ids
    tickets: dict[str, str] = field(default_factory=dict)  # id -> status
    keys: dict[str, list[str]] = field(default_factory=dict)  # kind -> existing keys
    # (command, key, member): members of lists ("lrem") and zsets ("zrem") that other
    # customers share
    alert_items: list[tuple[str, str, str]] = field(default_factory=list)
    notices: list[tuple[str, str, str]] = field(default_factory=list)
    handles: set[str] = field(default_factory=set)

    def counts(self) -> dict[str, int]:
        c = {
            "tickets": len(self.tickets),
            "inbound entries": len(self.inbound),
            "outbox entries": len(self.outbox),
            "dead letters": len(self.dead),
            **{kind: len(v) for kind, v in self.keys.items()},
            "spike and crisis-alert message copies": len(self.alert_items),
            "queued notifications": len(self.notices),
        }
        return {k: n for k, n in c.items() if n}

    @property
    def empty(self) -> bool:
        return not self.counts()


async def _stream(redis: Redis, stream: str) -> AsyncIterator[tuple[str, dict[str, str]]]:
    """Every entry of ``stream``, a page at a time."""
    start = "-"
    while True:
        rows: Any = await redis.xrange(stream, min=start, count=PAGE)
        for i, f in rows:
            yield as_str(i), {as_str(k): as_str(v) for k, v in f.items()}
        if len(rows) < PAGE:
            return
        start = f"({as_str(rows[-1][0])}"


def _json(raw: str) -> dict[str, Any]:
    try:
        v = json.loads(raw)
    except ValueError:
        return {}
    return v if isinstance(v, dict) else {}


def _event_of(c: Customer, raw: str) -> tuple[str, str] | None:
    """(event key, handle) of an ``InboundEvent`` JSON if it is the customer's."""
    e = _json(raw)
    author = e.get("author")
    if not isinstance(author, dict):
        return None
    if (e.get("platform"), e.get("account"), author.get("id")) != c.parts:
        return None
    return c.event_key(str(e.get("event_id"))), str(author.get("handle") or "")


def _reply_of(c: Customer, raw: str) -> tuple[str, str] | None:
    """(reply id, handle) of an ``OutboundReply`` JSON if it goes to the customer."""
    r = _json(raw)
    if (r.get("platform"), r.get("account"), r.get("recipient_id")) != c.parts:
        return None
    return str(r.get("reply_id")), str(r.get("recipient_handle") or "")


async def _held(redis: Redis, stream: str, group: str, sid: str) -> bool:
    """Delivered to a consumer and not acknowledged: it may be handling it right now."""
    try:
        return bool(await redis.xpending_range(stream, group, sid, sid, 1))
    except ResponseError:  # no such group yet: nobody holds anything
        return False


async def customers_with_handle(
    redis: Redis, keys: Keys, handle: str, *, platform: str = "", account: str = ""
) -> list[Customer]:
    """The customers stored under ``handle`` (tickets, inbound, outbox and dead
    entries), optionally on one platform and account."""
    want = handle_key(handle)
    out: set[Customer] = set()

    def add(p: Any, a: Any, uid: Any, h: Any) -> None:
        mine = (not platform or p == platform) and (not account or a == account)
        if mine and want and uid and handle_key(str(h or "")) == want:
            out.add(Customer(str(p), str(a), str(uid)))

    # One pass per stream: an entry holds an event (its author) or a reply (its recipient).
    for stream in (keys.inbound, keys.outbox, keys.dead):
        async for _, f in _stream(redis, stream):
            e = _json(f.get("event", ""))
            author = e.get("author") if isinstance(e.get("author"), dict) else None
            if author:
                add(e.get("platform"), e.get("account"), author.get("id"), author.get("handle"))
            r = _json(f.get("reply", ""))
            add(
                r.get("platform"),
                r.get("account"),
                r.get("recipient_id"),
                r.get("recipient_handle"),
            )
    fields = ("platform", "account", "user_id", "user_handle")
    async for _, (p, a, uid, h) in _tickets(redis, TicketStore(redis, keys), *fields):
        add(p, a, uid, h)
    return sorted(out, key=lambda c: (c.platform, c.account, c.user_id))


async def _tickets(
    redis: Redis, tickets: TicketStore, *fields: str
) -> AsyncIterator[tuple[str, list[str]]]:
    """(id, ``fields``) of every ticket in the open and resolved indexes, read a page
    (one round trip) at a time."""
    for index in (tickets.k_open, tickets.k_resolved):
        start = 0
        while True:
            ids = [as_str(i) for i in await redis.zrange(index, start, start + PAGE - 1)]
            pipe = redis.pipeline(transaction=False)
            for tid in ids:
                pipe.hmget(tickets.k_ticket(tid), *fields)
            for tid, values in zip(ids, await pipe.execute() if ids else [], strict=True):
                yield tid, [as_str(v) if v is not None else "" for v in values]
            if len(ids) < PAGE:
                break
            start += PAGE


async def find(redis: Redis, keys: Keys, c: Customer) -> Found:
    """Everything stored about customer ``c``. Reads every stream entry and every
    ticket's customer fields: an occasional operator command, not a hot path."""
    f = Found()
    refs: set[str] = set()  # event keys and reply ids
    tickets = TicketStore(redis, keys)

    # (stream, its group, the entry's field, whose is it, found entries, in flight)
    live = (
        (keys.inbound, keys.WORKERS, "event", _event_of, f.inbound, f.in_flight_events),
        (keys.outbox, keys.SENDERS, "reply", _reply_of, f.outbox, f.in_flight_replies),
    )
    for stream, group, name, theirs, entries, in_flight in live:
        async for sid, fields in _stream(redis, stream):
            hit = theirs(c, fields.get(name, ""))
            if hit:
                entries.append(sid)
                refs.add(hit[0])
                f.handles.add(hit[1])
                if await _held(redis, stream, group, sid):
                    in_flight.append(hit[0])
    async for sid, fields in _stream(redis, keys.dead):
        hit = _event_of(c, fields.get("event", "")) or _reply_of(c, fields.get("reply", ""))
        if hit:
            f.dead.append(sid)
            refs.add(hit[0])
            f.handles.add(hit[1])

    raw = await redis.get(keys.conv(c.platform, c.account, c.user_id))
    if raw:
        refs.update(Conversation.from_json(raw).events)

    open_tid = await tickets.open_ticket_for(c.conv)
    tids = {open_tid} if open_tid else set()
    async for tid, (conv,) in _tickets(redis, tickets, "conv"):
        if conv == c.conv:
            tids.add(tid)
    for tid in sorted(tids):
        t = await tickets.get(tid)
        f.tickets[tid] = t.status if t else "gone"
        if t:
            f.handles.add(t.user_handle)
        refs.update(as_str(m) for m in await redis.smembers(tickets.k_list(tid, "applied")))
        refs.update(as_str(r) for r in await redis.hkeys(tickets.k_list(tid, "outbound")))

    sandbox = keys.ns("sandbox", c.account, c.user_id) if c.platform == "sandbox" else ""
    if sandbox:
        async for _, fields in _stream(redis, sandbox):
            ref = fields.get("ref", "")
            # A customer's turn refers to its event id, a reply to its reply id.
            refs.add(c.event_key(ref) if fields.get("who") == "customer" else ref)
    f.handles.discard("")

    # Bot replies are named after their event.
    refs |= {f"{r}:{n}" for r in list(refs) for n in range(BOT_REPLY_PARTS)}
    candidates: dict[str, list[str]] = {
        "conversation context": [keys.conv(c.platform, c.account, c.user_id)],
        "conversation order lists": [keys.conv_order(c.platform, c.account, c.user_id)],
        "reply-window state": [keys.user_state(c.platform, c.account, c.user_id)],
        "conversation ticket pointers": [tickets.k_conv(c.conv)],
        "sandbox conversations": [sandbox] if sandbox else [],
        "delivery attempt counts": [keys.attempts(s) for s in f.inbound + f.outbox],
    }
    for kind, label in REF_KINDS.items():
        candidates[label] = [keys.ns(*kind.split(":"), r) for r in sorted(refs)]
    for kind, names in candidates.items():
        exists = await _existing(redis, names)
        if exists:
            f.keys[kind] = exists

    f.alert_items = await _alert_items(redis, keys, c, refs, f.handles)
    f.notices = await _notices(redis, keys, set(f.tickets))
    return f


async def _existing(redis: Redis, names: list[str]) -> list[str]:
    if not names:
        return []
    pipe = redis.pipeline(transaction=False)
    for n in names:
        pipe.exists(n)
    return [n for n, e in zip(names, await pipe.execute(), strict=True) if e]


async def _alert_items(
    redis: Redis, keys: Keys, c: Customer, refs: set[str], handles: set[str]
) -> list[tuple[str, str, str]]:
    """The customer's messages copied into the spike window and into crisis alerts
    (``bot.ops.spikes.message_item``: by event key, else by author)."""
    authors = {handle_key(h) for h in handles} | {handle_key(c.user_id)}

    def theirs(item: str) -> bool:
        d = _json(item)
        if d.get("key") in refs:
            return True
        return d.get("platform") == c.platform and handle_key(str(d.get("author"))) in authors

    recent = ops_key(keys, "negrecent", c.account)
    out = [("zrem", recent, m) for m in map(as_str, await redis.zrange(recent, 0, -1)) if theirs(m)]
    for aid in await redis.zrange(ops_key(keys, "alerts"), 0, -1):
        alert = ops_key(keys, "alert", as_str(aid))
        if as_str(await redis.hget(alert, "account") or b"") != c.account:
            continue
        events = f"{alert}:events"
        out += [
            ("lrem", events, m) for m in map(as_str, await redis.lrange(events, 0, -1)) if theirs(m)
        ]
    return out


async def _notices(redis: Redis, keys: Keys, tids: set[str]) -> list[tuple[str, str, str]]:
    """Queued SLA notifications about the customer's tickets (they name the customer)."""
    if not tids:
        return []
    q, retry = notify.queue_key(keys), notify.retry_key(keys)
    items = [("lrem", q, as_str(i)) for i in await redis.lrange(q, 0, -1)]
    items += [("zrem", retry, as_str(i)) for i in await redis.zrange(retry, 0, -1)]
    return [x for x in items if (_json(x[2]).get("data") or {}).get("ticket_id") in tids]


async def erase(
    redis: Redis, keys: Keys, settings: Settings, c: Customer, *, reference: str = ""
) -> tuple[Found, str | None]:
    """Erase everything :func:`find` finds about ``c``; returns what was found and the
    audit record's id (None when nothing was stored: a re-run writes nothing)."""
    convs = ConversationStore(redis, keys, idle_s=settings.dialog.conversation_idle_s)
    async with convs.turn(c.platform, c.account, c.user_id):
        f = await find(redis, keys, c)
        if f.empty:
            return f, None
        # First: an erasure that a crash cuts short still has its record (and the
        # command's error says to run it again, which adds one for the rest).
        audit_id = await _audit(redis, keys, c, f, reference)
        # Entries a worker or sender holds now are done for them from here on.
        markers = await _mark_in_flight(redis, keys, f)
        # Records found through another record go before it (the event records before
        # the entries, tickets and conversation that name the events): after a crash
        # part-way, a re-run still finds whatever is left.
        early = [k for kind, ks in f.keys.items() if kind not in LINKING for k in ks]
        await _delete(redis, [k for k in early if k not in markers])
        pipe = redis.pipeline(transaction=True)
        for op, key, member in f.alert_items + f.notices:
            if op == "lrem":
                pipe.lrem(key, 0, member)
            else:
                pipe.zrem(key, member)
        await pipe.execute()
        tickets = TicketStore(redis, keys)
        for tid in f.tickets:
            await tickets.erase(tid, c.conv)
        await _drop_entries(redis, keys.inbound, keys.WORKERS, f.inbound)
        await _drop_entries(redis, keys.outbox, keys.SENDERS, f.outbox)
        if f.dead:
            await redis.xdel(keys.dead, *f.dead)
        await _delete(redis, [k for kind in LINKING for k in f.keys.get(kind, [])])
        # Again, still under the lease: a worker that stored its outcome meanwhile
        # (between its turn and its acknowledgement) finds only the marker too.
        await _mark_in_flight(redis, keys, f)
    log.info(
        "customer_erased",
        erasure_id=audit_id,
        platform=c.platform,
        account=c.account,
        tickets=sorted(f.tickets),
        counts=f.counts(),
    )
    return f, audit_id


async def _audit(redis: Redis, keys: Keys, c: Customer, f: Found, reference: str) -> str:
    """Record that an erasure happened: enough to show when, where and how much, and to
    answer "where did ticket T12 go"; with the operator's reference (the request's
    number in the brand's own records), never the customer's id or handle, or the
    record would hold them again."""
    audit_id = f"{int(time.time())}-{secrets.token_hex(4)}"
    record = {
        "id": audit_id,
        "at": time.time(),
        "platform": c.platform,
        "account": c.account,
        "reference": reference,
        "tickets": sorted(f.tickets),
        "counts": f.counts(),
    }
    await redis.lpush(keys.ns("erasures"), json.dumps(record, separators=(",", ":")))
    return audit_id


async def _delete(redis: Redis, names: list[str]) -> None:
    for i in range(0, len(names), PAGE):
        await redis.delete(*names[i : i + PAGE])


async def _mark_in_flight(redis: Redis, keys: Keys, f: Found) -> set[str]:
    """A worker or sender holding one of the customer's entries finds it done: the
    brain returns an event's stored outcome instead of deciding it, and the sender never
    posts a reply that has a sent record (it checks again right before the call)."""
    pipe = redis.pipeline(transaction=True)
    for ev in f.in_flight_events:
        stub = json.dumps({"decision": "erased", "reasons": {}, "reply_ids": [], "ticket_id": None})
        pipe.set(keys.outcome(ev), stub, ex=MARKER_TTL_S)
    for r in f.in_flight_replies:
        pipe.set(keys.sent(r), json.dumps({"erased": True}), ex=MARKER_TTL_S)
    await pipe.execute()
    return {keys.outcome(e) for e in f.in_flight_events} | {
        keys.sent(r) for r in f.in_flight_replies
    }


async def _drop_entries(redis: Redis, stream: str, group: str, ids: list[str]) -> None:
    """Acknowledge and delete, together: no consumer group keeps a pending id whose
    entry is gone (a reclaim would find nothing to hand over)."""
    for i in range(0, len(ids), PAGE):
        page = ids[i : i + PAGE]
        pipe = redis.pipeline(transaction=True)
        if await redis.exists(stream):
            groups = {as_str(g["name"]) for g in await redis.xinfo_groups(stream)}
            if group in groups:
                pipe.xack(stream, group, *page)
        pipe.xdel(stream, *page)
        await pipe.execute()
