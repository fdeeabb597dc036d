"""FAQ answers: the NLU's best FAQ hit, when it clears the FAQ threshold.

A canned answer needs a calm post too; the policy checks that for every answer
(handlers/policy.py), so an angry "Where is my money??" that matches a FAQ goes to a
person instead of getting the FAQ text.
"""

from __future__ import annotations

from bot.nlu.types import NluResult
from handlers.decisions import Answer
from handlers.responses import Say
from handlers.router import Router

router = Router("faq")


@router.intent()
def faq(nlu: NluResult, say: Say) -> Answer | None:
    top = nlu.top_faq
    if not nlu.faq_answerable or top is None or not top.answer.strip():
        return None
    # Public answers start with the customer's @handle, like every template.
    return Answer(
        say.addressed(top.answer.strip()), {"faq_id": top.faq_id, "faq_score": round(top.score, 4)}
    )
