"""FAQ answers: the NLU's best FAQ hit, when it clears the FAQ threshold."""

from __future__ import annotations

from bot.nlu.types import NluResult
from handlers.decisions import Answer
from handlers.router import Router

router = Router("faq")


@router.intent()
def faq(nlu: NluResult) -> Answer | None:
    top = nlu.top_faq
    if not nlu.faq_answerable or top is None or not top.answer.strip():
        return None
    return Answer(top.answer.strip(), {"faq_id": top.faq_id, "faq_score": round(top.score, 4)})
