"""Bounded waits for work other tasks or processes do (workers, senders, streams)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any


async def until(pred: Callable[[], Any], within_s: float = 15.0, what: str = "condition") -> Any:
    """Poll ``pred`` (sync, or returning an awaitable) until truthy and return its value;
    an AssertionError naming ``what`` once ``within_s`` has passed."""
    deadline = time.monotonic() + within_s
    while True:
        value = pred()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)
