"""The seam between the stream worker and the bot's brain.

A worker hands each inbound event to a :class:`Pipeline` and stores the returned
:class:`Outcome` before acknowledging the event. The real pipeline (NLU, handlers,
escalation) plugs in here; :class:`PassThroughPipeline` records events and decides
nothing, for deployments that only ingest and for tests of the transport.

Pipelines must be idempotent per event: a worker that dies after ``handle`` but
before the outcome is stored makes another worker call ``handle`` again for the same
event. Effects are therefore keyed by the event (replies by ``OutboundReply.reply_id``,
ticket messages by event key) so a second run changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from bot.models import InboundEvent


@dataclass(slots=True)
class Outcome:
    decision: str  # answer | escalate | ignore | append | state | recorded
    reasons: dict[str, Any] = field(default_factory=dict)
    reply_ids: list[str] = field(default_factory=list)
    ticket_id: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, data: str | bytes) -> Outcome:
        return cls(**json.loads(data))


class Pipeline(Protocol):
    @property
    def ready(self) -> bool: ...

    async def handle(self, event: InboundEvent) -> Outcome: ...


class PassThroughPipeline:
    """Stores nothing but the outcome: every event is 'recorded'."""

    ready = True

    async def handle(self, event: InboundEvent) -> Outcome:
        return Outcome(decision="recorded", reasons={"rule": "pass-through"})
