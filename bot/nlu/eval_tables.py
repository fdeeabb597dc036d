"""Rich tables for ``replydesk eval``: the intent, negativity and FAQ reports."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bot.nlu.evaluate import EvalReport, FaqReport, NegativityReport


def per_language(default: float, by_language: dict[str, float]) -> str:
    """ "0.59", or "en 0.59, zh 0.52" (and the rest) when languages have their own."""
    if not by_language:
        return f"{default:.2f}"
    own = ", ".join(f"{lang} {t:.2f}" for lang, t in sorted(by_language.items()))
    return f"{own}, other languages {default:.2f}"


def _by_threshold(
    title: str, rows: list[dict[str, float]], configured: float | None, columns: list[str]
) -> Table:
    """One row per threshold, the configured one marked; counts as integers."""
    t = Table(
        "threshold", *("F1" if k == "f1" else k.replace("_", " ") for k in columns), title=title
    )
    for row in rows:
        on = configured is not None and abs(row["threshold"] - configured) < 1e-9
        mark = "  <- configured" if on else ""
        t.add_row(
            f"{row['threshold']:.2f}{mark}",
            *(str(int(row[k])) if k == "answered" else f"{row[k]:.3f}" for k in columns),
        )
    return t


def print_intents(title: str, r: EvalReport) -> None:
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
    c.print(
        _by_threshold(
            "auto-answer trade-off", r.tradeoff, r.threshold, ["coverage", "precision", "answered"]
        )
    )


def print_negativity(title: str, r: NegativityReport) -> None:
    c = Console()
    c.print(f"[bold]{title}[/]: {r.n} posts, negative at score >= {r.threshold:.2f}")
    c.print(
        f"negative: precision {r.precision:.3f}   recall {r.recall:.3f}   F1 {r.f1:.3f}   "
        f"accuracy {r.accuracy:.3f}"
    )
    t = Table(
        "label",
        "scored negative",
        f"kept from FAQ answers (>= guard {r.answer_guard:.2f})",
        title="flagged per label",
    )
    for label, share in r.flagged.items():
        t.add_row(label, f"{share:.3f}", f"{r.guarded[label]:.3f}")
    c.print(t)
    t = Table("language", "precision", "recall", "F1", "posts", title="per language")
    for lang, m in r.per_language.items():
        t.add_row(
            lang, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", str(m["n"])
        )
    c.print(t)
    if r.errors:
        t = Table("text", "label", "negativity", title="most confident mistakes")
        for e in r.errors:
            t.add_row(escape(e["text"]), e["label"], f"{e['negativity']:.3f}")
        c.print(t)
    c.print(
        _by_threshold("threshold trade-off", r.tradeoff, r.threshold, ["precision", "recall", "f1"])
    )


def print_faq(title: str, r: FaqReport) -> None:
    c = Console()
    c.print(
        f"[bold]{title}[/]: {r.n} messages a FAQ answers, {r.unrelated} unrelated; "
        f"answer threshold {per_language(r.threshold, r.thresholds)}"
    )
    c.print(
        f"hit@1 {r.hit1:.3f}   hit@{r.k} {r.hit_k:.3f}   answered {r.coverage:.3f} of answerable, "
        f"{r.precision:.3f} of them right   unrelated answered {r.unrelated_answered:.3f}"
    )
    t = Table(
        "language",
        "threshold",
        "hit@1",
        "answered",
        "right",
        "unrelated answered",
        "messages",
        title="per language",
    )
    for lang, m in r.per_language.items():
        t.add_row(
            lang,
            f"{m['threshold']:.2f}",
            f"{m['hit1']:.3f}",
            f"{m['coverage']:.3f}",
            f"{m['precision']:.3f}",
            f"{m['unrelated_answered']:.3f}",
            str(int(m["n"])),
        )
    c.print(t)
    if r.errors:
        t = Table("text", "right FAQ", "answered with", "score", title="surest wrong answers")
        for e in r.errors:
            t.add_row(escape(e["text"]), e["gold"], e["answered"], f"{e['score']:.3f}")
        c.print(t)
    columns = ["coverage", "precision", "unrelated_answered"]
    everyone = "answer threshold trade-off, one threshold for every language"
    c.print(_by_threshold(everyone, r.tradeoff, None if r.thresholds else r.threshold, columns))
    for lang, rows in r.tradeoff_by_language.items():
        title = f"{lang} alone (nlu.faq_thresholds.{lang})"
        c.print(_by_threshold(title, rows, r.thresholds.get(lang, r.threshold), columns))
