"""The outbox: the only way a reply reaches a platform.

The pipeline and the agent API call :func:`enqueue_reply`; the :class:`Sender` consumes
the ``outbox`` stream and delivers through the account's adapter. Both ends are
idempotent by ``reply_id``: enqueueing twice adds one entry, and a reply whose send was
recorded is never sent again, even when the sender died before acknowledging it.

Exactly once, step by step: the sender writes a send *intent* (``keys.sending``) before
it calls the platform, and the platform's id (``keys.sent``) together with the XACK
after. A reclaimed entry that has an intent but no result may or may not have been
posted. Where the platform dedupes resends itself (Mastodon ``Idempotency-Key`` =
reply_id, kept about an hour) the sender resends, but only within 50 minutes of the
first try that may have posted (kept in the intent as ``unsure_since``, through later
tries that the platform refused); elsewhere (X, Weibo) it never guesses: the reply goes
to ``dead`` with an "unknown" error for a human to check. A gateway timeout (504) counts
as "may have posted" too. Replaying that dead letter (a new stream entry) is the human's
decision: it is sent.
The intent is written (and cleared) only if it is still what this run last saw or wrote,
and never once the result is recorded: a sender that stalled past its lease (a frozen
process) finds that the sender which took the entry over sent the reply or is sending
it, and leaves it to that one instead of posting it a second time.

Around the call: the platform's length rule (``adapter.compose``), its reply window
(:mod:`bot.platforms.windows`; a closed window goes to ``on_undeliverable``, never to
the API), per-endpoint rate limits (:mod:`bot.ratelimit`, waited for, not failed), and
retries with exponential backoff and jitter on 5xx/network errors; a 429 is waited out
(``Retry-After`` or the reset header, which also blocks the endpoint's bucket) without
counting as a failed try. Other 4xx go to ``dead`` with the platform's error.

Every reply that goes to ``dead`` is first handed to ``on_dead`` (escalation notes it on
the reply's ticket, so the agent learns the customer is still unanswered); a ticket
reply's send is announced on the events stream (``ticket.delivery``) with its record.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import structlog

from bot import metrics
from bot.config import WorkerConfig
from bot.consumer import StreamConsumer
from bot.models import OutboundReply
from bot.platforms import windows
from bot.platforms.base import PlatformAdapter, SendError
from bot.platforms.common import ApiAdapter
from bot.ratelimit import Limit, RateLimiter
from bot.redis import EVENTS_MAXLEN, RETRYABLE_ERRORS, Keys, Redis, as_str
from bot.streams import consumer_name, count_attempt, move_to_dead

log = structlog.get_logger(__name__)

# KEYS: enqueued marker, outbox stream. ARGV: ttl, reply json. Returns the id or 0.
_ENQUEUE_LUA = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[1])) then
  return redis.call('XADD', KEYS[2], '*', 'reply', ARGV[2])
end
return 0
"""

SENT_TTL_S = 30 * 24 * 3600

# KEYS: send intent, send result. ARGV: the intent this run last saw or wrote ('' for
# none), the new one ('' to clear it), ttl. Changes the intent only while no other run
# of the reply has (a sender that stalled past its lease finds the one that took over).
_INTENT_LUA = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 'sent' end
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 'taken' end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3]))
end
return 'ok'
"""


async def enqueue_reply(redis: Redis, keys: Keys, reply: OutboundReply) -> bool:
    """Queue ``reply`` for delivery; False if this reply_id was queued before."""
    return await enqueue_reply_in(redis, keys, reply) != 0


def enqueue_reply_in(pipe: Any, keys: Keys, reply: OutboundReply) -> Any:
    """The same on ``pipe``: a caller's MULTI records a reply and queues it together
    (escalation.tickets does, for agents' replies)."""
    return pipe.eval(
        _ENQUEUE_LUA, 2, keys.enqueued(reply.reply_id), keys.outbox, SENT_TTL_S, reply.to_json()
    )


async def sent_record(redis: Redis, keys: Keys, reply_id: str) -> dict[str, str] | None:
    raw = await redis.get(keys.sent(reply_id))
    return json.loads(raw) if raw else None


class _Stopping(Exception):
    """The sender is stopping during a wait."""


class _TakenOver(Exception):
    """Another run of this reply (a sender that reclaimed it while this one stalled past
    its lease) has sent it or is sending it: this run must not post it too."""


UndeliverableHook = Callable[[OutboundReply, str], Awaitable[None]]
# (reply, error, outcome): "refused" (the platform answered no), "unknown" (it may have
# been posted), "failed" (out of tries, no such account) or "window_closed" (with no
# on_undeliverable hook).
DeadHook = Callable[[OutboundReply, str, str], Awaitable[None]]
# Mastodon keeps idempotency keys for about an hour; resend only well within that.
IDEMPOTENT_RESEND_MAX_AGE_S = 50 * 60
# 429s are waited out, not counted as failures; this many in a row means something is off.
MAX_THROTTLED = 20


class Sender(StreamConsumer):
    role = "sender"

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        cfg: WorkerConfig,
        adapters: Mapping[str, PlatformAdapter],
        http: aiohttp.ClientSession,
        *,
        consumer: str | None = None,
        limiter: RateLimiter | None = None,
        on_undeliverable: UndeliverableHook | None = None,
        on_dead: DeadHook | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 300.0,
    ) -> None:
        super().__init__(
            redis,
            stream=keys.outbox,
            group=keys.SENDERS,
            consumer=consumer or consumer_name("sender"),
            cfg=cfg,
        )
        self.keys = keys
        self.adapters = adapters  # by account id
        self.http = http
        self.clock = clock
        self.sleep = sleep
        self._stop: asyncio.Event | None = None
        self.limiter = limiter or RateLimiter(redis, keys, clock=clock, sleep=self._pause)
        # Called for a reply the platform would refuse (closed reply window). Default:
        # dead-letter it with the reason; escalation wires it to a ticket note.
        self.on_undeliverable = on_undeliverable
        self.on_dead = on_dead
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s

    async def run(self, stop: asyncio.Event) -> None:
        self._stop = stop
        await super().run(stop)

    async def _pause(self, seconds: float) -> None:
        """Sleep (rate-limit wait, backoff) unless stopping: a drain must not sit out a
        15-minute rate window. Raises _Stopping; the entry stays pending for a reclaim."""
        stop = self._stop
        if stop is None:
            await self.sleep(seconds)
            return
        if stop.is_set():
            raise _Stopping
        sleeper = asyncio.ensure_future(self.sleep(seconds))
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stopper.cancel()
        if stop.is_set():
            raise _Stopping

    async def handle_entry(self, msg_id: str, fields: dict[str, str]) -> None:
        attempts = await count_attempt(self.redis, self.keys, msg_id)
        try:
            reply = OutboundReply.from_json(fields["reply"])
        except Exception:
            await self._dead(msg_id, fields, "unparsable reply", attempts)
            return
        log_ = log.bind(reply_id=reply.reply_id, platform=reply.platform, account=reply.account)
        # One round trip for both: the result (done already?) and an earlier intent.
        sent_raw, intent_raw = await self.redis.mget(
            self.keys.sent(reply.reply_id), self.keys.sending(reply.reply_id)
        )
        if sent_raw is not None:
            await self._ack(msg_id)
            metrics.OUTBOUND_SENDS.labels(reply.platform, reply.kind, "duplicate").inc()
            log_.info("reply_already_sent")
            return
        adapter = self.adapters.get(reply.account)
        if adapter is None:
            await self._dead(
                msg_id, fields, f"no account {reply.account!r} configured", attempts, reply
            )
            return
        # Waits (rate limits, backoff) can outlast the visibility timeout; the entry stays
        # ours meanwhile because StreamConsumer renews its claim while this runs.
        try:
            await self._deliver(msg_id, fields, reply, adapter, attempts, intent_raw, log_)
        except _Stopping:
            # Nothing in flight at the platform (or a Mastodon retry, safe to resend):
            # another sender reclaims the entry after the visibility timeout.
            log_.info("reply_left_for_reclaim_on_stop")
        except _TakenOver as e:
            # The entry is the other run's now: it records the result and acknowledges.
            metrics.OUTBOUND_SENDS.labels(reply.platform, reply.kind, "duplicate").inc()
            log_.warning("reply_taken_over", found=str(e))

    async def _deliver(
        self,
        msg_id: str,
        fields: dict[str, str],
        reply: OutboundReply,
        adapter: PlatformAdapter,
        attempts: int,
        intent_raw: bytes | str | None,
        log_: Any,
    ) -> None:
        idempotent = bool(getattr(adapter, "idempotent_resend", True))
        intent = json.loads(intent_raw) if intent_raw is not None else None
        # The intent as this run last saw or wrote it: every change is made only if it
        # is still that (_swap_intent), so two runs of one reply never both post.
        seen: bytes | str = intent_raw or ""
        # When a request of this reply may have been posted (its outcome unknown): a
        # resend is a no-op only while the platform keeps the idempotency key, so every
        # later try, and a reclaim's, counts its age from then.
        unsure_since: float | None = None
        # An intent from another stream entry means a human replayed the dead letter
        # after checking the platform: that is the decision to send again.
        if intent is not None and intent.get("msg_id", msg_id) != msg_id:
            log_.warning("reply_replayed_after_unknown_delivery")
        elif intent is not None:
            unsure_since = float(intent.get("unsure_since", intent.get("at", 0)))
            if not idempotent or self.clock() - unsure_since > IDEMPOTENT_RESEND_MAX_AGE_S:
                why, detail = self._unsure_for(unsure_since)
                await self._unknown(msg_id, fields, reply, attempts, why, log_, **detail)
                return
            log_.warning("reply_resent_idempotently")
        elif attempts > self.cfg.max_attempts + 1:
            # Redelivered again and again without ever reaching the platform: a sender
            # keeps dying on it (the in-process retries count separately).
            await self._dead(msg_id, fields, "sender died while handling it", attempts, reply)
            metrics.OUTBOUND_SENDS.labels(reply.platform, reply.kind, "dead").inc()
            return
        limits: list[Limit] = []
        if isinstance(adapter, ApiAdapter):
            await adapter.ready(self.http)
            out = _with_text(reply, adapter.compose(reply))
            limits = adapter.limits_for(reply)
        else:
            out = _with_text(reply, adapter.fit(reply.text, reply.kind))
        reservation: windows.Reservation | None = None
        try:
            tries = throttled = 0
            while True:
                tries += 1
                await self.limiter.acquire(reply.account, limits, platform=reply.platform)
                if reservation is None:
                    # Taken next to the intent, not before the (possibly long) rate-limit
                    # wait: a crash there must not use up a mention's single reply. The
                    # mark names this reply, so its reclaim may take it again.
                    reservation = await windows.reserve(
                        self.redis, self.keys, out, now=self.clock()
                    )
                    if not reservation.ok:
                        await self._undeliverable(
                            msg_id, fields, reply, reservation.reason, attempts
                        )
                        log_.warning("reply_undeliverable", reason=reservation.reason)
                        return
                if unsure_since is not None and (
                    self.clock() - unsure_since > IDEMPOTENT_RESEND_MAX_AGE_S
                ):
                    why, detail = self._unsure_for(unsure_since)
                    await self._unknown(msg_id, fields, reply, attempts, why, log_, **detail)
                    return
                record: dict[str, Any] = {
                    "at": self.clock(),
                    "consumer": self.consumer,
                    "try": tries,
                    "msg_id": msg_id,
                }
                if unsure_since is not None:
                    record["unsure_since"] = unsure_since
                seen = await self._swap_intent(reply.reply_id, seen, json.dumps(record))
                try:
                    result = await adapter.send(self.http, out)
                except SendError as e:
                    status_class = "invalid" if e.status is None else _status_class(e.status)
                    metrics.OUTBOUND_ERRORS.labels(reply.platform, status_class).inc()
                    if e.maybe_posted and not idempotent:
                        # A gateway timeout: the platform may still post it.
                        why = f"{e}; the platform may have posted it"
                        await self._unknown(
                            msg_id, fields, reply, attempts, why, log_, status=e.status
                        )
                        return
                    if e.maybe_posted:
                        unsure_since = unsure_since or float(record["at"])
                    elif unsure_since is None:
                        # The platform answered: nothing was posted, the intent is void
                        # (unless an earlier try may have posted).
                        seen = await self._swap_intent(reply.reply_id, seen, "")
                    if e.status == 429:
                        # Rate refusal: a wait, not a failed try (up to a sanity cap).
                        tries, throttled = tries - 1, throttled + 1
                        wait = (
                            e.retry_after if e.retry_after is not None else self._backoff(throttled)
                        )
                        if limits:
                            await self.limiter.block(
                                reply.account, limits[0].endpoint, self.clock() + wait
                            )
                    if e.permanent or tries >= self.cfg.max_attempts or throttled > MAX_THROTTLED:
                        await windows.release(self.redis, self.keys, out, reservation)
                        await self._dead(
                            msg_id,
                            fields,
                            str(e) + self._unsure_note(reply, unsure_since),
                            attempts,
                            reply,
                            "refused" if e.permanent else "failed",
                        )
                        metrics.OUTBOUND_SENDS.labels(reply.platform, reply.kind, "dead").inc()
                        log_.warning("reply_dead_lettered", status=e.status, tries=tries)
                        return
                    await self._retry_wait(
                        reply, max(tries, throttled), e.retry_after, log_, status=e.status
                    )
                    continue
                except (aiohttp.ClientError, TimeoutError) as e:
                    if _never_sent(e):
                        # Certainly not posted (by this try): retry with backoff.
                        if unsure_since is None:
                            seen = await self._swap_intent(reply.reply_id, seen, "")
                    elif idempotent:
                        # Connected, then lost: it may be posted; resent with the same key.
                        unsure_since = unsure_since or float(record["at"])
                    else:
                        # Connected, then lost: the platform may have posted it.
                        metrics.OUTBOUND_ERRORS.labels(reply.platform, "network").inc()
                        why = f"{type(e).__name__} after the request was sent"
                        await self._unknown(
                            msg_id, fields, reply, attempts, why, log_, error=type(e).__name__
                        )
                        return
                    note = self._unsure_note(reply, unsure_since)
                    if not await self._network_retry(
                        msg_id, fields, reply, out, reservation, attempts, tries, e, log_, note
                    ):
                        return
                    continue
                break
        except _Stopping:
            if reservation is not None:
                await windows.release(self.redis, self.keys, out, reservation)
            raise
        done = {"platform_id": result.platform_id, "sent_at": self.clock(), "text": out.text}
        try:
            await self._until_written(lambda: self._record_sent(msg_id, reply, done), log_)
        except _Stopping:
            # Posted but not recorded: the reclaim will call it "delivery unknown"; the
            # platform id lets whoever checks the account find it.
            log_.error("reply_sent_unrecorded_on_stop", platform_id=result.platform_id)
            return
        with contextlib.suppress(Exception):  # bookkeeping only; the reply is out
            await self.limiter.observe(reply.account, limits, result.rate_limit)
        metrics.OUTBOUND_SENDS.labels(reply.platform, reply.kind, "sent").inc()
        if reply.event_received_at:
            metrics.EVENT_TO_REPLY.labels(reply.platform, reply.source).observe(
                max(0.0, time.time() - reply.event_received_at)
            )
        log_.info("reply_sent", platform_id=result.platform_id, kind=reply.kind, tries=tries)

    async def _swap_intent(self, reply_id: str, seen: bytes | str, new: str) -> str:
        """Write (``new``) or clear (``""``) the reply's send intent if it is still
        ``seen``; returns ``new``. Raises _TakenOver when the reply was sent meanwhile or
        its intent changed: another sender took the entry over while this one stalled
        past the visibility timeout (the lease renewal only reports that), and a post
        from here would be a second reply where the platform has no idempotency key."""
        found = await self.redis.eval(
            _INTENT_LUA, 2, self.keys.sending(reply_id), self.keys.sent(reply_id),
            seen, new, SENT_TTL_S,
        )  # fmt: skip
        if as_str(found) != "ok":
            raise _TakenOver(as_str(found))
        return new

    def _unsure_note(self, reply: OutboundReply, unsure_since: float | None) -> str:
        """For a dead letter: an earlier try of this reply may have been posted."""
        if unsure_since is None:
            return ""
        return (
            f" (an earlier try {self.clock() - unsure_since:.0f}s ago may have posted it: "
            f"check the {reply.platform} account before replaying)"
        )

    async def _unknown(
        self,
        msg_id: str,
        fields: dict[str, str],
        reply: OutboundReply,
        attempts: int,
        why: str,
        log_: Any,
        **detail: Any,
    ) -> None:
        """Dead-letter a reply that may already be posted and cannot be resent safely;
        ``why`` says what left its outcome unknown."""
        await self._dead(
            msg_id,
            fields,
            f"delivery unknown: {why}; not resent to avoid a second reply. Check the "
            f"{reply.platform} account for this reply before replaying it.",
            attempts,
            reply,
            "unknown",
        )
        metrics.OUTBOUND_SENDS.labels(reply.platform, reply.kind, "unknown").inc()
        log_.error("reply_delivery_unknown", **detail)

    def _unsure_for(self, since: float) -> tuple[str, dict[str, Any]]:
        """``_unknown``'s why and log detail for a try of ``since`` whose answer was lost."""
        age = self.clock() - since
        return (
            f"a call to the platform may have posted this reply {age:.0f}s ago without its "
            "answer being recorded",
            {"unsure_for_s": round(age)},
        )

    async def _record_sent(self, msg_id: str, reply: OutboundReply, done: dict[str, Any]) -> None:
        tx = self.redis.pipeline(transaction=True)
        tx.set(self.keys.sent(reply.reply_id), json.dumps(done, ensure_ascii=False), ex=SENT_TTL_S)
        tx.delete(self.keys.sending(reply.reply_id))
        tx.xack(self.stream, self.group, msg_id)
        tx.delete(self.keys.attempts(msg_id))
        if reply.ticket_id:
            # The console shows a ticket reply as sent from this record: tell it now.
            data = {"ticket_id": reply.ticket_id, "reply_id": reply.reply_id, "state": "sent"}
            tx.xadd(
                self.keys.events,
                {"type": "ticket.delivery", "data": json.dumps({**data, "at": done["sent_at"]})},
                maxlen=EVENTS_MAXLEN,
                approximate=True,
            )
        await tx.execute()

    async def _until_written(self, write: Callable[[], Awaitable[Any]], log_: Any) -> None:
        """Retry ``write`` through a Redis outage longer than the client's own retries
        (a restart, a failover); only stopping ends it (_Stopping). For the record of a
        send the platform confirmed: given up, the entry would stay pending with its
        intent and the reclaim would report a posted reply as "delivery unknown"."""
        tries = 0
        while True:
            try:
                await write()
                return
            except RETRYABLE_ERRORS as e:
                tries += 1
                log_.warning("reply_record_retry", tries=tries, error=type(e).__name__)
                # Short: each try already spent the client's retries, and the sooner the
                # write lands once Redis is back, the less chance a reclaim comes first.
                await self._pause(min(1.0, self._backoff(tries)))

    async def _network_retry(
        self,
        msg_id: str,
        fields: dict[str, str],
        reply: OutboundReply,
        out: OutboundReply,
        reservation: windows.Reservation,
        attempts: int,
        tries: int,
        e: Exception,
        log_: Any,
        note: str = "",
    ) -> bool:
        """Back off after a network error; False (and dead-lettered) when out of tries."""
        metrics.OUTBOUND_ERRORS.labels(reply.platform, "network").inc()
        if tries >= self.cfg.max_attempts:
            await windows.release(self.redis, self.keys, out, reservation)
            error = f"{type(e).__name__}: {_redacted(e)}{note}"
            await self._dead(msg_id, fields, error, attempts, reply)
            metrics.OUTBOUND_SENDS.labels(reply.platform, reply.kind, "dead").inc()
            log_.warning("reply_dead_lettered", error=type(e).__name__, tries=tries)
            return False
        await self._retry_wait(reply, tries, None, log_, error=type(e).__name__)
        return True

    def _backoff(self, tries: int) -> float:
        """Exponential with jitter: uniformly in [d/2, d], d = base * 2^(tries-1), capped."""
        d = min(self.backoff_max_s, self.backoff_base_s * (2 ** (tries - 1)))
        return d / 2 + random.random() * d / 2

    async def _retry_wait(
        self, reply: OutboundReply, tries: int, retry_after: float | None, log_: Any, **info: Any
    ) -> None:
        delay = self._backoff(tries)
        if retry_after is not None:
            delay = max(delay, retry_after)
        metrics.OUTBOUND_RETRIES.labels(reply.platform).inc()
        log_.warning("reply_send_retry", tries=tries, delay_s=round(delay, 3), **info)
        await self._pause(delay)

    async def _undeliverable(
        self, msg_id: str, fields: dict[str, str], reply: OutboundReply, reason: str, attempts: int
    ) -> None:
        metrics.OUTBOUND_SENDS.labels(reply.platform, reply.kind, "undeliverable").inc()
        if self.on_undeliverable is None:
            await self._dead(msg_id, fields, reason, attempts, reply, "window_closed")
            return
        await self.on_undeliverable(reply, reason)  # raises → stays pending, retried
        await self._ack(msg_id)

    async def _ack(self, msg_id: str) -> None:
        tx = self.redis.pipeline(transaction=True)
        tx.xack(self.stream, self.group, msg_id)
        tx.delete(self.keys.attempts(msg_id))
        await tx.execute()

    async def _dead(
        self,
        msg_id: str,
        fields: dict[str, str],
        error: str,
        attempts: int,
        reply: OutboundReply | None = None,
        outcome: str = "failed",
    ) -> None:
        if reply is not None and self.on_dead is not None:
            # First: if it raises, the entry stays pending and all this runs again.
            await self.on_dead(reply, error, outcome)
        await move_to_dead(
            self.redis,
            self.keys,
            source="outbox",
            stream=self.stream,
            group=self.group,
            msg_id=msg_id,
            fields=fields,
            error=error,
            attempts=attempts,
        )


# aiohttp errors raised before any of the request was written: no connection (refused,
# DNS, TLS, proxy), a connect or connection-pool timeout (ConnectionTimeoutError; a read
# timeout is SocketTimeoutError), a TLS fingerprint mismatch, an unusable URL.
_NOT_SENT = (
    aiohttp.ClientConnectorError,
    aiohttp.ConnectionTimeoutError,
    aiohttp.ServerFingerprintMismatch,
    aiohttp.InvalidURL,
    aiohttp.NonHttpUrlClientError,
)


def _never_sent(e: BaseException) -> bool:
    """The platform certainly did not get the request (safe to send again)."""
    # The redirect variants of the URL errors come from the platform's answer.
    return isinstance(e, _NOT_SENT) and not isinstance(e, aiohttp.RedirectClientError)


# A URL's query: where Weibo's access_token travels (platforms.md §2.5).
_URL_QUERY = re.compile(r"(\bhttps?://[^\s?#]*)\?[^\s#]*")


def _redacted(e: BaseException) -> str:
    """An exception's message without URL queries: aiohttp names the request's whole URL
    in some errors (a connect timeout), and this text goes to the dead stream."""
    return _URL_QUERY.sub(r"\1?…", str(e))


def _status_class(status: int | None) -> str:
    if status is None:
        return "network"
    if status == 429:
        return "429"
    return f"{status // 100}xx"


def _with_text(reply: OutboundReply, text: str) -> OutboundReply:
    if text == reply.text:
        return reply
    d = json.loads(reply.to_json())
    d["text"] = text
    return OutboundReply(**d)
