"""Small talk: greetings, thanks, goodbyes and praise get a friendly line."""

from __future__ import annotations

from handlers.decisions import Answer
from handlers.responses import Say
from handlers.router import Router

router = Router("greetings")

# The intents this router answers: chat, not a support question.
SMALL_TALK = frozenset({"greet", "thanks", "goodbye", "praise"})


@router.intent("greet")
def greet(say: Say) -> Answer:
    return Answer(say("greet"))


@router.intent("thanks")
def thanks(say: Say) -> Answer:
    return Answer(say("thanks"))


@router.intent("goodbye")
def goodbye(say: Say) -> Answer:
    return Answer(say("goodbye"))


@router.intent("praise")
def praise(say: Say) -> Answer:
    return Answer(say("praise"))
