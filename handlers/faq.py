"""FAQ answers: the NLU's best FAQ hit, when it clears the FAQ threshold.

A canned answer needs a calm post too (``nlu.calm``: negativity under the answer guard
chosen at training). An angry post in plain words ("Where is my money??") can score under
the negativity threshold and still match a FAQ; it goes to a person with the usual
acknowledgement instead of the FAQ text.
"""

from __future__ import annotations

from bot.config import AccountConfig
from bot.models import InboundEvent
from bot.nlu.types import NluResult
from handlers.complaints import escalate
from handlers.decisions import Answer, Escalate
from handlers.responses import Say
from handlers.router import Router

router = Router("faq")


@router.intent()
def faq(
    message: InboundEvent, nlu: NluResult, account: AccountConfig, say: Say
) -> Answer | Escalate | None:
    top = nlu.top_faq
    if not nlu.faq_answerable or top is None or not top.answer.strip():
        return None
    if not nlu.calm:
        return escalate("tone", message, nlu, account, say)
    return Answer(top.answer.strip(), {"faq_id": top.faq_id, "faq_score": round(top.score, 4)})
