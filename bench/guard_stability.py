"""How much the answer guard, and the decisions it drives, move with small data edits.

    .venv/bin/python -m bench.guard_stability               # 5 seeds, 5 % of lines dropped
    .venv/bin/python -m bench.guard_stability --seeds 0 1 2 --drop 0.05 --json out.json

Each seed copies nlu_data/ to a temporary folder without a random share of the example
lines of nlu/*.yml and sentiment.yml (faq.yml stays whole: a changed bank retunes the
encoder, 35 s a run, and moves every FAQ score), retrains from a copy of the full data's
artifact (no text is encoded again: about 5 s), and runs bench.decisions over the
held-out sets, never the blind ones. It prints per run the guard and the decisions it
moves, then their median and spread (max - min) over the perturbed runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.decisions import HELD_OUT, ROOT, tally
from bot.config import NluConfig
from bot.nlu.artifact import load_or_train, train
from bot.nlu.service import NluService

DATA = ROOT / "nlu_data"
SETS = [p for p in HELD_OUT if not p.name.startswith("blind_")]
EXAMPLE = re.compile(r"^ {4}- ")  # a line of an `examples: |` block


def perturb(src: Path, dst: Path, drop: float, seed: int) -> int:
    """``src`` copied to ``dst`` without a ``drop`` share of its example lines (not the
    FAQ bank's); returns how many were dropped."""
    shutil.copytree(src, dst)
    rng = random.Random(seed)
    gone = 0
    for path in [*sorted((dst / "nlu").glob("*.yml")), dst / "sentiment.yml"]:
        keep = []
        for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
            if EXAMPLE.match(line) and rng.random() < drop:
                gone += 1
                continue
            keep.append(line)
        path.write_text("".join(keep), encoding="utf-8")
    return gone


def figures(counts: dict[str, dict[str, dict[str, int]]]) -> dict[str, int]:
    """The decisions the guard moves, summed over the held-out sets."""

    def canned(c: dict[str, int]) -> int:
        return sum(v for k, v in c.items() if k == "faq" or k.startswith("answer:"))

    faq = counts["faq_heldout.yml"]
    negative = [counts[s]["negative"] for s in ("negativity_heldout.yml", "tone_heldout.yml")]
    neutral = [counts[s]["neutral"] for s in ("negativity_heldout.yml", "tone_heldout.yml")]
    return {
        "faq_answered": faq["faq"].get("faq", 0),  # of 205 FAQ questions
        "faq_held_by_guard": faq["faq"].get("escalate:answer_tone", 0),
        "negative_canned": sum(canned(c) for c in negative),  # of 150 negative posts
        "complaint_canned": canned(counts["nlu_heldout.yml"]["complaint"]),  # of 15
        "neutral_canned": sum(canned(c) for c in neutral),  # of 103 neutral posts
    }


async def run(seed: int | None, drop: float, base: Path, work: Path) -> dict[str, Any]:
    data = DATA
    if seed is not None:
        data = work / f"data{seed}"
        perturb(DATA, data, drop, seed)
    art = work / f"var{seed}" / "nlu"
    shutil.copytree(base, art)  # reused export, tuning and vectors: only the fit runs
    cfg = NluConfig()
    loaded = await asyncio.to_thread(train, data, art, cfg.encoder, cfg.runtime)
    svc = NluService(NluConfig(train_on_start=False), str(art.parent), str(data), preloaded=loaded)
    counts = await tally(SETS, svc, by_intent=True)
    shutil.rmtree(art.parent)
    return {"seed": seed, "guard": loaded.engine.answer_guard, **figures(counts)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="*", default=list(range(5)))
    ap.add_argument("--drop", type=float, default=0.05, help="share of example lines dropped")
    ap.add_argument("--json", type=Path, help="also write the runs to this file")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="guard-stability-") as tmp:
        work = Path(tmp)
        cfg = NluConfig()
        base = work / "base" / "nlu"
        if (ROOT / "var" / "nlu").is_dir():  # a start for the encoder export and tuning
            shutil.copytree(ROOT / "var" / "nlu", base)
        load_or_train(DATA, base, cfg.encoder, cfg.runtime)  # the full data's artifact
        runs = []
        for seed in [None, *args.seeds]:
            r = asyncio.run(run(seed, args.drop, base, work))
            print(json.dumps(r), flush=True)
            runs.append(r)
    perturbed = [r for r in runs if r["seed"] is not None]
    for key in [k for k in runs[0] if k != "seed"]:
        xs = [r[key] for r in perturbed]
        if xs:
            print(
                f"{key}: full data {runs[0][key]}; perturbed median {statistics.median(xs)}, "
                f"range {min(xs)}-{max(xs)} (spread {round(max(xs) - min(xs), 2)})"
            )
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
