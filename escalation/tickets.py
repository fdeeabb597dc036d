"""The ticket store: one open ticket per conversation, SLA clocks, claims, replies.

Redis layout (every name through ``keys.ns``):

* ``ticket:{id}`` hash: the ticket's fields (``Ticket``), clocks as JSON;
* ``ticket:{id}:msgs`` / ``:notes`` / ``:history`` lists of JSON entries;
* ``ticket:{id}:context`` list of JSON entries: the conversation's turns (customer and
  bot) before the ticket opened, and those exchanged while it was resolved, added when
  it is reopened (``bot.conversation.Conversation.context``); kept as the messages are;
* ``ticket:{id}:applied`` set of idempotency keys (event keys, reply keys) already applied;
* ``ticket:{id}:outbound`` hash reply id → the agent reply as queued (``OutboundReply``
  JSON; queued on the outbox in the same transaction), what a retried request gets back;
* ``conv_ticket:{platform}:{account}:{user}`` → the conversation's open ticket id: while it
  exists a human owns the conversation and the bot stays silent;
* ``event_ticket:{event key}`` → the ticket an event opened or joined (re-runs find it);
* ``tickets:open`` / ``tickets:resolved`` sorted sets (open: by the next SLA due time;
  resolved: by resolution time);
* ``sla:due`` sorted set of alert members ``{id}|{clock}|{gen}|{at_risk|breach}`` scored
  by when they fire (the scanner pops them).

Every change is one optimistic transaction (WATCH the ticket, compute, MULTI/EXEC, retry
on conflict), so two agents can never both hold a live claim, both answer one message,
or resolve and reply past each other. Change events go to the ``events`` stream in the
same transaction for the API's server-sent events.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import structlog
from redis.exceptions import WatchError

from bot import metrics
from bot.config import EscalationConfig
from bot.conversation import Conversation
from bot.models import InboundEvent, OutboundReply
from bot.ops import notify
from bot.ops.insights import record_first_response
from bot.outbox import SENT_TTL_S, enqueue_reply_in
from bot.redis import EVENTS_MAXLEN, Keys, Redis, as_str
from escalation.sla import CLOCKS, PRIORITIES, Clock, SlaPolicies, bump
from escalation.windows import reply_window, watch_window, window_refusal, window_state

log = structlog.get_logger(__name__)

Clock_ = Callable[[], float]
T = TypeVar("T")
EVENT_TTL_S = 30 * 24 * 3600
# Tickets read per round trip when listing the queue (see TicketStore.search).
SCAN_PAGE = 500
# A ticket's keys besides its hash: ticket:{id}:{what} (deleted with it by retention).
TICKET_LISTS = ("msgs", "notes", "history", "context", "applied", "outbound")
# Characters of the latest customer message kept on the ticket for the queue's preview.
PREVIEW_CHARS = 100
# A bare acknowledgement from the customer does not restart the next-response clock.
_TRIVIAL = {
    "thanks",
    "thank you",
    "thx",
    "ty",
    "ok",
    "okay",
    "k",
    "kk",
    "cool",
    "great",
    "got it",
    "thanks!",
    "ok!",
    "👍",
    "🙏",
    "谢谢",
    "谢谢你",
    "多谢",
    "好的",
    "好",
    "嗯",
    "收到",
    "ok谢谢",
    "好的谢谢",
}


def preview_of(text: str) -> str:
    """One line of a customer message for the queue: whitespace runs (newlines too)
    become one space, and past ``PREVIEW_CHARS`` it is cut with an ellipsis."""
    line = " ".join(text.split())
    if len(line) <= PREVIEW_CHARS:
        return line
    return line[:PREVIEW_CHARS].rstrip() + "…"


def is_trivial(text: str) -> bool:
    t = text.strip().lower().rstrip("!.。！~ ")
    return t in _TRIVIAL or (len(t) <= 2 and not t.isalnum())


class TicketError(Exception):
    """A refused change; ``status`` and ``code`` map to the API's error body."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


def _not_found(tid: str) -> TicketError:
    return TicketError(404, "not_found", f"no ticket {tid!r}")


@dataclass(slots=True)
class Ticket:
    id: str
    status: str = "open"  # open | resolved
    priority: str = "normal"
    platform: str = ""
    account: str = ""
    conv: str = ""  # platform:account:user
    user_id: str = ""
    user_handle: str = ""
    followers: int = 0
    verified: bool = False
    channel: str = "dm"  # kind of the message that opened it: mention | dm
    reason: str = ""
    reasons: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0
    assignee: str = ""
    lease_until: float = 0.0
    # Where a reply goes by default: the latest customer message.
    last_kind: str = "dm"
    last_event_id: str = ""
    last_customer_at: float = 0.0
    # The start of the latest customer message (``preview_of``), kept on the hash so the
    # queue lists it from the hashes it reads anyway, with no read of the messages.
    # Personal data like the messages: kept as long as the ticket, never logged.
    last_preview: str = ""
    last_dm_at: float = 0.0
    last_dm_conversation_id: str = ""
    # The latest public mention, set only by mentions: a public reply answers it, even
    # after the customer moved to DM (a DM's id must never become a public reply target).
    mention_event_id: str = ""
    mention_reply_to_id: str = ""
    mention_conversation_id: str = ""
    mention_audience: str = ""  # who could see it (Mastodon visibility): a reply no wider
    mention_replied: str = ""  # event id of the last mention that got a public reply
    first_response_at: float = 0.0
    resolved_at: float = 0.0
    messages: int = 0
    clocks: dict[str, Clock] = field(default_factory=lambda: {c: Clock() for c in CLOCKS})

    def to_hash(self) -> dict[str, str]:
        d = asdict(self)
        out: dict[str, str] = {}
        for k, v in d.items():
            if k in ("reasons", "clocks"):
                out[k] = json.dumps(v, ensure_ascii=False)
            elif isinstance(v, bool):
                out[k] = "1" if v else "0"
            else:
                out[k] = str(v)
        return out

    @classmethod
    def from_hash(cls, h: Mapping[Any, Any]) -> Ticket:
        d = {as_str(k): as_str(v) for k, v in h.items()}
        if "mention_event_id" not in d and d.get("last_kind") == "mention":
            # Written before the mention fields: its latest message is the mention.
            d["mention_event_id"] = d.get("last_event_id", "")
            d["mention_reply_to_id"] = d.get("last_reply_to_id") or d["mention_event_id"]
            d["mention_conversation_id"] = d.get("last_conversation_id", "")
        t = cls(id=d["id"])
        for f in t.__dataclass_fields__:
            if f not in d or f == "id":
                continue
            cur = getattr(t, f)
            raw = d[f]
            if f == "reasons":
                t.reasons = json.loads(raw)
            elif f == "clocks":
                t.clocks = {k: Clock.from_dict(v) for k, v in json.loads(raw).items()}
            elif isinstance(cur, bool):
                setattr(t, f, raw == "1")
            elif isinstance(cur, int):
                setattr(t, f, int(float(raw)))
            elif isinstance(cur, float):
                setattr(t, f, float(raw))
            else:
                setattr(t, f, raw)
        return t

    def claimed_by(self, now: float) -> str:
        return self.assignee if self.assignee and self.lease_until > now else ""

    def next_due(self) -> float | None:
        dues = [c.due for c in self.clocks.values() if c.running and c.due is not None]
        return min(dues) if dues else None


@dataclass
class _Change:
    """What one transaction writes besides the ticket hash."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    context: list[dict[str, Any]] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    # (kind, text, data) for the notification webhook queue, queued in the same MULTI.
    notices: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)
    # reply id -> OutboundReply JSON: kept on the ticket, and queued for the sender in
    # the same MULTI, so a recorded reply is never left unsent.
    outbound: dict[str, str] = field(default_factory=dict)
    # The bot's replies recorded by this change, queued for the sender in the same MULTI.
    replies: list[OutboundReply] = field(default_factory=list)
    # event key -> "<ticket id>|created" or "|appended": which ticket took the event,
    # written with the ticket so a concurrent run of the same event reads it back.
    event_marks: dict[str, str] = field(default_factory=dict)
    conv_set: bool = False
    conv_delete: bool = False
    write: bool = True


# KEYS: the due set. ARGV: member, due by. Removes the member only while its deadline is
# still due by then: one a priority change moved later stays for its new time.
_TAKE_DUE_LUA = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) <= tonumber(ARGV[2]) then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
"""


class TicketStore:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        cfg: EscalationConfig | None = None,
        *,
        clock: Clock_ = time.time,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.cfg = cfg or EscalationConfig()
        self.sla = SlaPolicies(self.cfg)
        self.now = clock
        self._take_due = redis.register_script(_TAKE_DUE_LUA)

    # -- key names -------------------------------------------------------------
    def k_ticket(self, tid: str) -> str:
        return self.keys.ns("ticket", tid)

    def k_list(self, tid: str, what: str) -> str:
        return self.keys.ns("ticket", tid, what)

    def k_conv(self, conv: str) -> str:
        return self.keys.ns("conv_ticket", conv)

    def k_event(self, event_key: str) -> str:
        return self.keys.ns("event_ticket", event_key)

    @property
    def k_open(self) -> str:
        return self.keys.ns("tickets", "open")

    @property
    def k_resolved(self) -> str:
        return self.keys.ns("tickets", "resolved")

    @property
    def k_due(self) -> str:
        return self.keys.ns("sla", "due")

    @property
    def k_seq(self) -> str:
        return self.keys.ns("tickets", "seq")

    @staticmethod
    def conv_of(platform: str, account: str, user: str) -> str:
        return f"{platform}:{account}:{user}"

    # -- reads -----------------------------------------------------------------
    async def get(self, tid: str) -> Ticket | None:
        if not _valid_id(tid):
            return None
        h = await self.redis.hgetall(self.k_ticket(tid))
        return Ticket.from_hash(h) if h else None

    async def open_ticket_for(self, conv: str) -> str | None:
        v = await self.redis.get(self.k_conv(conv))
        return as_str(v) if v is not None else None

    async def ticket_for_event(self, event_key: str) -> tuple[str, bool] | None:
        """(ticket id, whether this event opened it) for an event already applied."""
        v = await self.redis.get(self.k_event(event_key))
        if v is None:
            return None
        tid, _, how = as_str(v).partition("|")
        return tid, how == "created"

    async def lists(self, tid: str) -> dict[str, list[dict[str, Any]]]:
        tx = self.redis.pipeline(transaction=False)
        for what in ("msgs", "notes", "history", "context"):
            tx.lrange(self.k_list(tid, what), 0, -1)
        msgs, notes, history, context = await tx.execute()
        return {
            "messages": [json.loads(m) for m in msgs],
            "notes": [json.loads(n) for n in notes],
            "history": [json.loads(h) for h in history],
            "context": [json.loads(c) for c in context],
        }

    async def add_delivery(
        self, messages: list[dict[str, Any]], notes: list[dict[str, Any]]
    ) -> None:
        """Give each reply in ``messages`` its ``delivery``: ``sent`` (with ``at``) from
        the sender's record, ``not_delivered`` (with ``reason``) from its system note,
        else ``queued``. Sent wins: a dead letter replayed later may still go out. None
        once the sender's record would have expired (its state is no longer known)."""
        replies = [m for m in messages if m.get("from") in ("agent", "bot") and m.get("id")]
        if not replies:
            return
        sent = await self.redis.mget([self.keys.sent(m["id"]) for m in replies])
        failed = {n.get("reply_id"): n for n in notes if n.get("state") == "not_delivered"}
        now = self.now()
        for m, raw in zip(replies, sent, strict=True):
            if raw is not None:
                m["delivery"] = {"state": "sent", "at": json.loads(raw).get("sent_at")}
            elif (n := failed.get(m["id"])) is not None:
                m["delivery"] = {"state": "not_delivered", "reason": n.get("reason", "")}
            elif now - float(m.get("at", 0)) < SENT_TTL_S:
                m["delivery"] = {"state": "queued"}

    async def search(
        self,
        *,
        status: str = "open",
        priority: str | None = None,
        account: str | None = None,
        assignee: str | None = None,
        customer: str | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> tuple[list[Ticket], str | None]:
        """Tickets ordered by SLA due time (open) or newest resolution (resolved), past
        ``after`` if given; and, when ``limit`` of them were found, the cursor to pass
        as ``after`` for the ones behind them (None: the index ended).

        ``customer`` is a handle (any case, with or without a leading @) or a platform
        user id (exact), matched on the hash read anyway: no message text is searched.

        Reads the index a page at a time until ``limit`` tickets match or it ends: a
        filter finds its tickets however deep in the queue they are, and no request
        loads the whole queue at once."""
        out: list[Ticket] = []
        now = self.now()
        start = _parse_cursor(after) if after else None
        async for entries in self._index_pages(resolved=status == "resolved", after=start):
            tx = self.redis.pipeline(transaction=False)
            for tid, _score in entries:
                tx.hgetall(self.k_ticket(tid))
            for (tid, score), h in zip(entries, await tx.execute(), strict=True):
                if not h:  # gone since the index was read
                    continue
                t = Ticket.from_hash(h)
                if priority and t.priority != priority:
                    continue
                if account and t.account != account:
                    continue
                if customer and not _is_customer(t, customer):
                    continue
                if assignee is not None:
                    owner = t.claimed_by(now)
                    if (assignee == "" and owner) or (assignee and owner != assignee):
                        continue
                out.append(t)
                if len(out) >= limit:
                    return out, _cursor(score, tid)
        return out, None

    async def _index_pages(
        self, *, resolved: bool, after: tuple[float, str] | None = None
    ) -> AsyncIterator[list[tuple[str, float]]]:
        """The (id, score) entries of ``tickets:open`` (ascending) or ``tickets:resolved``
        (descending), ``SCAN_PAGE`` at a time, each id once; past ``after`` (score, id)
        if given.

        Each page starts at the last score read rather than at an offset, so tickets
        leaving the index ahead of it meanwhile (resolved, rescheduled) shift nothing and
        no later ticket is skipped; ``skip`` steps over the entries already read that
        share that score (ties can outnumber a page)."""
        key = self.k_resolved if resolved else self.k_open
        bound: float | str = "+inf" if resolved else "-inf"
        if after is not None:
            bound = after[0]
        skip = 0
        seen: set[str] = set()
        while True:
            page: Any  # [(member, score)]: withscores=True
            if resolved:
                page = await self.redis.zrevrangebyscore(
                    key, bound, "-inf", start=skip, num=SCAN_PAGE, withscores=True
                )
            else:
                page = await self.redis.zrangebyscore(
                    key, bound, "+inf", start=skip, num=SCAN_PAGE, withscores=True
                )
            if not page:
                return
            last = page[-1][1]
            ties = sum(1 for _, score in page if score == last)
            skip = skip + ties if last == bound else ties
            bound = last
            # A ticket rescheduled later while we read comes round again: list it once.
            entries = [(as_str(m), float(score)) for m, score in page]
            entries = [(i, sc) for i, sc in entries if _past(i, sc, after, resolved)]
            entries = [(i, sc) for i, sc in entries if i not in seen]
            seen.update(i for i, _ in entries)
            if entries:
                yield entries
            if len(page) < SCAN_PAGE:
                return

    def view(self, t: Ticket, *, now: float | None = None) -> dict[str, Any]:
        """The JSON shape of a ticket in the API (see openapi.json ``Ticket``)."""
        now = self.now() if now is None else now
        owner = t.claimed_by(now)
        return {
            "id": t.id,
            "status": t.status,
            "priority": t.priority,
            "platform": t.platform,
            "account": t.account,
            "channel": t.channel,
            "last_kind": t.last_kind,
            "last_preview": t.last_preview,
            "customer": {
                "id": t.user_id,
                "handle": t.user_handle,
                "followers": t.followers,
                "verified": t.verified,
            },
            "reason": t.reason,
            "reasons": t.reasons,
            "created_at": t.created_at,
            "updated_at": t.updated_at,
            "resolved_at": t.resolved_at or None,
            "assignee": owner or None,
            "lease_until": t.lease_until if owner else None,
            "messages": t.messages,
            "sla": self.sla_view(t, now),
            "due_at": t.next_due(),
            "reply_window": reply_window(t, now, warn_s=self.cfg.window_warning_s),
        }

    def sla_view(self, t: Ticket, now: float) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, c in t.clocks.items():
            if c.start is None:
                state = "not_started"
            elif c.running:
                state = (
                    "breached"
                    if c.breached or (c.due is not None and now > c.due)
                    else (
                        "at_risk"
                        if c.at_risk_fired or (c.at_risk_at is not None and now >= c.at_risk_at)
                        else "running"
                    )
                )
            elif c.met is None:  # stopped by a resolution that no human reply answered
                state = "not_applicable"
            else:
                state = "met" if c.met else "missed"
            out[name] = {
                "state": state,
                "started_at": c.start,
                "due_at": c.due,
                "at_risk_at": c.at_risk_at,
                "stopped_at": c.stopped_at,
                "remaining_s": (c.due - now) if c.running and c.due is not None else None,
            }
        return out

    # -- the transaction helper -------------------------------------------------
    async def _mutate(
        self,
        tid: str,
        fn: Callable[[Ticket, _Change, set[str]], T],
        *,
        check_applied: tuple[str, ...] = (),
        load: Callable[[Any, Ticket], Awaitable[None]] | None = None,
    ) -> T:
        """Run ``fn`` on the ticket in one WATCH/MULTI transaction, retried on conflict.
        ``load(pipe, ticket)`` may WATCH and read more keys first (on the WATCHing
        pipeline), so ``fn`` decides on state that cannot change before the write."""
        if not _valid_id(tid):
            raise _not_found(tid)
        key = self.k_ticket(tid)
        for _ in range(200):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    h = await pipe.hgetall(key)
                    if not h:  # never there, or deleted since the caller looked: 404
                        raise _not_found(tid)
                    already: set[str] = set()
                    for k in check_applied:
                        if await pipe.sismember(self.k_list(tid, "applied"), k):
                            already.add(k)
                    t = Ticket.from_hash(h)
                    if load is not None:
                        await load(pipe, t)
                    before = self._alert_members(t)
                    ch = _Change()
                    result = fn(t, ch, already)
                    pipe.multi()
                    self._write(pipe, t, ch, before)
                    await pipe.execute()
                    return result
                except WatchError:
                    continue
        raise TicketError(503, "busy", "ticket is changing too fast; try again")

    def _write(self, pipe: Any, t: Ticket, ch: _Change, before: dict[str, float]) -> None:
        if not ch.write:
            return
        now = self.now()
        t.updated_at = now
        pipe.hset(self.k_ticket(t.id), mapping=t.to_hash())
        for what, items in (
            ("msgs", ch.messages),
            ("notes", ch.notes),
            ("history", ch.history),
            ("context", ch.context),
        ):
            if items:
                pipe.rpush(
                    self.k_list(t.id, what), *(json.dumps(i, ensure_ascii=False) for i in items)
                )
        if ch.applied:
            pipe.sadd(self.k_list(t.id, "applied"), *ch.applied)
        if ch.outbound:
            pipe.hset(self.k_list(t.id, "outbound"), mapping=ch.outbound)
            for raw in ch.outbound.values():
                enqueue_reply_in(pipe, self.keys, OutboundReply.from_json(raw))
        for reply in ch.replies:
            enqueue_reply_in(pipe, self.keys, reply)
        for event_key, mark in ch.event_marks.items():
            pipe.set(self.k_event(event_key), mark, ex=EVENT_TTL_S)
        after = self._alert_members(t) if t.status == "open" else {}
        gone = [m for m in before if m not in after]
        if gone:
            pipe.zrem(self.k_due, *gone)
        if after:
            pipe.zadd(self.k_due, after)
        if t.status == "open":
            due = t.next_due()
            # Tickets with no running deadline sort after every timed one, oldest first.
            pipe.zadd(self.k_open, {t.id: due if due is not None else 1e12 + t.created_at})
            pipe.zrem(self.k_resolved, t.id)
        else:
            pipe.zrem(self.k_open, t.id)
            pipe.zadd(self.k_resolved, {t.id: t.resolved_at or now})
        if ch.conv_set:
            pipe.set(self.k_conv(t.conv), t.id)
        if ch.conv_delete:
            pipe.delete(self.k_conv(t.conv))
        for etype, data in ch.events:
            payload = {
                "ticket_id": t.id,
                "status": t.status,
                "priority": t.priority,
                "at": now,
                **data,
            }
            pipe.xadd(
                self.keys.events,
                {"type": etype, "data": json.dumps(payload, ensure_ascii=False)},
                maxlen=EVENTS_MAXLEN,
                approximate=True,
            )
        for kind, text, data in ch.notices:
            notify.queue_in(pipe, self.keys, kind=kind, text=text, data=data)

    def _alert_members(self, t: Ticket) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, c in t.clocks.items():
            if not c.running:
                continue
            if not c.at_risk_fired and c.at_risk_at is not None:
                out[f"{t.id}|{name}|{c.gen}|at_risk"] = c.at_risk_at
            if not c.breached and c.due is not None:
                out[f"{t.id}|{name}|{c.gen}|breach"] = c.due
        return out

    def _policy(self, t: Ticket) -> Any:
        return self.sla.policy(t.priority, t.account, t.channel)

    def _reschedule(self, t: Ticket) -> None:
        p = self._policy(t)
        for name, c in t.clocks.items():
            # A breached clock keeps the deadline it missed: its breach has fired.
            if c.running and not c.breached:
                self.sla.schedule(c, p, name)

    def _change_priority(self, t: Ticket, ch: _Change, to: str, *, actor: str, **why: Any) -> None:
        """Set the priority and re-time the running deadlines under its policy, recorded
        with who changed it from what (a supervisor, or the bot for a worse message)."""
        old, t.priority = t.priority, to
        self._reschedule(t)
        ch.history.append(
            {"at": self.now(), "actor": actor, "action": "priority", "from": old, "to": to, **why}
        )
        ch.events.append(("ticket.priority", {"from": old}))

    # -- from the pipeline ------------------------------------------------------
    async def open_or_append(
        self,
        event: InboundEvent,
        *,
        reason: str,
        priority: str,
        reasons: dict[str, Any],
        context: list[dict[str, Any]] | None = None,
    ) -> tuple[str, bool]:
        """The conversation's open ticket with ``event`` appended (its priority raised to
        ``priority`` if that is higher), or a new ticket at ``priority`` keeping
        ``context`` (the conversation's turns before it, ``Conversation.context``).

        Idempotent per event: a re-run returns the same answer and appends nothing.
        Returns (ticket id, whether this event created it)."""
        known = await self.ticket_for_event(event.key)
        if known is not None:
            return known
        conv = self.conv_of(event.platform, event.account, event.author.id)
        for _ in range(200):
            appended = await self._append_to_open(event, conv, priority=priority)
            if appended is not None:
                return appended
            created = await self._create(
                event, conv, reason=reason, priority=priority, reasons=reasons, context=context
            )
            if created is not None:
                return created, True
        raise TicketError(503, "busy", "conversation is changing too fast")

    async def append_to_open(self, event: InboundEvent, *, priority: str = "low") -> str | None:
        """Append ``event`` to the conversation's open ticket, never opening one: for a
        message decided while a person owned the conversation; ``priority``: what the
        message would get as a new escalation (the ticket's rises to it, never falls).
        None when that ticket was resolved meanwhile (the bot has the conversation back)."""
        known = await self.ticket_for_event(event.key)
        if known is not None:
            return known[0]
        found = await self._append_to_open(
            event, self.conv_of(event.platform, event.account, event.author.id), priority=priority
        )
        return found[0] if found is not None else None

    async def _append_to_open(
        self, event: InboundEvent, conv: str, *, priority: str
    ) -> tuple[str, bool] | None:
        tid = await self.open_ticket_for(conv)
        if tid is None:
            return None
        try:
            if await self.append_customer_message(tid, event, conv=conv, priority=priority):
                return tid, False
        except TicketError as e:
            if e.code != "stale_conversation":
                raise
            return None  # resolved meanwhile
        # Another run of this event (a worker that stalled past its visibility
        # timeout) applied it first: report what that run did.
        return await self.ticket_for_event(event.key) or (tid, False)

    async def _create(
        self,
        event: InboundEvent,
        conv: str,
        *,
        reason: str,
        priority: str,
        reasons: dict[str, Any],
        context: list[dict[str, Any]] | None,
    ) -> str | None:
        now = self.now()
        seq = await self.redis.incr(self.k_seq)
        tid = f"T{seq}"
        t = Ticket(
            id=tid,
            priority=priority if priority in PRIORITIES else "normal",
            platform=event.platform,
            account=event.account,
            conv=conv,
            user_id=event.author.id,
            user_handle=event.author.handle,
            followers=event.author.followers,
            verified=event.author.verified,
            channel="mention" if event.is_public else "dm",
            reason=reason,
            reasons=reasons,
            created_at=now,
        )
        self._note_customer(t, event, now)
        p = self._policy(t)
        self.sla.start(t.clocks["first_response"], p, "first_response", now)
        self.sla.start(t.clocks["resolution"], p, "resolution", now)
        ch = _Change(conv_set=True, applied=[event.key], event_marks={event.key: f"{tid}|created"})
        ch.messages.append(_customer_msg(event, now))
        # Written with the ticket: an agent never sees it without what came before.
        ch.context = [{**c, "when": "before_ticket"} for c in context or ()]
        ch.history.append({"at": now, "actor": "bot", "action": "created", "reason": reason})
        ch.events.append(("ticket.created", {"reason": reason}))
        t.messages = 1
        async with self.redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(self.k_conv(conv))
                if await pipe.exists(self.k_conv(conv)):
                    return None  # another worker opened one first: append to it instead
                pipe.multi()
                self._write(pipe, t, ch, {})
                await pipe.execute()
            except WatchError:
                return None
        metrics.TICKETS_OPENED.labels(t.priority, t.channel).inc()
        log.info("ticket_created", ticket_id=tid, priority=t.priority, event_id=event.event_id)
        return tid

    def _note_customer(self, t: Ticket, event: InboundEvent, now: float) -> None:
        t.last_kind = "mention" if event.is_public else "dm"
        t.last_event_id = event.event_id
        t.last_customer_at = event.created_at or now
        t.last_preview = preview_of(event.text)
        if event.is_public:
            t.mention_event_id = event.event_id
            t.mention_reply_to_id = event.reply_to_id or event.event_id
            t.mention_conversation_id = event.conversation_id
            t.mention_audience = event.audience
        else:
            t.last_dm_at = event.created_at or now
            t.last_dm_conversation_id = event.conversation_id

    async def append_customer_message(
        self, tid: str, event: InboundEvent, *, conv: str = "", priority: str = "low"
    ) -> bool:
        """Append ``event`` to ticket ``tid``; False if it was applied before.

        ``priority`` is what the message would get as a new escalation: a worse message
        raises the ticket to it (never lower), in the same transaction as the append so
        a re-run of the event raises nothing twice."""

        def fn(t: Ticket, ch: _Change, already: set[str]) -> bool:
            if event.key in already:
                ch.write = False
                return False
            if t.status != "open" or (conv and t.conv != conv):
                raise TicketError(409, "stale_conversation", "ticket is no longer open")
            now = self.now()
            self._note_customer(t, event, now)
            t.messages += 1
            nr = t.clocks["next_response"]
            # Next response runs once a human has answered, from the oldest unanswered
            # message; a bare "thanks"/"ok" asks for nothing and starts nothing.
            if t.first_response_at and not nr.running and not is_trivial(event.text):
                self.sla.start(nr, self._policy(t), "next_response", now)
            if priority in PRIORITIES and PRIORITIES.index(priority) > PRIORITIES.index(t.priority):
                self._change_priority(t, ch, priority, actor="bot", event_id=event.event_id)
            ch.messages.append(_customer_msg(event, now))
            ch.applied.append(event.key)
            ch.event_marks[event.key] = f"{tid}|appended"
            ch.events.append(("ticket.message", {"from": "customer"}))
            return True

        return await self._mutate(tid, fn, check_applied=(event.key,))

    async def add_bot_message(self, tid: str, reply: OutboundReply) -> None:
        """Record the bot's acknowledgement on the ticket. It stops no clock."""

        def fn(t: Ticket, ch: _Change, already: set[str]) -> None:
            if reply.reply_id in already:
                ch.write = False
                return
            self._bot_message(t, ch, reply)

        await self._mutate(tid, fn, check_applied=(reply.reply_id,))

    def _bot_message(self, t: Ticket, ch: _Change, reply: OutboundReply) -> None:
        """The bot's ``reply`` on the ticket, applied once; a mention uses its one public
        reply."""
        if reply.kind == "mention":
            t.mention_replied = t.mention_event_id
        t.messages += 1
        ch.messages.append(
            {
                "id": reply.reply_id,
                "at": self.now(),
                "from": "bot",
                "kind": reply.kind,
                "text": reply.text,
            }
        )
        ch.applied.append(reply.reply_id)

    async def add_public_ack(self, tid: str, reply: OutboundReply) -> bool:
        """Acknowledge publicly a mention appended to an open ticket (``reply``: the ack
        a new escalated mention gets, moving the customer to DM), once per ticket: not
        when the ticket already has a public reply (the bot's ack or an agent's), nor
        when the platform's reply window would refuse it. Recorded and queued for the
        sender in one transaction; True if it is (or a run before this one had it)."""
        window: dict[str, Any] | None = None

        async def load(pipe: Any, t: Ticket) -> None:
            nonlocal window
            await watch_window(pipe, self.keys, t)
            window = await window_state(pipe, self.keys, t, self.now())

        def fn(t: Ticket, ch: _Change, already: set[str]) -> bool:
            ch.write = False
            if reply.reply_id in already:
                return True
            if t.status != "open" or t.mention_replied or not t.mention_event_id:
                return False
            if window_refusal(window, t, reply) is not None:
                return False
            ch.write = True
            self._bot_message(t, ch, reply)
            ch.replies.append(reply)
            ch.events.append(("ticket.message", {"from": "bot"}))
            return True

        return await self._mutate(tid, fn, check_applied=(reply.reply_id,), load=load)

    # -- agent actions ----------------------------------------------------------
    async def claim(self, tid: str, agent: str) -> Ticket:
        def fn(t: Ticket, ch: _Change, _a: set[str]) -> Ticket:
            now = self.now()
            if t.status != "open":
                raise TicketError(409, "not_open", f"ticket {tid} is {t.status}")
            owner = t.claimed_by(now)
            if owner and owner != agent:
                raise TicketError(
                    409, "claimed", f"ticket {tid} is claimed by {owner}", owner=owner
                )
            t.assignee, t.lease_until = agent, now + self.cfg.claim_lease_s
            action = "renewed" if owner == agent else "claimed"
            ch.history.append({"at": now, "actor": agent, "action": action})
            ch.events.append((f"ticket.{action}", {"assignee": agent}))
            return t

        return await self._mutate(tid, fn)

    async def release(self, tid: str, agent: str, *, supervisor: bool = False) -> Ticket:
        def fn(t: Ticket, ch: _Change, _a: set[str]) -> Ticket:
            now = self.now()
            if t.status != "open":
                raise TicketError(409, "not_open", f"ticket {tid} is {t.status}")
            owner = t.claimed_by(now)
            if not owner:  # nobody holds it: nothing to release, nothing to log
                ch.write = False
                return t
            if owner != agent and not supervisor:
                raise TicketError(
                    409, "claimed", f"ticket {tid} is claimed by {owner}", owner=owner
                )
            t.assignee, t.lease_until = "", 0.0
            ch.history.append({"at": now, "actor": agent, "action": "released"})
            ch.events.append(("ticket.released", {}))
            return t

        return await self._mutate(tid, fn)

    async def assign(self, tid: str, to: str, by: str) -> Ticket:
        def fn(t: Ticket, ch: _Change, _a: set[str]) -> Ticket:
            now = self.now()
            if t.status != "open":
                raise TicketError(409, "not_open", f"ticket {tid} is {t.status}")
            t.assignee, t.lease_until = to, now + self.cfg.claim_lease_s
            ch.history.append({"at": now, "actor": by, "action": "assigned", "to": to})
            ch.events.append(("ticket.assigned", {"assignee": to}))
            return t

        return await self._mutate(tid, fn)

    async def set_priority(self, tid: str, priority: str, by: str) -> Ticket:
        if priority not in PRIORITIES:
            raise TicketError(422, "invalid", f"priority must be one of {', '.join(PRIORITIES)}")

        def fn(t: Ticket, ch: _Change, _a: set[str]) -> Ticket:
            if t.status != "open":
                raise TicketError(409, "not_open", f"ticket {tid} is {t.status}")
            self._change_priority(t, ch, priority, actor=by)
            return t

        return await self._mutate(tid, fn)

    async def add_note(self, tid: str, author: str, text: str) -> dict[str, Any]:
        def fn(t: Ticket, ch: _Change, _a: set[str]) -> dict[str, Any]:
            now = self.now()
            note = {"id": secrets.token_hex(6), "at": now, "author": author, "text": text}
            ch.notes.append(note)
            ch.events.append(("ticket.note", {"author": author}))
            return note

        return await self._mutate(tid, fn)

    async def add_system_note(self, tid: str, key: str, text: str) -> bool:
        """A note from the system (e.g. an undeliverable reply), once per ``key``."""

        def fn(t: Ticket, ch: _Change, already: set[str]) -> bool:
            if key in already:
                ch.write = False
                return False
            now = self.now()
            ch.notes.append({"id": key, "at": now, "author": "system", "text": text})
            ch.applied.append(key)
            ch.events.append(("ticket.note", {"author": "system"}))
            return True

        return await self._mutate(tid, fn, check_applied=(key,))

    async def reply(
        self,
        tid: str,
        agent: str,
        text: str,
        *,
        key: str | None = None,
        channel: str | None = None,
        check: Callable[[OutboundReply], None] | None = None,
    ) -> tuple[OutboundReply, bool]:
        """Record an agent's reply and queue it for the sender, in one transaction;
        (reply, new).

        The ticket must be open and not claimed by someone else (an unclaimed ticket is
        claimed by the replier in the same transaction), and the platform's reply window
        must still allow the reply (409 ``window_closed``). ``check(reply)`` may refuse it
        (e.g. too long) by raising TicketError. A retried request, with the same ``key``
        or, without one, the same agent, channel and text answering the same customer
        message, records nothing and returns the reply as first recorded."""
        t0 = await self.get(tid)
        if t0 is None:
            raise _not_found(tid)
        key = key or _derived_key(agent, channel, text, t0.last_event_id)
        reply_id = f"ticket:{tid}:agent:{key}"
        # Window state is the platforms package's (read-only here); the sender's reserve
        # stays the authority, this refuses what it would certainly refuse. It is read
        # under WATCH in the reply's transaction: an unfollow recorded after the read
        # fails the EXEC and the check runs again on the new state.
        window: dict[str, Any] | None = None

        async def load(pipe: Any, t: Ticket) -> None:
            nonlocal window
            await watch_window(pipe, self.keys, t)
            window = await window_state(pipe, self.keys, t, self.now())

        # Filled by the attempt that commits (_mutate may rerun fn on a WATCH conflict),
        # so the first-response figures are recorded once, after the commit.
        first: list[tuple[str, str, float, float]] = []

        def fn(t: Ticket, ch: _Change, already: set[str]) -> OutboundReply | None:
            first.clear()
            if reply_id in already:
                ch.write = False
                return None
            now = self.now()
            if t.status != "open":
                raise TicketError(409, "not_open", f"ticket {tid} is {t.status}")
            owner = t.claimed_by(now)
            if owner and owner != agent:
                raise TicketError(
                    409, "claimed", f"ticket {tid} is claimed by {owner}", owner=owner
                )
            r = self._outbound(t, reply_id, text, channel)
            if check is not None:
                check(r)
            why = window_refusal(window, t, r)
            if why is not None:
                raise TicketError(409, "window_closed", why, platform=t.platform)
            t.assignee, t.lease_until = agent, now + self.cfg.claim_lease_s
            fr, nr = t.clocks["first_response"], t.clocks["next_response"]
            if fr.running:
                self.sla.stop(fr, now)
                t.first_response_at = now
                first.append((t.account, t.priority, max(0.0, now - t.created_at), now))
            self.sla.stop(nr, now)
            if r.kind == "mention":
                t.mention_replied = t.mention_event_id
            t.messages += 1
            ch.messages.append(
                {
                    "id": reply_id,
                    "at": now,
                    "from": "agent",
                    "agent": agent,
                    "kind": r.kind,
                    "text": text,
                }
            )
            ch.applied.append(reply_id)
            ch.outbound[reply_id] = r.to_json()
            ch.history.append(
                {"at": now, "actor": agent, "action": "replied", "reply_id": reply_id}
            )
            ch.events.append(("ticket.replied", {"assignee": agent}))
            return r

        r = await self._mutate(tid, fn, check_applied=(reply_id,), load=load)
        if r is None:  # a retry: hand back what was recorded (and queued) then
            raw = await self.redis.hget(self.k_list(tid, "outbound"), reply_id)
            if raw is None:  # recorded before replies were kept
                raise TicketError(409, "duplicate", f"reply {key!r} was already recorded")
            return OutboundReply.from_json(raw), False
        if first:
            account, priority, seconds, at = first[0]
            metrics.FIRST_RESPONSE.labels(priority).observe(seconds)
            await record_first_response(
                self.redis, self.keys, account=account, seconds=seconds, now=at
            )
        return r, True

    def _outbound(self, t: Ticket, reply_id: str, text: str, channel: str | None) -> OutboundReply:
        dm = channel == "dm" or (channel is None and t.last_kind == "dm")
        if not dm and not t.mention_event_id:
            raise TicketError(
                409,
                "no_public_mention",
                f"ticket {t.id} has no public mention to reply to; reply by DM",
            )
        return OutboundReply(
            reply_id=reply_id,
            platform=t.platform,
            account=t.account,
            kind="dm" if dm else "mention",
            text=text,
            recipient_id=t.user_id,
            recipient_handle=t.user_handle,
            in_reply_to_id=None if dm else t.mention_reply_to_id,
            conversation_id=t.last_dm_conversation_id if dm else t.mention_conversation_id,
            audience="" if dm else t.mention_audience,
            ticket_id=t.id,
            source="agent",
        )

    async def resolve(self, tid: str, agent: str, *, supervisor: bool = False) -> Ticket:
        """Close the ticket and hand the conversation back to the bot."""

        def fn(t: Ticket, ch: _Change, _a: set[str]) -> Ticket:
            now = self.now()
            if t.status != "open":
                raise TicketError(409, "not_open", f"ticket {tid} is {t.status}")
            owner = t.claimed_by(now)
            if owner and owner != agent and not supervisor:
                raise TicketError(
                    409, "claimed", f"ticket {tid} is claimed by {owner}", owner=owner
                )
            self.sla.stop(t.clocks["resolution"], now)
            # Resolving answers no message: an open response clock ends unmet.
            self.sla.cancel(t.clocks["first_response"], now)
            self.sla.cancel(t.clocks["next_response"], now)
            t.status, t.resolved_at = "resolved", now
            t.assignee, t.lease_until = "", 0.0
            ch.conv_delete = True
            ch.history.append({"at": now, "actor": agent, "action": "resolved"})
            ch.events.append(("ticket.resolved", {}))
            return t

        t = await self._mutate(tid, fn)
        metrics.TICKETS_RESOLVED.labels(t.priority).inc()
        return t

    async def reopen(self, tid: str, agent: str) -> Ticket:
        """Open a resolved ticket again, with what the customer and the bot said while it
        was resolved (the conversation's turns since then) added to its context."""
        conv = Conversation("", "", "")

        async def load(pipe: Any, t: Ticket) -> None:
            nonlocal conv
            other, conv = await self._watch_for_reopen(pipe, t)
            if other is not None:
                raise TicketError(
                    409, "conversation_has_ticket", f"ticket {other} is open for this customer"
                )

        def fn(t: Ticket, ch: _Change, _a: set[str]) -> Ticket:
            if t.status != "resolved":
                raise TicketError(409, "not_resolved", f"ticket {tid} is {t.status}")
            self._reopen(t, ch, conv, actor=agent)
            return t

        return await self._mutate(tid, fn, load=load)

    async def _watch_for_reopen(self, pipe: Any, t: Ticket) -> tuple[str | None, Conversation]:
        """(the conversation's other open ticket, its turns), both WATCHed: only one ticket
        may be open, and a turn the bot records meanwhile is not left out."""
        conv_key = self.k_conv(t.conv)
        await pipe.watch(conv_key)
        other = await pipe.get(conv_key)
        turns_key = self.keys.conv(t.platform, t.account, t.user_id)
        await pipe.watch(turns_key)
        raw = await pipe.get(turns_key)
        conv = Conversation.from_json(raw) if raw else Conversation("", "", "")
        return (as_str(other) if other is not None and as_str(other) != t.id else None), conv

    def _reopen(
        self, t: Ticket, ch: _Change, conv: Conversation, *, actor: str, **why: Any
    ) -> None:
        now = self.now()
        since = conv.context(since=t.resolved_at)
        ch.context = [{**c, "when": "while_resolved"} for c in since]
        t.status, t.resolved_at = "open", 0.0
        p = self._policy(t)
        self.sla.start(t.clocks["resolution"], p, "resolution", now)
        if not t.first_response_at:  # no human has answered yet: it is still owed
            self.sla.start(t.clocks["first_response"], p, "first_response", now)
        ch.conv_set = True
        ch.history.append({"at": now, "actor": actor, "action": "reopened", **why})
        ch.events.append(("ticket.reopened", {}))

    async def reply_not_delivered(
        self, tid: str, reply: OutboundReply, note: dict[str, Any]
    ) -> bool:
        """Record that ``reply`` (queued from this ticket) ended in the dead stream:
        ``note`` (a system note: ``text``, ``state``, ``reason``) once per reply, and, for
        an agent's latest reply, the customer is still owed an answer. On an open ticket
        the response clock that reply stopped runs again from its first start (the
        first response was not made); a resolved ticket is reopened (unless the customer
        has another open ticket) with a response clock started: first response if no
        reply ever reached the customer, else next response. False if noted before."""
        key = f"undeliverable:{reply.reply_id}"
        msgs: list[dict[str, Any]] = []
        other: str | None = None
        conv = Conversation("", "", "")

        async def load(pipe: Any, t: Ticket) -> None:
            nonlocal msgs, other, conv
            msgs = [json.loads(m) for m in await pipe.lrange(self.k_list(tid, "msgs"), 0, -1)]
            if t.status == "resolved":
                other, conv = await self._watch_for_reopen(pipe, t)

        def fn(t: Ticket, ch: _Change, already: set[str]) -> bool:
            if key in already:
                ch.write = False
                return False
            now = self.now()
            ch.notes.append({**note, "id": key, "at": now, "author": "system"})
            ch.applied.append(key)
            ch.events.append(("ticket.note", {"author": "system"}))
            ch.events.append(
                ("ticket.delivery", {"reply_id": reply.reply_id, "state": "not_delivered"})
            )
            i = next((i for i, m in enumerate(msgs) if m.get("id") == reply.reply_id), None)
            if reply.source != "agent" or i is None:
                return True  # the bot's acknowledgement stopped no clock
            if any(m.get("from") == "agent" for m in msgs[i + 1 :]):
                return True  # a later reply answers the customer (or is noted itself)
            at = msgs[i]["at"]
            stopped = [
                n for n in ("first_response", "next_response") if t.clocks[n].stopped_at == at
            ]
            if "first_response" in stopped:
                t.first_response_at = 0.0
            why = {"reply_id": reply.reply_id}
            if t.status == "open":
                for n in stopped:  # resumed as if the reply never happened: same deadline
                    t.clocks[n].stopped_at = t.clocks[n].met = None
                ch.history.append(
                    {
                        "at": now,
                        "actor": "system",
                        "action": "not_delivered",
                        **why,
                        "resumed": stopped,
                    }
                )
            elif other is None:
                self._reopen(t, ch, conv, actor="system", **why)
                if t.first_response_at:
                    self.sla.start(t.clocks["next_response"], self._policy(t), "next_response", now)
            return True

        return await self._mutate(tid, fn, check_applied=(key,), load=load)

    # -- retention ----------------------------------------------------------------
    async def purge_resolved(self, *, before: float, limit: int = 500) -> int:
        """Delete up to ``limit`` tickets resolved before ``before``, with everything they
        hold (messages, context, notes, history); returns how many. Each goes in its own
        transaction, watched: one reopened meanwhile is kept."""
        ids = await self.redis.zrangebyscore(self.k_resolved, "-inf", before, start=0, num=limit)
        purged = 0
        for raw in ids:
            tid = as_str(raw)
            key = self.k_ticket(tid)
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    status, resolved_at = await pipe.hmget(key, "status", "resolved_at")
                    gone = status is None
                    when = float(as_str(resolved_at or b"0"))
                    if not gone and (as_str(status) != "resolved" or when > before):
                        await pipe.unwatch()  # reopened (and maybe resolved again) since
                        continue
                    pipe.multi()
                    pipe.delete(key, *(self.k_list(tid, what) for what in TICKET_LISTS))
                    pipe.zrem(self.k_resolved, tid)
                    await pipe.execute()
                    purged += not gone
                except WatchError:
                    continue  # changed under us: the next round looks again
        return purged

    async def erase(self, tid: str, conv: str) -> None:
        """Delete a ticket with every index entry and pointer to it, in one transaction
        (a customer's erasure, bot/erasure.py): no index ever names a deleted ticket."""
        key, conv_key = self.k_ticket(tid), self.k_conv(conv)
        for _ in range(100):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    # Any change to the ticket (its SLA alerts too) touches its hash.
                    await pipe.watch(key, conv_key, self.k_list(tid, "applied"))
                    applied = [as_str(m) for m in await pipe.smembers(self.k_list(tid, "applied"))]
                    owner = await pipe.get(conv_key)
                    due = [
                        as_str(m)
                        async for m, _ in self.redis.zscan_iter(self.k_due, match=f"{tid}|*")
                    ]
                    pipe.multi()
                    pipe.zrem(self.k_open, tid)
                    pipe.zrem(self.k_resolved, tid)
                    if due:
                        pipe.zrem(self.k_due, *due)
                    if owner is not None and as_str(owner) == tid:
                        pipe.delete(conv_key)
                    pipe.delete(
                        key,
                        *(self.k_list(tid, what) for what in TICKET_LISTS),
                        *(self.k_event(k) for k in applied),
                    )
                    await pipe.execute()
                    return
                except WatchError:
                    continue
        raise RuntimeError(f"ticket {tid} kept changing; run the command again")

    # -- SLA alerts (the scanner) ----------------------------------------------
    async def due_alerts(self, now: float, limit: int = 200) -> list[str]:
        return [
            as_str(m)
            for m in await self.redis.zrangebyscore(self.k_due, 0, now, start=0, num=limit)
        ]

    async def take_alert(self, member: str, *, due_by: float) -> bool:
        """Remove ``member`` from the due set if it is still due by ``due_by`` (a deadline
        moved later meanwhile keeps it); True for the one caller that removed it."""
        return bool(await self._take_due(keys=[self.k_due], args=[member, repr(due_by)]))

    async def fire_alert(
        self,
        member: str,
        notice: Callable[[dict[str, Any]], tuple[str, dict[str, Any]]] | None = None,
    ) -> dict[str, Any] | None:
        """Mark an alert fired on its ticket (once); returns the alert or None if stale.
        ``notice(alert) -> (text, data)``: queue a webhook notification in the same
        transaction, so a crash can never record the alert without its notification."""
        try:
            tid, clock, gen_s, kind = member.split("|")
            gen = int(gen_s)
        except ValueError:
            return None
        if clock not in CLOCKS or kind not in ("at_risk", "breach"):
            return None

        def fn(t: Ticket, ch: _Change, _a: set[str]) -> dict[str, Any] | None:
            c = t.clocks[clock]
            if t.status != "open" or not c.running or c.gen != gen:
                ch.write = False
                return None
            if (kind == "at_risk" and c.at_risk_fired) or (kind == "breach" and c.breached):
                ch.write = False
                return None
            now = self.now()
            # Read as due by the scanner, but a priority lowered since moved it later.
            at = c.due if kind == "breach" else c.at_risk_at
            if at is None or at > now:
                ch.write = False
                return None
            due = c.due  # the deadline that fired (a bump reschedules only the others)
            alert = {"clock": clock, "kind": kind, "due_at": due, "priority_before": t.priority}
            if kind == "at_risk":
                c.at_risk_fired = True
            else:
                c.breached = c.at_risk_fired = True
                new = bump(t.priority)
                if new != t.priority:
                    t.priority = new
                    self._reschedule(t)
            alert.update(
                priority=t.priority,
                ticket_id=tid,
                account=t.account,
                platform=t.platform,
                customer=t.user_handle,
            )
            entry = {"at": now, "actor": "sla", "action": f"sla.{kind}", "clock": clock}
            if t.priority != alert["priority_before"]:  # the breach raised it: say from what
                entry.update({"from": alert["priority_before"], "to": t.priority})
            ch.history.append(entry)
            ch.events.append((f"sla.{kind}", {"clock": clock, "due_at": due}))
            if notice is not None:
                ch.notices.append(("sla", *notice(alert)))
            return alert

        try:
            return await self._mutate(tid, fn)
        except TicketError as e:
            if e.code == "not_found":
                return None
            raise

    async def refresh_gauges(self) -> None:
        ids = await self.redis.zrange(self.k_open, 0, -1)
        pipe = self.redis.pipeline(transaction=False)
        for i in ids:
            pipe.hget(self.k_ticket(as_str(i)), "priority")
        counts = dict.fromkeys(PRIORITIES, 0)
        for p in await pipe.execute() if ids else []:
            if p is not None and as_str(p) in counts:
                counts[as_str(p)] += 1
        for priority, n in counts.items():
            metrics.TICKETS_OPEN.labels(priority).set(n)


def _cursor(score: float, tid: str) -> str:
    """Where a listed ticket sat in its index as read: its score, then its id for ties
    (``search(after=...)`` goes on past it)."""
    return f"{score!r}~{tid}"


def _parse_cursor(raw: str) -> tuple[float, str]:
    """:func:`_cursor`'s (score, id), or TicketError 422 for anything else."""
    score, sep, tid = raw.partition("~")
    try:
        value = float(score)
    except ValueError:
        value = math.nan
    if not sep or not tid or not math.isfinite(value):
        raise TicketError(
            422, "invalid", "after: expected a cursor from a previous page", field="after"
        )
    return value, tid


def handle_key(handle: str) -> str:
    """A handle as agents type it and platforms show it: no leading @, any case."""
    return handle.strip().lstrip("@").casefold()


def _is_customer(t: Ticket, customer: str) -> bool:
    """Whether the ticket is the customer's: by handle, or by the platform's user id
    (exact: some platforms' ids hold letters)."""
    want = handle_key(customer)
    if not want:  # "@" alone is nobody, not the tickets without a handle
        return False
    return handle_key(t.user_handle) == want or t.user_id == customer.strip().lstrip("@")


def _past(tid: str, score: float, after: tuple[float, str] | None, resolved: bool) -> bool:
    """Whether index entry (score, tid) comes after ``after`` in the index's order (Redis
    orders equal scores by member: ascending, or descending for the resolved index)."""
    if after is None:
        return True
    if score != after[0]:
        return score < after[0] if resolved else score > after[0]
    return tid < after[1] if resolved else tid > after[1]


def _customer_msg(event: InboundEvent, now: float) -> dict[str, Any]:
    return {
        "id": event.event_id,
        "at": event.created_at or now,
        "from": "customer",
        "kind": event.kind,
        "text": event.text,
        "event_key": event.key,
    }


def _derived_key(agent: str, channel: str | None, text: str, last_event_id: str) -> str:
    """The idempotency key of a reply sent without one: a request retried after a
    failure (a timeout, a lost answer) finds its recorded reply instead of sending a
    second."""
    raw = "\0".join((agent, channel or "", last_event_id, text))
    return "auto." + hashlib.sha256(raw.encode()).hexdigest()[:32]


def _valid_id(tid: str) -> bool:
    return 1 < len(tid) <= 24 and tid[0] == "T" and tid[1:].isascii() and tid[1:].isdigit()
