"""Looking into a workspace's datasets: summary, funnel, samples, one document, what-if and SQL.

Each view is a plain function that returns plain data (dicts and lists, ready for JSON); the CLI
prints them as tables. They query the current versions' Parquet parts with DuckDB through a
`Catalog`: one SQL view per dataset (`extract`, `clean`, `dedup`, `filter`, `<stage>_rejected`,
`clusters`, and `shards`: the shards' document index with tokens per document). A view reads only
the columns it needs (lengths come from the stored `chars` column, not the text) and fetches
whole documents only for the rows it shows, so none loads a dataset into Python and each stays
within about a second on a million documents (bench/inspect.py). The exception: a substring
search reads the text column until it has its matches, so a rare string reads all of it
(about 4 s for 4.4 GB of text on 2 cores).
"""

from __future__ import annotations

import math
from typing import Any

import duckdb
import pyarrow as pa
from pydantic import ValidationError

from pipeline import filter as filter_stage
from pipeline.config import (
    DOCUMENT_STAGES,
    ConfigError,
    FilterConfig,
    RunConfig,
    apply_overrides,
    unknown_key_message,
)
from pipeline.datasets import Dataset, DatasetError
from pipeline.dedup import CLUSTERS_FILE
from pipeline.filters import FILTERS
from pipeline.schema import DOCUMENT_SCHEMA
from pipeline.stages import pipeline_order
from pipeline.workspace import MANIFEST, Workspace

# Where a document came from; the other document columns (title, language, ...) are metadata.
PROVENANCE = (
    "source",
    "source_kind",
    "url",
    "generation",
    "warc_file",
    "warc_offset",
    "warc_record_id",
    "warc_date",
    "http_status",
    "content_type",
    "charset",
)
METADATA = tuple(n for n in DOCUMENT_SCHEMA.names if n not in ("id", "text", *PROVENANCE))
PREVIEW_CHARS = 300  # of each sampled document's text
SEARCH_LIMIT = 20  # matches a substring search returns
QUANTILES = {"min": 0.0, "p10": 0.1, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p90": 0.9, "p99": 0.99}

# The settings of each filter that only its `keep` reads: a what-if may change these and decide
# from stored scores. Any other setting changes what the filter scores (a model, a word list,
# what counts as a line...), which needs the filter run again. `skip_kinds` and `ignore_rules`
# are read by the stage around `keep`, so every step may change them.
THRESHOLDS: dict[str, frozenset[str]] = {
    "language": frozenset({"languages", "min_score"}),
    "gopher_quality": frozenset(
        {
            "min_doc_words",
            "max_doc_words",
            "min_avg_word_length",
            "max_avg_word_length",
            "max_symbol_word_ratio",
            "max_bullet_lines_ratio",
            "max_ellipsis_lines_ratio",
            "min_alpha_words_ratio",
            "min_stop_words",
        }
    ),
    "gopher_repetition": frozenset(
        {
            "dup_line_frac",
            "dup_para_frac",
            "dup_line_char_frac",
            "dup_para_char_frac",
            "top_n_grams",  # new limits for the scored n only (the score names must not change)
            "dup_n_grams",
        }
    ),
    "c4_quality": frozenset({"min_sentences", "lorem_ipsum", "curly_bracket"}),
    "fineweb_quality": frozenset(
        {
            "line_punct_thr",
            "line_punct_exclude_zero",
            "short_line_thr",
            "char_duplicates_ratio",
            "new_line_ratio",
        }
    ),
    "url_blocklist": frozenset(),
    "quality": frozenset({"min_score"}),
    "decontamination": frozenset({"min_matches"}),
}
STEP_SETTINGS = frozenset({"skip_kinds", "ignore_rules"})
# What a what-if says of a changed document beside its id, url and old verdict (`was`).
WHAT_CHANGES = {"dropped": "reason", "unknown": "not_scored"}


class Catalog:
    """A DuckDB connection with one view per dataset of the current versions (module
    docstring). Views are over the Parquet parts themselves: opening one reads manifests and
    Parquet footers only."""

    def __init__(self, cfg: RunConfig, ws: Workspace):
        self.cfg = cfg
        self.ws = ws
        self.con = connect(ws)
        self.stages = [s.name for s in pipeline_order(cfg) if s.name in DOCUMENT_STAGES]
        self.datasets: dict[str, Dataset] = {}
        self.views: list[str] = []
        self.sources: dict[str, str] = {}  # view -> its read_parquet(...)
        for stage in self.stages:
            if ws.current_version(stage) is None:
                continue
            dataset = Dataset.current(ws, stage)
            dataset.check()  # DuckDB's error for a truncated part says neither what nor why
            self.datasets[stage] = dataset
            self._view(stage, dataset.part_paths())
            self._view(f"{stage}_rejected", dataset.part_paths(rejected=True))
        if "dedup" in self.datasets:
            self._view("clusters", [f"{self.datasets['dedup'].dir}/{CLUSTERS_FILE}"])
        self.shards = Dataset.current(ws, "shards") if ws.current_version("shards") else None
        if self.shards is not None:
            self._view("shards", self.shards.part_paths())

    def _view(self, name: str, paths: list[str]) -> None:
        source = parquet_source(self.ws, paths)
        if source is None:
            return  # a version without parts has nothing to query
        self.sources[name] = source
        self.con.execute(f"CREATE VIEW {name} AS SELECT * FROM {source}")
        self.views.append(name)

    def fetch(
        self, source: str, where: str, params: list[Any], columns: str, limit: int, order: str = ""
    ) -> list[dict[str, Any]]:
        """`columns` of the first `limit` rows of `source` (a view's read_parquet, or a union
        of them) that match `where`, in `order`. Two steps, so that wide columns (text) are
        read only for the rows returned: the matching rows' files and row numbers, reading
        only the columns the condition and the order need, then those rows, file by file."""
        located = self.con.execute(
            f"SELECT filename, file_row_number FROM {source} WHERE {where} {order} LIMIT ?",
            [*params, limit],
        ).fetchall()
        rows: dict[tuple[str, int], dict[str, Any]] = {}
        for file in dict.fromkeys(f for f, _ in located):
            numbers = ", ".join(str(n) for f, n in located if f == file)
            for row in self.rows(
                f"SELECT {columns}, file_row_number FROM read_parquet({_literal(file)}) "
                f"WHERE file_row_number IN ({numbers})"
            ):
                rows[(file, row.pop("file_row_number"))] = row
        return [rows[key] for key in located]

    def dataset(self, stage: str) -> Dataset:
        if stage not in self.stages:
            raise KeyError(f"{stage!r} is not a document stage; stages: {', '.join(self.stages)}")
        if stage not in self.datasets or stage not in self.views:
            raise DatasetError(
                f"no {stage} documents in workspace {self.ws.root}: "
                f"run `textmill run {stage}` first"
            )
        return self.datasets[stage]

    def columns(self, view: str) -> list[str]:
        return [row[0] for row in self.con.execute(f"DESCRIBE {view}").fetchall()]

    def rows(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        result = self.con.execute(sql, params or [])
        names = [d[0] for d in result.description]
        return [dict(zip(names, row, strict=True)) for row in result.fetchall()]

    def tokens_of(self, stage: str) -> bool:
        """Whether the current shards were encoded from this stage's current version (then the
        `shards` view gives each of its documents' tokens)."""
        stats = self.shards.manifest.stats if self.shards else {}
        return (
            "shards" in self.views
            and stats.get("dataset") == stage
            and stats.get("dataset_version") == self.dataset(stage).version
        )

    def close(self) -> None:
        self.con.close()


def connect(ws: Workspace) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that reads the workspace, local or on any fsspec filesystem (e.g.
    s3://, through the workspace's own). A connection closes at the end of a `with` block."""
    con = duckdb.connect()
    if not ws.storage.is_local:
        con.register_filesystem(ws.storage.fs)
    return con


def parquet_source(ws: Workspace, paths: list[str]) -> str | None:
    """`read_parquet([...])` of workspace-relative Parquet files; None when there are none."""
    if not paths:
        return None
    files = ", ".join(_literal(ws.storage.url(path)) for path in paths)
    return f"read_parquet([{files}], union_by_name = true)"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def default_stage(cfg: RunConfig) -> str:
    """The dataset people mean when they name none: the one the tokenizer reads (curated)."""
    return cfg.tokenizer.dataset


# ----- summary -----


def summary(cat: Catalog, stage: str | None = None, top: int = 10) -> dict[str, Any]:
    """Documents, characters and (once shards exist for this version) tokens, overall and by
    source kind, language and domain (the `top` largest of each); length quantiles and a
    histogram of lengths in powers of two."""
    stage = stage or default_stage(cat.cfg)
    dataset = cat.dataset(stage)
    tokens = cat.tokens_of(stage)
    # Versions written before documents had a `chars` column: count from the text (slow).
    chars = "d.chars" if "chars" in cat.columns(stage) else "length(d.text)"
    cat.con.execute(
        "CREATE OR REPLACE TEMP TABLE summary_docs AS SELECT d.source_kind, d.language, "
        f"d.hostname, {chars} AS chars, {'t.tokens' if tokens else 'NULL::BIGINT'} AS tokens"
        f" FROM {stage} d {'LEFT JOIN shards t USING (id)' if tokens else ''}"
    )
    totals = cat.rows(
        "SELECT count(*) AS documents, coalesce(sum(chars), 0) AS characters, "
        "sum(tokens) AS tokens, count(DISTINCT hostname) AS domains FROM summary_docs"
    )[0]
    groups = {
        key: cat.rows(
            f"SELECT {column} AS value, count(*) AS documents, sum(chars) AS characters, "
            f"sum(tokens) AS tokens FROM summary_docs GROUP BY 1 "
            "ORDER BY documents DESC, characters DESC, value LIMIT ?",
            [top],
        )
        for key, column in (
            ("by_source_kind", "source_kind"),
            ("by_language", "language"),
            ("by_domain", "hostname"),
        )
    }
    quantiles = cat.rows(
        f"SELECT quantile_disc(chars, {list(QUANTILES.values())}) AS q, max(chars) AS max "
        "FROM summary_docs"
    )[0]
    # Powers of two from 128 up: [0, 128), [128, 256), ... (lengths span six orders).
    histogram = cat.rows(
        "SELECT greatest(floor(log2(greatest(chars, 1))), 6)::INT AS k, count(*) AS documents "
        "FROM summary_docs GROUP BY 1 ORDER BY 1"
    )
    return {
        "stage": stage,
        "version": dataset.version,
        **totals,
        "tokens": totals["tokens"] if tokens else None,
        **groups,
        "length": {
            "quantiles": {
                **dict(zip(QUANTILES, quantiles["q"] or [None] * len(QUANTILES), strict=True)),
                "max": quantiles["max"],
            },
            "histogram": [
                {
                    "low": 0 if h["k"] == 6 else 2 ** h["k"],
                    "high": 2 ** (h["k"] + 1),
                    "documents": h["documents"],
                }
                for h in histogram
            ],
        },
    }


# ----- funnel -----


def funnel(cat: Catalog) -> list[dict[str, Any]]:
    """Documents in and out of each stage in pipeline order, from the manifests, starting with
    the pages the crawl generations fetched; dropped documents per reason."""
    storage = cat.ws.storage
    fetched = generations = 0
    for source in cat.cfg.sources:
        for generation in cat.ws.generations(source.name):
            counts = storage.read_json(f"{generation.folder}/{MANIFEST}").get("counts", {})
            fetched += counts.get("fetched", 0)
            generations += 1
    listed = 0
    if "extract" in cat.datasets:
        inputs = cat.datasets["extract"].manifest.inputs
        listed = sum(1 for item in inputs if item.get("generation") is None)
    rows = [
        {
            "stage": "crawl",
            "version": None,
            "docs_in": None,
            "docs_out": fetched,
            "dropped": {},
            "errors": 0,
            "note": f"pages fetched by {generations} crawl generations"
            + (f"; extract also reads {listed} listed files" if listed else ""),
        }
    ]
    for stage in cat.stages:
        dataset = cat.datasets.get(stage)
        if dataset is None:
            rows.append({"stage": stage, "version": None, "note": "not built"})
            continue
        m = dataset.manifest
        rows.append(
            {
                "stage": stage,
                "version": m.version,
                "docs_in": m.docs_in,
                "docs_out": m.docs_out,
                "dropped": m.dropped,
                "errors": len(m.errors),
                "note": f"reads {m.inputs['dataset']}" if isinstance(m.inputs, dict) else "",
            }
        )
    return rows


# ----- samples -----


def parse_score_range(text: str) -> tuple[str, float, float]:
    """`COLUMN:LO:HI` (either bound may be empty) -> (column, lo, hi)."""
    column, sep, bounds = text.partition(":")
    lo, sep2, hi = bounds.partition(":")
    if not (column and sep and sep2):
        raise ValueError(f"--score {text!r}: expected COLUMN:LO:HI, e.g. language_score:0.5:0.8")
    try:
        return column, float(lo) if lo else float("-inf"), float(hi) if hi else float("inf")
    except ValueError:
        raise ValueError(f"--score {text!r}: the bounds must be numbers") from None


def sample(
    cat: Catalog,
    stage: str | None = None,
    n: int | None = None,
    seed: int = 0,
    reason: str | None = None,
    domain: str | None = None,
    search: str | None = None,
    score: tuple[str, float, float] | None = None,
) -> dict[str, Any]:
    """Documents of a stage's dataset with a preview of their text: `n` (10) chosen at random
    (the same for the same seed), or with `search`, the first `n` (20) whose text contains it,
    in dataset order. `reason`: dropped documents instead, of that reason (`language` matches
    `language:detected` too), from every stage's rejected documents or only `stage`'s.
    `domain`: that hostname and its subdomains. `score`: (column, lo, hi), inclusive."""
    if reason:
        stages = [cat.dataset(stage).stage] if stage else list(cat.datasets)
        views = [f"{s}_rejected" for s in stages if f"{s}_rejected" in cat.views]
        if not views:
            raise DatasetError("no stage has dropped documents yet")
        source = (
            "("
            + " UNION ALL BY NAME ".join(
                f"SELECT *, filename, file_row_number FROM {cat.sources[v]}" for v in views
            )
            + ")"
        )
        columns = set.intersection(*(set(cat.columns(v)) for v in views))
    else:
        stage = stage or default_stage(cat.cfg)
        cat.dataset(stage)
        source, columns = cat.sources[stage], set(cat.columns(stage))
    where, params = ["true"], []
    if reason:
        where.append("(reason = ? OR starts_with(reason, ? || ':'))")
        params += [reason, reason]
    if domain:
        where.append("(hostname = ? OR ends_with(hostname, '.' || ?))")
        params += [domain, domain]
    if search:
        where.append("contains(text, ?)")
        params.append(search)
    if score:
        column, lo, hi = score
        if column not in columns:
            scores = sorted(c for c in columns if _is_score(c))
            raise KeyError(
                f"no column {column!r} here; score columns: {', '.join(scores) or 'none'}"
            )
        where.append(f"{_identifier(column)} BETWEEN ? AND ?")
        params += [lo, hi]
    if not search:  # a random order that the seed fixes, whatever the parts' order
        params.append(seed)
    documents = cat.fetch(
        source,
        " AND ".join(where),
        params,
        "id, url, hostname, source_kind, language, length(text) AS chars, "
        f"left(text, {PREVIEW_CHARS}) AS preview" + (", stage, reason, detail" if reason else ""),
        limit=n or (SEARCH_LIMIT if search else 10),
        order="" if search else "ORDER BY hash(id, ?)",
    )
    return {"source": f"rejected by {reason}" if reason else stage, "documents": documents}


def _is_score(column: str) -> bool:
    return any(column.startswith(f"{name}_") for name in FILTERS)


# ----- one document -----


def document(cat: Catalog, doc_id: str) -> dict[str, Any]:
    """Everything known of one document: its text (as the last stage that has it holds it),
    metadata, provenance, every filter score, its dedup cluster (the document kept in its place,
    or the ones it replaced) and where it was dropped, if it was. Every stage's kept and
    rejected documents are searched."""
    stages: list[dict[str, Any]] = []
    last: dict[str, Any] | None = None
    dropped = None
    for stage in cat.stages:
        for view, kept in ((stage, True), (f"{stage}_rejected", False)):
            if view not in cat.views:
                continue
            for row in cat.rows(f"SELECT * FROM {view} WHERE id = ?", [doc_id]):
                stages.append(
                    {"stage": stage, "version": cat.datasets[stage].version, "kept": kept}
                )
                last = row
                if not kept:
                    dropped = {k: row[k] for k in ("stage", "reason", "detail")}
    if last is None:
        raise DatasetError(
            f"no document {doc_id!r} in the current versions of {', '.join(cat.datasets)}"
        )
    return {
        "id": doc_id,
        "stages": stages,
        "dropped": dropped,
        "provenance": {k: last.get(k) for k in PROVENANCE},
        "metadata": {k: last.get(k) for k in METADATA},
        "scores": {k: v for k, v in last.items() if _is_score(k)},
        "dedup": _cluster_of(cat, doc_id),
        "text": last["text"],
    }


def _cluster_of(cat: Catalog, doc_id: str) -> dict[str, Any] | None:
    """The document's dedup cluster (None: it had no duplicate): the document kept in its
    place, or, for the kept one, the duplicates it replaced."""
    if "clusters" not in cat.views:
        return None
    mine = cat.rows("SELECT * FROM clusters WHERE id = ?", [doc_id])
    if not mine:
        return None
    row = mine[0]
    replaced = cat.rows(
        "SELECT id, kind, similarity FROM clusters WHERE cluster = ? AND NOT kept ORDER BY id",
        [doc_id],
    )
    return {
        "kept": row["kept"],
        "kept_in_its_place": None if row["kept"] else row["cluster"],
        "kind": row["kind"],
        "similarity": row["similarity"],
        "replaced": replaced,
    }


# ----- what-if -----


def whatif(cat: Catalog, overrides: list[str], limit: int = 20) -> dict[str, Any]:
    """With other filter thresholds (`filter.<step>.<setting>=VALUE`, as `--set`), which
    documents would the current filter version keep? Decided by the filters' own `keep` on the
    stored scores, nothing recomputed. Steps whose settings did not change give their stored
    verdict; a changed step judges every document that reaches it. A dropped document that
    would now pass its rule was never scored by the steps after it (the filter stops at the
    first failure), so it is `unknown` ("passes this rule, later filters not scored"), never
    guessed; so is one that a changed `skip_kinds` no longer lets pass unscored.

    `keep` runs once per group of documents that it cannot tell apart, not once per document
    (millions): a filter's `keep` only compares each score with its settings' numbers (or 0),
    or a text score with its settings, so documents whose scores lie between the same numbers
    (`_groups`), of the same source kind and stored verdict, get the same verdict.

    Returns the counts (kept before, kept after the change among the known, unknown), the
    documents that change (newly dropped with their new reason, newly kept, unknown: the first
    `limit` of each, by id) and the drop reasons after the change."""
    dataset = cat.dataset("filter")
    manifest = dataset.manifest
    old = FilterConfig.model_validate(manifest.config)
    new = _overridden(old, overrides)
    judge = _Judge(old, new, cat.cfg)
    counts = {"dropped": 0, "kept": 0, "unknown": 0}  # of the documents whose outcome changes
    examples: dict[str, list[dict[str, Any]]] = {"dropped": [], "kept": [], "unknown": []}
    dropped_after = dict(manifest.dropped)
    if judge.changed:
        changes = []
        for group in _groups(cat, judge):
            was, docs = group.pop("reason"), group.pop("docs")
            outcome, what = judge.verdict(group.pop("source_kind"), was, group)
            if was is not None:
                dropped_after[was] -= docs
            if outcome == "dropped":
                dropped_after[what] = dropped_after.get(what, 0) + docs
            newly = (outcome == "dropped") if was is None else (outcome == "kept")
            if newly or outcome == "unknown":
                counts[outcome] += docs
                changes.append({"group_id": group["group_id"], "outcome": outcome, "what": what})
        examples = _changed_documents(cat, changes, limit)
    return {
        "changed": judge.settings,
        "docs_in": manifest.docs_in,
        "kept_before": manifest.docs_out,
        "kept_after": manifest.docs_out - counts["dropped"] + counts["kept"],
        "unknown": counts["unknown"],
        "newly_dropped_count": counts["dropped"],
        "newly_kept_count": counts["kept"],
        "newly_dropped": examples["dropped"],
        "newly_kept": examples["kept"],
        "unknown_docs": examples["unknown"],
        "dropped_after": {r: n for r, n in sorted(dropped_after.items()) if n},
    }


def _groups(cat: Catalog, judge: _Judge) -> list[dict[str, Any]]:
    """The documents that reach the first changed step (only they can change), in a temp table
    `whatif_docs` with their group, and one row per group: its stored verdict (`reason`), source
    kind, number of documents and the scores of one of them. A group: the same verdict, kind,
    text scores and, for each number score, the same place among the numbers of its step's
    settings (below, on or above each; NaN, which compares false with all, apart)."""
    reached = ", ".join(_literal(step) for step in judge.reached)
    keys = ["reason", "source_kind"]
    for step in judge.changed:
        numbers = sorted({0.0} | _numbers(getattr(judge.new, step).model_dump()))
        for name in judge.scores[step]:
            column = _identifier(f"{step}_{name}")
            if name in FILTERS[step].text_scores:
                keys.append(column)
                continue
            place = " + ".join(
                f"({column} > {x!r})::INT + ({column} >= {x!r})::INT" for x in numbers
            )
            keys.append(f"CASE WHEN isnan({column}) THEN -1 ELSE {place} END")
    columns = ", ".join(_identifier(c) for c in judge.columns)
    cat.con.execute(
        "CREATE OR REPLACE TEMP TABLE whatif_docs AS SELECT id, url, reason, source_kind, "
        f"{columns}, dense_rank() OVER (ORDER BY {', '.join(keys)}) AS group_id FROM ("
        f"SELECT id, url, NULL::VARCHAR AS reason, source_kind, {columns} FROM filter "
        f"UNION ALL SELECT id, url, reason, source_kind, {columns} FROM filter_rejected "
        f"WHERE split_part(reason, ':', 1) IN ({reached}))"
    )
    return cat.rows(
        "SELECT group_id, any_value(reason) AS reason, any_value(source_kind) AS source_kind, "
        "count(*) AS docs, "
        + ", ".join(f"any_value({_identifier(c)}) AS {_identifier(c)}" for c in judge.columns)
        + " FROM whatif_docs GROUP BY group_id"
    )


def _numbers(value: Any) -> set[float]:
    """Every number in a config section's settings (nested in lists and dicts included)."""
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return set().union(*(_numbers(v) for v in value))
    is_number = isinstance(value, int | float) and math.isfinite(value)
    return {float(value)} if is_number else set()


def _changed_documents(
    cat: Catalog, changes: list[dict[str, Any]], limit: int
) -> dict[str, list[dict[str, Any]]]:
    """The first `limit` documents (by id) of each outcome of the groups that change: newly
    dropped with their new reason, newly kept, unknown with the step not scored."""
    found: dict[str, list[dict[str, Any]]] = {"dropped": [], "kept": [], "unknown": []}
    if not changes:
        return found
    cat.con.register("whatif_changes", pa.Table.from_pylist(changes))
    for outcome in found:
        for row in cat.rows(
            "SELECT id, url, reason AS was, what FROM whatif_docs JOIN whatif_changes "
            "USING (group_id) WHERE outcome = ? ORDER BY id LIMIT ?",
            [outcome, limit],
        ):
            what = row.pop("what")
            if outcome in WHAT_CHANGES:
                row[WHAT_CHANGES[outcome]] = what
            found[outcome].append(row)
    cat.con.unregister("whatif_changes")
    return found


def _overridden(old: FilterConfig, overrides: list[str]) -> FilterConfig:
    """The filter config with the what-if's settings; only thresholds (THRESHOLDS) may change."""
    for text in overrides:
        keys = text.partition("=")[0].strip().split(".")
        if len(keys) < 3 or keys[0] != "filter" or keys[1] not in old.steps:
            raise ConfigError(
                f"--set {text}: a what-if changes a threshold of a step of this filter version: "
                f"filter.<step>.<setting>=VALUE, with <step> one of {', '.join(old.steps)}"
            )
        step, setting = keys[1], keys[2]
        section = type(getattr(old, step))
        if setting not in section.model_fields:
            raise ConfigError(
                f"--set {text}: filter.{step}.{setting}: {unknown_key_message(section, setting)}; "
                f"thresholds of {step}: {', '.join(sorted(THRESHOLDS[step] | STEP_SETTINGS))}"
            )
        if setting not in THRESHOLDS[step] | STEP_SETTINGS:
            raise ConfigError(
                f"--set {text}: filter.{step}.{setting} changes what the filter scores, so stored "
                f"scores cannot answer; thresholds of {step}: "
                f"{', '.join(sorted(THRESHOLDS[step] | STEP_SETTINGS))}. To try it, rebuild: "
                f"`textmill run filter --set {text}`"
            )
    data = apply_overrides({"filter": old.model_dump(mode="json")}, overrides, "what-if")
    try:
        new = FilterConfig.model_validate(data["filter"])
    except ValidationError as exc:
        problems = "; ".join(
            f"filter.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"what-if: invalid filter settings: {problems}") from None
    for step in old.steps:
        before = FILTERS[step].score_names(getattr(old, step))
        if FILTERS[step].score_names(getattr(new, step)) != before:
            raise ConfigError(
                f"what-if: filter.{step}: these settings score other things than the stored "
                f"scores ({', '.join(before)}); change the limits of those only"
            )
    return new


class _Judge:
    """A what-if's verdicts: the changed steps with their new filters, and each document's
    outcome from its stored verdict (`was`: its drop reason, None if kept) and scores."""

    def __init__(self, old: FilterConfig, new: FilterConfig, cfg: RunConfig):
        self.steps = old.steps
        self.new = new
        self.changed = [s for s in self.steps if getattr(new, s) != getattr(old, s)]
        self.reached = self.steps[self.steps.index(self.changed[0]) :] if self.changed else []
        self.settings = {
            f"filter.{step}.{key}": [value, getattr(getattr(new, step), key)]
            for step in self.changed
            for key, value in getattr(old, step).model_dump().items()
            if getattr(getattr(new, step), key) != value
        }
        resolved = filter_stage.resolve_paths(new, cfg.resolve)  # models load for `keep`'s sake
        self.filters = {s: filter_stage.make_step(s, getattr(resolved, s)) for s in self.changed}
        self.old_skip = {s: frozenset(getattr(old, s).skip_kinds) for s in self.steps}
        self.new_skip = {s: frozenset(getattr(new, s).skip_kinds) for s in self.steps}
        self.scores = {
            s: FILTERS[s].score_names(getattr(new, s)) for s in self.changed
        }  # names of each changed step's scores (columns `<step>_<score>`)
        self.columns = [f"{s}_{name}" for s in self.changed for name in self.scores[s]]

    def verdict(
        self, kind: str | None, was: str | None, values: dict[str, Any]
    ) -> tuple[str, str | None]:
        """("kept", None), ("dropped", reason) or ("unknown", the step that was not scored), of
        a document of this source kind, stored verdict and scores (`values`, by column)."""
        stop = self.steps.index(was.split(":")[0]) if was else len(self.steps)
        for at in range(self.steps.index(self.reached[0]), len(self.steps)):
            step = self.steps[at]
            if kind in self.new_skip[step]:
                continue
            if step not in self.changed:
                if at == stop:
                    return "dropped", was  # the same rule and scores: the same verdict
                if at > stop:
                    return "unknown", step
                continue
            if at > stop or kind in self.old_skip[step]:
                return "unknown", step
            scores = {name: values[f"{step}_{name}"] for name in self.scores[step]}
            step_filter, _, ignore = self.filters[step]
            keep, rule = step_filter.keep(scores, ignore.get(kind, frozenset()))
            if not keep:
                return "dropped", f"{step}:{rule}"
        return "kept", None


# ----- SQL -----


def sql(cat: Catalog, query: str) -> dict[str, Any]:
    """Any query over the catalog's views; the column names and the rows."""
    try:
        result = cat.con.execute(query)
    except duckdb.Error as exc:
        raise ValueError(f"SQL: {exc} (views: {', '.join(cat.views)})") from None
    if result.description is None:
        return {"columns": [], "rows": []}
    return {"columns": [d[0] for d in result.description], "rows": result.fetchall()}
