"""A sender in its own process (for the SIGKILL test): ``python -m tests.fakes.sender_proc``
with REDIS_URL and X_BASE set. Runs until killed."""

from __future__ import annotations

import asyncio
import os

import aiohttp

from bot.outbox import Sender
from bot.platforms import adapter_for
from bot.redis import Keys, connect
from tests.conftest import make_settings
from tests.fakes.harness import accounts


async def main() -> None:
    settings = make_settings(os.environ["REDIS_URL"], None, accounts=accounts(os.environ["X_BASE"]))
    redis = connect(os.environ["REDIS_URL"])
    adapters = {a.id: adapter_for(a) for a in settings.accounts}
    async with aiohttp.ClientSession() as http:
        sender = Sender(
            redis, Keys("rd"), settings.worker, adapters, http, consumer="sender-doomed"
        )
        await sender.run(asyncio.Event())


if __name__ == "__main__":
    asyncio.run(main())
