"""Micro-batching: concurrent callers are served by one call of ``fn`` in a worker thread.
A batch takes what is queued (waiting up to ``wait_ms`` for more, if set); messages that
arrive while a batch runs form the next. One encoder call for 16 messages costs little
more than for one, and the event loop never blocks on the model. A batch that fails is
run again item by item, so one bad message fails only its own caller."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

from bot.metrics import NLU_BATCH_SIZE

In = TypeVar("In")
Out = TypeVar("Out")


class MicroBatcher(Generic[In, Out]):
    def __init__(
        self, fn: Callable[[list[In]], list[Out]], max_size: int = 32, wait_ms: float = 2.0
    ) -> None:
        self._fn = fn
        self._max = max(1, max_size)
        self._wait = max(0.0, wait_ms) / 1000.0
        self._queue: asyncio.Queue[tuple[In, asyncio.Future[Out]]] = asyncio.Queue()
        # One thread: batches run one after another, each using all cores itself.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nlu")
        self._task: asyncio.Task[None] | None = None
        self.batches = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="nlu-batcher")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()  # _run fails the batch it holds
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        _closed([self._queue.get_nowait() for _ in range(self._queue.qsize())])
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def submit(self, item: In) -> Out:
        if self._task is None:
            raise RuntimeError("MicroBatcher not started")
        fut: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, fut))
        return await fut

    async def _run(self) -> None:
        batch: list[tuple[In, asyncio.Future[Out]]] = []
        try:
            while True:
                batch = [await self._queue.get()]
                await self._collect(batch)
                await self._serve(batch)
                batch = []
        except asyncio.CancelledError:
            # close() while a batch was collected or in the executor: its callers would
            # wait forever.
            _closed(batch)
            raise

    async def _collect(self, batch: list[tuple[In, asyncio.Future[Out]]]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait
        while len(batch) < self._max:
            timeout = deadline - loop.time()
            if timeout <= 0:
                while len(batch) < self._max and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                return
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), timeout))
            except TimeoutError:
                return

    async def _serve(self, batch: list[tuple[In, asyncio.Future[Out]]]) -> None:
        live = [(x, f) for x, f in batch if not f.cancelled()]
        if not live:
            return
        self.batches += 1
        NLU_BATCH_SIZE.observe(len(live))
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._pool, self._fn, [x for x, _ in live])
        except Exception as e:
            if len(live) > 1:  # one bad item must not fail the others: each alone
                for item in live:
                    await self._serve([item])
            elif not live[0][1].done():
                live[0][1].set_exception(e)
            return
        for (_, f), r in zip(live, results, strict=True):
            if not f.done():
                f.set_result(r)


def _closed(batch: Sequence[tuple[Any, asyncio.Future[Any]]]) -> None:
    for _, fut in batch:
        if not fut.done():
            fut.set_exception(RuntimeError("NLU service closed"))
