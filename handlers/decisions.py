"""What the bot decides for one customer message, and why.

Every decision carries ``reasons``: the rule that fired and the NLU evidence behind it
(intent, confidence, FAQ id and score, negativity), for logs, metrics and the agents
who pick up a ticket.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from bot.nlu.types import NluResult


def nlu_reasons(nlu: NluResult | None) -> dict[str, Any]:
    if nlu is None:
        return {}
    top = nlu.top_faq
    return {
        "intent": nlu.intent,
        "confidence": round(nlu.confidence, 4),
        "faq_id": top.faq_id if top else None,
        "faq_score": round(top.score, 4) if top else None,
        "negativity": round(nlu.negativity, 4),
        "negative": nlu.is_negative,
        "calm": nlu.calm,
        "language": nlu.language,
    }


class _Serialisable:
    """``to_dict``: the decision's kind, then its fields in declaration order."""

    __slots__ = ()
    kind: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}  # type: ignore[call-overload]  # subclasses are dataclasses


@dataclass(slots=True)
class Answer(_Serialisable):
    """Reply to the customer with ``text`` (in the message's channel)."""

    text: str
    reasons: dict[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "answer"


@dataclass(slots=True)
class Escalate(_Serialisable):
    """Open (or join) the conversation's ticket; ``ack`` is an optional short reply."""

    reason: str
    priority: str = "normal"
    ack: str | None = None
    reasons: dict[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "escalate"


@dataclass(slots=True)
class Ignore(_Serialisable):
    """Say nothing and open nothing (spam, lottery hunting)."""

    reason: str
    reasons: dict[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "ignore"


Decision = Answer | Escalate | Ignore


def decision_from_dict(d: dict[str, Any]) -> Decision:
    kind = d.get("kind")
    if kind == "answer":
        return Answer(d["text"], d.get("reasons", {}))
    if kind == "escalate":
        return Escalate(
            d["reason"], d.get("priority", "normal"), d.get("ack"), d.get("reasons", {})
        )
    if kind == "ignore":
        return Ignore(d["reason"], d.get("reasons", {}))
    raise ValueError(f"unknown decision kind {kind!r}")
