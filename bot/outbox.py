"""The outbox: the only way a reply reaches a platform.

The pipeline and the agent API call :func:`enqueue_reply`; the :class:`Sender` consumes
the ``outbox`` stream and delivers through the account's adapter. Both ends are
idempotent by ``reply_id``: enqueueing twice adds one entry, and a reply whose send was
recorded is never sent again, even when the sender died before acknowledging it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

import aiohttp
import structlog

from bot import metrics
from bot.config import WorkerConfig
from bot.consumer import StreamConsumer
from bot.models import OutboundReply
from bot.platforms.base import PlatformAdapter, SendError
from bot.redis import Keys, Redis
from bot.streams import consumer_name, count_attempt, move_to_dead, note_failure

log = structlog.get_logger(__name__)

# KEYS: enqueued marker, outbox stream. ARGV: ttl, reply json. Returns the id or 0.
_ENQUEUE_LUA = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[1])) then
  return redis.call('XADD', KEYS[2], '*', 'reply', ARGV[2])
end
return 0
"""

SENT_TTL_S = 30 * 24 * 3600


async def enqueue_reply(redis: Redis, keys: Keys, reply: OutboundReply) -> bool:
    """Queue ``reply`` for delivery; False if this reply_id was queued before."""
    res = await redis.eval(
        _ENQUEUE_LUA, 2, keys.enqueued(reply.reply_id), keys.outbox, SENT_TTL_S, reply.to_json()
    )
    return res != 0


async def sent_record(redis: Redis, keys: Keys, reply_id: str) -> dict[str, str] | None:
    raw = await redis.get(keys.sent(reply_id))
    return json.loads(raw) if raw else None


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
    ) -> None:
        super().__init__(
            redis,
            stream=keys.outbox,
            group=keys.SENDERS,
            consumer=consumer or consumer_name("sender"),
            concurrency=cfg.concurrency,
            visibility_timeout_s=cfg.visibility_timeout_s,
            block_ms=cfg.block_ms,
            claim_interval_s=cfg.claim_interval_s,
        )
        self.keys = keys
        self.cfg = cfg
        self.adapters = adapters  # by account id
        self.http = http

    async def handle_entry(self, msg_id: str, fields: dict[str, str]) -> None:
        attempts = await count_attempt(self.redis, self.keys, msg_id)
        try:
            reply = OutboundReply.from_json(fields["reply"])
        except Exception:
            await self._dead(msg_id, fields, "unparsable reply", attempts)
            return
        log_ = log.bind(reply_id=reply.reply_id, platform=reply.platform, account=reply.account)
        if await sent_record(self.redis, self.keys, reply.reply_id) is not None:
            await self._ack(msg_id)
            log_.info("reply_already_sent")
            return
        adapter = self.adapters.get(reply.account)
        if adapter is None:
            await self._dead(msg_id, fields, f"no account {reply.account!r} configured", attempts)
            return
        text = adapter.fit(reply.text, reply.kind)
        try:
            result = await adapter.send(self.http, _with_text(reply, text))
        except SendError as e:
            await note_failure(self.redis, self.keys, msg_id, str(e))
            if e.permanent or attempts >= self.cfg.max_attempts:
                await self._dead(msg_id, fields, str(e), attempts)
                log_.warning("reply_dead_lettered", status=e.status)
            else:
                log_.warning("reply_send_failed", status=e.status, attempt=attempts)
            return
        except (aiohttp.ClientError, TimeoutError) as e:
            await note_failure(self.redis, self.keys, msg_id, f"{type(e).__name__}: {e}")
            if attempts >= self.cfg.max_attempts:
                await self._dead(msg_id, fields, type(e).__name__, attempts)
            log_.warning("reply_send_failed", error=type(e).__name__, attempt=attempts)
            return
        record = {"platform_id": result.platform_id, "sent_at": time.time(), "text": text}
        tx = self.redis.pipeline(transaction=True)
        tx.set(
            self.keys.sent(reply.reply_id), json.dumps(record, ensure_ascii=False), ex=SENT_TTL_S
        )
        tx.xack(self.stream, self.group, msg_id)
        tx.delete(self.keys.attempts(msg_id))
        await tx.execute()
        if reply.event_received_at:
            metrics.EVENT_TO_REPLY.labels(reply.platform, reply.source).observe(
                max(0.0, time.time() - reply.event_received_at)
            )
        log_.info("reply_sent", platform_id=result.platform_id, kind=reply.kind)

    async def _ack(self, msg_id: str) -> None:
        tx = self.redis.pipeline(transaction=True)
        tx.xack(self.stream, self.group, msg_id)
        tx.delete(self.keys.attempts(msg_id))
        await tx.execute()

    async def _dead(self, msg_id: str, fields: dict[str, str], error: str, attempts: int) -> None:
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


def _with_text(reply: OutboundReply, text: str) -> OutboundReply:
    if text == reply.text:
        return reply
    d = json.loads(reply.to_json())
    d["text"] = text
    return OutboundReply(**d)
