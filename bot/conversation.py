"""Conversation context in Redis: recent turns and the unclear-turn count per customer.

One JSON value per (platform, account, user) at ``keys.conv(...)``, expiring after
``dialog.conversation_idle_s`` of silence. Who owns the conversation is not stored here:
a human owns it exactly while the escalation store maps it to an open ticket, so
resolving a ticket hands it back without touching this record.

Updates are keyed by the inbound event: re-running an event after a crash changes
nothing (its key is among the recent ones).

A customer's events are decided one at a time (``ConversationStore.turn``): a worker
runs many events at once and several workers share the stream, and two messages decided
on the same state would both get a clarifying question, or an FAQ answer would go out
beside the ticket the other one opened. The lease is renewed while its event runs, so a
slow Rasa or order lookup cannot outlast it, and lapses on its own when a worker dies.
Under it, the brain first decides the customer's earlier messages still waiting in the
stream, so they are decided in stream order (``bot.brain.Brain._catch_up``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any

import structlog
from redis.exceptions import RedisError, WatchError

from bot.config import TURN_LEASE_S
from bot.redis import Keys, Redis, release_lock, renew_lock
from bot.storage_down import OutageLog, round_failed

RECENT_EVENTS = 50
# Turns copied onto a ticket as its context (what was said before it, or while it was
# resolved): enough for an order number or the answer that did not help, not a history.
CONTEXT_TURNS = 10

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class Turn:
    at: float  # when it was said (a customer's post: the platform's time)
    who: str  # customer | bot
    text: str
    kind: str = "dm"
    intent: str | None = None
    # When the bot recorded it, if later than ``at``: a post written before a ticket was
    # resolved but handled after it belongs to the conversation since then.
    seen: float = 0.0


@dataclass(slots=True)
class Conversation:
    platform: str
    account: str
    user: str
    turns: list[Turn] = field(default_factory=list)
    unclear: int = 0
    ticket_id: str | None = None  # the open ticket, when a human owns it
    events: list[str] = field(default_factory=list)

    @property
    def owner(self) -> str:
        return "human" if self.ticket_id else "bot"

    @property
    def key_parts(self) -> tuple[str, str, str]:
        return self.platform, self.account, self.user

    def context(self, *, since: float, limit: int = CONTEXT_TURNS) -> list[dict[str, Any]]:
        """The last ``limit`` turns said or recorded after ``since``, as a ticket keeps
        them (``at``, ``from``: customer | bot, ``kind``: dm | mention, ``text``) for the
        agent who picks the conversation up (escalation.tickets)."""
        recent = [t for t in self.turns if max(t.at, t.seen) > since][-limit:]
        return [{"at": t.at, "from": t.who, "kind": t.kind, "text": t.text} for t in recent]

    def to_json(self) -> str:
        d = asdict(self)
        d.pop("ticket_id")
        return json.dumps(d, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Conversation:
        d: dict[str, Any] = json.loads(raw)
        d["turns"] = [Turn(**t) for t in d.get("turns", [])]
        return cls(**d)


class ConversationStore:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        idle_s: int,
        max_turns: int = 20,
        lease_s: float = TURN_LEASE_S,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.idle_s = idle_s
        self.max_turns = max_turns
        self.lease_s = lease_s
        # Every event in flight renews its lease: a Redis outage is one line for all.
        self.outage = OutageLog("conversation_leases")

    @contextlib.asynccontextmanager
    async def turn(self, platform: str, account: str, user: str) -> AsyncIterator[None]:
        """Hold the customer's conversation while one event is decided and applied."""
        key = self.keys.lock(f"conv:{platform}:{account}:{user}")
        token = secrets.token_hex(8)
        ttl_ms = int(self.lease_s * 1000)
        delay = 0.005
        while not await self.redis.set(key, token, nx=True, px=ttl_ms):
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
        keeper = asyncio.create_task(self._keep(key, token, ttl_ms), name="turn-lease")
        try:
            yield
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            # Not ours to free once it has lapsed; if Redis is gone it lapses by itself.
            with contextlib.suppress(RedisError):
                await release_lock(self.redis, key, token)

    async def _keep(self, key: str, token: str, ttl_ms: int) -> None:
        """Renew the lease every third of it until cancelled. A failed renewal is tried
        again at the next tick (two more before it lapses); Redis away is logged once per
        outage (bot/storage_down.py), not every tick of every event in flight. A lease
        found gone was lost to a stall longer than the lease, and is logged once: the
        event goes on, and its writes stay idempotent per event."""
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                if not await renew_lock(self.redis, key, token, ttl_ms):
                    log.warning("conversation_lease_lost", lock=key)
                    return
                self.outage.ok()
            except RedisError as e:
                round_failed(self.outage, "conversation_lease_renew_failed", e)

    async def load(self, platform: str, account: str, user: str) -> Conversation:
        raw = await self.redis.get(self.keys.conv(platform, account, user))
        if raw is None:
            return Conversation(platform, account, user)
        return Conversation.from_json(raw)

    async def record(
        self,
        platform: str,
        account: str,
        user: str,
        *,
        event_key: str,
        turns: list[Turn],
        unclear: int | None = None,
    ) -> bool:
        """Append ``turns`` and set the unclear count, once per event; False if done before."""
        key = self.keys.conv(platform, account, user)
        for _ in range(100):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    conv = (
                        Conversation.from_json(raw)
                        if raw
                        else Conversation(platform, account, user)
                    )
                    if event_key in conv.events:
                        await pipe.unwatch()
                        return False
                    conv.turns = (conv.turns + turns)[-self.max_turns :]
                    conv.events = [*conv.events, event_key][-RECENT_EVENTS:]
                    if unclear is not None:
                        conv.unclear = unclear
                    pipe.multi()
                    pipe.set(key, conv.to_json(), ex=self.idle_s)
                    await pipe.execute()
                    return True
                except WatchError:
                    continue
        raise RuntimeError("conversation record kept changing")
