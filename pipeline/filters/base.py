"""What every filter shares: the document's text views, computed once, and the Filter shape.

Words: one regex split, shared by every filter (datatrove tokenizes again in each filter, with
spaCy or NLTK). A token is a run of letters and digits (an inner apostrophe keeps "don't" whole),
a single Han or kana character (Chinese and Japanese write no spaces, so their n-grams are
character n-grams), or a run of other non-space symbols ("...", "#", "--"). Tokens with a
letter or digit are words; the rest are symbols. This is close to spaCy's English tokenizer on
English prose; it differs on contractions ("don't" is one token, spaCy's "do" + "n't").
The rules set to `compat: datatrove` count `Document.datatrove_tokens` instead, cut as spaCy
cuts English (datatrove's own words), and C4's sentences as spaCy's sentencizer counts them.
"""

from __future__ import annotations

import re
import unicodedata
from abc import ABC, abstractmethod
from collections import Counter
from functools import cached_property, lru_cache
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
# datatrove's English words are spaCy's tokens. spaCy cuts at whitespace, then peels marks off
# each end of a piece one by one ('"' "Hello" "," '"'; "_" too: Gutenberg's _italics_), splits
# off contractions and possessives ("do" "n't", "Tom" "'s") and splits at a hyphen between
# letters, and no more ("do--'tis", "v.t" stay whole). `datatrove_tokenize` does that:
# _PIECE cuts a piece into (leading marks, the rest, trailing marks).
_PIECE = re.compile(rf"((?:[^\w{_MARKS}]|_)*)(.*?)((?:[^\w{_MARKS}]|_)*)", re.DOTALL)
_SAME_MARK_RUN = re.compile(r"(.)\1*", re.DOTALL)
_CONTRACTION = re.compile(r"(?i)(?<=\w)(?:n['’]t|['’](?:s|d|m|ll|re|ve))$")
_LETTER_HYPHEN = re.compile(r"(?<=[^\W\d_])(-)(?=[^\W\d_])")
# spaCy's English exceptions keep these periods on their word (a sample of the list: the common
# titles and Latin abbreviations, and single letters, as in initials and "n." or "v.")
_ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "st", "jr", "sr", "prof", "rev", "gen", "col", "capt", "lt"}
    | {"sgt", "mt", "ft", "vs", "etc", "e.g", "i.e", "a.m", "p.m", "inc", "ltd", "co", "corp"}
    | {"jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec"}
)
# spaCy's sentencizer ends a sentence at a token that is one of these marks, once a token that
# is not punctuation follows
_SENTENCE_MARKS = frozenset(".!?。！？｡؟۔।॥")
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
    def datatrove_tokens(self) -> list[str]:
        """Tokens cut as spaCy's English tokenizer cuts them (datatrove's words), near enough
        for counting: what `compat: datatrove` rules count."""
        return datatrove_tokenize(self.text)

    @cached_property
    def datatrove_token_counts(self) -> Counter[str]:
        return Counter(self.datatrove_tokens)

    @cached_property
    def words(self) -> list[str]:
        """Tokens with a letter or digit, lowercased: what n-gram matching compares."""
        return [t.lower() for t in self.tokens if is_word(t)]


def tokenize(text: str) -> list[str]:
    if _CJK.search(text):
        text = _CJK.sub(r" \g<0> ", text)
    return TOKEN.findall(text)


def datatrove_tokenize(text: str) -> list[str]:
    """Tokens as spaCy's English tokenizer (datatrove's word tokenizer) cuts them, near enough
    for counting: see _PIECE above."""
    tokens: list[str] = []
    for piece in text.split():
        if piece.isalnum():  # most pieces: a word alone, nothing to cut
            tokens.append(piece)
            continue
        lead, core, trail = _PIECE.fullmatch(piece).groups()  # type: ignore[union-attr]
        if trail.startswith(".") and _is_abbreviation(core):
            core, trail = core + ".", trail[1:]
        _add_marks(tokens, lead)
        contraction = _CONTRACTION.search(core) if "'" in core or "’" in core else None
        if contraction:
            core = core[: contraction.start()]
        if "-" in core:
            tokens += [part for part in _LETTER_HYPHEN.split(core) if part]
        elif core:
            tokens.append(core)
        if contraction:
            tokens.append(contraction.group())
        _add_marks(tokens, trail)
    return tokens


def _add_marks(tokens: list[str], marks: str) -> None:
    """Each mark a token; a run of one mark ("...", "--") one token."""
    if len(marks) == 1:
        tokens.append(marks)
    elif marks:
        tokens += [m.group() for m in _SAME_MARK_RUN.finditer(marks)]


def _is_abbreviation(word: str) -> bool:
    return (len(word) == 1 and word.isalpha()) or word.lower() in _ABBREVIATIONS


def datatrove_sentences(text: str) -> int:
    """Sentences in `text` as spaCy's sentencizer counts them over `datatrove_tokenize`'s
    tokens (datatrove's split_into_sentences): at least 1."""
    if not any(mark in text for mark in _SENTENCE_MARKS):
        return 1
    sentences, ended = 1, False
    for token in datatrove_tokenize(text):
        if token in _SENTENCE_MARKS:
            ended = True
        elif ended and not _is_punctuation(token):
            sentences, ended = sentences + 1, False
    return sentences


@lru_cache(maxsize=4096)
def _is_punctuation(token: str) -> bool:
    return all(unicodedata.category(ch).startswith("P") for ch in token)


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

    def rewrite(self, doc: Document) -> str | None:
        """The text of a kept document for the later steps and the output; None (the default,
        and every filter's but datatrove-compatible C4's) leaves it as it is: filters score and
        drop, and removing lines is the clean stage's work."""
        return None
