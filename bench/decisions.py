"""What the bot would do with each held-out message: the decision policy over the NLU.

    .venv/bin/python -m bench.decisions                 # every tests/data/*_heldout.yml
    .venv/bin/python -m bench.decisions --json out.json tests/data/tone_heldout.yml

Each message goes through the trained artifact (var/nlu, trained first if stale) and
``handlers.policy.decide`` as a first direct message in a fresh conversation, and the
decisions are counted per gold label: answered from the FAQ, answered otherwise (praise,
thanks, a clarifying question...), escalated (by which rule), ignored. It measures what
scores alone do not: a sarcastic complaint answered with "thanks for the kind words", a
plain FAQ question sent to a person. No timing: run it after a data or model change and
compare the counts with the previous run's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from pathlib import Path

import yaml

from bot.config import AccountConfig, load_settings
from bot.conversation import Conversation
from bot.models import Author, InboundEvent
from bot.nlu.data import NO_FAQ, load_test_data
from bot.nlu.service import NluService
from handlers.decisions import Decision, Escalate, Ignore
from handlers.policy import decide
from handlers.responses import Responses

ROOT = Path(__file__).resolve().parent.parent
HELD_OUT = sorted((ROOT / "tests" / "data").glob("*_heldout.yml"))
ACCOUNT = AccountConfig(id="bench", platform="generic", handle="bench")


def outcome(d: Decision) -> str:
    """``faq``, ``answer:<rule>``, ``escalate:<rule>`` or ``ignore``."""
    if isinstance(d, Ignore):
        return "ignore"
    rule = str(d.reasons.get("rule", "?"))
    if isinstance(d, Escalate):
        return f"escalate:{rule}"
    return "faq" if rule == "faq.faq" else f"answer:{rule}"


def group(kind: str, label: str) -> str:
    """The row a message counts in: its sentiment label, FAQ question or not, or intents."""
    if kind == "sentiment":
        return label
    if kind == "faq":
        return "no_faq" if label == NO_FAQ else "faq"
    return "intents"


def post_groups(path: Path) -> dict[str, str]:
    """A Rasa NLU file's ``metadata: {group: ...}`` per example text (the blind set's
    sarcasm_complaint, small_talk, ...): its messages count by that group instead."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    blocks = data.get("nlu") if isinstance(data, dict) else None
    out: dict[str, str] = {}
    for block in blocks if isinstance(blocks, list) else []:
        examples = block.get("examples") if isinstance(block, dict) else None
        for ex in examples if isinstance(examples, list) else []:
            meta = ex.get("metadata") if isinstance(ex, dict) else None
            if isinstance(meta, dict) and meta.get("group"):
                out[str(ex.get("text", ""))] = str(meta["group"])
    return out


async def tally(
    paths: list[Path], nlu: NluService | None = None, by_intent: bool = False
) -> dict[str, dict[str, dict[str, int]]]:
    """``nlu``: a service to use (not started) instead of the configured artifact's;
    ``by_intent``: count intent-set messages per gold intent instead of together."""
    responses = Responses.load(ROOT / "nlu_data" / "responses")
    if nlu is None:
        settings = load_settings(None)
        nlu = NluService(settings.nlu, settings.redis.data_dir)
    await nlu.start()
    out: dict[str, dict[str, dict[str, int]]] = {}
    try:
        for path in paths:
            kind, rows = load_test_data(path)
            groups = post_groups(path) if kind == "intents" and path.is_file() else {}
            counts: dict[str, Counter[str]] = {}
            for n, (text, label) in enumerate(rows):
                result = await nlu.parse(text)
                say = responses.sayer(
                    language="zh" if result.language == "zh" else "en",
                    seed=str(n),
                    handle="@customer",
                    sla_promise="",
                )
                event = InboundEvent(
                    platform="generic",
                    account=ACCOUNT.id,
                    kind="dm",
                    event_id=f"b{n}",
                    author=Author(id="1", handle="customer"),
                    text=text,
                    conversation_id="t1",
                )
                d = await decide(
                    message=event,
                    nlu=result,
                    conversation=Conversation("generic", ACCOUNT.id, "1"),
                    account=ACCOUNT,
                    say=say,
                )
                row = label if by_intent and kind == "intents" else group(kind, label)
                c = counts.setdefault(groups.get(text) or row, Counter())
                c[outcome(d)] += 1
                c["n"] += 1
            out[path.name] = {g: dict(c.most_common()) for g, c in counts.items()}
    finally:
        await nlu.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="*", type=Path, help="test data (default: the held-out sets)")
    ap.add_argument("--json", type=Path, help="also write the counts to this file")
    args = ap.parse_args(argv)
    result = asyncio.run(tally(args.paths or HELD_OUT))
    for name, groups in result.items():
        print(name)
        for g, c in groups.items():
            n = c.pop("n")
            print(f"  {g} ({n}): " + ", ".join(f"{k} {v}" for k, v in c.items()))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
