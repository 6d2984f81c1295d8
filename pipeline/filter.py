"""The filter stage, per document: the configured filters (pipeline/filters/) in order.

Each filter writes its scores on the document as columns `<filter>_<score>` (float64, or text
for `language_detected` and the blocklist's matches; `score_fields` lists them), so thresholds
can be revisited on stored scores. A document stops at the first filter that drops it, as in
datatrove; the scores of filters that did not run stay null.

A dropped document's reason is `<filter>:<rule>`, where the rule names the score that failed
(`gopher_quality:mean_word_length`, `language:detected`, `url_blocklist:domain`), and its detail
is that score's value (`mean_word_length=2.13`, `detected=fr`). A filter whose `skip_kinds`
holds the document's source kind passes it unscored; `ignore_rules` lists, per source kind,
rules that do not drop (by default books may exceed Gopher's 100,000 words and contain "{").
Books are hard-wrapped: their line rules read paragraphs (`hard_wrapped_kinds`, see
pipeline/filters/base.py). Tallies: `<filter>_scored` and `<filter>_skipped`. Filters leave the
text as it is, except C4 with `compat: datatrove`, which keeps only the lines it counted, as
datatrove's C4QualityFilter does (`Filter.rewrite`): the later steps read that text.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from pipeline.config import ConfigError, FilterConfig
from pipeline.filters import FILTERS, Document, Filter

NAME = "filter"
CODE_VERSION = "2"

DocumentFn = Callable[[dict[str, Any], Counter], tuple[str, str] | None]


def score_fields(cfg: FilterConfig) -> list[pa.Field]:
    """The score columns the stage adds, in step order."""
    return [field for name in cfg.steps for field in FILTERS[name].fields(getattr(cfg, name))]


def prepare(cfg: FilterConfig) -> DocumentFn:
    """Make the filters (models and lists load here, once) and return the document function."""
    steps = [make_step(name, getattr(cfg, name)) for name in cfg.steps]
    hard_wrapped = frozenset(cfg.hard_wrapped_kinds)
    nothing: frozenset[str] = frozenset()

    def filter_document(row: dict[str, Any], counts: Counter) -> tuple[str, str] | None:
        kind = row.get("source_kind")
        doc = Document(row, hard_wrapped=kind in hard_wrapped)
        for step, skip_kinds, ignore_rules in steps:
            if kind in skip_kinds:
                counts[f"{step.name}_skipped"] += 1
                continue
            counts[f"{step.name}_scored"] += 1
            scores = step.score(doc)
            for score, value in scores.items():
                row[f"{step.name}_{score}"] = value
            keep, rule = step.keep(scores, ignore_rules.get(kind, nothing))
            if not keep:
                return f"{step.name}:{rule}", f"{rule}={_show(scores[rule])}"
            text = step.rewrite(doc)
            if text is not None:
                row["text"] = text
                doc = Document(row, hard_wrapped=doc.hard_wrapped)  # its views were of the old text
        return None

    return filter_document


def make_step(
    name: str, section: FilterConfig.Step
) -> tuple[Filter, frozenset[str], dict[str, frozenset[str]]]:
    """A step's filter, the source kinds it skips and the rules it ignores per kind."""
    cls = FILTERS[name]
    unknown = {r for rules in section.ignore_rules.values() for r in rules} - set(
        cls.score_names(section)
    )
    if unknown:
        raise ConfigError(
            f"filter.{name}.ignore_rules: no such rule {', '.join(sorted(unknown))} "
            f"(its rules: {', '.join(cls.score_names(section))})"
        )
    ignore = {kind: frozenset(rules) for kind, rules in section.ignore_rules.items()}
    return cls(section), frozenset(section.skip_kinds), ignore


def _show(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def external_files(cfg: FilterConfig) -> list[str]:
    """Files the output depends on besides the config (models, lists, evaluation texts), for
    the version key: a changed list must give a new version."""
    sections = {name: getattr(cfg, name) for name in cfg.steps}
    files = [s.model for s in (sections.get("language"), sections.get("quality")) if s and s.model]
    if "url_blocklist" in sections:
        files += cfg.url_blocklist.files
    if "decontamination" in sections:
        files += cfg.decontamination.eval_files
    return files


def resolve_paths(cfg: FilterConfig, resolve: Callable[[str], str]) -> FilterConfig:
    """The config with its file paths passed through `resolve` (RunConfig.resolve: relative to
    the config file's folder)."""
    return cfg.model_copy(
        update={
            "language": cfg.language.model_copy(
                update={"model": cfg.language.model and resolve(cfg.language.model)}
            ),
            "quality": cfg.quality.model_copy(
                update={"model": cfg.quality.model and resolve(cfg.quality.model)}
            ),
            "url_blocklist": cfg.url_blocklist.model_copy(
                update={"files": [resolve(f) for f in cfg.url_blocklist.files]}
            ),
            "decontamination": cfg.decontamination.model_copy(
                update={"eval_files": [resolve(f) for f in cfg.decontamination.eval_files]}
            ),
        }
    )
