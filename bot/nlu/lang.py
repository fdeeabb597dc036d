"""Language by script: enough to pick the answer language and to route Weibo vs X traffic."""

from __future__ import annotations

import re
import unicodedata


def clean_text(text: str) -> str:
    """``text`` with unpaired UTF-16 surrogates replaced by U+FFFD. Python strings may hold
    them (a JSON "\\ud83d" escape, a command-line byte that is not UTF-8), the tokenizer
    and UTF-8 output refuse them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A proper pair written as two escapes becomes its character; a lone half, U+FFFD.
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def readable(text: str) -> str:
    """``text`` without the characters nobody sees: format characters (zero-width space
    and joiners, byte order mark, direction marks) and control characters other than
    whitespace. The training texts hold none; in a post they changed what the models
    read ("re\\u200bfund?" lost a tenth of its confidence, a message of zero-width
    characters or a NUL alone read as a greeting, where an empty one is out of scope)."""
    if text.isprintable():  # the common case, in C: no control, format or odd space
        return text
    return "".join(
        ch for ch in text if ch.isspace() or unicodedata.category(ch) not in ("Cc", "Cf")
    )


# What detect_language answers.
LANGUAGES = frozenset({"en", "zh", "other"})

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# Kana (not the katakana middle dot U+30FB, which Chinese input methods type between the
# parts of a foreign name: "哈利・波特") and Hangul, syllables and letters.
_KANA_HANGUL = re.compile(
    r"[\u3041-\u3096\u309d\u309e\u30a1-\u30fa\u30fc-\u30fe\u31f0-\u31ff\uff66-\uff9d"
    r"\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]"
)
_LATIN = re.compile(r"[A-Za-z]")
_OTHER_LETTER = re.compile(r"[\u0370-\u03ff\u0400-\u04ff\u0590-\u06ff\u0900-\u0dff\u0e00-\u0e7f]")
# Handles, links, hashtags and order numbers say nothing about the language.
_NOISE = re.compile(r"@\w+|https?://\S+|#\w+|\b[A-Z]\d{4,}\b")
# Frequent function words of the Latin-script languages customers most often use besides
# English; two hits and no English ones mean "other".
_NON_EN = frozenset(
    [
        "el",
        "la",
        "los",
        "las",
        "que",
        "por",
        "para",
        "una",
        "pero",
        "muy",
        "est",
        "le",
        "les",
        "des",
        "une",
        "pas",
        "est",
        "avec",
        "pour",
        "der",
        "die",
        "das",
        "und",
        "nicht",
        "ist",
        "ein",
        "eine",
        "mit",
        "não",
        "uma",
        "com",
        "por",
        "que",
        "você",
        "ich",
        "wir",
        "sie",
    ]
)
_EN = frozenset(
    [
        "the",
        "a",
        "an",
        "is",
        "are",
        "my",
        "i",
        "you",
        "your",
        "to",
        "of",
        "and",
        "it",
        "for",
        "not",
        "can",
        "do",
        "what",
        "where",
        "how",
    ]
)


def detect_language(text: str) -> str:
    """ "zh" if Chinese characters dominate, "en" for Latin script, "other" otherwise."""
    clean = _NOISE.sub(" ", text)
    cjk = len(_CJK.findall(clean))
    if _KANA_HANGUL.search(clean):
        return "other"
    latin = len(_LATIN.findall(clean))
    other = len(_OTHER_LETTER.findall(clean))
    words = _words(clean)
    # A Chinese character says about as much as a Latin word, so words are weighed, not
    # letters: "我的MacBook Air坏了" and "AirPods Pro 2 怎么退货" are Chinese posts naming a
    # product. As many characters as words is Chinese unless an English function word
    # says otherwise ("I love 饺子"); twice as many is Chinese whatever the words.
    if cjk and (cjk >= 2 * len(words) or (cjk >= len(words) and not any(w in _EN for w in words))):
        return "zh"
    if other > latin:
        return "other"
    if latin:
        non_en = sum(w in _NON_EN for w in words)
        if non_en >= 2 and not any(w in _EN for w in words):
            return "other"
        return "en"
    return "zh" if cjk else "en"  # emoji-only or empty: English is the fallback


def _words(clean: str) -> list[str]:
    """The Latin-script words of a text with its handles and links taken out."""
    return re.findall(r"[a-zà-ÿ]+", clean.lower())


# Tags that name no language: ISO 639's "undetermined", "multiple", "no linguistic
# content", and the private-use codes X sets on posts it cannot tell (qme: media links
# only, qht: hashtags only, qam: mentions only, qst: very short text). Taken as a
# language, they sent English posts to the thresholds of languages we have none for
# and kept MiniLM, which runs on English posts only, from reading them.
_NO_LANGUAGE = re.compile(r"und|mul|mis|zxx|art|q[a-t][a-z]")


def resolve_language(text: str, tag: str | None) -> str:
    """The language to understand and answer ``text`` in, given a platform's ``tag`` for
    it (Mastodon's ``language``: set by the posting client, often left at the author's
    default). The tag wins where the text cannot tell (an emoji, "ok", a language the
    detector calls ``other``), but not against the text's own evidence: Chinese
    characters (only Japanese shares them, and kana tell it apart), or two or more
    English function words. A Chinese post tagged "en" is answered in Chinese."""
    found = detect_language(text)
    tag = re.split(r"[-_]", (tag or "").strip())[0].lower()  # "zh-CN", "zh_TW" -> "zh"
    if tag not in LANGUAGES and (
        not re.fullmatch(r"[a-z]{2,3}", tag) or _NO_LANGUAGE.fullmatch(tag)
    ):
        return found  # not a language code: the text decides
    if tag == found:
        return tag
    if found == "zh" and tag != "ja":
        return "zh"
    if found == "en" and sum(w in _EN for w in _words(_NOISE.sub(" ", text))) >= 2:
        return "en"
    return tag
