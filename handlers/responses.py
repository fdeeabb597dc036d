"""Reply templates from ``nlu_data/responses/{lang}.yml``, per language and persona.

``Responses.sayer(...)`` returns the ``say(key, **vars)`` function handlers receive: it
picks a variant stably per message (so a re-run says the same thing), fills variables,
and leaves unknown or empty ``{names}`` out rather than failing, with the comma or space
that introduced them.
"""

from __future__ import annotations

import datetime
import hashlib
import math
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

LANGUAGES = ("en", "zh")

# Where an empty variable was, until :func:`_close_gaps` joins the text around it.
_GAP = "\x00"
# Punctuation that may follow a variable ("Thanks, {handle}. I've...", "收到，{handle}。")...
_FOLLOWERS = frozenset(".,!?;:)—。，！？；：、）")
# ...and the comma that introduced it, dropped with it.
_LEADERS = ",，、"


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return _GAP


def _close_gaps(text: str) -> str:
    """The text without its empty variables, as if written without them: an unknown handle
    (usual on Weibo) makes "Thanks, {handle}. I've..." read "Thanks. I've...", not
    "Thanks, . I've...", and "收到，{handle}。" read "收到。"."""
    parts = text.split(_GAP)
    out = parts[0]
    for right in parts[1:]:
        left, rest = out.rstrip(), right.lstrip()
        space = out[len(left) :] or right[: len(right) - len(rest)]
        if rest[:1] in _FOLLOWERS and rest:
            left = left.rstrip(_LEADERS).rstrip()
            space = " " if rest[0] == "—" else ""
        out = left + (space if left and rest else "") + rest
    return out


def fill(template: str, variables: Mapping[str, Any]) -> str:
    values = {k: _GAP if v is None or str(v) == "" else v for k, v in variables.items()}
    try:
        text = string.Formatter().vformat(template, (), _Blank(values))
    except (ValueError, IndexError, AttributeError):
        return template  # a malformed template says itself rather than crash the worker
    return _close_gaps(text)


class Responses:
    def __init__(self, tables: dict[str, dict[str, Any]]) -> None:
        self.tables = tables

    @classmethod
    def load(cls, path: str | Path) -> Responses:
        root = Path(path)
        tables: dict[str, dict[str, Any]] = {}
        for lang in LANGUAGES:
            f = root / f"{lang}.yml"
            if f.exists():
                tables[lang] = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
        if "en" not in tables:
            raise FileNotFoundError(f"no reply templates at {root}/en.yml")
        return cls(tables)

    def raw(self, key: str, language: str, persona: str = "") -> Any:
        """The template (list of variants, string or mapping) for ``key``: persona in the
        language, then the language, then English."""
        for lang in (language, "en"):
            table = self.tables.get(lang, {})
            if persona:
                v = table.get("personas", {}).get(persona, {}).get(key)
                if v is not None:
                    return v
            if key in table:
                return table[key]
        return None

    def sla_promise(self, minutes: float, language: str, *, business: bool = False) -> str:
        # Rounded up: a promise may be looser than the target, never tighter (a 150-minute
        # target is "3 hours"; "2 hours" would be broken by an agent who meets the SLA).
        if minutes < 120:
            duration = fill(str(self.raw("duration_minutes", language)), {"n": math.ceil(minutes)})
        else:
            n = math.ceil(minutes / 60)
            duration = fill(str(self.raw("duration_hours", language)), {"n": n})
        key = "sla_promise_business" if business else "sla_promise"
        return fill(str(self.raw(key, language)), {"duration": duration})

    def sayer(self, *, language: str, persona: str = "", seed: str = "", **base: Any) -> Say:
        return Say(self, language, persona, seed, base)


class Say:
    """``say(key, **vars)``: the reply text for ``key`` in one message's language and
    persona; ``say.word(table, key)`` looks a word up in a mapping (e.g. statuses)."""

    def __init__(
        self, responses: Responses, language: str, persona: str, seed: str, base: dict[str, Any]
    ) -> None:
        self.responses = responses
        self.language = language
        self.persona = persona
        self.seed = seed
        self.base = base

    def __call__(self, key: str, **variables: Any) -> str:
        return self.part(key, **variables).strip()

    def part(self, key: str, **variables: Any) -> str:
        """A fragment filled into another template (``order_eta_part``): unstripped, as it
        carries its own spacing (a leading space in English, none in Chinese)."""
        v = self.responses.raw(key, self.language, self.persona)
        if v is None:
            raise KeyError(f"no reply template {key!r}")
        if isinstance(v, list):
            digest = hashlib.sha256(f"{self.seed}:{key}".encode()).digest()
            v = v[digest[0] % len(v)]
        return fill(str(v), {**self.base, **variables})

    def addressed(self, text: str) -> str:
        """``text`` (not a template: a FAQ answer) after the customer's @handle, as the
        templates start: on X two customers' public replies with the same words are
        refused as duplicate content, and a reply reads as addressed to someone."""
        return fill("{handle} {text}", {**self.base, "text": text}).strip()

    def sla_promise(self, priority: str) -> str:
        """The promise for a ticket of ``priority`` ("an agent will reply within 30
        minutes"), when the pipeline provided ``promises``; else the base one."""
        promises = self.base.get("promises") or {}
        return str(promises.get(priority) or self.base.get("sla_promise", ""))

    def date(self, day: datetime.date) -> str:
        """``day`` as the reader writes dates ("25 November 2026", "2026年11月25日")."""
        months = self.responses.raw("months", self.language, self.persona)
        name = months[day.month - 1] if isinstance(months, list) and len(months) == 12 else ""
        return self(
            "date", year=day.year, month=day.month, day=day.day, month_name=name or day.month
        )

    def word(self, table: str, key: str) -> str | None:
        t = self.responses.raw(table, self.language, self.persona)
        v = t.get(key) if isinstance(t, dict) else None
        return str(v) if v is not None else None
