"""Training data loader: Rasa YAML intents, the FAQ bank, sentiment examples, and the hash.

Layout of ``nlu_data/`` (docs/nlu.md): ``nlu/*.yml`` Rasa 3.x NLU files, ``faq.yml`` the FAQ
bank, ``sentiment.yml`` negativity examples. ``responses/`` and ``config.yml`` are not
read here, so editing reply templates or the Rasa pipeline does not retrain the model.
"""

from __future__ import annotations

import csv
import hashlib
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bot.nlu.lang import clean_text

# Rasa entity annotations: [text](entity) or [text]{"entity": ...}
_ENTITY = re.compile(r"\[([^\]]+)\](?:\([^)]*\)|\{[^}]*\})")


class NluDataError(Exception):
    """A training data file is missing or malformed; the message names the file."""


@dataclass(slots=True)
class Faq:
    id: str
    questions: dict[str, list[str]]  # language -> phrasings
    answers: dict[str, str]  # language -> answer
    intent: str | None = None

    def answer(self, language: str) -> str:
        return (
            self.answers.get(language)
            or self.answers.get("en")
            or next(iter(self.answers.values()))
        )

    def question(self, language: str) -> str:
        qs = self.questions.get(language) or self.questions.get("en") or [""]
        return qs[0]


@dataclass(slots=True)
class TrainingData:
    examples: list[tuple[str, str]] = field(default_factory=list)  # (text, intent)
    faqs: list[Faq] = field(default_factory=list)
    sentiment: list[tuple[str, str]] = field(default_factory=list)  # (text, label)

    @property
    def intents(self) -> list[str]:
        return sorted({i for _, i in self.examples})


def default_data_dir() -> Path:
    return Path("nlu_data")


def data_files(root: str | Path) -> list[Path]:
    """Every file the embedded model is trained from, in a stable order. Hidden files
    are not data: an editor's lock or backup (Emacs' ``.#support.yml``, a dangling
    link) made training crash."""
    root = Path(root)
    found = sorted((root / "nlu").glob("**/*.yml")) + sorted((root / "nlu").glob("**/*.yaml"))
    files = [
        p for p in found if not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]
    files += [p for p in (root / "faq.yml", root / "sentiment.yml") if p.exists()]
    return files


def data_hash(root: str | Path) -> str:
    """sha256 over the relative names and contents of :func:`data_files`."""
    root = Path(root)
    h = hashlib.sha256()
    for p in data_files(root):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(b"\0")
        h.update(p.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def _examples_block(value: Any, where: str) -> list[str]:
    if isinstance(value, list):  # Rasa's long form: [{text: ..., metadata: ...}]
        lines = [_example(v, f"{where}.examples[{j}]") for j, v in enumerate(value)]
    elif isinstance(value, str):
        lines = [ln.strip()[2:] for ln in value.splitlines() if ln.strip().startswith("- ")]
    else:
        raise NluDataError(f"{where}: examples must be a '- text' block")
    return [clean_text(_ENTITY.sub(r"\1", ln).strip()) for ln in lines if ln.strip()]


# Valid YAML can still have the wrong shape (a bare string where an entry belongs, a
# mapping where a list belongs); these checks turn that into an NluDataError naming the
# file and the entry, so it is a data error (exit 2, the last good model kept), not a crash.
def _example(value: Any, where: str) -> str:
    if isinstance(value, dict):
        if "text" not in value:
            raise NluDataError(f"{where}: needs text")
        value = value["text"]
    return _scalar(value, where, "a text")


def _scalar(value: Any, where: str, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise NluDataError(f"{where}: expected {what}, got {_shape(value)}")
    return str(value)


def _entries(data: dict[str, Any], key: str, path: Path) -> list[Any]:
    """``data[key]`` as a list (absent or empty: none)."""
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise NluDataError(f"{path} {key}: expected a list of entries, got {_shape(value)}")
    return value


def _mapping(item: Any, where: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise NluDataError(f"{where}: expected a mapping, got {_shape(item)}")
    return item


def _shape(value: Any) -> str:
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return {dict: "a mapping", list: "a list", type(None): "nothing"}.get(
        type(value), type(value).__name__
    )


def _unreadable(path: Path, e: Exception) -> NluDataError:
    # An OSError's own text repeats the path: "No such file or directory" is enough.
    return NluDataError(f"{path}: {getattr(e, 'strerror', None) or e}")


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise _unreadable(path, e) from e
    if not isinstance(data, dict):
        raise NluDataError(f"{path}: top level must be a mapping")
    return data


def parse_rasa_nlu(path: Path) -> list[tuple[str, str]]:
    """(text, intent) pairs of a Rasa 3.x NLU file; synonyms, regexes, lookups are skipped."""
    return _nlu_rows(_load_yaml(path), path)


def _nlu_rows(data: dict[str, Any], path: Path) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for i, item in enumerate(_entries(data, "nlu", path)):
        where = f"{path} nlu[{i}]"
        if "intent" not in _mapping(item, where):  # synonym, regex, lookup: not ours
            continue
        intent = _scalar(item["intent"], f"{where}.intent", "an intent name")
        out += [(t, intent) for t in _examples_block(item.get("examples", ""), where)]
    return out


def parse_faq(path: Path) -> list[Faq]:
    faqs: list[Faq] = []
    for i, f in enumerate(_entries(_load_yaml(path), "faqs", path)):
        where = f"{path} faqs[{i}]"
        f = _mapping(f, where)
        need = "needs id, questions.<lang>[], answer.<lang>"
        questions, answers = f.get("questions"), f.get("answer")
        if "id" not in f or not isinstance(questions, dict) or not isinstance(answers, dict):
            raise NluDataError(f"{where}: {need}")
        if not all(isinstance(v, list) for v in questions.values()):
            raise NluDataError(f"{where}.questions: expected <lang>: [phrasings]")
        faq = Faq(
            id=_scalar(f["id"], f"{where}.id", "an id"),
            questions={
                str(k): [clean_text(_scalar(q, f"{where}.questions.{k}", "a phrasing")) for q in v]
                for k, v in questions.items()
            },
            answers={
                str(k): clean_text(_scalar(v, f"{where}.answer.{k}", "an answer").strip())
                for k, v in answers.items()
            },
            intent=None
            if f.get("intent") is None
            else _scalar(f["intent"], f"{where}.intent", "an intent name"),
        )
        if not faq.answers or not any(faq.questions.values()):
            raise NluDataError(f"{where}: empty questions or answer")
        faqs.append(faq)
    ids = [f.id for f in faqs]
    if len(ids) != len(set(ids)):
        raise NluDataError(f"{path}: duplicate faq id")
    return faqs


def parse_sentiment(path: Path) -> list[tuple[str, str]]:
    """(text, label) pairs of a file in sentiment.yml's format."""
    return _sentiment_rows(_load_yaml(path), path)


def _sentiment_rows(data: dict[str, Any], path: Path) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for i, item in enumerate(_entries(data, "sentiment", path)):
        where = f"{path} sentiment[{i}]"
        label = _mapping(item, where).get("label")
        if label not in ("negative", "neutral", "positive"):
            raise NluDataError(f"{where}: label must be negative|neutral|positive")
        out += [(t, label) for t in _examples_block(item.get("examples", ""), where)]
    return out


NO_FAQ = "-"  # the label of a FAQ test message that no FAQ answers


def _faq_query_rows(data: dict[str, Any], path: Path) -> list[tuple[str, str]]:
    """(text, faq id) rows of a FAQ test file; messages under ``unrelated`` get NO_FAQ."""
    out: list[tuple[str, str]] = []

    def texts(by_language: Any, where: str) -> list[str]:
        if not isinstance(by_language, dict) or not all(
            isinstance(v, list) for v in by_language.values()
        ):
            raise NluDataError(f"{path} {where}: expected <language>: [messages]")
        return [
            t.strip()
            for lang, v in by_language.items()
            for j, m in enumerate(v)
            if (t := _scalar(m, f"{path} {where}.{lang}[{j}]", "a message")).strip()
        ]

    for i, item in enumerate(_entries(data, "faq_queries", path)):
        if not isinstance(item, dict) or "id" not in item:
            raise NluDataError(f"{path} faq_queries[{i}]: needs an id")
        langs = {k: v for k, v in item.items() if k != "id"}
        faq_id = _scalar(item["id"], f"{path} faq_queries[{i}].id", "an id")
        out += [(t, faq_id) for t in texts(langs, f"faq_queries[{i}]")]
    out += [(t, NO_FAQ) for t in texts(data.get("unrelated") or {}, "unrelated")]
    return out


def load_training_data(root: str | Path) -> TrainingData:
    root = Path(root)
    nlu_files = [p for p in data_files(root) if p.parent != root]
    if not nlu_files:
        raise NluDataError(f"{root}/nlu: no Rasa NLU files (*.yml) found")
    td = TrainingData()
    for p in nlu_files:
        td.examples += parse_rasa_nlu(p)
    if (root / "faq.yml").exists():
        td.faqs = parse_faq(root / "faq.yml")
    if (root / "sentiment.yml").exists():
        td.sentiment = parse_sentiment(root / "sentiment.yml")
    if len(td.intents) < 2:
        raise NluDataError(f"{root}: need at least two intents")
    return td


# Below these, the classifier and the FAQ blends learn from too few phrasings (docs/nlu.md).
MIN_INTENT_EXAMPLES = 10
MIN_FAQ_PHRASINGS = 4


def _key(text: str) -> str:
    """What the classifier sees alike: case, spacing and punctuation (not emoji) ignored."""
    plain = _ENTITY.sub(r"\1", text).lower()
    return " ".join(
        "".join(c for c in plain if not unicodedata.category(c).startswith("P")).split()
    )


def data_warnings(td: TrainingData) -> list[str]:
    """Problems in training data that still trains: contradictions (one text under two
    labels teaches neither), FAQs that would answer in another language, and labels with
    too few examples. ``replydesk train`` prints them; the worker logs how many."""
    out: list[str] = []

    def clashes(pairs: list[tuple[str, str]], what: str) -> None:
        seen: dict[str, tuple[str, set[str]]] = {}
        for text, label in pairs:
            seen.setdefault(_key(text), (text, set()))[1].add(label)
        out.extend(
            f"{what} {text!r} is under {', '.join(sorted(labels))}"
            for text, labels in seen.values()
            if len(labels) > 1
        )

    clashes(td.examples, "example")
    clashes([(q, f.id) for f in td.faqs for qs in f.questions.values() for q in qs], "FAQ phrasing")
    negative = [(t, "negative" if lab == "negative" else "not negative") for t, lab in td.sentiment]
    clashes(negative, "sentiment example")
    counts = Counter(intent for _, intent in td.examples)
    out += [
        f"intent {i} has {n} examples (fewer than {MIN_INTENT_EXAMPLES})"
        for i, n in sorted(counts.items())
        if n < MIN_INTENT_EXAMPLES
    ]
    for f in td.faqs:
        if f.intent is not None and f.intent not in counts:
            out.append(f"faq {f.id}: intent {f.intent} has no examples")
        for lang, qs in sorted(f.questions.items()):
            if lang not in f.answers:
                out.append(f"faq {f.id}: {lang} phrasings but no {lang} answer")
            if len(qs) < MIN_FAQ_PHRASINGS:
                out.append(
                    f"faq {f.id}: {len(qs)} {lang} phrasings (fewer than {MIN_FAQ_PHRASINGS})"
                )
    return out


def load_test_data(path: str | Path) -> tuple[str, list[tuple[str, str]]]:
    """Test data for ``replydesk eval``, each file read once: ("sentiment", (text, label)
    rows) for a YAML file in sentiment.yml's format, ("faq", (text, faq id or NO_FAQ))
    for one with ``faq_queries`` (tests/data/faq_heldout.yml), else ("intents", (text,
    intent) rows) from a Rasa NLU YAML file or folder, or CSV ``text,intent``."""
    path = Path(path)
    if path.is_dir():
        return "intents", [x for p in sorted(path.glob("**/*.yml")) for x in parse_rasa_nlu(p)]
    if path.suffix.lower() in (".yml", ".yaml"):
        data = _load_yaml(path)
        if "sentiment" in data:
            return "sentiment", _sentiment_rows(data, path)
        if "faq_queries" in data:
            return "faq", _faq_query_rows(data, path)
        return "intents", _nlu_rows(data, path)
    try:
        # utf-8-sig: Excel's "CSV UTF-8" starts with a byte order mark, which kept the
        # header from being recognised and made it a message labelled "intent".
        with path.open(encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise _unreadable(path, e) from e
    if rows and [c.strip().lower() for c in rows[0][:2]] in (
        ["text", "intent"],
        ["text", "category"],
    ):
        rows = rows[1:]
    return "intents", [(r[0], r[1].strip()) for r in rows if len(r) >= 2 and r[0].strip()]
