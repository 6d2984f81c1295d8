"""Gopher's quality and repetition rules (Rae et al. 2021, "Scaling Language Models: Methods,
Analysis & Insights from Training Gopher", appendix A.1.1 and table A1), with the definitions and
thresholds of datatrove's gopher_quality_filter.py and gopher_repetition_filter.py, so that
results compare. Words are pipeline.filters.base's tokens (datatrove uses spaCy's)."""

from __future__ import annotations

import re

import numpy as np

from pipeline.config import FilterConfig
from pipeline.filters.base import (
    Document,
    Filter,
    Score,
    above,
    below,
    duplicate_chars,
    first_failure,
    is_word,
    ratio,
)

_BULLET_LINE = re.compile(r"^[^\S\n]*[•\-]", re.MULTILINE)
_ELLIPSIS_LINE = re.compile(r"(?:\.\.\.|…)[^\S\n]*$", re.MULTILINE)
# a whitespace-separated word without a letter: only digits, "_" and symbols
_NO_LETTER_WORD = re.compile(r"(?<!\S)(?:[^\w\s]|[\d_])+(?!\S)")
_LETTER = re.compile(r"[^\W\d_]")  # str.isalpha's letters, one of them
_PARAGRAPH_BREAK = re.compile(r"\n{2,}")
_LINE_BREAK = re.compile(r"\n+")


class GopherQuality(Filter):
    """Gopher's quality rules. Defaults (datatrove's GopherQualityFilter, from the paper): 50 to
    100,000 words; mean word length 3 to 10 characters; at most 0.1 "#" and at most 0.1
    ellipses per word; at most 90% of lines starting with a bullet ("•" or "-") and at most 30%
    ending with an ellipsis; at least 80% of words with a letter; at least 2 of the stop words
    "the be to of and that have with" (case-sensitive, as datatrove).

    Word counts and lengths count words (not symbols); the "#" and ellipsis ratios divide by all
    tokens, as datatrove does. The alphabetic-word ratio counts whitespace-separated words, as
    the paper words it: datatrove counts every punctuation token as a word without a letter,
    which drops clean prose (5 of the 20 CCNet head-bucket documents in web-text-cc/ score 0.77
    to 0.79 that way; 310 of bench/curate.py's 6,000 documents). The stop-word rule counts
    occurrences ("the ... the" is 2), as datatrove did before 0.10. For hard-wrapped books the
    line ratios count paragraphs.

    `compat: datatrove` decides as datatrove 0.10's GopherQualityFilter: the alphabetic-word
    ratio is tokens with a letter over all tokens (punctuation included), the stop-word rule
    counts distinct stop words (nearer the paper's "at least two of the following"), and every
    count is of tokens cut as spaCy's English tokenizer cuts them (`Document.datatrove_tokens`:
    "do" "n't", each punctuation mark a token)."""

    name = "gopher_quality"
    scores = (
        "words",
        "mean_word_length",
        "hash_ratio",
        "ellipsis_ratio",
        "bullet_lines_ratio",
        "ellipsis_lines_ratio",
        "alpha_words_ratio",
        "stop_words",
    )

    def __init__(self, cfg: FilterConfig.GopherQuality):
        self.cfg = cfg
        self.stop_words = frozenset(cfg.stop_words)

    def score(self, doc: Document) -> dict[str, Score]:
        text = doc.text
        datatrove = self.cfg.compat == "datatrove"
        counts = doc.datatrove_token_counts if datatrove else doc.token_counts
        n_tokens = counts.total()
        n_words = word_chars = 0
        for token, count in counts.items():
            if is_word(token):
                n_words += count
                word_chars += count * len(token)
        if datatrove:
            alpha_words = ratio(sum(c for t, c in counts.items() if _has_letter(t)), n_tokens)
            stop_words = sum(1 for w in self.stop_words if w in counts)
        else:
            spaced_words = len(text.split())
            alpha_words = ratio(spaced_words - len(_NO_LETTER_WORD.findall(text)), spaced_words)
            stop_words = sum(counts[w] for w in self.stop_words)
        n_lines = len(doc.lines)
        return {
            "words": float(n_words),
            "mean_word_length": ratio(word_chars, n_words),
            "hash_ratio": ratio(text.count("#"), n_tokens),
            "ellipsis_ratio": ratio(text.count("...") + text.count("…"), n_tokens),
            "bullet_lines_ratio": ratio(len(_BULLET_LINE.findall(doc.line_text)), n_lines),
            "ellipsis_lines_ratio": ratio(len(_ELLIPSIS_LINE.findall(doc.line_text)), n_lines),
            "alpha_words_ratio": alpha_words,
            "stop_words": float(stop_words),
        }

    def keep(
        self, scores: dict[str, Score], ignore: frozenset[str] = frozenset()
    ) -> tuple[bool, str | None]:
        c, s = self.cfg, scores
        return first_failure(
            ("words", below(s["words"], c.min_doc_words) or above(s["words"], c.max_doc_words)),
            (
                "mean_word_length",
                below(s["mean_word_length"], c.min_avg_word_length)
                or above(s["mean_word_length"], c.max_avg_word_length),
            ),
            ("hash_ratio", above(s["hash_ratio"], c.max_symbol_word_ratio)),
            ("ellipsis_ratio", above(s["ellipsis_ratio"], c.max_symbol_word_ratio)),
            ("bullet_lines_ratio", above(s["bullet_lines_ratio"], c.max_bullet_lines_ratio)),
            ("ellipsis_lines_ratio", above(s["ellipsis_lines_ratio"], c.max_ellipsis_lines_ratio)),
            ("alpha_words_ratio", below(s["alpha_words_ratio"], c.min_alpha_words_ratio)),
            ("stop_words", below(s["stop_words"], c.min_stop_words)),
            ignore=ignore,
        )


class GopherRepetition(Filter):
    """Gopher's repetition rules (table A1), as datatrove's GopherRepetitionFilter. Defaults:
    duplicate paragraphs at most 30% of paragraphs and 20% of characters; duplicate lines at
    most 30% of lines and 20% of characters; the most frequent 2-, 3-, 4-gram at most 20%, 18%,
    16% of characters; duplicated 5- to 10-grams at most 15%, 14%, 13%, 12%, 11%, 10% of
    characters. Character fractions divide by the length of the text; paragraphs are split at
    blank lines, lines at line breaks (for hard-wrapped books, at paragraphs).

    The same numbers as datatrove's, computed faster (see `_ngram_chars`), over our tokens:
    `compat: datatrove` changes nothing here (datatrove's spaCy tokens cut punctuation finer,
    which moved 3 of bench/curate.py's 6,000 documents across a threshold)."""

    name = "gopher_repetition"

    def __init__(self, cfg: FilterConfig.GopherRepetition):
        self.cfg = cfg

    @classmethod
    def score_names(cls, cfg: FilterConfig.GopherRepetition) -> tuple[str, ...]:
        return (
            "dup_para_frac",
            "dup_para_char_frac",
            "dup_line_frac",
            "dup_line_char_frac",
            *(f"top_{n}_gram" for n in sorted(cfg.top_n_grams)),
            *(f"dup_{n}_gram" for n in sorted(cfg.dup_n_grams)),
        )

    def score(self, doc: Document) -> dict[str, Score]:
        text_chars = len(doc.text)
        paragraphs = _PARAGRAPH_BREAK.split(doc.text.strip())
        para_repeats, para_chars = duplicate_chars(paragraphs)
        lines = _LINE_BREAK.split(doc.line_text)
        line_repeats, line_chars = duplicate_chars(lines)
        scores: dict[str, Score] = {
            "dup_para_frac": ratio(para_repeats, len(paragraphs)),
            "dup_para_char_frac": ratio(para_chars, text_chars),
            "dup_line_frac": ratio(line_repeats, len(lines)),
            "dup_line_char_frac": ratio(line_chars, text_chars),
        }
        for name, chars in self._ngram_chars(doc).items():
            scores[name] = ratio(chars, text_chars)
        return scores

    def _ngram_chars(self, doc: Document) -> dict[str, int]:
        """Characters in the top n-gram (times its count) and in duplicated n-grams.

        N-grams are numbered with numpy, n by n: the n-gram at p is the (n-1)-gram at p plus
        token p+n-1. An n-gram can only repeat where its (n-1)-gram does, so each n looks only
        at those positions, fewer and fewer."""
        top, dup = self.cfg.top_n_grams, self.cfg.dup_n_grams
        tokens = doc.tokens
        n_tokens = len(tokens)
        vocabulary = {token: i for i, token in enumerate(doc.token_counts)}
        token_ids = np.fromiter(map(vocabulary.__getitem__, tokens), np.int64, n_tokens)
        offsets = np.zeros(n_tokens + 1, np.int64)  # offsets[i]: characters in tokens[:i]
        token_lengths = np.fromiter(map(len, vocabulary), np.int64, len(vocabulary))
        np.cumsum(token_lengths[token_ids], out=offsets[1:])
        # datatrove: with no n-gram repeated, the first n-gram (once) is the top one
        chars = {
            f"top_{n}_gram": _joined_length(offsets, 0, n) if n_tokens >= n else 0
            for n in sorted(top)
        } | {f"dup_{n}_gram": 0 for n in sorted(dup)}
        starts, gram_ids = np.arange(n_tokens), token_ids  # where an n-gram may repeat, its id
        for n in range(2, max([*top, *dup], default=1) + 1):
            inside = starts + n <= n_tokens
            starts, gram_ids = starts[inside], gram_ids[inside]
            if not len(starts):
                break
            keys = gram_ids * len(vocabulary) + token_ids[starts + n - 1]
            _, first, gram_ids, counts = np.unique(
                keys, return_index=True, return_inverse=True, return_counts=True
            )
            if n in top and counts.max() > 1:
                # the first (by position) of the most frequent n-grams, as Counter.most_common
                best = counts.max()
                at = int(starts[first[counts == best].min()])
                chars[f"top_{n}_gram"] = _joined_length(offsets, at, n) * int(best)
            repeated = counts[gram_ids] > 1
            starts, gram_ids = starts[repeated], gram_ids[repeated]
            if n in dup:
                chars[f"dup_{n}_gram"] = _duplicated_chars(starts, gram_ids, n, offsets)
        return chars

    def keep(
        self, scores: dict[str, Score], ignore: frozenset[str] = frozenset()
    ) -> tuple[bool, str | None]:
        c, s = self.cfg, scores
        return first_failure(
            ("dup_para_frac", above(s["dup_para_frac"], c.dup_para_frac)),
            ("dup_para_char_frac", above(s["dup_para_char_frac"], c.dup_para_char_frac)),
            ("dup_line_frac", above(s["dup_line_frac"], c.dup_line_frac)),
            ("dup_line_char_frac", above(s["dup_line_char_frac"], c.dup_line_char_frac)),
            *((f"top_{n}_gram", above(s[f"top_{n}_gram"], t)) for n, t in c.top_n_grams.items()),
            *((f"dup_{n}_gram", above(s[f"dup_{n}_gram"], t)) for n, t in c.dup_n_grams.items()),
            ignore=ignore,
        )


def _has_letter(token: str) -> bool:
    return token.isalpha() or _LETTER.search(token) is not None


def _joined_length(offsets: np.ndarray, at: int, n: int) -> int:
    """Length of the n-gram at `at` joined with spaces, as datatrove measures the top n-gram."""
    return int(offsets[at + n] - offsets[at]) + n - 1


def _duplicated_chars(starts: np.ndarray, gram_ids: np.ndarray, n: int, offsets: np.ndarray) -> int:
    """datatrove's find_all_duplicate: scan left to right; an n-gram seen before counts its
    characters ("".join) and the scan jumps past it. Only n-grams that occur more than once can
    count, so only their positions (`starts`, ascending) are visited."""
    seen: set[int] = set()
    chars = next_start = 0
    for p, gram in zip(starts.tolist(), gram_ids.tolist(), strict=True):
        if p < next_start:
            continue  # inside a counted duplicate: the scan jumped over it
        if gram in seen:
            chars += int(offsets[p + n] - offsets[p])
            next_start = p + n
        else:
            seen.add(gram)
            next_start = p + 1
    return chars
