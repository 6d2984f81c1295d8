"""`textmill report`: one self-contained HTML page on what a run made of its crawl.

The page has no external assets (inline CSS, charts as inline SVG, a Content-Security-Policy
that forbids loading anything else), so it opens from disk or as an e-mail attachment. It shows:

- the funnel: documents in and out of each document stage, and dropped per reason (manifests);
- the length of the documents kept (the curated dataset the tokenizer reads) and dropped (every
  document stage's `rejected/`);
- each filter's scores over the documents it scored, split into passed, dropped by this rule
  and dropped by its other rules, with the limits its `keep` applied drawn on them;
- languages and domains, kept and dropped; dedup cluster sizes (`clusters.parquet`);
- tokens per split (the shards manifest); the training curve in bits per byte, every evaluation
  (`runs/<run>/metrics.jsonl`) and the unigram baseline;
- a few documents kept and a few dropped per reason, escaped.

Charts are as wide as the page's column, with ticks on round numbers (1, 2 or 5 x 10^k) and a
log axis where values span two orders of magnitude or more (`_axis`).

Counts come from manifests; distributions are aggregated by DuckDB over the Parquet parts
(reading only the columns it needs), and samples are chosen by id hash before their text is
read, so the report stays quick on millions of documents.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import duckdb
import numpy as np

from pipeline.config import FilterConfig, RunConfig
from pipeline.datasets import Dataset, DatasetError
from pipeline.inspect import connect, parquet_source
from pipeline.stages import pipeline_order
from pipeline.workspace import TOP_LEVEL_STAGES, Workspace

BINS = 30  # histogram bins
TOP = 15  # languages and domains shown; the rest are summed as "other"
KEPT_SAMPLES = 5
DROPPED_SAMPLES_PER_REASON = 2
PREVIEW_CHARS = 600  # of each sample's text
REPORTS_FOLDER = "reports"


# ----- DuckDB over the Parquet parts -----


def dataset_source(ws: Workspace, dataset: Dataset, rejected: bool = False) -> str | None:
    """A `read_parquet(...)` of a dataset's parts (or its rejected parts); None if it has none."""
    return parquet_source(ws, dataset.part_paths(rejected))


def columns_of(con: duckdb.DuckDBPyConnection, source: str) -> set[str]:
    return {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}


def kept_samples(
    con: duckdb.DuckDBPyConnection, source: str, n: int = KEPT_SAMPLES
) -> list[dict[str, Any]]:
    """`n` documents, chosen by id hash (the same ones every time), text cut to a preview."""
    query = f"SELECT id FROM {source} ORDER BY hash(id) LIMIT {n}"
    ids = [row[0] for row in con.execute(query).fetchall()]
    return _documents(con, source, ids, "")


def dropped_samples(
    con: duckdb.DuckDBPyConnection, source: str, per_reason: int = DROPPED_SAMPLES_PER_REASON
) -> list[dict[str, Any]]:
    """Up to `per_reason` rejected documents of each (stage, reason), chosen by id hash."""
    ids = [
        row[0]
        for row in con.execute(
            f"SELECT id FROM {source} QUALIFY row_number() OVER "
            f"(PARTITION BY stage, reason ORDER BY hash(id)) <= {per_reason}"
        ).fetchall()
    ]
    return _documents(con, source, ids, ", stage, reason, detail")


def _documents(
    con: duckdb.DuckDBPyConnection, source: str, ids: list[str], more: str
) -> list[dict[str, Any]]:
    """The rows of `ids` (only their text is read in full, so only theirs is previewed)."""
    if not ids:
        return []
    query = (
        f"SELECT id, url, left(text, {PREVIEW_CHARS}) AS text, strlen(text) AS bytes{more} "
        f"FROM {source} WHERE list_contains($ids, id) ORDER BY {'stage, reason, ' if more else ''}"
        "hash(id)"
    )
    cursor = con.execute(query, {"ids": ids})
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


@dataclass(frozen=True)
class Limit:
    """A threshold a filter's `keep` compares a score with: it drops a document whose score is
    `op` `value` (op: <, <=, > or >=). `config` marks a limit of the run config that the filter
    version shown was not built with (a threshold tried on the stored scores)."""

    op: str
    value: float
    config: bool = False

    @property
    def drops_below(self) -> bool:
        return self.op.startswith("<")

    def boundary(self, integer: bool) -> float:
        """Where the line goes: the value itself, or for integer scores the half-integer
        between the last kept and the first dropped value, so no bar straddles it."""
        if not integer:
            return self.value
        inclusive = self.op in ("<=", ">=")
        if self.drops_below == inclusive:  # <= t and > t: floor(t) is the last on the low side
            return math.floor(self.value) + 0.5
        return math.ceil(self.value) - 0.5

    def label(self, where: str = "") -> str:
        rule = f"{self.op.replace('<=', '≤').replace('>=', '≥')} {_number(self.value)}"
        text = (f"config now: {rule}" if self.config else f"{rule} dropped") + where
        return f"← {text}" if self.drops_below else f"{text} →"


def score_limits(cfg: FilterConfig) -> dict[str, list[Limit]]:
    """Each score column's limits under `cfg`: the comparisons of the filters' `keep` rules
    (pipeline/filters/*.py), written out here because a filter does not expose them;
    tests/test_report.py checks every one against the filter's own `keep`. A rule turned off
    (None, False) has no limit; a score missing here (a plugin's) is drawn without one."""
    g, r = cfg.gopher_quality, cfg.gopher_repetition
    c4, fw = cfg.c4_quality, cfg.fineweb_quality
    rules: dict[str, list[tuple[str, float | None]]] = {
        "language_score": [("<", cfg.language.min_score)],
        "gopher_quality_words": [("<", g.min_doc_words), (">", g.max_doc_words)],
        "gopher_quality_mean_word_length": [
            ("<", g.min_avg_word_length),
            (">", g.max_avg_word_length),
        ],
        "gopher_quality_hash_ratio": [(">", g.max_symbol_word_ratio)],
        "gopher_quality_ellipsis_ratio": [(">", g.max_symbol_word_ratio)],
        "gopher_quality_bullet_lines_ratio": [(">", g.max_bullet_lines_ratio)],
        "gopher_quality_ellipsis_lines_ratio": [(">", g.max_ellipsis_lines_ratio)],
        "gopher_quality_alpha_words_ratio": [("<", g.min_alpha_words_ratio)],
        "gopher_quality_stop_words": [("<", g.min_stop_words)],
        "gopher_repetition_dup_para_frac": [(">", r.dup_para_frac)],
        "gopher_repetition_dup_para_char_frac": [(">", r.dup_para_char_frac)],
        "gopher_repetition_dup_line_frac": [(">", r.dup_line_frac)],
        "gopher_repetition_dup_line_char_frac": [(">", r.dup_line_char_frac)],
        **{f"gopher_repetition_top_{n}_gram": [(">", t)] for n, t in r.top_n_grams.items()},
        **{f"gopher_repetition_dup_{n}_gram": [(">", t)] for n, t in r.dup_n_grams.items()},
        "c4_quality_sentences": [("<", c4.min_sentences)],
        "c4_quality_lorem_ipsum": [(">", 0.0 if c4.lorem_ipsum else None)],  # 1.0: found
        "c4_quality_curly_bracket": [(">", 0.0 if c4.curly_bracket else None)],
        # with line_punct_exclude_zero a score of 0 is kept too: the line is still right above 0
        "fineweb_quality_line_punct_ratio": [("<=", fw.line_punct_thr)],
        "fineweb_quality_short_line_ratio": [(">=", fw.short_line_thr)],
        "fineweb_quality_char_dup_ratio": [(">=", fw.char_duplicates_ratio)],
        "fineweb_quality_list_ratio": [(">", fw.new_line_ratio)],
        "quality_score": [("<", cfg.quality.min_score)],
        "decontamination_matches": [(">=", cfg.decontamination.min_matches)],
    }
    return {
        column: [Limit(op, float(value)) for op, value in pairs if value is not None]
        for column, pairs in rules.items()
    }


@dataclass
class Histogram:
    """Documents per bin, one list of counts per series (stacked in this order). `edges` (one
    more than bins) and `ticks` are in axis units: log10 of the values on a log axis. `lines`
    are the limits on the axis with their positions; `off_axis` the ones too far to draw."""

    edges: list[float]
    counts: dict[str, list[int]]
    log: bool
    ticks: list[float]
    lines: list[tuple[float, Limit]]
    off_axis: list[Limit]
    integer: bool  # one bin per integer value, centred on it


def load_values(con: duckdb.DuckDBPyConnection, selects: list[str]) -> bool:
    """Read the values that histograms bin into a temporary table, once for all their columns;
    False if there is nothing to read."""
    if not selects:
        return False
    con.execute(f"CREATE OR REPLACE TEMP TABLE hist_values AS {' UNION ALL '.join(selects)}")
    return True


def histogram(
    con: duckdb.DuckDBPyConnection,
    column: str,
    series: str,
    names: list[str],
    limits: list[Limit] | None = None,
) -> Histogram | None:
    """`column` of `hist_values` in bins (see `_axis`), each document counted in the series
    that the SQL expression `series` numbers (0 for names[0], ...); None if no document has a
    value."""
    values = f"(SELECT {series} AS s, {column} AS x FROM hist_values WHERE isfinite({column}))"
    found = con.execute(
        "SELECT min(x), max(x), quantile_cont(x, 0.01), quantile_cont(x, 0.99), "
        f"bool_and(x = round(x)) FROM {values}"
    ).fetchone()
    if found[0] is None:
        return None
    hist = _axis(*map(float, found[:4]), bool(found[4]), limits or [])
    start, width = hist.edges[0], hist.edges[1] - hist.edges[0]
    bins = len(hist.edges) - 1
    at = f"(({'log10(x)' if hist.log else 'x'}) - {start}) / {width}"
    # A value on an edge goes to the side its limits keep it on: below the line of a "> t" or
    # "<= t" (as 0.3 of "dup_line_frac > 0.3" is kept), else above (1e-9: whatever the rounding).
    if hist.lines and all(x.op in (">", "<=") for _, x in hist.lines):
        at = f"ceil({at} - 1e-9) - 1"
    else:
        at = f"floor({at} + 1e-9)"
    rows = con.execute(
        f"SELECT s, least(greatest({at}, 0), {bins - 1})::INT, count(*) FROM {values} GROUP BY ALL"
    ).fetchall()
    hist.counts = {name: [0] * bins for name in names}
    for s, bin_, n in rows:
        hist.counts[names[s]][bin_] += n
    return hist


def _axis(
    low: float, high: float, p1: float, p99: float, integer: bool, limits: list[Limit]
) -> Histogram:
    """The bins and ticks (counts still empty) for values from `low` to `high`:

    - log scale when they are positive and the 99th percentile is at least 100 times the 1st
      (lengths, word counts), so that a skewed distribution fills the chart, not one bar;
    - one bin per value, centred on it, for fewer than BINS integers under integer limits
      (counts, flags), so that a limit's line falls between two bars;
    - else from the 1st to the 99th percentile: values beyond are counted in the end bins, so
      that one outlier does not squash the rest.

    The axis widens to the limits near the values (`_place`); its ends are round numbers, and
    it does not go below 0 for values that do not."""
    log = low > 0 and p99 >= 100 * p1
    ends = [low, high, *(x.value for x in limits)]
    integer = (
        integer
        and not log
        and all(x.value == round(x.value) for x in limits)
        and max(ends) - min(ends) < BINS - 1
    )
    if integer:
        p1, p99 = low, high
    lines, off_axis = _place(limits, low, high, p1, p99, log, integer)
    positions = [at for at, _ in lines]
    lo = min([math.log10(p1) if log else p1, *positions])
    hi = max([math.log10(p99) if log else p99, *positions])
    if integer:
        first, last = math.ceil(lo - 0.5), math.floor(hi + 0.5)
        edges = [k - 0.5 for k in range(first, last + 2)]
        ticks = [t for t in linear_ticks(first, last, 6, integer=True) if first <= t <= last]
        return Histogram(edges, {}, False, ticks, lines, off_axis, True)
    if hi - lo < 1e-9:  # one value: a unit around it
        lo, hi = lo - 0.5, hi + 0.5
    pad = 0.04 * (hi - lo)  # a line at an end does not sit on the frame
    lo -= pad if positions and min(positions) <= lo else 0
    hi += pad if positions and max(positions) >= hi else 0
    if log:
        ticks = [math.log10(t) for t in log_ticks(10**lo, 10**hi)]
        width = (ticks[-1] - ticks[0]) / BINS
    else:
        ticks = linear_ticks(max(lo, 0.0) if low >= 0 else lo, hi, 5)
        width = _bin_width(ticks[0], ticks[-1], positions)
    bins = max(1, round((ticks[-1] - ticks[0]) / width))
    edges = [ticks[0] + i * width for i in range(bins + 1)]
    return Histogram(edges, {}, log, ticks, lines, off_axis, False)


def _place(
    limits: list[Limit],
    low: float,
    high: float,
    p1: float,
    p99: float,
    log: bool,
    integer: bool,
) -> tuple[list[tuple[float, Limit]], list[Limit]]:
    """(axis position, limit) of the limits to draw: those that values lie on both sides of or
    that are within ten times the values' spread; and the others, too far to draw."""
    to_axis = math.log10 if log else float
    lo, hi = to_axis(p1), to_axis(p99)
    reach = 10 * (hi - lo) or math.inf  # one value: no shape to keep, every limit fits
    lines, off_axis = [], []
    for limit in limits:
        at = limit.boundary(integer)
        if (log and at <= 0) or not (low <= at <= high or lo - reach <= to_axis(at) <= hi + reach):
            off_axis.append(limit)
        else:
            lines.append((to_axis(at), limit))
    return lines, off_axis


def _bin_width(start: float, end: float, lines: list[float]) -> float:
    """The 1, 2 or 5 x 10^k bin width for at most BINS bins, or a finer one (up to 3 x BINS
    bins) that puts every line on a bin edge, so that no bar straddles a limit."""
    widest = width = nice_step(end - start, BINS)
    while (end - start) / width <= 3 * BINS:
        if all(abs((at - start) / width - round((at - start) / width)) < 1e-6 for at in lines):
            return width
        power = 10.0 ** math.floor(math.log10(width) + 1e-9)
        width = float(f"{width / (2.5 if round(width / power) == 5 else 2):.12g}")  # 5, 2, 1, .5
    return widest


def breakdown(
    con: duckdb.DuckDBPyConnection, sources: dict[bool, str | None], expression: str
) -> list[tuple[str, int, int]]:
    """(value, kept, dropped) of the TOP values by documents, then "other" for the rest."""
    selects = [
        f"SELECT coalesce(({expression})::VARCHAR, '(unknown)') AS v, {kept} AS kept FROM {source}"
        for kept, source in sources.items()
        if source
    ]
    if not selects:
        return []
    rows = con.execute(
        f"SELECT v, count(*) FILTER (WHERE kept), count(*) FILTER (WHERE NOT kept) "
        f"FROM ({' UNION ALL '.join(selects)}) GROUP BY v ORDER BY count(*) DESC, v"
    ).fetchall()
    top, rest = rows[:TOP], rows[TOP:]
    if rest:
        top.append(("other", sum(r[1] for r in rest), sum(r[2] for r in rest)))
    return top


# ----- what the report shows -----


@dataclass
class Section:
    title: str
    body: str  # HTML


def build_report(cfg: RunConfig, ws: Workspace) -> str:
    """The report's HTML for the run config `cfg`."""
    stages = [s.name for s in pipeline_order(cfg) if s.name not in TOP_LEVEL_STAGES]
    datasets = {n: Dataset(ws, n, v) for n in stages if (v := ws.current_version(n)) is not None}
    if not datasets:
        raise DatasetError(f"nothing to report in {ws.root}: run `textmill run extract` first")
    curated = cfg.tokenizer.dataset if cfg.tokenizer.dataset in datasets else list(datasets)[-1]
    with connect(ws) as con:
        kept = dataset_source(ws, datasets[curated])
        rejected_paths = [p for d in datasets.values() for p in d.part_paths(rejected=True)]
        dropped = parquet_source(ws, rejected_paths)
        sources = {True: kept, False: dropped}
        sections = [
            _funnel(datasets),
            _lengths(con, sources, curated),
            _scores(con, ws, cfg, datasets.get("filter")),
            _breakdowns(con, sources, curated),
            _clusters(con, ws, datasets.get("dedup")),
            _tokens(ws),
            _training(cfg, ws),
            _samples(con, sources, curated),
        ]
    return _page(cfg, ws, datasets, sections)


def write_report(cfg: RunConfig, ws: Workspace, output: str | None = None) -> str:
    """Write the report to `output` (a local file) or to <root>/reports/<train.run>.html;
    returns where it went."""
    page = build_report(cfg, ws)
    if output:
        try:
            with open(output, "w", encoding="utf-8") as fh:
                fh.write(page)
        except OSError as exc:
            raise ValueError(f"cannot write the report to {output}: {exc.strerror}") from exc
        return output
    rel = f"{REPORTS_FOLDER}/{cfg.train.run}.html"
    ws.storage.write_text(rel, page)
    return ws.storage.url(rel)


def _funnel(datasets: dict[str, Dataset]) -> Section:
    rows, bars = [], []
    for name, dataset in datasets.items():
        m = dataset.manifest
        reasons = ", ".join(f"{_e(r)} {n:,}" for r, n in m.dropped.items()) or "none"
        counts = [f"{m.docs_in:,}", f"{m.docs_out:,}", reasons]
        rows.append([_e(name), _e(m.version), *counts, _e(m.created_at)])
        bars.append((f"{name} out", [m.docs_out]))
    first = next(iter(datasets.values())).manifest
    bars.insert(0, (f"{first.stage} in", [first.docs_in]))
    dropped = [
        (f"{d.stage}: {r}", [n]) for d in datasets.values() for r, n in d.manifest.dropped.items()
    ]
    charts = _hbars("Documents through the stages", bars, ["documents"])
    if dropped:
        charts += _hbars("Documents dropped, per stage and reason", dropped, ["documents"])
    table = _table(["stage", "version", "in", "out", "dropped", "built"], rows)
    return Section("Funnel", charts + table)


def _lengths(
    con: duckdb.DuckDBPyConnection, sources: dict[bool, str | None], curated: str
) -> Section:
    selects = [
        f"SELECT {i} AS s, strlen(text)::DOUBLE AS length FROM {source} WHERE strlen(text) > 0"
        for i, source in ((0, sources[True]), (1, sources[False]))
        if source
    ]
    hist = histogram(con, "length", "s", ["kept", "dropped"]) if load_values(con, selects) else None
    if hist is None:
        return Section("Document lengths", "<p>No documents with text.</p>")
    caption = (
        f"UTF-8 bytes of text{', log scale' if hist.log else ''}: kept = the {curated} dataset "
        "(what the tokenizer reads), dropped = what any stage dropped (with its text)"
    )
    return Section("Document lengths", _histogram_chart(caption, hist))


# The series of a score histogram, stacked in this order; "passed" includes the documents that a
# later filter dropped (they passed this one).
SCORE_SERIES = ["passed this filter", "dropped by this rule", "dropped by its other rules"]
SCORE_COLORS = ("#3b75af", "#d1603d", "#e3b3a1")


def filter_histograms(
    con: duckdb.DuckDBPyConnection,
    ws: Workspace,
    filtered: Dataset,
    now: FilterConfig | None = None,
) -> dict[str, dict[str, Histogram]]:
    """Per filter step, a histogram of each numeric score (SCORE_SERIES) over the documents
    that step scored: a document an earlier step dropped was never scored by it (its score is
    null) and is not counted. The lines are the limits of the config the dataset was built
    with, and those of `now` (the run config) where they differ."""
    from pipeline.filters import FILTERS

    built = FilterConfig.model_validate(filtered.manifest.config)
    steps = {
        step: [
            f.name for f in FILTERS[step].fields(getattr(built, step)) if f.type.equals("double")
        ]
        for step in built.steps
    }
    if not _load_scores(con, ws, filtered, [c for columns in steps.values() for c in columns]):
        return {}
    limits, tried = score_limits(built), score_limits(now) if now else {}
    found: dict[str, dict[str, Histogram]] = {}
    for step, columns in steps.items():
        for column in columns:
            rule = column.removeprefix(f"{step}_")
            series = (
                f"CASE WHEN reason = {_literal(f'{step}:{rule}')} THEN 1 "
                f"WHEN starts_with(reason, {_literal(f'{step}:')}) THEN 2 ELSE 0 END"
            )
            shown = limits.get(column, [])
            shown += [replace(x, config=True) for x in tried.get(column, []) if x not in shown]
            hist = histogram(con, _quoted(column), series, SCORE_SERIES, shown)
            if hist is not None:
                found.setdefault(step, {})[column] = hist
    return found


def _load_scores(
    con: duckdb.DuckDBPyConnection, ws: Workspace, filtered: Dataset, columns: list[str]
) -> bool:
    """The score columns and the drop reason (null: kept) of the filter's kept and rejected
    documents into `hist_values`; a column a part set lacks is null there."""
    selects = []
    for source, reason in (
        (dataset_source(ws, filtered), "NULL"),
        (dataset_source(ws, filtered, rejected=True), "reason"),
    ):
        if source and columns:
            present = columns_of(con, source)
            values = ", ".join(
                f"{_quoted(c) if c in present else 'NULL'}::DOUBLE AS {_quoted(c)}" for c in columns
            )
            selects.append(f"SELECT {reason}::VARCHAR AS reason, {values} FROM {source}")
    return load_values(con, selects)


def _scores(
    con: duckdb.DuckDBPyConnection, ws: Workspace, cfg: RunConfig, filtered: Dataset | None
) -> Section:
    if filtered is None:
        return Section("Filter scores", "<p>No filter dataset yet.</p>")
    found = filter_histograms(con, ws, filtered, cfg.filter)
    if not found:
        return Section("Filter scores", "<p>No scores stored.</p>")
    body = (
        "<p>Each filter's scores over the documents it scored. A document stops at the first "
        "filter that drops it, so the ones an earlier filter dropped were never scored by the "
        "later ones and are not in their charts; <i>passed</i> counts the documents a later "
        "filter dropped too. A line is the limit the filter version shown applied, the shaded "
        "side what it drops; a dashed violet line is a limit the run config sets now.</p>"
    )
    for step, hists in found.items():
        body += f"<h3>{_e(step)}</h3>" + _step_summary(filtered, step)
        for column, hist in hists.items():
            body += _histogram_chart(_score_caption(column, hist), hist, SCORE_COLORS)
    return Section("Filter scores", body)


def _step_summary(filtered: Dataset, step: str) -> str:
    """What a filter step did, from the manifest: scored, dropped (per rule), passed."""
    m = filtered.manifest
    steps = m.config["steps"]
    drops = {r.split(":", 1)[1]: n for r, n in m.dropped.items() if r.startswith(f"{step}:")}
    dropped, scored = sum(drops.values()), m.counts.get(f"{step}_scored", 0)
    rules = ", ".join(f"{_e(rule)} {n:,}" for rule, n in sorted(drops.items()))
    text = f"Scored {scored:,} documents; dropped {dropped:,}{f' ({rules})' if rules else ''}"
    text += f"; passed {scored - dropped:,}."
    earlier = set(steps[: steps.index(step)])
    before = sum(n for r, n in m.dropped.items() if r.split(":", 1)[0] in earlier)
    if before:
        text += f" The {before:,} documents that earlier filters dropped never reached it."
    if skipped := m.counts.get(f"{step}_skipped", 0):
        text += f" {skipped:,} passed unscored (skip_kinds)."
    ignored = m.config[step].get("ignore_rules", {})
    if ignored:
        shown = "; ".join(f"{_e(kind)}: {_e(', '.join(names))}" for kind, names in ignored.items())
        text += f" Rules not applied to a source kind: {shown}."
    return f"<p>{text}</p>"


def _score_caption(column: str, hist: Histogram) -> str:
    caption = column + (" (log scale)" if hist.log else "")
    dropped = sum(hist.counts[SCORE_SERIES[1]]) + sum(hist.counts[SCORE_SERIES[2]])
    caption += f": {sum(map(sum, hist.counts.values())):,} documents, {dropped:,} dropped"
    for limit in hist.off_axis:
        caption += f"; {'the config now sets' if limit.config else 'it also drops'} "
        caption += f"{limit.op} {_number(limit.value)}, off this axis"
    return caption


def _breakdowns(
    con: duckdb.DuckDBPyConnection, sources: dict[bool, str | None], curated: str
) -> Section:
    present = set().union(*(columns_of(con, s) for s in sources.values() if s))
    language = (
        "coalesce(language_detected, language)" if "language_detected" in present else ("language")
    )
    domain = "coalesce(hostname, regexp_extract(url, '^[a-z]+://([^/:?#]+)', 1))"
    body = ""
    for title, expression in (("Languages", language), ("Domains", domain)):
        rows = breakdown(con, sources, expression)
        if rows:
            bars = [(value, [kept, dropped]) for value, kept, dropped in rows]
            body += _hbars(f"{title}: kept ({curated}) and dropped", bars, ["kept", "dropped"])
            body += _table(
                [title[:-1].lower(), "kept", "dropped"],
                [[_e(v), f"{k:,}", f"{d:,}"] for v, k, d in rows],
            )
    return Section("Languages and domains", body or "<p>No documents.</p>")


def _clusters(con: duckdb.DuckDBPyConnection, ws: Workspace, dedup: Dataset | None) -> Section:
    from pipeline.dedup import CLUSTERS_FILE

    path = f"{dedup.dir}/{CLUSTERS_FILE}" if dedup else None
    if path is None or not ws.storage.exists(path):
        return Section("Dedup clusters", "<p>No dedup dataset yet.</p>")
    source = parquet_source(ws, [path])
    sizes = con.execute(
        f"SELECT n, count(*) FROM (SELECT count(*) AS n FROM {source} GROUP BY cluster) "
        "GROUP BY n ORDER BY n"
    ).fetchall()
    if not sizes:
        return Section("Dedup clusters", "<p>No duplicates found.</p>")
    kinds = con.execute(
        f"SELECT kind, count(*) FROM {source} WHERE NOT kept GROUP BY kind ORDER BY kind"
    ).fetchall()
    caption = "Clusters by size (documents in the cluster, the kept one included)"
    chart = _hbars(caption, [(f"{n} documents", [c]) for n, c in sizes], ["clusters"])
    table = _table(["duplicates dropped", "documents"], [[_e(k), f"{n:,}"] for k, n in kinds])
    return Section("Dedup clusters", chart + table)


def _tokens(ws: Workspace) -> Section:
    if ws.current_version("shards") is None:
        return Section("Tokens", "<p>No shards yet.</p>")
    stats = Dataset.current(ws, "shards").manifest.stats
    splits = {**stats["splits"], **{f"eval/{k}": v for k, v in stats["eval_sets"].items()}}
    bars = [(name, [s["tokens"]]) for name, s in splits.items()]
    chart = _hbars("Tokens per split", bars, ["tokens"])
    rows = [
        [_e(name), f"{s.get('docs', 0):,}", f"{s['tokens']:,}", f"{s['bytes']:,}"]
        for name, s in splits.items()
    ]
    table = _table(["split", "documents", "tokens", "UTF-8 bytes"], rows)
    by_source = _table(
        ["source", "train tokens"],
        [[_e(s), f"{n:,}"] for s, n in stats["tokens_by_source"].items()],
    )
    note = f"<p>Tokenizer {_e(stats['tokenizer_version'])}, vocabulary {stats['vocab_size']:,}.</p>"
    return Section("Tokens", note + chart + table + by_source)


def _training(cfg: RunConfig, ws: Workspace) -> Section:
    run = cfg.train.run
    title = f"Training (run {_e(run)})"
    metrics = f"runs/{run}/metrics.jsonl"
    if not ws.storage.exists(metrics):
        return Section(title, "<p>Not trained yet.</p>")
    rows = [json.loads(line) for line in ws.storage.read_text(metrics).splitlines()]
    if not rows:
        return Section(title, "<p>No step logged yet.</p>")
    evals = sorted({k for row in rows for k in row if k.endswith("_bits_per_byte")})
    dots = {
        k.removesuffix("_bits_per_byte"): [(r["step"], r[k]) for r in rows if k in r] for k in evals
    }
    caption = "Bits per byte per step: val and evaluation sets as the run measured them"
    lines, levels, more = _train_bits_per_byte(ws, _run_shards(ws, run), rows)
    body = _lines_chart(caption + more, lines, dots, levels) if lines or dots else ""
    steps = sorted({step for points in dots.values() for step, _ in points})
    table = {name: dict(points) for name, points in dots.items()}
    body += _table(
        ["step", *(f"{_e(name)} bits per byte" for name in dots)],
        [[f"{s:,}", *(_e(table[n].get(s, "")) for n in dots)] for s in steps],
    )
    body += _table(["last step", "value"], [[_e(k), _e(v)] for k, v in rows[-1].items()])
    return Section(title, body)


def _train_bits_per_byte(
    ws: Workspace, shards: Dataset | None, rows: list[dict[str, Any]]
) -> tuple[dict[str, list[tuple[float, float]]], dict[str, float], str]:
    """The training loss in bits per byte (the run logs nats per token: the train split's tokens
    per byte convert it) and the unigram baseline, with what the caption says of them."""
    train = shards.manifest.stats["splits"]["train"] if shards else {}
    if not train.get("bytes"):
        return {}, {}, ""
    per_byte = train["tokens"] / train["bytes"] / math.log(2)
    lines = {"train": [(r["step"], r["loss"] * per_byte) for r in rows if "loss" in r]}
    caption = ", train = the training loss x the train split's tokens per byte / ln 2"
    unigram = unigram_val_bits_per_byte(ws, shards)
    if unigram is None:
        return lines, {}, caption
    caption += ", unigram = the val split under the train split's token frequencies"
    return lines, {"unigram": unigram}, caption


def _run_shards(ws: Workspace, run: str) -> Dataset | None:
    """The shards version the run last trained on (its run.json), else the current one."""
    info = f"runs/{run}/run.json"
    version = ws.storage.read_json(info).get("shards_version") if ws.storage.exists(info) else None
    if version and ws.is_committed("shards", version):
        return Dataset(ws, "shards", version)
    return Dataset.current(ws, "shards") if ws.current_version("shards") else None


def unigram_val_bits_per_byte(ws: Workspace, shards: Dataset) -> float | None:
    """Bits per byte of the val split under the train split's token frequencies, add-one
    smoothed (model/baselines.py; `textmill demo` shows the same figure): what a model must
    beat. The train tokens are counted one shard at a time, so memory stays one shard's."""
    from model.baselines import unigram_loss
    from pipeline.shards import token_stream

    stats = shards.manifest.stats
    val, vocab = stats["splits"]["val"], stats["vocab_size"]
    if not val["bytes"] or val["tokens"] < 2:
        return None
    counts = np.zeros(vocab, np.int64)
    for entry in shards.manifest.files:
        if entry["file"].startswith("train/shard-"):
            column = ws.storage.read_parquet(f"{shards.dir}/{entry['file']}").column("tokens")
            tokens = column.combine_chunks().flatten().to_numpy(zero_copy_only=False)
            counts += np.bincount(tokens, minlength=vocab)
    probs = (counts + 1.0) / (counts.sum() + vocab)  # unigram_probs with k=1
    loss = unigram_loss(probs, token_stream(ws, "val", shards.version))
    return loss / math.log(2) * val["tokens"] / val["bytes"]


def _samples(
    con: duckdb.DuckDBPyConnection, sources: dict[bool, str | None], curated: str
) -> Section:
    kept = kept_samples(con, sources[True]) if sources[True] else []
    dropped = dropped_samples(con, sources[False]) if sources[False] else []
    body = f"<h3>Kept (in {_e(curated)})</h3>" + "".join(_document(d) for d in kept)
    body += "<h3>Dropped</h3>" + "".join(_document(d) for d in dropped)
    return Section("Sample documents", body)


# ----- HTML -----


def _e(value: Any) -> str:
    return html.escape(str(value))


def _quoted(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _table(header: list[str], rows: list[list[str]]) -> str:
    """Cells are HTML already (escaped by the caller)."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _document(doc: dict[str, Any]) -> str:
    why = f"{doc['stage']}: {doc['reason']}" if "reason" in doc else "kept"
    detail = f" ({doc['detail']})" if doc.get("detail") else ""
    more = "…" if doc["bytes"] > len(doc["text"].encode("utf-8")) else ""
    return (
        f'<div class="doc"><div class="meta"><b>{_e(why + detail)}</b> · {_e(doc["id"])} · '
        f"{_e(doc['url'] or '')} · {doc['bytes']:,} bytes</div>"
        f"<pre>{_e(doc['text'])}{more}</pre></div>"
    )


def _page(cfg: RunConfig, ws: Workspace, datasets: dict[str, Dataset], sections: list) -> str:
    nav = " · ".join(f'<a href="#s{i}">{s.title}</a>' for i, s in enumerate(sections))
    body = "".join(
        f'<section id="s{i}"><h2>{s.title}</h2>{s.body}</section>' for i, s in enumerate(sections)
    )
    versions = ", ".join(f"{n} {d.version}" for n, d in datasets.items())
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return PAGE.format(
        title=_e(f"textmill report: {cfg.train.run}"),
        root=_e(ws.root),
        versions=_e(versions),
        made=made,
        nav=nav,
        body=body,
    )


# Nothing may load from outside the page; the script reports whether every chart was drawn,
# and how wide the narrowest is on screen (the browser test reads #charts-status).
PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1100px; padding: 1em 2em;
  color: #222; }}
h1 {{ margin-bottom: 0.2em; }} h2 {{ border-bottom: 1px solid #ccc; margin-top: 2em; }}
nav, .meta, footer {{ color: #555; font-size: 0.9em; }}
table {{ border-collapse: collapse; margin: 0.8em 0; }}
th, td {{ border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }}
th {{ background: #f3f3f3; }}
figure {{ margin: 1em 0; }} figcaption {{ color: #555; font-size: 0.9em; }}
svg.chart {{ max-width: 100%; height: auto; display: block; }}
h3 {{ margin: 1.6em 0 0.2em; }}
.doc {{ border: 1px solid #ddd; border-radius: 4px; margin: 0.6em 0; padding: 0.4em 0.8em; }}
.doc pre {{ white-space: pre-wrap; word-break: break-word; margin: 0.3em 0; font-size: 0.85em; }}
</style></head>
<body>
<h1>{title}</h1>
<p class="meta">Workspace {root} · {versions} · made {made}</p>
<nav>{nav}</nav>
{body}
<footer><p id="charts-status">charts not checked (scripts off)</p></footer>
<script>
window.addEventListener("load", () => {{
  const charts = Array.from(document.querySelectorAll("svg.chart"));
  const drawn = charts.filter((svg) => {{
    const box = svg.getBoundingClientRect();
    return box.width > 0 && box.height > 0 && svg.querySelector("rect, polyline") !== null;
  }});
  const narrowest = Math.round(Math.min(...drawn.map((svg) => svg.getBoundingClientRect().width)));
  document.getElementById("charts-status").textContent =
    `${{drawn.length}} of ${{charts.length}} charts drawn, the narrowest ${{narrowest}} px wide`;
}});
</script>
</body></html>
"""


# ----- charts: inline SVG, drawn here (milliseconds each, sharp at any zoom) -----

WIDTH = 760  # px: the page's column, so that a chart is read at its own size
LABEL_WIDTH = 300  # px, the labels left of horizontal bars
COLORS = ("#3b75af", "#d1603d", "#519e3e", "#8d69b8")  # kept, dropped, then more series
LIMIT_COLORS = {False: "#222", True: "#8d69b8"}  # the built version's limits, the config's now
FONT = 'font-family="system-ui, sans-serif" font-size="12"'
CHAR_WIDTH = 6.6  # px, about, of a 12 px character: room for a label


def _svg(width: int, height: float, shapes: list[str], caption: str) -> str:
    return (
        f'<figure><svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height:.0f}" viewBox="0 0 {width} {height:.0f}" {FONT} role="img" '
        f'aria-label="{_e(caption)}">{"".join(shapes)}</svg>'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def _legend(series: list[str], x: float, y: float, colors: tuple[str, ...] = COLORS) -> list[str]:
    shapes = []
    for i, name in enumerate(series):
        shapes.append(
            f'<rect x="{x:.0f}" y="{y - 10}" width="10" height="10" '
            f'fill="{colors[i % len(colors)]}"/>'
            f'<text x="{x + 14:.0f}" y="{y}">{_e(name)}</text>'
        )
        x += 30 + CHAR_WIDTH * len(name)
    return shapes


def _number(value: float) -> str:
    """Short tick labels: 12, 3.5, 0.042, 1.2k, 3.4M."""
    for limit, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


def nice_step(span: float, intervals: int) -> float:
    """The smallest step of 1, 2 or 5 x 10^k that cuts `span` into at most `intervals`."""
    if span <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(span / intervals))
    return next(m * power for m in (1, 2, 5, 10) if m * power * intervals >= span * (1 - 1e-9))


def linear_ticks(lo: float, hi: float, intervals: int, integer: bool = False) -> list[float]:
    """Multiples of a nice step, from the one at or below `lo` to the one at or above `hi`
    (so the axis ends on round numbers); `integer`: a step of at least 1."""
    step = nice_step(hi - lo, intervals)
    step = max(step, 1.0) if integer else step
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [float(f"{k * step:.12g}") for k in range(first, max(last, first + 1) + 1)]


def log_ticks(lo: float, hi: float) -> list[float]:
    """For a log axis over [lo, hi] (both > 0): the powers of ten around it when it spans three
    or more, else the 1, 2, 5 x 10^k from the one at or below `lo` to the one at or above `hi`."""
    first, last = math.floor(math.log10(lo) + 1e-9), math.ceil(math.log10(hi) - 1e-9)
    if last - first >= 3:
        return [10.0**k for k in range(first, last + 1)]
    marks = [float(f"{m * 10.0**k:.12g}") for k in range(first, last + 1) for m in (1, 2, 5)]
    start = max(x for x in marks if x <= lo * (1 + 1e-9))
    end = min((x for x in marks if x >= hi * (1 - 1e-9)), default=10.0**last)
    return [x for x in marks if start <= x <= end]


def _hbars(caption: str, rows: list[tuple[str, list[int]]], series: list[str]) -> str:
    """One horizontal bar per label, its values stacked in `series` order (colors as COLORS)."""
    bar, step = 16, 22
    top = 20 if len(series) > 1 else 2
    longest = max((sum(values) for _, values in rows), default=0) or 1
    scale = (WIDTH - LABEL_WIDTH - 110) / longest
    shapes = _legend(series, LABEL_WIDTH, 12) if len(series) > 1 else []
    for i, (label, values) in enumerate(rows):
        y = top + i * step
        short = label if len(label) <= 46 else label[:45] + "…"
        shapes.append(
            f'<text x="{LABEL_WIDTH - 6}" y="{y + 12}" text-anchor="end">{_e(short)}'
            f"<title>{_e(label)}</title></text>"
        )
        x = LABEL_WIDTH
        for j, (value, name) in enumerate(zip(values, series, strict=True)):
            shapes.append(
                f'<rect x="{x:.1f}" y="{y}" width="{value * scale:.1f}" height="{bar}" '
                f'fill="{_color(j)}"><title>{_e(label)}, {_e(name)}: {value:,}</title></rect>'
            )
            x += value * scale
        total = " + ".join(f"{v:,}" for v in values)
        shapes.append(f'<text x="{x + 5:.1f}" y="{y + 12}">{total}</text>')
    return _svg(WIDTH, top + len(rows) * step + 4, shapes, caption)


@dataclass
class _Frame:
    """A plot area of `width` x `height` px mapping data ranges to pixels, with its axes."""

    width: int
    height: int
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    left: int = 50
    top: int = 22
    bottom: int = 22
    right: int = 12

    def x(self, value: float) -> float:
        lo, hi = self.x_range
        return self.left + (value - lo) / ((hi - lo) or 1) * (self.width - self.left - self.right)

    def y(self, value: float) -> float:
        lo, hi = self.y_range
        inner = self.height - self.top - self.bottom
        return self.top + inner - (value - lo) / ((hi - lo) or 1) * inner

    def grid(self, y_ticks: list[float]) -> list[str]:
        """Light horizontal lines at the y ticks, drawn under the data."""
        x1, x2 = self.left, self.width - self.right
        return [
            f'<line x1="{x1}" y1="{self.y(v):.1f}" x2="{x2}" y2="{self.y(v):.1f}" stroke="#eee"/>'
            for v in y_ticks
        ]

    def axes(self, x_ticks: list[tuple[float, str]], y_ticks: list[tuple[float, str]]) -> list[str]:
        base, end = self.height - self.bottom, self.width - self.right
        shapes = [
            f'<line x1="{self.left}" y1="{base}" x2="{end}" y2="{base}" stroke="#999"/>',
            f'<line x1="{self.left}" y1="{self.top}" x2="{self.left}" y2="{base}" stroke="#999"/>',
        ]
        for value, label in x_ticks:  # a label at an end of the axis stays inside the chart
            x = self.x(value)
            anchor = "start" if x < self.left + 12 else "end" if x > end - 12 else "middle"
            shapes.append(
                f'<line x1="{x:.1f}" y1="{base}" x2="{x:.1f}" y2="{base + 4}" stroke="#999"/>'
                f'<text class="tick x" x="{x:.1f}" y="{base + 16}" text-anchor="{anchor}">'
                f"{label}</text>"
            )
        for value, label in y_ticks:
            shapes.append(
                f'<text class="tick y" x="{self.left - 5}" y="{self.y(value) + 4:.1f}" '
                f'text-anchor="end">{label}</text>'
            )
        return shapes


def _histogram_chart(caption: str, hist: Histogram, colors: tuple[str, ...] = COLORS) -> str:
    """The series' counts per bin, stacked, with the limits' lines and their dropped side."""
    height, bins = 240, len(hist.edges) - 1
    totals = [sum(counts[i] for counts in hist.counts.values()) for i in range(bins)]
    y_ticks = linear_ticks(0, max(totals) or 1, 4, integer=True)
    limits = [x for _, x in hist.lines] + hist.off_axis
    top = 50 if any(x.config for x in limits) else 40 if limits else 26  # room for their labels
    frame = _Frame(WIDTH, height, (hist.edges[0], hist.edges[-1]), (0, y_ticks[-1]), top=top)
    shapes = _legend(list(hist.counts), frame.left, 12, colors)
    shapes += _dropped_sides(frame, hist.lines) + frame.grid(y_ticks[1:])
    for i in range(bins):
        x0, x1 = frame.x(hist.edges[i]), frame.x(hist.edges[i + 1])
        below = 0
        for color, (name, counts) in zip(colors, hist.counts.items(), strict=False):
            if counts[i]:  # at least 1 px: one document is not invisible
                y0, y1 = frame.y(below + counts[i]), frame.y(below)
                shapes.append(
                    f'<rect x="{x0 + 0.5:.1f}" y="{min(y0, y1 - 1):.1f}" '
                    f'width="{max(x1 - x0 - 1, 1):.1f}" height="{max(y1 - y0, 1):.1f}" '
                    f'fill="{color}"><title>{_bin_label(hist, i)}: {_e(name)} {counts[i]:,}'
                    "</title></rect>"
                )
                below += counts[i]
    shapes += _limit_lines(frame, hist.lines) + _off_axis_marks(frame, hist)
    x_labels = [(t, _number(10**t if hist.log else t)) for t in hist.ticks]
    shapes += frame.axes(x_labels, [(t, _number(t)) for t in y_ticks])
    return _svg(WIDTH, height, shapes, caption)


def _bin_label(hist: Histogram, i: int) -> str:
    lo, hi = hist.edges[i], hist.edges[i + 1]
    if hist.integer:
        return _number(lo + 0.5)
    if hist.log:
        lo, hi = 10**lo, 10**hi
    return f"{_number(lo)} to {_number(hi)}"


def _dropped_sides(frame: _Frame, lines: list[tuple[float, Limit]]) -> list[str]:
    """A light shade over what each limit of the built version drops."""
    shapes = []
    for at, limit in lines:
        if limit.config:
            continue
        x = frame.x(at)
        x0, x1 = (frame.left, x) if limit.drops_below else (x, frame.width - frame.right)
        shapes.append(
            f'<rect x="{x0:.1f}" y="{frame.top}" width="{x1 - x0:.1f}" '
            f'height="{frame.height - frame.top - frame.bottom}" fill="#d1603d" '
            'fill-opacity="0.08"/>'
        )
    return shapes


def _limit_lines(frame: _Frame, lines: list[tuple[float, Limit]]) -> list[str]:
    """A vertical line per limit, labelled with its rule and an arrow to the side it drops."""
    shapes = []
    for at, limit in lines:
        x, color, label = frame.x(at), LIMIT_COLORS[limit.config], limit.label()
        room = CHAR_WIDTH * len(label) + 6
        # beside the line on its dropped side, unless that runs into the y labels or off the chart
        left = x - room >= frame.left if limit.drops_below else x + room > frame.width
        y = frame.top - (20 if limit.config else 6)
        dash = ' stroke-dasharray="5 3"' if limit.config else ""
        shapes.append(
            f'<line class="limit" data-op="{_e(limit.op)}" data-value="{limit.value:g}" '
            f'x1="{x:.1f}" y1="{y + 4}" x2="{x:.1f}" y2="{frame.height - frame.bottom}" '
            f'stroke="{color}" stroke-width="1.5"{dash}><title>{_e(label)}</title></line>'
            f'<text x="{x - 4 if left else x + 4:.1f}" y="{y}" fill="{color}" '
            f'text-anchor="{"end" if left else "start"}">{_e(label)}</text>'
        )
    return shapes


def _off_axis_marks(frame: _Frame, hist: Histogram) -> list[str]:
    """A limit too far to draw is named at the end of the axis it lies beyond."""
    shapes = []
    end = 10 ** hist.edges[-1] if hist.log else hist.edges[-1]
    for limit in hist.off_axis:
        beyond_end = limit.value > end
        x = frame.width - frame.right if beyond_end else frame.left + 4
        y = frame.top - (20 if limit.config else 6)
        shapes.append(
            f'<text class="off-axis" x="{x}" y="{y}" fill="{LIMIT_COLORS[limit.config]}" '
            f'text-anchor="{"end" if beyond_end else "start"}">'
            f"{_e(limit.label(', off the axis'))}</text>"
        )
    return shapes


def _lines_chart(
    caption: str,
    lines: dict[str, list[tuple[float, float]]],
    dots: dict[str, list[tuple[float, float]]],
    levels: dict[str, float],
) -> str:
    """`lines` as polylines, `dots` as every point marked (joined thinly), `levels` as dashed
    horizontal lines labelled at their right end; x and y end on round numbers."""
    points = [p for series in (*lines.values(), *dots.values()) for p in series]
    xs, ys = [p[0] for p in points], [p[1] for p in points] + list(levels.values())
    x_ticks = linear_ticks(min(0, *xs), max(xs), 8, integer=True)
    y_ticks = linear_ticks(min(ys), max(ys), 5)
    frame = _Frame(WIDTH, 300, (x_ticks[0], x_ticks[-1]), (y_ticks[0], y_ticks[-1]), top=30)
    frame.right = 90  # room for the levels' labels
    shapes = _legend([*lines, *dots], frame.left, 12) + frame.grid(y_ticks)
    for i, (name, series) in enumerate(lines.items()):
        coords = " ".join(f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y in series)
        shapes.append(
            f'<polyline class="line" points="{coords}" fill="none" stroke="{_color(i)}" '
            f'stroke-width="1.2"><title>{_e(name)}</title></polyline>'
        )
    for i, (name, series) in enumerate(dots.items(), len(lines)):
        coords = " ".join(f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y in series)
        shapes.append(
            f'<polyline points="{coords}" fill="none" stroke="{_color(i)}" stroke-width="1"/>'
        )
        shapes += [
            f'<circle class="point" data-series="{_e(name)}" cx="{frame.x(x):.1f}" '
            f'cy="{frame.y(y):.1f}" r="3.5" fill="{_color(i)}">'
            f"<title>{_e(name)} at step {x:,}: {y:g} bits per byte</title></circle>"
            for x, y in series
        ]
    for name, value in levels.items():
        y, x1, x2 = frame.y(value), frame.left, frame.width - frame.right
        shapes.append(
            f'<line class="level" data-value="{value:.5g}" x1="{x1}" y1="{y:.1f}" x2="{x2}" '
            f'y2="{y:.1f}" stroke="#555" stroke-width="1.5" stroke-dasharray="6 4">'
            f"<title>{_e(name)}: {value:.4g} bits per byte</title></line>"
            f'<text x="{x2 + 4}" y="{y + 4:.1f}" fill="#555">{_e(name)} {value:.3g}</text>'
        )
    x_labels = [(v, _number(v)) for v in x_ticks]
    return _svg(
        WIDTH, 300, shapes + frame.axes(x_labels, [(v, _number(v)) for v in y_ticks]), caption
    )
