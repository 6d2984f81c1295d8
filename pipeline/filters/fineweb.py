"""FineWeb's own rules (Penedo et al. 2024, "The FineWeb Datasets", section 3.3.6), as
datatrove's FineWebQualityFilter (fineweb_quality_filter.py)."""

from __future__ import annotations

from collections import Counter

from pipeline.config import FilterConfig
from pipeline.filters.base import Document, Filter, Score, above, first_failure, ratio

_STOP_CHARS = (".", "'", '"', "!", "?")


class FineWebQuality(Filter):
    """FineWeb's rules. Defaults (the paper and datatrove): drop a page where 12% or fewer of
    lines end in punctuation (. ' " ! ?), 67% or more of lines are 30 characters or shorter,
    duplicated lines hold 1% or more of the characters (line breaks not counted), or there are
    more than 0.3 line breaks per word. For hard-wrapped books a line is a paragraph."""

    name = "fineweb_quality"
    scores = ("line_punct_ratio", "short_line_ratio", "char_dup_ratio", "list_ratio")

    def __init__(self, cfg: FilterConfig.FineWebQuality):
        self.cfg = cfg

    def score(self, doc: Document) -> dict[str, Score]:
        lines, n_lines = doc.lines, len(doc.lines)
        short = self.cfg.short_line_length
        dup_chars = sum(
            (count - 1) * len(line)
            for line, count in Counter(line for line in lines if line.strip()).items()
            if count > 1
        )
        line_breaks = n_lines - 1
        return {
            "line_punct_ratio": ratio(
                sum(1 for line in lines if line.endswith(_STOP_CHARS)), n_lines
            ),
            "short_line_ratio": ratio(sum(1 for line in lines if len(line) <= short), n_lines),
            "char_dup_ratio": ratio(dup_chars, len(doc.line_text) - line_breaks),
            "list_ratio": ratio(line_breaks, len(doc.tokens)),
        }

    def keep(
        self, scores: dict[str, Score], ignore: frozenset[str] = frozenset()
    ) -> tuple[bool, str | None]:
        c, s = self.cfg, scores
        punct = s["line_punct_ratio"]
        return first_failure(
            (
                "line_punct_ratio",
                c.line_punct_thr is not None
                and punct <= c.line_punct_thr
                and not (punct == 0 and c.line_punct_exclude_zero),
            ),
            (
                "short_line_ratio",
                c.short_line_thr is not None and s["short_line_ratio"] >= c.short_line_thr,
            ),
            (
                "char_dup_ratio",
                c.char_duplicates_ratio is not None
                and s["char_dup_ratio"] >= c.char_duplicates_ratio,
            ),
            ("list_ratio", above(s["list_ratio"], c.new_line_ratio)),
            ignore=ignore,
        )
