"""``replydesk train | parse | eval``: added to the CLI by bot/cli.py through add_commands()."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.nlu.evaluate import EvalReport


def add_commands(sub: Any) -> None:
    p = sub.add_parser("train", help="train the NLU model from nlu_data/ into <data_dir>/nlu")
    p.add_argument("--force", action="store_true", help="retrain even if the artifact is current")
    p.add_argument("--data", help="nlu_data folder (default: nlu.data_path or ./nlu_data)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("parse", help="parse one message and print the NLU result as JSON")
    p.add_argument("text")
    p.add_argument("--lang", choices=["en", "zh", "other"], help="skip language detection")
    p.set_defaults(func=cmd_parse)

    p = sub.add_parser("eval", help="evaluate intents on test data, or cross-validate nlu_data/")
    p.add_argument("--data", help="Rasa NLU YAML (file or folder) or CSV text,intent")
    p.add_argument(
        "--folds", type=_folds, default=5, help="cross-validation folds without --data (≥ 2)"
    )
    p.add_argument(
        "--errors",
        type=int,
        default=0,
        metavar="N",
        help="also list the N most confident mistakes (text, gold, predicted)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_eval)


def _folds(value: str) -> int:
    n = int(value)
    if n < 2:
        raise argparse.ArgumentTypeError("cross-validation needs at least 2 folds")
    return n


def _paths(settings: Settings, data: str | None = None) -> tuple[Path, Path]:
    from bot.nlu.artifact import artifact_dir
    from bot.nlu.service import resolve_data_dir

    return resolve_data_dir(settings.nlu, data), artifact_dir(settings.redis.data_dir)


def cmd_train(settings: Settings, args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from bot.nlu.artifact import STEPS, load_or_train, report_of
    from bot.nlu.data import data_warnings, load_training_data
    from bot.nlu.encoder import set_threads, training_threads

    nlu_data, art = _paths(settings, args.data)
    set_threads(training_threads(settings.nlu.encoder))  # a batch job: all cores
    console = Console(stderr=True)
    with Progress(
        TextColumn("[bold]train[/] {task.description:<12}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("loading", total=len(STEPS))

        def step(name: str, done: float) -> None:
            progress.update(task, completed=STEPS.index(name) + done, description=name)

        loaded = load_or_train(
            nlu_data, art, settings.nlu.encoder, settings.nlu.runtime, force=args.force, step=step
        )
        progress.update(task, completed=len(STEPS), description="done")
    r = report_of(loaded)
    if not loaded.trained:
        console.print(
            f"artifact in {art} is current (data sha256 {loaded.stamp.data_sha256[:12]}); use --force"
        )
    if r is not None:
        console.print(
            f"{r.examples} examples, {r.intents} intents, {r.faqs} FAQs, encoder {loaded.stamp.encoder_id}\n"
            f"held-out accuracy {r.held_out_accuracy:.3f}"
            + (f" ({r.held_out_folds} folds)" if r.held_out_folds else "")
            + f"; calibration ECE {r.ece_before:.3f} -> "
            f"{r.ece_after:.3f} (temperature {r.temperature:.3f})\n"
            f"out-of-scope threshold chosen on held-out data: {r.chosen_threshold:.2f} "
            f"(auto-answer precision {r.auto_answer_precision:.3f} at coverage {r.auto_answer_coverage:.3f}); "
            f"messages on intents it was not taught, still answered: {r.unseen_answered:.3f} "
            f"({r.unseen_answered_softmax:.3f} by the softmax probability)\n"
            f"FAQ answer threshold {r.faq_threshold:.2f} (leave-one-out {r.faq_held_out}); "
            f"negativity held-out F1 {r.negativity_held_out_f1:.3f}\n"
            f"training time {r.seconds:.1f}s (+ encoder load/export); texts encoded "
            f"{loaded.stamp.report.get('texts_encoded', '?')}, reused from the previous "
            f"artifact {loaded.stamp.report.get('texts_reused', '?')}; artifact {art}"
        )
    for w in data_warnings(load_training_data(nlu_data)):
        console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False)
    return 0


def _service(settings: Settings) -> Any:
    from bot.nlu.service import build_service, resolve_data_dir

    return build_service(settings.nlu, settings.redis.data_dir, str(resolve_data_dir(settings.nlu)))


def cmd_parse(settings: Settings, args: argparse.Namespace) -> int:
    async def go() -> dict[str, Any]:
        svc = _service(settings)
        await svc.start()
        try:
            result = await svc.parse(args.text, args.lang)
            return result.to_dict() | {"model": svc.info()}
        finally:
            await svc.close()

    print(json.dumps(asyncio.run(go()), ensure_ascii=False, indent=2))
    return 0


def cmd_eval(settings: Settings, args: argparse.Namespace) -> int:
    from bot.nlu.evaluate import evaluate

    if args.data:
        from bot.nlu.data import load_labelled

        rows = load_labelled(args.data)
        if not rows:
            print(
                f"replydesk: no labelled rows in {args.data} "
                "(Rasa NLU YAML, or CSV with text,intent columns)",
                file=sys.stderr,
            )
            return 2
        svc = _service(settings)
        asyncio.run(svc.start())
        try:
            texts = [t for t, _ in rows]
            results = [
                r
                for s in range(0, len(texts), 256)
                for r in svc.parse_batch_sync(texts[s : s + 256])
            ]
        finally:
            asyncio.run(svc.close())
        assert svc.thresholds is not None
        report = evaluate(
            [i for _, i in rows],
            [r.ranking[0].name for r in results],
            [r.confidence for r in results],
            svc.thresholds.intent,
            texts,
            args.errors,
        )
        title = f"eval on {args.data}"
    else:
        report = _cross_validate(settings, args.folds, args.errors)
        title = f"{args.folds}-fold cross-validation on nlu_data"
    if args.json:
        from dataclasses import asdict

        print(json.dumps(asdict(report), indent=2))
    else:
        _print_report(title, report)
    return 0


def _cross_validate(settings: Settings, folds: int, errors: int = 0) -> EvalReport:
    """Per fold: fit the intent model (temperature and threshold on the fold's own held-out
    split, as training does), then predict the unseen fold."""
    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    from bot.nlu.classifier import IntentModel
    from bot.nlu.data import NluDataError, load_training_data
    from bot.nlu.encoder import load_encoder, part_dims, set_threads, training_threads
    from bot.nlu.evaluate import evaluate
    from bot.nlu.features import Featurizer

    nlu_data, art = _paths(settings)
    set_threads(training_threads(settings.nlu.encoder))
    td = load_training_data(nlu_data)
    texts = [t for t, _ in td.examples]
    y = np.array([i for _, i in td.examples])
    fewest, intent = min((int((y == i).sum()), i) for i in set(y))
    if folds > fewest:
        # Every fold must hold out some of every intent; scikit-learn would only warn.
        raise NluDataError(
            f"{nlu_data}: intent {intent} has {fewest} examples, fewer than --folds {folds}"
        )
    enc = load_encoder(
        settings.nlu.encoder, settings.nlu.runtime, art / "encoder", allow_export=False
    )
    emb = enc.encode(texts)
    parts = part_dims(enc)
    x = Featurizer().fit_transform(texts, emb)
    top = np.empty(len(y), dtype=object)
    conf = np.zeros(len(y))
    thresholds = []
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=0).split(texts, y):
        m = IntentModel()
        m.train(x[tr], list(y[tr]), emb[tr], parts)
        p, conf[te] = m.predict(x[te], emb[te])
        top[te] = np.array(m.labels)[p.argmax(1)]
        thresholds.append(m.threshold)
    thr = settings.nlu.intent_threshold
    thr = float(np.median(thresholds)) if thr is None else thr
    return evaluate(list(y), [str(v) for v in top], list(conf), thr, texts, errors)


def _print_report(title: str, r: EvalReport) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    c = Console()
    c.print(f"[bold]{title}[/]: {r.n} messages, threshold {r.threshold:.2f}")
    oos = "n/a (no out_of_scope rows)" if r.oos_recall is None else f"{r.oos_recall:.3f}"
    c.print(f"accuracy {r.accuracy:.4f}   macro-F1 {r.macro_f1:.4f}   out-of-scope recall {oos}")
    t = Table("intent", "precision", "recall", "F1", "support", title="per intent")
    for name, m in sorted(r.per_intent.items()):
        t.add_row(
            name,
            f"{m['precision']:.3f}",
            f"{m['recall']:.3f}",
            f"{m['f1']:.3f}",
            str(int(m["support"])),
        )
    c.print(t)
    t = Table("gold", "predicted", "count", title="most confused pairs")
    for a, b, n in r.confused:
        t.add_row(a, b, str(n))
    c.print(t)
    if r.errors:
        t = Table("text", "gold", "predicted", "confidence", title="most confident mistakes")
        for e in r.errors:
            below = e["predicted"] != e["best"]  # out_of_scope: the threshold said no
            t.add_row(
                escape(e["text"]),
                e["gold"],
                e["predicted"] + (f" (best: {e['best']})" if below else ""),
                f"{e['confidence']:.3f}",
            )
        c.print(t)
    t = Table("threshold", "coverage", "precision", "answered", title="auto-answer trade-off")
    for row in r.tradeoff:
        mark = "  <- configured" if abs(row["threshold"] - r.threshold) < 1e-9 else ""
        t.add_row(
            f"{row['threshold']:.2f}{mark}",
            f"{row['coverage']:.3f}",
            f"{row['precision']:.3f}",
            str(int(row["answered"])),
        )
    c.print(t)
