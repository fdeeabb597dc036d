"""Plain NluResult values for handler tests, and a stub NLU service for pipeline tests."""

from __future__ import annotations

from bot.nlu.types import FaqHit, NluResult


def nlu(
    intent: str = "out_of_scope",
    confidence: float = 0.95,
    *,
    text: str = "",
    language: str = "en",
    faq: tuple[str, float, str] | None = None,
    negativity: float = 0.05,
) -> NluResult:
    hits = [FaqHit(faq[0], faq[1], "q?", faq[2])] if faq else []
    return NluResult(
        text=text,
        language=language,
        intent=intent,
        confidence=confidence,
        faq=hits,
        faq_answerable=bool(faq and faq[1] >= 0.6),
        negativity=negativity,
        is_negative=negativity >= 0.5,
        calm=negativity < 0.3,
    )


class StubNlu:
    """Keyword rules standing in for the trained model (fast tests of the transport)."""

    ready = True

    RULES = (
        (
            "refund",
            "returns_refunds",
            ("return_policy", 0.9, "Returns are free within 30 days."),
            0.1,
        ),
        ("worst", "complaint", None, 0.95),
        ("human", "human_request", None, 0.1),
        ("order", "order_status", None, 0.1),
        ("抽奖", "spam", None, 0.0),
        ("hello", "greet", None, 0.0),
        ("thanks", "thanks", None, 0.0),
    )

    def __init__(self) -> None:
        self.calls = 0

    async def parse(self, text: str, language: str | None = None) -> NluResult:
        self.calls += 1
        lang = "zh" if any("\u4e00" <= c <= "\u9fff" for c in text) else "en"
        for word, intent, faq, neg in self.RULES:
            if word in text.lower():
                return nlu(intent, text=text, language=lang, faq=faq, negativity=neg)
        return nlu("out_of_scope", 0.3, text=text, language=lang)
