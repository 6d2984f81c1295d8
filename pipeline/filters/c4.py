"""C4's page rules (Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a
Unified Text-to-Text Transformer", section 2.2), as datatrove's C4QualityFilter (c4_filters.py),
which follows TensorFlow Datasets' c4_utils.py."""

from __future__ import annotations

import re

from pipeline.config import FilterConfig
from pipeline.filters.base import (
    Document,
    Filter,
    Score,
    below,
    datatrove_sentences,
    first_failure,
)

_CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
_TERMINAL = (".", "?", "!", '"', "'")
_POLICY = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)
# A sentence ends at . ! ? (possibly closed by quotes or brackets) before a space or the end.
_SENTENCE_END = re.compile(r"[.!?]+['\"”’)\]]*(?=\s|$)")


class C4Quality(Filter):
    """C4's rules, scored over the lines C4's line rules keep: a line counts if it ends in
    terminal punctuation (. ? ! " ', not "..."; citations like "[1]" removed first), has at
    least 3 words, no word over 1000 characters, and no "javascript" or cookie / terms-of-use
    phrase. Defaults (the paper and datatrove): drop a page with fewer than 5 sentences in
    counted lines, or with "lorem ipsum" or "{" in a line that reached those checks.

    By default, unlike datatrove, the text is not rewritten here: removing boilerplate lines is
    the clean stage's work, and the filter stage only scores and drops. Sentences are counted
    with a regex (ends . ! ? before a space), not NLTK/spaCy: at least one per counted line. For
    hard-wrapped books a line is a paragraph.

    `compat: datatrove` decides as datatrove 0.10's C4QualityFilter: lines are split at every
    line boundary (`str.splitlines`), and a kept document's text becomes its counted lines
    (joined with line breaks), which is the text the later steps read and the stage writes.
    A line's sentences are counted as datatrove counts them, with spaCy's sentencizer
    (`datatrove_sentences`, which does not end a sentence at "Mr." or "e.g.")."""

    name = "c4_quality"
    scores = ("sentences", "lorem_ipsum", "curly_bracket")

    def __init__(self, cfg: FilterConfig.C4Quality):
        self.cfg = cfg
        # the last document scored and its counted lines: `rewrite` follows `score` on it
        self._last: tuple[Document, list[str]] | None = None

    def score(self, doc: Document) -> dict[str, Score]:
        counted, sentences, lorem_ipsum, curly_bracket = self._counted_lines(doc)
        self._last = (doc, counted) if self.cfg.compat == "datatrove" else None
        return {
            "sentences": float(sentences),
            "lorem_ipsum": float(lorem_ipsum),
            "curly_bracket": float(curly_bracket),
        }

    def rewrite(self, doc: Document) -> str | None:
        if self.cfg.compat != "datatrove":
            return None
        last = self._last
        counted = last[1] if last and last[0] is doc else self._counted_lines(doc)[0]
        return "\n".join(counted).strip()

    def _counted_lines(self, doc: Document) -> tuple[list[str], int, bool, bool]:
        """(the lines that count, their sentences, "lorem ipsum" seen, "{" seen), the lines
        stripped and without citations."""
        cfg = self.cfg
        lines = doc.line_text.splitlines() if cfg.compat == "datatrove" else doc.lines
        counted: list[str] = []
        sentences = 0
        lorem_ipsum = curly_bracket = False
        for line in lines:
            line = line.strip()
            if not line:
                continue
            words = line.split()
            if len(line) > cfg.max_word_length and any(len(w) > cfg.max_word_length for w in words):
                continue
            if cfg.remove_citations and "[" in line:
                line = _CITATION.sub("", line)
            if cfg.terminal_punctuation and (not line.endswith(_TERMINAL) or line.endswith("...")):
                continue
            if len(words) < cfg.min_words_per_line:
                continue
            lower = line.lower()
            lorem_ipsum = lorem_ipsum or "lorem ipsum" in lower
            if cfg.javascript and "javascript" in lower:
                continue
            curly_bracket = curly_bracket or "{" in line
            if cfg.policy and any(p in lower for p in _POLICY):
                continue
            if cfg.compat == "datatrove":
                sentences += datatrove_sentences(line)
            else:
                sentences += len(_SENTENCE_END.findall(line)) or 1
            counted.append(line)
        return counted, sentences, lorem_ipsum, curly_bracket

    def keep(
        self, scores: dict[str, Score], ignore: frozenset[str] = frozenset()
    ) -> tuple[bool, str | None]:
        c, s = self.cfg, scores
        return first_failure(
            ("lorem_ipsum", c.lorem_ipsum and s["lorem_ipsum"] > 0),
            ("curly_bracket", c.curly_bracket and s["curly_bracket"] > 0),
            ("sentences", below(s["sentences"], c.min_sentences)),
            ignore=ignore,
        )
