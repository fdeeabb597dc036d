"""The real pipeline: understanding → decision → effects, idempotent per event.

For each inbound event:

* follow/unfollow → reply-window state (``bot.platforms.windows``) → ``state``;
* a message → conversation context → NLU → ``handlers.policy.decide`` → effects:
  Answer → a reply through the outbox; Escalate → the conversation's ticket (new, with
  the conversation's recent turns as its context; or the message appended, raising the
  ticket's priority when the message is worse) plus an optional acknowledgement (for an
  appended public mention, once per ticket); Ignore → nothing.

A customer's messages are decided one at a time (``ConversationStore.turn``), each on
the state the previous one left, and in stream order: ingest lists each message's
stream id per conversation (``Keys.conv_order``), and a turn first decides the earlier
ones still listed (``Brain._catch_up``). A worker may run an event twice (it died
before acknowledging, or another turn decided it first). The decision is therefore
stored first (``decided:{event key}``, SET NX) and a re-run replays the stored
decision instead of deciding again (which could differ: the unclear count moved), and
every effect is keyed by the event: replies by ``OutboundReply.answering`` ids, ticket
messages and conversation turns by the event key. A re-run after a crash adds nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import structlog

from bot import metrics
from bot.config import Settings
from bot.conversation import ConversationStore, Turn
from bot.models import InboundEvent, OutboundReply
from bot.nlu.types import NluResult
from bot.ops.recorder import record_message
from bot.ops.spikes import active_alert
from bot.orders import OrderLookup
from bot.outbox import enqueue_reply
from bot.pipeline import Outcome
from bot.platforms import windows
from bot.redis import Keys, Redis, as_str
from bot.streams import INBOUND_ENTRY, count_attempt, finish_inbound, note_failure
from escalation.sla import PRIORITIES
from escalation.tickets import TicketStore
from handlers.decisions import Answer, Decision, Escalate, Ignore, decision_from_dict
from handlers.policy import decide, screen
from handlers.responses import Responses, Say

log = structlog.get_logger(__name__)


class Nlu(Protocol):
    @property
    def ready(self) -> bool: ...

    async def parse(self, text: str, language: str | None = None) -> NluResult: ...


class Brain:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        settings: Settings,
        nlu: Nlu,
        *,
        tickets: TicketStore,
        responses: Responses,
        orders: OrderLookup | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.settings = settings
        self.nlu = nlu
        self.tickets = tickets
        self.responses = responses
        self.orders = orders
        self.now = clock
        self.convs = ConversationStore(
            redis,
            keys,
            idle_s=settings.dialog.conversation_idle_s,
            max_turns=settings.dialog.max_turns,
        )

    @property
    def ready(self) -> bool:
        return bool(self.nlu.ready)

    async def handle(self, event: InboundEvent) -> Outcome:
        await windows.record(self.redis, self.keys, event)
        if not event.is_message:
            return Outcome("state", {"rule": f"user_{event.kind}"})
        entry = INBOUND_ENTRY.get()
        async with self.convs.turn(event.platform, event.account, event.author.id):
            if entry is not None:
                done = await self._catch_up(event, entry)
                if done is not None:
                    return done
            return await self._handle_message(event)

    async def _catch_up(self, event: InboundEvent, entry: str) -> Outcome | None:
        """Under the lease: decide the customer's earlier messages still waiting in the
        stream first, oldest first, so this one follows them (whichever worker or task
        took its entry first, or a predecessor's worker that died). Returns the stored
        outcome when another turn already finished this event that way."""
        order = self.keys.conv_order(event.platform, event.account, event.author.id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(self.keys.outcome(event.key))
        pipe.lpos(order, entry)
        done, pos = await pipe.execute()
        if done is not None:
            return Outcome.from_json(done)
        # pos None: not listed (stored before the list existed, or a replayed dead letter)
        if pos:
            for earlier in await self.redis.lrange(order, 0, pos - 1):
                await self._decide_earlier(as_str(earlier), order)
        return None

    async def _decide_earlier(self, msg_id: str, order: str) -> None:
        """Decide, apply and finish another worker's entry, as its worker would: every
        step is idempotent per event, so that worker (alive, waiting for the lease, or
        reclaiming it after a crash) then only finds the outcome."""
        inbound, group = self.keys.inbound, self.keys.WORKERS
        rows: Any = await self.redis.xrange(inbound, min=msg_id, max=msg_id)
        held: Any = await self.redis.xpending_range(inbound, group, msg_id, msg_id, 1)
        if not rows or not held:  # acknowledged (done or dead-lettered) or trimmed
            await self.redis.lrem(order, 0, msg_id)
            return
        event = InboundEvent.from_json(rows[0][1][b"event"])
        # Counted as a delivery: an event that kills its worker must not kill every
        # successor's too; past max_attempts its own worker dead-letters it.
        if await count_attempt(self.redis, self.keys, msg_id) > self.settings.worker.max_attempts:
            return
        try:
            await windows.record(self.redis, self.keys, event)
            outcome = await self._handle_message(event)
        except Exception as e:
            # Not waited for: its own worker retries it, after this one. A failure that
            # did not kill us leaves that worker's retries as they were.
            await self.redis.hincrby(self.keys.attempts(msg_id), "n", -1)
            await note_failure(self.redis, self.keys, msg_id, f"{type(e).__name__}: {e}")
            log.warning("earlier_event_failed", stream_id=msg_id, error=type(e).__name__)
            return
        ttl = self.settings.worker.outcome_ttl_s
        await finish_inbound(self.redis, self.keys, msg_id, event, outcome, ttl)
        log.info("event_done_in_order", event_id=event.event_id, decision=outcome.decision)

    async def _handle_message(self, event: InboundEvent) -> Outcome:
        decided_key = self.keys.ns("decided", event.key)
        raw = await self.redis.get(decided_key)
        if raw is None:
            decision = await self._decide(event)
            if await self._store_decision(decided_key, decision, first=True):
                metrics.DECISIONS.labels(event.platform, event.kind, decision.kind).inc()
                metrics.INTENTS.labels(str(decision.reasons.get("intent", "none"))).inc()
            else:  # another worker decided first: follow its decision
                raw = await self.redis.get(decided_key)
                decision = decision_from_dict(json.loads(raw)) if raw else decision
        else:
            decision = decision_from_dict(json.loads(raw))
        if (
            isinstance(decision, Escalate)
            and decision.reason == "human_owned"
            and await self.tickets.append_to_open(event, priority=decision.priority) is None
        ):
            # The agent resolved the ticket after this message was decided (or before a
            # crashed run's replay): the bot has the conversation back, so decide again
            # rather than open a ticket for a "thanks, bye".
            decision = await self._decide(event)
            await self._store_decision(decided_key, decision, first=False)
        # Insights and the negative-spike detector; record_message counts an event
        # once, so a redelivery after a crash neither loses nor doubles it.
        intent = str(decision.reasons.get("intent", "none"))
        await record_message(
            self.redis,
            self.keys,
            event,
            intent=intent,
            negative=bool(decision.reasons.get("negative")) or intent == "complaint",
            decision=decision.kind,
            now=self.now(),
            cfg=self.settings.ops,
        )
        return await self._apply(event, decision)

    async def _store_decision(self, key: str, decision: Decision, *, first: bool) -> bool:
        """Keep ``decision`` for re-runs of the event; ``first``: only if none is kept yet
        (True when this one was)."""
        return bool(
            await self.redis.set(
                key,
                json.dumps(decision.to_dict(), ensure_ascii=False),
                nx=first,
                ex=self.settings.worker.outcome_ttl_s,
            )
        )

    async def _decide(self, event: InboundEvent) -> Decision:
        screened = screen(event, self.settings.accounts)
        if screened is not None:
            return screened  # our own accounts and bots: no NLU, no conversation
        conv = await self.convs.load(event.platform, event.account, event.author.id)
        conv.ticket_id = await self.tickets.open_ticket_for(
            self.tickets.conv_of(event.platform, event.account, event.author.id)
        )
        nlu = await self.nlu.parse(event.text, language=event.language)
        account = self.settings.account(event.account)
        say = self._say(event, nlu, account.persona if account else "")
        d = await decide(
            message=event,
            nlu=nlu,
            conversation=conv,
            account=account,
            say=say,
            orders=self.orders,
            now=self.now(),  # the clock the bot's turns were recorded with
            max_bot_replies_per_hour=self.settings.dialog.max_bot_replies_per_hour,
            # Only a public post is held back in a crisis: one read, for mentions only.
            crisis=event.is_public
            and await active_alert(self.redis, self.keys, event.account) is not None,
        )
        d.reasons.setdefault("unclear_before", conv.unclear)
        return d

    def _say(self, event: InboundEvent, nlu: NluResult, persona: str) -> Say:
        account = self.settings.account(event.account)
        lang = (
            nlu.language
            if nlu.language in ("en", "zh")
            else (account.language if account else "en")
        )
        # Replies start with the customer's @handle in public, as replies do there; a DM
        # is already theirs alone ("@alice Thanks" reads like a broadcast in a chat).
        handle = f"@{event.author.handle}" if event.author.handle and event.is_public else ""
        channel = "mention" if event.is_public else "dm"
        promises = {}
        for priority in PRIORITIES:
            p = self.tickets.sla.policy(priority, event.account, channel)
            promises[priority] = self.responses.sla_promise(
                p.first_response_min, lang, business=p.business_hours
            )
        return self.responses.sayer(
            language=lang,
            persona=persona,
            seed=event.key,
            handle=handle,
            brand=f"@{account.handle}" if account and account.handle else "",
            sla_promise=promises["normal"],
            promises=promises,
        )

    async def _apply(self, event: InboundEvent, d: Decision) -> Outcome:
        customer = Turn(
            at=event.created_at,
            who="customer",
            text=event.text,
            kind=event.kind,
            intent=d.reasons.get("intent"),
            seen=self.now(),
        )
        conv_args: dict[str, Any] = {"event_key": event.key}
        if isinstance(d, Ignore):
            await self.convs.record(
                event.platform, event.account, event.author.id, turns=[customer], **conv_args
            )
            return Outcome("ignore", d.reasons)
        if isinstance(d, Answer):
            reply = OutboundReply.answering(event, d.text)
            await enqueue_reply(self.redis, self.keys, reply)
            clarify = d.reasons.get("rule") == "clarify"
            await self.convs.record(
                event.platform,
                event.account,
                event.author.id,
                turns=[customer, Turn(self.now(), "bot", d.text, reply.kind)],
                unclear=int(d.reasons.get("unclear_before", 0)) + 1 if clarify else 0,
                **conv_args,
            )
            return Outcome("answer", d.reasons, [reply.reply_id])
        assert isinstance(d, Escalate)
        # What the customer and the bot said before, for the agent (kept only if this
        # event opens the ticket). Read before this event's turns are recorded below.
        conv = await self.convs.load(event.platform, event.account, event.author.id)
        context = conv.context(since=self.now() - self.settings.dialog.conversation_idle_s)
        tid, created = await self.tickets.open_or_append(
            event, reason=d.reason, priority=d.priority, reasons=d.reasons, context=context
        )
        reply_ids: list[str] = []
        turns = [customer]
        if d.ack and (created or d.reason == "human_owned"):
            reply = OutboundReply.answering(event, d.ack)
            reply.ticket_id = tid
            sent = True
            if created:
                await self.tickets.add_bot_message(tid, reply)
                await enqueue_reply(self.redis, self.keys, reply)
            else:
                # A mention joining the ticket: acknowledged once per ticket, as the
                # platform's reply window allows (recorded and queued together).
                sent = await self.tickets.add_public_ack(tid, reply)
            if sent:
                reply_ids.append(reply.reply_id)
                turns.append(Turn(self.now(), "bot", d.ack, reply.kind))
        await self.convs.record(
            event.platform, event.account, event.author.id, turns=turns, unclear=0, **conv_args
        )
        log.info(
            "escalated", ticket_id=tid, created=created, reason=d.reason, event_id=event.event_id
        )
        return Outcome("escalate" if created else "append", d.reasons, reply_ids, tid)


class LazyBrain:
    """The pipeline the app wires at build time; the Brain inside is built at startup,
    once Redis and the NLU service exist (``bot.app._brain_ctx``)."""

    def __init__(self) -> None:
        self.brain: Brain | None = None

    @property
    def ready(self) -> bool:
        return self.brain is not None and self.brain.ready

    async def handle(self, event: InboundEvent) -> Outcome:
        if self.brain is None:
            raise RuntimeError("the brain is not started")
        return await self.brain.handle(event)


def build_brain(
    redis: Redis,
    keys: Keys,
    settings: Settings,
    nlu: Nlu,
    http: aiohttp.ClientSession,
    *,
    clock: Callable[[], float] = time.time,
) -> Brain:
    """A Brain from settings: templates, ticket store, and the order hook if configured."""
    d = settings.dialog
    orders = None
    if d.order_lookup_url:
        token = settings.secrets.get("order_lookup_token")
        orders = OrderLookup(
            http,
            d.order_lookup_url,
            token.get() if token else "",
            timeout_s=d.order_lookup_timeout_s,
        )
    root = (
        Path(d.responses_path)
        if d.responses_path
        else Path(settings.nlu.data_path or "nlu_data") / "responses"
    )
    return Brain(
        redis,
        keys,
        settings,
        nlu,
        tickets=TicketStore(redis, keys, settings.escalation, clock=clock),
        responses=Responses.load(root),
        orders=orders,
        clock=clock,
    )
