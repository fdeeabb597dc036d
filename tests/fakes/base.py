"""Shared parts of the fake platform APIs: recording, scripted failures, latency."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Call:
    at: float
    method: str
    path: str
    headers: dict[str, str]
    query: dict[str, str]
    body: bytes
    json: Any = None


@dataclass
class Scripted:
    """An answer to give instead of the normal one."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    # True: do the real work (record the post), then hang without answering, so the
    # client's outcome is unknown (crash / timeout between send and answer).
    hang_after_record: bool = False
    # True: record the post, then drop the connection without a response.
    drop_after_record: bool = False


class FakePlatform:
    """Base for the fakes: a record of every request and a queue of scripted answers."""

    def __init__(self, *, latency_s: float = 0.0) -> None:
        self.latency_s = latency_s
        self.calls: list[Call] = []
        self.script: deque[Scripted] = deque()
        self.app = web.Application()
        self.hanging = asyncio.Event()  # set when a request hangs (tests wait on it)

    def fail_next(
        self,
        status: int,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        for _ in range(times):
            self.script.append(Scripted(status, body, headers or {}))

    def hang_next(self) -> None:
        self.script.append(Scripted(0, hang_after_record=True))

    def drop_next(self) -> None:
        self.script.append(Scripted(0, drop_after_record=True))

    async def record(self, request: web.Request) -> Call:
        body = await request.read()
        try:
            parsed = (
                json.loads(body) if body and request.content_type == "application/json" else None
            )
        except json.JSONDecodeError:
            parsed = None
        call = Call(
            at=time.monotonic(),
            method=request.method,
            path=request.path,
            headers=dict(request.headers),
            query=dict(request.query),
            body=body,
            json=parsed,
        )
        self.calls.append(call)
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        return call

    def scripted(self) -> Scripted | None:
        return self.script.popleft() if self.script else None

    async def after_record(self, s: Scripted | None, request: web.Request) -> None:
        """Apply the hang/drop behaviours once the post has been recorded."""
        if s is None:
            return
        if s.hang_after_record:
            self.hanging.set()
            await asyncio.sleep(3600)
        if s.drop_after_record and request.transport is not None:
            request.transport.close()
            raise asyncio.CancelledError

    def calls_to(self, suffix: str) -> list[Call]:
        return [c for c in self.calls if c.path.endswith(suffix) and c.method == "POST"]


def error_response(s: Scripted) -> web.Response:
    body = s.body if s.body is not None else {"error": f"scripted {s.status}"}
    return web.json_response(body, status=s.status, headers=s.headers)


def max_in_window(times: list[float], window_s: float) -> int:
    """The most events in any window of ``window_s`` seconds (sliding)."""
    best, j = 0, 0
    ts = sorted(times)
    for i, t in enumerate(ts):
        while ts[j] <= t - window_s:
            j += 1
        best = max(best, i - j + 1)
    return best
