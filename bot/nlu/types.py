"""Result types of language understanding, shared by the worker, handlers and the CLI."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

OUT_OF_SCOPE = "out_of_scope"


@dataclass(slots=True)
class IntentScore:
    name: str
    confidence: float


@dataclass(slots=True)
class FaqHit:
    faq_id: str
    score: float
    question: str
    # In the message's language when the FAQ has one, English otherwise.
    answer: str


@dataclass(slots=True)
class NluResult:
    text: str
    language: str  # "en" | "zh" | "other"
    # Top intent, or "out_of_scope" when its confidence is below the intent threshold.
    intent: str
    confidence: float  # P(top intent is right): bot/nlu/confidence.py, not ranking[0]'s softmax
    ranking: list[IntentScore] = field(default_factory=list)  # top 5, best first
    faq: list[FaqHit] = field(default_factory=list)  # top k, best first
    faq_answerable: bool = False  # top FAQ hit >= faq threshold
    negativity: float = 0.0  # 0..1
    is_negative: bool = False
    # Negativity under the answer guard: a canned FAQ answer may go out (handlers/faq.py).
    calm: bool = True
    backend: str = "embedded"  # "embedded" | "rasa" | "embedded-fallback"
    timing_ms: float = 0.0

    @property
    def top_faq(self) -> FaqHit | None:
        return self.faq[0] if self.faq else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
