"""A worker process for crash tests: ``python -m tests.support.worker_proc REDIS_URL [slow_s]``.

Its pipeline marks each event as started (a counter in Redis), waits ``slow_s`` seconds
(so the test can kill it mid-event), then enqueues one reply, idempotently by event.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from bot.config import WorkerConfig
from bot.models import InboundEvent, OutboundReply
from bot.outbox import enqueue_reply
from bot.pipeline import Outcome
from bot.redis import Keys, connect
from bot.worker import InboundWorker


class SlowEchoPipeline:
    ready = True

    def __init__(self, redis, keys: Keys, slow_s: float) -> None:
        self.redis, self.keys, self.slow_s = redis, keys, slow_s

    async def handle(self, event: InboundEvent) -> Outcome:
        await self.redis.hincrby(self.keys.ns("test", "started"), event.event_id, 1)
        await asyncio.sleep(self.slow_s)
        reply = OutboundReply.answering(event, f"echo: {event.text}")
        await enqueue_reply(self.redis, self.keys, reply)
        return Outcome(decision="answer", reply_ids=[reply.reply_id])


async def main(url: str, slow_s: float) -> None:
    redis = connect(url)
    keys = Keys("rd")
    cfg = WorkerConfig(
        concurrency=4, visibility_timeout_s=1.0, block_ms=100, claim_interval_s=0.2, max_attempts=5
    )
    worker = InboundWorker(redis, keys, cfg, SlowEchoPipeline(redis, keys, slow_s))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await worker.run(stop)
    await redis.aclose()
    print("drained", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 0.0))
