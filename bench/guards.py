"""The answer guard per kind of canned answer: FAQ phrasings against small talk.

    .venv/bin/python -m bench.guards

Trains the engine on nlu_data/ with the shipped artifact's encoder (var/nlu, trained
first if missing), catches the negativity folds' held-out scores that training hands
to ``engine.choose_answer_guard``, and prints, per candidate guard, the share of
negative examples at or over it, of FAQ phrasings and of small-talk examples (greet,
thanks, goodbye, praise) at or over it, and the guard the same rule picks for each.
It answers whether small talk deserves a guard of its own (docs/benchmarks.md, session
28). No timing.
"""

from __future__ import annotations

import sys
from typing import Any
from unittest import mock

import numpy as np

from bot.config import load_settings
from bot.nlu import engine
from bot.nlu.artifact import artifact_dir, load_or_train
from bot.nlu.data import default_data_dir, load_training_data
from bot.nlu.features import strip_reply_prefix
from handlers.greetings import SMALL_TALK


def main() -> int:
    settings = load_settings(None)
    art = artifact_dir(settings.redis.data_dir)
    loaded = load_or_train(default_data_dir(), art, settings.nlu.encoder, settings.nlu.runtime)
    td = load_training_data(default_data_dir())
    seen: dict[str, Any] = {}
    texts: list[str] = []

    def keep_texts(t: engine.TrainingData) -> tuple[list[str], list[int]]:
        out = negativity_examples(t)
        texts.extend(out[0])
        return out

    def keep_scores(p: np.ndarray, y: np.ndarray, phrasing: np.ndarray) -> Any:
        seen.update(p=p, y=y, faq=phrasing)
        return choose(p, y, phrasing)

    negativity_examples, choose = engine.negativity_examples, engine.choose_answer_guard
    with (
        mock.patch.object(engine, "negativity_examples", keep_texts),
        mock.patch.object(engine, "choose_answer_guard", keep_scores),
    ):
        engine.train_engine(td, loaded.encoder)
    p, y, faq = seen["p"], seen["y"], seen["faq"]
    intent_of = {strip_reply_prefix(t): i for t, i in td.examples}
    chat = np.array([intent_of.get(t) in SMALL_TALK for t in texts]) & (y == 0)
    print(
        f"negative examples {int((y == 1).sum())}, FAQ phrasings {int(faq.sum())}, "
        f"small talk {int(chat.sum())}"
    )
    print("guard  negatives>=  FAQ>=  small talk>=")
    for g in engine.GUARDS:
        print(
            f"{g:5.2f}  {np.mean(p[y == 1] >= g):10.3f}  {np.mean(p[faq & (y == 0)] >= g):5.3f}"
            f"  {np.mean(p[chat] >= g):12.3f}"
        )
    print("picked for FAQ answers:", choose(p, y, faq))
    print("picked for small talk:", choose(p, y, chat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
