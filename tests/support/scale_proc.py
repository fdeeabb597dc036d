"""``python -m tests.support.scale_proc [replydesk args]``: the real ``replydesk`` CLI
(``serve --role worker`` and all) with a deterministic echo pipeline, for scale-out tests
of the transport: each event gets exactly one reply ``echo <event id>``.

``SCALE_DELAY_S`` (default 0.1) keeps each event in flight a while, so a SIGKILL lands
mid-event. The pipeline counts its runs per event in ``test:handled``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from aiohttp import web

import bot.app
from bot import cli
from bot import keys as K
from bot.models import InboundEvent, OutboundReply
from bot.outbox import enqueue_reply
from bot.pipeline import Outcome

DELAY_S = float(os.environ.get("SCALE_DELAY_S", "0.1"))


class EchoPipeline:
    ready = True

    def __init__(self, app: web.Application) -> None:
        self.app = app

    async def handle(self, event: InboundEvent) -> Outcome:
        redis, keys = self.app[K.REDIS], self.app[K.KEYS]
        await redis.hincrby(keys.ns("test", "handled"), event.key, 1)
        await asyncio.sleep(DELAY_S)
        reply = OutboundReply.answering(event, f"echo {event.event_id}")
        await enqueue_reply(redis, keys, reply)
        return Outcome(decision="answer", reply_ids=[reply.reply_id])


_build_app = bot.app.build_app


def build_app(settings, *, role="all", pipeline_factory=None):  # type: ignore[no-untyped-def]
    return _build_app(settings, role=role, pipeline_factory=pipeline_factory or EchoPipeline)


def _dump_tasks(signum: int, frame: object) -> None:
    """SIGUSR1: print every asyncio task's stack (for a process that will not stop)."""
    for task in asyncio.all_tasks():
        print(f"--- {task.get_name()}", file=sys.stderr)
        task.print_stack(file=sys.stderr)
    sys.stderr.flush()


if __name__ == "__main__":
    signal.signal(signal.SIGUSR1, _dump_tasks)
    bot.app.build_app = build_app  # cli's serve imports it at call time
    sys.exit(cli.main(sys.argv[1:]))
