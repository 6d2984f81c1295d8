"""What every filter shares: the document's text views, computed once, and the Filter shape.

Words: one regex split, shared by every filter (datatrove tokenizes again in each filter, with
spaCy or NLTK). A token is a run of letters and digits (an inner apostrophe keeps "don't" whole),
a single Han or kana character (Chinese and Japanese write no spaces, so their n-grams are
character n-grams), or a run of other non-space symbols ("...", "#", "--"). Tokens with a
letter or digit are words; the rest are symbols. This is close to spaCy's English tokenizer on
English prose; it differs on contractions ("don't" is one token, spaCy's "do" + "n't").
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections import Counter
from functools import cached_property
from typing import Any, ClassVar

import pyarrow as pa

# Han and kana: each character is a token (spaces are put around them before the split).
_CJK = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# Combining marks and the letters of scripts that use them (Indic, Thai, Hebrew and Arabic
# points...): `\w` alone would cut "नमस्ते" at its vowel signs.
_MARKS = (
    "\u0300-\u036f\u0483-\u0489\u0591-\u05c7\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed"
    "\u0900-\u0963\u0966-\u0dff\u0e00-\u0eff\u0f00-\u0fff\u1000-\u109f\u1780-\u17ff\u200c\u200d"
)
TOKEN = re.compile(rf"[\w{_MARKS}]+(?:['’][\w{_MARKS}]+)*|[^\w\s{_MARKS}]+")
_WORD_START = re.compile(rf"[\w{_MARKS}]")
_HARD_WRAP = re.compile(r"(?<=[^\n])\n(?=[^\n])")  # a line break inside a paragraph

Score = float | str | None


class Document:
    """One document row and the views of its text that filters share, each made on first use."""

    def __init__(self, row: dict[str, Any], hard_wrapped: bool = False):
        self.row = row
        self.text: str = row.get("text") or ""
        self.hard_wrapped = hard_wrapped

    @cached_property
    def line_text(self) -> str:
        """The text that line rules read: for hard-wrapped text (books), each paragraph is one
        line (the line breaks inside it become spaces)."""
        return _HARD_WRAP.sub(" ", self.text) if self.hard_wrapped else self.text

    @cached_property
    def lines(self) -> list[str]:
        return self.line_text.split("\n")

    @cached_property
    def tokens(self) -> list[str]:
        return tokenize(self.text)

    @cached_property
    def token_counts(self) -> Counter[str]:
        return Counter(self.tokens)

    @cached_property
    def words(self) -> list[str]:
        """Tokens with a letter or digit, lowercased: what n-gram matching compares."""
        return [t.lower() for t in self.tokens if is_word(t)]


def tokenize(text: str) -> list[str]:
    if _CJK.search(text):
        text = _CJK.sub(r" \g<0> ", text)
    return TOKEN.findall(text)


def is_word(token: str) -> bool:
    return _WORD_START.match(token) is not None  # a token is all word characters or none


def ratio(part: float, whole: float) -> float:
    """part / whole, and 0.0 for a ratio over nothing (an empty document)."""
    return part / whole if whole else 0.0


def below(value: Score, limit: float | None) -> bool:
    """The value is under a minimum (None: no minimum)."""
    return limit is not None and value < limit


def above(value: Score, limit: float | None) -> bool:
    """The value is over a maximum (None: no maximum)."""
    return limit is not None and value > limit


def first_failure(
    *checks: tuple[str, bool], ignore: frozenset[str] = frozenset()
) -> tuple[bool, str | None]:
    """`keep`'s answer from (rule, failed) pairs in the order the rules are applied."""
    for rule, failed in checks:
        if failed and rule not in ignore:
            return False, rule
    return True, None


def duplicate_chars(items: list[str]) -> tuple[int, int]:
    """(repeats, characters in the repeats) of a list: every copy after an item's first."""
    repeats = chars = 0
    for item, count in Counter(items).items():
        if count > 1:
            repeats += count - 1
            chars += (count - 1) * len(item)
    return repeats, chars


class Filter(ABC):
    """A filter scores a document (the scores become columns `<name>_<score>`) and decides from
    the scores alone, so a threshold can be tried again on stored scores without recomputing.
    A rule is named by the score it tests."""

    name: ClassVar[str]
    scores: ClassVar[tuple[str, ...]] = ()  # the score names, in column order
    text_scores: ClassVar[frozenset[str]] = frozenset()  # scores that are strings, not floats

    @classmethod
    def score_names(cls, cfg: Any) -> tuple[str, ...]:
        """The scores this filter writes with these settings (its config section)."""
        return cls.scores

    @classmethod
    def fields(cls, cfg: Any) -> list[pa.Field]:
        return [
            pa.field(f"{cls.name}_{s}", pa.string() if s in cls.text_scores else pa.float64())
            for s in cls.score_names(cfg)
        ]

    @abstractmethod
    def score(self, doc: Document) -> dict[str, Score]: ...

    @abstractmethod
    def keep(
        self, scores: dict[str, Score], ignore: frozenset[str] = frozenset()
    ) -> tuple[bool, str | None]:
        """(True, None) to keep; (False, the first failed rule not in `ignore`) to drop."""
