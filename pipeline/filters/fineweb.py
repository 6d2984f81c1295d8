"""FineWeb's own rules (Penedo et al. 2024, "The FineWeb Datasets", section 3.3.6), as
datatrove's FineWebQualityFilter (fineweb_quality_filter.py)."""

from __future__ import annotations

from collections import Counter

from pipeline.config import FilterConfig
from pipeline.filters.base import Document, Filter, Score, above, first_failure, ratio

_STOP_CHARS = (".", "'", '"', "!", "?")
# datatrove 0.10's stop characters: sentence-ending marks, quotes not among them (its set is
# Unicode's Sentence_Terminal; these are the ones of the scripts our language IDs pass).
_SENTENCE_ENDS = tuple(".!?。！？．｡؟۔।॥‼⁇⁈⁉")  # not "…", which is not in its set


class FineWebQuality(Filter):
    """FineWeb's rules. Defaults (the paper and datatrove): drop a page where 12% or fewer of
    lines end in punctuation (. ' " ! ?), 67% or more of lines are 30 characters or shorter,
    duplicated lines hold 1% or more of the characters (line breaks not counted), or there are
    more than 0.3 line breaks per word. For hard-wrapped books a line is a paragraph. The lines
    are the document's own: C4's line rules never rewrite it here (see C4Quality).

    `compat: datatrove` decides as datatrove 0.10's FineWebQualityFilter, which differs from its
    earlier versions that our defaults follow: blank lines are not lines (ours count them, so a
    page with blank lines between paragraphs has lower punctuation and higher short-line
    ratios), a line ends in punctuation only with a sentence-ending mark (. ! ? and their other
    scripts' forms, not quotes), and the thresholds themselves pass (12% punctuated lines, 67%
    short lines, 1% duplicated characters are kept), and words are counted as datatrove's spaCy
    tokens (`Document.datatrove_tokens`). In a datatrove pipeline FineWeb also reads the text as
    C4QualityFilter rewrote it (the counted lines only): with C4's `compat: datatrove` before
    it, so does ours. That rewrite, not the counting of duplicated characters (which is the
    same), is why datatrove keeps pages we drop for duplicated lines: repeated navigation and
    "Reply" lines end without punctuation, so C4 removed them (219 of bench/curate.py's 6,000
    documents; with every `compat: datatrove` setting the two tools agree on 99.5%)."""

    name = "fineweb_quality"
    scores = ("line_punct_ratio", "short_line_ratio", "char_dup_ratio", "list_ratio")

    def __init__(self, cfg: FilterConfig.FineWebQuality):
        self.cfg = cfg

    def score(self, doc: Document) -> dict[str, Score]:
        datatrove = self.cfg.compat == "datatrove"
        lines = [line for line in doc.lines if line.strip()] if datatrove else doc.lines
        n_lines = len(lines)
        short = self.cfg.short_line_length
        stop_chars = _SENTENCE_ENDS if datatrove else _STOP_CHARS
        dup_chars = sum(
            (count - 1) * len(line)
            for line, count in Counter(line for line in lines if line.strip()).items()
            if count > 1
        )
        line_breaks = len(doc.lines) - 1
        tokens = doc.datatrove_tokens if datatrove else doc.tokens
        return {
            "line_punct_ratio": ratio(
                sum(1 for line in lines if line.endswith(stop_chars)), n_lines
            ),
            "short_line_ratio": ratio(sum(1 for line in lines if len(line) <= short), n_lines),
            "char_dup_ratio": ratio(dup_chars, len(doc.line_text) - line_breaks),
            "list_ratio": ratio(line_breaks, len(tokens)),
        }

    def keep(
        self, scores: dict[str, Score], ignore: frozenset[str] = frozenset()
    ) -> tuple[bool, str | None]:
        c, s = self.cfg, scores
        punct = s["line_punct_ratio"]
        # the paper's code drops at the thresholds; datatrove 0.10 keeps them
        at_limit_drops = c.compat != "datatrove"
        return first_failure(
            (
                "line_punct_ratio",
                _beyond(c.line_punct_thr, punct, at_limit_drops)
                and not (punct == 0 and c.line_punct_exclude_zero),
            ),
            ("short_line_ratio", _beyond(s["short_line_ratio"], c.short_line_thr, at_limit_drops)),
            (
                "char_dup_ratio",
                _beyond(s["char_dup_ratio"], c.char_duplicates_ratio, at_limit_drops),
            ),
            ("list_ratio", above(s["list_ratio"], c.new_line_ratio)),
            ignore=ignore,
        )


def _beyond(value: Score, limit: Score, at_limit: bool) -> bool:
    """value > limit (or >= with `at_limit`); a None on either side never drops."""
    if value is None or limit is None:
        return False
    return value >= limit if at_limit else value > limit
