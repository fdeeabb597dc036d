"""Platform length rules: counting and fitting a reply into the limit.

Each platform's rule is plain data (:class:`Rule`, exported as JSON by :func:`rules_for`)
so the agent console's JavaScript counter can mirror it exactly; the shared test vectors
in ``tests/data/textfit_vectors.json`` hold both implementations to the same answers.

* X: twitter-text v3 weighted length after NFC. Code points in the weight-100 ranges
  count 1, every other code point 2; every URL 23; every emoji (ZWJ sequences, skin
  tones, flags, keycaps) 2.
  A URL or bare domain whose ending is not in our short TLD list counts max(as
  written, 23).
* Mastodon: grapheme clusters; URLs with a scheme count 23 (an unlisted ending: max(as
  written, 23)); a remote ``@user@domain`` counts as ``@user`` (StatusLengthValidator).
* Weibo: UTF-16 code units (see the rule below); URLs count as written.

Matching order for every platform: URL, then maybe-URL, then (Mastodon) mention,
then one grapheme cluster. Emoji are recognised per grapheme cluster (JS:
``Intl.Segmenter``).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import regex


def _ci(word: str) -> str:
    """``word`` matched in any case, in syntax JS and ``regex`` share (no inline flags)."""
    return "".join(f"[{c.upper()}{c}]" if c.isalpha() else c for c in word)


# A URL must not start inside a word, an e-mail address or another URL, nor after $ or #
# (a cashtag or hashtag: twitter-text's preceding-character rule) or a bidi control; a
# bare domain not after an accented Latin letter (a host letter, below) or - _ . / either.
_AFTER = r"A-Za-z0-9@\uFF20$#\uFF03\u202A-\u202E"
_URL_START = f"(?<![{_AFTER}])"
_BARE_START = f"(?<![{_AFTER}\u00c0-\u024f\u1e00-\u1eff./_-])"
_SCHEME = _ci("http") + "[Ss]?://"  # any case, as twitter-text and Mastodon match it
# ASCII path; "(" and ")" only in balanced pairs, and the last character may not be
# trailing punctuation (twitter-text ends a link before either).
_PATH_CHAR = r"[A-Za-z0-9._~:/?#\[\]@!$&'*+,;=%-]"
_PARENS = r"\(" + _PATH_CHAR + r"*\)"
_URL_TAIL = f"(?:(?:{_PATH_CHAR}|{_PARENS})*(?:[A-Za-z0-9_~/#=%+-]|{_PARENS}))?"
_PORT_PATH = r"(?::[0-9]+)?(?:/" + _URL_TAIL + ")?"
_TLDS = "com|net|org|io|co|cn|jp|me|ly|app|dev|info|biz|us|uk|de|fr|social|shop|store|tv|ai"
_KNOWN_TLD = "(?:" + "|".join(_ci(t) for t in _TLDS.split("|")) + r")(?![A-Za-z0-9-])"
# Host labels: ASCII and accented Latin letters, as twitter-text's "ASCII" domains (café.fr).
_HOST = r"(?:[A-Za-z0-9\u00C0-\u024F\u1E00-\u1EFF-]+\.)+"
# An ASCII host of any shape (IP address, localhost, unlisted ending), ending in a letter
# or digit: a trailing "." is not part of a link.
_ANY_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"
_UNLISTED_ENDING = r"(?:[A-Za-z]{2,63}|xn--[A-Za-z0-9-]+)(?![A-Za-z0-9-])"
# Links on X and Mastodon (twitter-text's extractor) need a host that ends in a TLD from
# twitter-text's list, scheme or not (Mastodon: scheme required). A link counts 23: these
# hosts, whose ending is on our short copy of that list. Like twitter-text, the longest
# prefix that ends in a listed TLD is the link ("acme.com.example": "acme.com").
URL_SCHEME = _URL_START + _SCHEME + _HOST + _KNOWN_TLD + _PORT_PATH
URL_X = "(?:" + _URL_START + _SCHEME + "|" + _BARE_START + ")" + _HOST + _KNOWN_TLD + _PORT_PATH
# Having no offline copy of the whole list, any other URL or plausible domain may or may
# not be a link: it counts max(as written, 23), never below what the platform can count
# (an undercount is a 403/422 and a dead letter). A scheme before a non-ASCII host counts
# alone as such a token (23), the host as written after it.
_MAYBE_SCHEME = _SCHEME + "(?:" + _ANY_HOST + _PORT_PATH + ")?"
URL_SCHEME_MAYBE = _URL_START + _MAYBE_SCHEME
URL_X_MAYBE = (
    "(?:" + URL_SCHEME_MAYBE + "|" + _BARE_START + _HOST + _UNLISTED_ENDING + _PORT_PATH + ")"
)
# Every token either rule may count as a link: never split by a cut.
URL_ANY = URL_X_MAYBE
# Mastodon counts a mention ``@user@domain`` as ``@user`` (Account::MENTION_RE): not after
# a letter, digit, mark, "_", "=" or "/" (Unicode-aware: "谢谢@a@b.social" is no mention),
# and the domain ends in a letter or digit.
MENTION_REMOTE = (
    r"(?<![\p{L}\p{M}\p{N}\p{Pc}=/@])@(?<user>[A-Za-z0-9_]+)"
    r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z0-9-]*[A-Za-z0-9]"
)
# A grapheme cluster is an emoji when it holds a pictograph or flag letter...
EMOJI_BASE = r"\p{Extended_Pictographic}|\p{Regional_Indicator}|\u20E3"
# ...and is drawn as one: default emoji presentation, VS16, keycap, flag, ZWJ or skin tone.
EMOJI_FORM = (
    r"\p{Emoji_Presentation}|\uFE0F|\u20E3|\p{Regional_Indicator}|\u200D|\p{Emoji_Modifier}"
)

X_RANGES = ((0, 4351), (8192, 8205), (8208, 8223), (8242, 8247))


@dataclass(frozen=True)
class Rule:
    platform: str
    limits: dict[str, int]
    unit: str = "grapheme"  # "grapheme" (1 per cluster) or "weighted" (per code point)
    url_pattern: str = ""
    url_length: int | None = None
    maybe_url_pattern: str = ""  # matches count max(as written, url_length)
    mention_pattern: str = ""  # matches count as "@" + the group named "user"
    emoji_weight: int | None = None  # weighted units per emoji cluster
    scale: int = 1
    default_weight: int = 1
    ranges: tuple[tuple[int, int], ...] = ()  # inclusive code point ranges at weight == scale
    range_weight: int = 1
    _compiled: Any = field(default=None, compare=False, repr=False)

    def limit(self, kind: str) -> int:
        return self.limits.get(kind, min(self.limits.values()))

    def as_dict(self) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "normalize": "NFC",
            "unit": self.unit,
            "limits": dict(self.limits),
            "url_pattern": self.url_pattern,
            "url_length": self.url_length,
            "maybe_url_pattern": self.maybe_url_pattern,
            "mention_pattern": self.mention_pattern,
            "emoji_base_pattern": EMOJI_BASE,
            "emoji_form_pattern": EMOJI_FORM,
            "emoji_weight": self.emoji_weight,
            "scale": self.scale,
            "default_weight": self.default_weight,
            "ranges": [list(r) for r in self.ranges],
            "range_weight": self.range_weight,
            "order": ["url", "maybe_url", "mention", "grapheme"],
        }

    def with_limits(self, **limits: int) -> Rule:
        return Rule(**{**_fields(self), "limits": {**self.limits, **limits}})

    @property
    def tokenizer(self) -> Any:
        if self._compiled is None:
            parts = []
            if self.url_pattern:
                parts.append(f"(?P<url>{self.url_pattern})")
            if self.maybe_url_pattern:
                parts.append(f"(?P<maybe_url>{self.maybe_url_pattern})")
            if self.mention_pattern:
                parts.append(f"(?P<mention>{self.mention_pattern})")
            parts.append(r"(?P<g>\X)")
            object.__setattr__(self, "_compiled", regex.compile("|".join(parts), regex.V1))
        return self._compiled


def _fields(rule: Rule) -> dict[str, Any]:
    return {k: getattr(rule, k) for k in rule.__dataclass_fields__ if k != "_compiled"}


RULES: dict[str, Rule] = {
    "x": Rule(
        platform="x",
        limits={"mention": 280, "dm": 10000},
        unit="weighted",
        url_pattern=URL_X,
        url_length=23,
        maybe_url_pattern=URL_X_MAYBE,
        emoji_weight=200,
        scale=100,
        default_weight=200,
        ranges=X_RANGES,
        range_weight=100,
    ),
    "mastodon": Rule(
        platform="mastodon",
        limits={"mention": 500, "dm": 500},
        url_pattern=URL_SCHEME,
        url_length=23,
        maybe_url_pattern=URL_SCHEME_MAYBE,
        mention_pattern=MENTION_REMOTE,
    ),
    # DMs and mention replies (sent as messages) are "< 300"; public comments "<= 140".
    # How Weibo counts is unconfirmed (platforms.md §2.7), so count UTF-16 code units
    # (astral code points, e.g. most emoji, weigh 2): never fewer than code points or
    # graphemes, and what a Java/JS String.length on Weibo's side would say. A Latin
    # letter counting 1 is the safe side of the legacy "2 Latin = 1 汉字" rule.
    "weibo": Rule(
        platform="weibo",
        limits={"mention": 299, "dm": 299, "comment": 140},
        unit="weighted",
        ranges=((0, 0xFFFF),),
        range_weight=1,
        default_weight=2,
    ),
}
# Platforms without their own rule (generic, sandbox) are effectively unlimited.
_DEFAULT = Rule(platform="default", limits={"mention": 100_000, "dm": 100_000})

_EMOJI_BASE = regex.compile(EMOJI_BASE)
_EMOJI_FORM = regex.compile(EMOJI_FORM)


def rule(platform: str) -> Rule:
    return RULES.get(platform, _DEFAULT)


def rules_for(platform: str, **limits: int) -> dict[str, Any]:
    """JSON-ready description of ``platform``'s rule (for the console's JS counter)."""
    r = rule(platform)
    return (r.with_limits(**limits) if limits else r).as_dict()


def is_emoji(cluster: str) -> bool:
    return bool(_EMOJI_BASE.search(cluster)) and bool(_EMOJI_FORM.search(cluster))


def _weight(r: Rule, cp: int) -> int:
    for lo, hi in r.ranges:
        if lo <= cp <= hi:
            return r.range_weight
    return r.default_weight


def _written(r: Rule, s: str) -> int:
    """Units (before scaling) of ``s`` counted cluster by cluster, as plain text."""
    return sum(_token_count(r, "g", g, None) for g in regex.findall(r"\X", s))


def _token_count(r: Rule, kind: str | None, tok: str, group: str | None) -> int:
    """Units (before scaling) for one token."""
    if kind == "url" and r.url_length is not None:
        return r.url_length * r.scale
    if kind == "maybe_url" and r.url_length is not None:
        return max(r.url_length * r.scale, _written(r, tok))
    if kind == "mention":
        return _written(r, "@" + (group or ""))
    if r.unit == "grapheme":
        return r.scale
    if r.emoji_weight is not None and is_emoji(tok):
        return r.emoji_weight
    return sum(_weight(r, ord(c)) for c in tok)


def count(text: str, platform_or_rule: str | Rule) -> int:
    """The platform's length of ``text``."""
    r = rule(platform_or_rule) if isinstance(platform_or_rule, str) else platform_or_rule
    text = unicodedata.normalize("NFC", text)
    total = 0
    for m in r.tokenizer.finditer(text):
        kind = m.lastgroup
        total += _token_count(r, kind, m.group(0), m.group("user") if kind == "mention" else None)
    return -(-total // r.scale)


# -- fitting --------------------------------------------------------------------

SUFFIXES = {
    "en": {"mention": "DM us for details", "dm": "Reply for details"},
    "zh": {"mention": "详情请私信我们", "dm": "详情请回复我们"},
}
_SENTENCE_END = set(".!?。！？…")
# Left dangling before "…" by a cut: a clause mark, a dash, an opening bracket or quote.
_DANGLING = ",;:，、；：—–(（[【“‘「『《 "
_CJK = regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}\u3000-\u303F\uFF00-\uFFEF]")
_URL_ANY = regex.compile(URL_ANY, regex.V1)

# Cut points, from worst to best: inside a run of CJK letters (maybe inside a word: 可|退,
# 30|天), at a word boundary (a space, CJK punctuation), after a sentence.
_INSIDE, _WORD, _SENTENCE = range(3)


def _is_cjk(s: str) -> bool:
    return bool(s) and bool(_CJK.match(s))


def _lang(text: str, language: str) -> str:
    """The reply's own script picks the pointer's language (an English answer from a
    Chinese account gets "DM us for details"); ``language`` only where the text has no
    letters outside its links."""
    letters = [c for c in _URL_ANY.sub("", text) if c.isalpha()]
    if not letters:
        return "zh" if language.lower().startswith(("zh", "ja")) else "en"
    cjk = sum(1 for c in letters if _is_cjk(c))
    return "zh" if cjk / len(letters) >= 0.3 else "en"


def _atoms(text: str) -> list[str]:
    """Units that are never split: URLs and grapheme clusters."""
    return [m.group(0) for m in regex.finditer(f"(?:{URL_ANY})|\\X", text, regex.V1)]


def _cuts(atoms: list[str]) -> list[tuple[int, int]]:
    """Allowed cut points (atom count, _INSIDE, _WORD or _SENTENCE), ascending."""
    out: list[tuple[int, int]] = []
    for i in range(1, len(atoms)):
        prev, nxt = atoms[i - 1], atoms[i]
        if prev.isspace() or not (nxt.isspace() or _is_cjk(prev) or _is_cjk(nxt)):
            continue
        if prev[-1] in _SENTENCE_END:
            kind = _SENTENCE
        elif (
            nxt.isalpha()
            and _is_cjk(nxt)
            and (prev.isdigit() or (_is_cjk(prev) and prev.isalpha()))
        ):
            kind = _INSIDE  # 可|退, or a number and its measure word: 30|天
        else:
            kind = _WORD
        out.append((i, kind))
    out.append((len(atoms), _SENTENCE if atoms and atoms[-1][-1] in _SENTENCE_END else _WORD))
    return out


def _ends_in_url(text: str) -> bool:
    word = text.rsplit(None, 1)[-1]
    return any(m.end() == len(word) for m in _URL_ANY.finditer(word))


def _compose(prefix: str, at_sentence: bool, suffix: str, lang: str) -> str:
    if not at_sentence:
        # "可退，…" and "in the app):…" read as cut mid-thought: end on the last word.
        prefix = prefix.rstrip(_DANGLING)
    prefix = prefix.rstrip()
    if not prefix:
        return suffix
    tail = "" if at_sentence else "…"
    if tail and _ends_in_url(prefix):
        tail = " …"  # "/x…" would run into the link (Mastodon and Weibo link it: a 404)
    sep = "" if lang == "zh" and not suffix.isascii() else " "
    return f"{prefix}{tail}{sep}{suffix}"


def fit(
    text: str,
    fits: Callable[[str], bool],
    *,
    language: str = "en",
    kind: str = "mention",
    more: str | None = None,
) -> str:
    """``text`` if it fits, else its longest prefix ending at a sentence or word
    boundary (CJK: between characters) followed by a pointer to more (``more``, e.g. a
    help-centre link, or "DM us for details" / "详情请私信我们"). A sentence boundary is
    preferred when it keeps at least 60% of what a word boundary would; so is any
    boundary over a cut inside a run of CJK letters, which may split a word (可|退)."""
    text = unicodedata.normalize("NFC", text).strip()
    if fits(text):
        return text
    lang = _lang(text, language)
    suffix = more or SUFFIXES[lang]["dm" if kind == "dm" else "mention"]
    atoms = _atoms(text)
    cuts = _cuts(atoms)

    def candidate(ci: int) -> str:
        n, cut = cuts[ci]
        return _compose("".join(atoms[:n]), cut == _SENTENCE, suffix, lang)

    # fits() is monotone in the prefix length: binary search the longest cut that fits.
    lo, hi, best = 0, len(cuts) - 1, -1
    while lo <= hi:
        mid = (lo + hi) // 2
        if fits(candidate(mid)):
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    if best < 0:
        return suffix if fits(suffix) else _hard_cut(suffix, fits)
    word_len = cuts[best][0]
    for wanted in (_SENTENCE, _WORD):
        for ci in range(best, -1, -1):
            n, cut = cuts[ci]
            if n < 0.6 * word_len:
                break
            if cut >= wanted:
                return candidate(ci)
    return candidate(best)


def _hard_cut(text: str, fits: Callable[[str], bool]) -> str:
    """Last resort when even the pointer does not fit: whole graphemes only."""
    g = regex.findall(r"\X", text)
    while g and not fits("".join(g)):
        g.pop()
    return "".join(g)


def fitter(platform: str, kind: str, limit: int | None = None) -> Callable[[str], bool]:
    """A ``fits`` predicate for ``platform``/``kind`` (``limit`` overrides the rule)."""
    r = rule(platform)
    lim = r.limit(kind) if limit is None else limit
    return lambda s: count(s, r) <= lim
