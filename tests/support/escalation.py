"""Helpers for escalation tests: a settable clock, inbound events, agents."""

from __future__ import annotations

import itertools
from typing import Any

from bot.models import Author, InboundEvent

_ids = itertools.count(1)
T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC, a Thursday


class FakeClock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def event(
    text: str = "my order is late and nobody answers",
    *,
    kind: str = "dm",
    user: str = "42",
    handle: str = "alice",
    account: str = "acme",
    platform: str = "generic",
    followers: int = 10,
    verified: bool = False,
    at: float | None = None,
    event_id: str | None = None,
    **kw: Any,
) -> InboundEvent:
    eid = event_id or f"e{next(_ids)}"
    return InboundEvent(
        platform=platform,
        account=account,
        kind=kind,  # type: ignore[arg-type]
        event_id=eid,
        author=Author(id=user, handle=handle, followers=followers, verified=verified),
        text=text,
        conversation_id=kw.pop("conversation_id", f"thread-{user}"),
        reply_to_id=kw.pop("reply_to_id", eid if kind == "mention" else None),
        created_at=at if at is not None else T0,
        received_at=at if at is not None else T0,
        **kw,
    )
