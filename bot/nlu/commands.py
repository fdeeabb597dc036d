"""``replydesk train | parse | eval``: added to the CLI by bot/cli.py through add_commands()."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.nlu.evaluate import EvalReport


def add_commands(sub: Any) -> None:
    p = sub.add_parser("train", help="train the NLU model from nlu_data/ into <data_dir>/nlu")
    p.add_argument("--force", action="store_true", help="retrain even if the artifact is current")
    p.add_argument(
        "--report",
        action="store_true",
        help="print the training report and data warnings even when nothing was trained",
    )
    p.add_argument("--data", help="nlu_data folder (default: nlu.data_path or ./nlu_data)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("parse", help="parse one message and print the NLU result as JSON")
    p.add_argument("text")
    p.add_argument(
        "--lang",
        choices=["en", "zh", "other"],
        help="the platform's language tag: it decides where the text cannot tell, but "
        "Chinese characters or English function words in the text win",
    )
    p.set_defaults(func=cmd_parse)

    p = sub.add_parser(
        "eval",
        help="evaluate intents, negativity or FAQ retrieval on test data, or cross-validate "
        "nlu_data/",
    )
    p.add_argument(
        "--data",
        help="intents: Rasa NLU YAML (file or folder) or CSV text,intent; "
        "negativity: a YAML file in sentiment.yml's format; FAQ retrieval: a YAML file with "
        "faq_queries (tests/data/faq_heldout.yml)",
    )
    p.add_argument(
        "--folds",
        type=_at_least(2, "cross-validation needs at least 2 folds"),
        default=5,
        help="cross-validation folds without --data (≥ 2)",
    )
    p.add_argument(
        "--errors",
        type=_at_least(0, "a count of 0 or more"),
        default=0,
        metavar="N",
        help="also list the N most confident mistakes (text, gold, predicted)",
    )
    p.add_argument(
        "--backend",
        choices=["embedded", "rasa"],
        help="with --data: the NLU backend to test (default: nlu.backend from the config)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_eval)


def _at_least(low: int, message: str) -> Any:
    """An argparse type: an integer >= low, else ``message``."""

    def integer(value: str) -> int:
        n = int(value)
        if n < low:
            raise argparse.ArgumentTypeError(message)
        return n

    return integer


@contextlib.contextmanager
def _progress(what: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr for eval's long steps (encoding thousands of rows, folds);
    it disappears when done, leaving the report alone on stdout."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("[bold]eval[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(what, total=total)
        yield lambda n: bar.advance(task, n)


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
    from bot.nlu.eval_tables import per_language

    nlu_data, art = _paths(settings, args.data)
    set_threads(training_threads(settings.nlu.encoder))  # a batch job: all cores
    console = Console(stderr=True)
    # The bar appears with the first training step: a current artifact shows none.
    with contextlib.ExitStack() as stack:
        bar: list[tuple[Progress, Any]] = []

        def step(name: str, done: float) -> None:
            if not bar:
                progress = stack.enter_context(
                    Progress(
                        TextColumn("[bold]train[/] {task.description:<12}"),
                        BarColumn(),
                        # Steps done and a share of the running one: "3.3/9", not
                        # "3.2857142857142856/9".
                        TextColumn("{task.completed:.1f}/{task.total:.0f}"),
                        TimeElapsedColumn(),
                        console=console,
                    )
                )
                bar.append((progress, progress.add_task("loading", total=len(STEPS))))
            progress, task = bar[0]
            progress.update(task, completed=STEPS.index(name) + done, description=name)

        loaded = load_or_train(
            nlu_data,
            art,
            settings.nlu.encoder,
            settings.nlu.runtime,
            force=args.force,
            step=step,
            tune_epochs=settings.nlu.faq_tuning_epochs,
        )
        for progress, task in bar:
            progress.update(task, completed=len(STEPS), description="done")
    r = report_of(loaded)
    if not loaded.trained:
        console.print(
            f"nothing trained: the artifact in {art} is current (data sha256 "
            f"{loaded.stamp.data_sha256[:12]}); --force retrains, --report shows its report",
            highlight=False,
            soft_wrap=True,  # one line, however narrow the terminal
        )
        if not args.report:
            return 0
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
            f"FAQ answer threshold {per_language(r.faq_threshold, r.faq_thresholds)} "
            f"(leave-one-out {r.faq_held_out}); "
            f"negativity held-out F1 {r.negativity_held_out_f1:.3f}; answer guard "
            f"{r.answer_guard:.2f} (held out {r.answer_guard_held_out})\n"
            f"training time {r.seconds:.1f}s (+ encoder load/export); texts encoded "
            f"{loaded.stamp.report.get('texts_encoded', '?')}, reused from the previous "
            f"artifact {loaded.stamp.report.get('texts_reused', '?')}; artifact {art}"
        )
    for w in data_warnings(load_training_data(nlu_data)):
        console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False)
    return 0


@contextlib.asynccontextmanager
async def _running_service(settings: Settings) -> AsyncIterator[Any]:
    """The configured NLU service, started (trained first if need be), closed on exit."""
    from bot.nlu.service import build_service, resolve_data_dir

    svc = build_service(settings.nlu, settings.redis.data_dir, str(resolve_data_dir(settings.nlu)))
    await svc.start()
    try:
        yield svc
    finally:
        await svc.close()


def cmd_parse(settings: Settings, args: argparse.Namespace) -> int:
    async def go() -> dict[str, Any]:
        async with _running_service(settings) as svc:
            result = await svc.parse(args.text, args.lang)
            return result.to_dict() | {"model": svc.info()}

    print(json.dumps(asyncio.run(go()), ensure_ascii=False, indent=2))
    return 0


def cmd_eval(settings: Settings, args: argparse.Namespace) -> int:
    from bot.nlu.evaluate import evaluate

    if args.backend and not args.data:
        print(
            "replydesk: --backend needs --data (cross-validation trains the embedded engine)",
            file=sys.stderr,
        )
        return 2
    if args.backend:
        settings = dataclasses.replace(
            settings, nlu=dataclasses.replace(settings.nlu, backend=args.backend)
        )
    if args.data:
        from bot.nlu.data import load_test_data

        kind, rows = load_test_data(args.data)
        # Rasa answers intents only: negativity and FAQ hits always come from our engine.
        embedded_only = {
            "sentiment": ("negativity", _eval_negativity),
            "faq": ("FAQ retrieval", _eval_faq),
        }
        if kind in embedded_only:
            what, run = embedded_only[kind]
            if args.backend == "rasa":
                print(
                    f"replydesk: {what} comes from the embedded engine with either backend; "
                    "drop --backend",
                    file=sys.stderr,
                )
                return 2
            return run(settings, args, rows)
        if not rows:
            print(
                f"replydesk: no labelled rows in {args.data} "
                "(Rasa NLU YAML, or CSV with text,intent columns)",
                file=sys.stderr,
            )
            return 2
        texts = [t for t, _ in rows]
        top, conf, threshold, fallbacks = asyncio.run(_predict(settings, texts))
        report = evaluate([i for _, i in rows], top, conf, threshold, texts, args.errors)
        backend = settings.nlu.backend
        if fallbacks:
            print(
                f"replydesk: warning: {fallbacks} of {len(texts)} messages were parsed by the "
                f"embedded engine because the Rasa server at {settings.nlu.rasa_url} failed",
                file=sys.stderr,
            )
        title = f"eval on {args.data} ({backend} backend)"
        extra: dict[str, Any] = {"backend": backend, "fallbacks": fallbacks}
    else:
        from bot.nlu.encoder import EncoderChanged

        try:
            report = _cross_validate(settings, args.folds, args.errors)
        except EncoderChanged as e:
            print(
                f"replydesk: the NLU artifact was made by another encoder ({e}); "
                "run `replydesk train` first",
                file=sys.stderr,
            )
            return 2
        except NotTrained as e:
            print(
                f"replydesk: no trained NLU artifact in {e}; run `replydesk train` first",
                file=sys.stderr,
            )
            return 2
        title = f"{args.folds}-fold cross-validation on nlu_data (embedded engine)"
        extra = {"backend": "embedded"}
    from bot.nlu.eval_tables import print_intents

    return _show(args, report, print_intents, title, extra)


def _show(
    args: argparse.Namespace,
    report: Any,
    print_tables: Callable[[str, Any], None],
    title: str,
    extra: dict[str, Any] | None = None,
) -> int:
    """An eval report as JSON (``--json``) or as tables."""
    if args.json:
        print(json.dumps(dataclasses.asdict(report) | (extra or {}), indent=2, ensure_ascii=False))
    else:
        print_tables(title, report)
    return 0


def _eval_negativity(
    settings: Settings, args: argparse.Namespace, rows: list[tuple[str, str]]
) -> int:
    """``--data`` in sentiment.yml's format: the negativity detector (always the embedded
    engine's: the Rasa backend answers intents only)."""
    from bot.nlu.eval_tables import print_negativity
    from bot.nlu.evaluate import evaluate_negativity

    if not rows:
        print(f"replydesk: no labelled posts in {args.data}", file=sys.stderr)
        return 2
    texts = [t for t, _ in rows]
    results, thresholds = asyncio.run(_parse_embedded(settings, texts))
    report = evaluate_negativity(
        [lab for _, lab in rows],
        [r.negativity for r in results],
        thresholds.negativity,
        [r.language for r in results],
        texts,
        args.errors,
        thresholds.answer_guard,
    )
    return _show(args, report, print_negativity, f"negativity on {args.data}")


def _eval_faq(settings: Settings, args: argparse.Namespace, rows: list[tuple[str, str]]) -> int:
    """``--data`` with ``faq_queries``: FAQ retrieval and its answer threshold."""
    from bot.nlu.eval_tables import print_faq
    from bot.nlu.evaluate import evaluate_faq

    texts = [t for t, _ in rows]
    if not texts:
        print(f"replydesk: no messages in {args.data}", file=sys.stderr)
        return 2
    results, thresholds = asyncio.run(_parse_embedded(settings, texts))
    report = evaluate_faq(
        [faq for _, faq in rows],
        [[(h.faq_id, h.score) for h in r.faq] for r in results],
        thresholds.faq,
        [r.language for r in results],
        texts,
        args.errors,
        thresholds.faq_by_language,
    )
    return _show(args, report, print_faq, f"FAQ retrieval on {args.data}")


async def _parse_embedded(settings: Settings, texts: list[str]) -> tuple[list[Any], Any]:
    """The embedded engine's results for ``texts`` and the thresholds in force."""
    async with _running_service(settings) as svc:
        assert svc.thresholds is not None
        with _progress("parsing", len(texts)) as advance:
            return svc.parse_batch_sync(texts, progress=advance), svc.thresholds


async def _predict(
    settings: Settings, texts: list[str]
) -> tuple[list[str], list[float], float, int]:
    """The configured backend's best intent and confidence for each text, the threshold to
    apply, and how many fell back from Rasa to the embedded engine."""
    async with _running_service(settings) as svc:
        assert svc.thresholds is not None
        if settings.nlu.backend != "rasa":
            with _progress("parsing", len(texts)) as advance:
                results = svc.parse_batch_sync(texts, progress=advance)
            # Before our threshold; evaluate() applies it and sweeps the trade-off.
            return (
                [r.ranking[0].name for r in results],
                [r.confidence for r in results],
                svc.thresholds.intent,
                0,
            )
        # As the worker sees them: Rasa's FallbackClassifier has already said out_of_scope,
        # so no threshold of ours on top (the trade-off still sweeps its confidences).
        gate = asyncio.Semaphore(8)
        with _progress("asking Rasa", len(texts)) as advance:

            async def one(text: str) -> Any:
                async with gate:
                    result = await svc.parse(text)
                advance(1)
                return result

            results = await asyncio.gather(*(one(t) for t in texts))
        fellback = sum(r.backend != "rasa" for r in results)
        return [r.intent for r in results], [r.confidence for r in results], 0.0, fellback


class NotTrained(Exception):
    """Cross-validation needs the trained artifact's encoder; the argument is its folder."""


def _cross_validate(settings: Settings, folds: int, errors: int = 0) -> EvalReport:
    """Per fold: fit the intent model (temperature and threshold on the fold's own held-out
    split, as training does), then predict the unseen fold."""
    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    from bot.nlu.artifact import read_stamp
    from bot.nlu.classifier import IntentModel
    from bot.nlu.data import NluDataError, load_training_data
    from bot.nlu.encoder import (
        EncoderChanged,
        load_encoder,
        part_dims,
        set_threads,
        training_threads,
    )
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
    # The folds are encoded with the trained artifact's encoder (MiniLM tuned on the FAQ
    # bank, its export). Without one, load_encoder fell back to the base model through
    # torch: figures of another encoder, torch's progress bars on stderr, and an empty
    # encoder folder left where the artifact belongs.
    if not (art / "encoder").is_dir():
        raise NotTrained(art)
    enc = load_encoder(
        settings.nlu.encoder, settings.nlu.runtime, art / "encoder", allow_export=False
    )
    stamp = read_stamp(art)
    if stamp is None or enc.id != stamp.encoder_id:
        trained = stamp.encoder_id if stamp else "none recorded"
        raise EncoderChanged(f"encoder {enc.id} is not the trained {trained}")
    emb = enc.encode(texts)
    parts = part_dims(enc)
    x = Featurizer().fit_transform(texts, emb)
    top = np.empty(len(y), dtype=object)
    conf = np.zeros(len(y))
    thresholds = []
    with _progress("folds", folds) as advance:
        for tr, te in StratifiedKFold(folds, shuffle=True, random_state=0).split(texts, y):
            m = IntentModel()
            m.train(x[tr], list(y[tr]), emb[tr], parts)
            p, conf[te] = m.predict(x[te], emb[te])
            top[te] = np.array(m.labels)[p.argmax(1)]
            thresholds.append(m.threshold)
            advance(1)
    thr = settings.nlu.intent_threshold
    thr = float(np.median(thresholds)) if thr is None else thr
    return evaluate(list(y), [str(v) for v in top], list(conf), thr, texts, errors)
