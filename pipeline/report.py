"""`textmill report`: one self-contained HTML page on what a run made of its crawl.

The page has no external assets (inline CSS, charts as inline SVG, a Content-Security-Policy
that forbids loading anything else), so it opens from disk or as an e-mail attachment. It shows:

- the funnel: documents in and out of each document stage, and dropped per reason (manifests);
- the length of the documents kept (the curated dataset the tokenizer reads) and dropped (every
  document stage's `rejected/`), and the filter scores of the documents the filter saw;
- languages and domains, kept and dropped; dedup cluster sizes (`clusters.parquet`);
- tokens per split (the shards manifest) and the training loss (`runs/<run>/metrics.jsonl`);
- a few documents kept and a few dropped per reason, escaped.

Counts come from manifests; distributions are aggregated by DuckDB over the Parquet parts
(reading only the columns it needs), and samples are chosen by id hash before their text is
read, so the report stays quick on millions of documents.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb

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


@dataclass
class Histogram:
    """Counts per bin of kept and dropped documents; `edges` has one more entry than bins."""

    edges: list[float]
    kept: list[int]
    dropped: list[int]


def histograms(
    con: duckdb.DuckDBPyConnection, sources: dict[bool, str | None], expressions: dict[str, str]
) -> dict[str, Histogram]:
    """Each named expression per document of the kept (True) and dropped (False) sources, in BINS
    bins from its 1st to its 99th percentile (values beyond go in the edge bins, so one outlier
    does not squash the rest); names that no document has a value for are left out. The values
    are read once, into a temporary table, whatever the number of expressions."""
    columns = ", ".join(
        f"({expr})::DOUBLE AS {_quoted(name)}" for name, expr in expressions.items()
    )
    selects = [
        f"SELECT {kept} AS kept, {columns} FROM {src}" for kept, src in sources.items() if src
    ]
    if not selects:
        return {}
    con.execute(f"CREATE OR REPLACE TEMP TABLE hist_values AS {' UNION ALL '.join(selects)}")
    found = {name: _histogram(con, _quoted(name)) for name in expressions}
    return {name: hist for name, hist in found.items() if hist is not None}


def _histogram(con: duckdb.DuckDBPyConnection, column: str) -> Histogram | None:
    values = f"(SELECT kept, {column} AS x FROM hist_values WHERE isfinite({column}))"
    lo, hi = con.execute(
        f"SELECT quantile_cont(x, 0.01), quantile_cont(x, 0.99) FROM {values}"
    ).fetchone()
    if lo is None:
        return None
    if hi <= lo:  # one value (or nearly): one bin around it
        lo, hi = lo - 0.5, hi + 0.5
    width = (hi - lo) / BINS
    rows = con.execute(
        f"SELECT kept, least(greatest(floor((x - {lo}) / {width}), 0), {BINS - 1})::INT AS bin, "
        f"count(*) FROM {values} GROUP BY ALL"
    ).fetchall()
    counts = {True: [0] * BINS, False: [0] * BINS}
    for kept, bin_, n in rows:
        counts[kept][bin_] = n
    return Histogram([lo + i * width for i in range(BINS + 1)], counts[True], counts[False])


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
            _scores(con, ws, datasets.get("filter")),
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
    with_text = {
        k: s and f"(SELECT text FROM {s} WHERE strlen(text) > 0)" for k, s in sources.items()
    }
    hist = histograms(con, with_text, {"length": "log10(strlen(text))"}).get("length")
    if hist is None:
        return Section("Document lengths", "<p>No documents with text.</p>")
    caption = (
        f"UTF-8 bytes of text, log scale: kept = the {curated} dataset (what the tokenizer "
        "reads), dropped = what any stage dropped (with its text)"
    )
    return Section("Document lengths", _histogram_chart(caption, hist, True))


def _scores(con: duckdb.DuckDBPyConnection, ws: Workspace, filtered: Dataset | None) -> Section:
    if filtered is None:
        return Section("Filter scores", "<p>No filter dataset yet.</p>")
    from pipeline.filter import score_fields

    sources = {True: dataset_source(ws, filtered), False: dataset_source(ws, filtered, True)}
    present = set().union(*(columns_of(con, s) for s in sources.values() if s))
    fields = score_fields(FilterConfig.model_validate(filtered.manifest.config))
    numeric = [f.name for f in fields if f.type.equals("double") and f.name in present]
    found = histograms(con, sources, {name: _quoted(name) for name in numeric})
    charts = "".join(
        _histogram_chart(name, hist, False, width=WIDTH // 2 - 10) for name, hist in found.items()
    )
    note = (
        "<p>Documents the filter kept and dropped; a filter scores only the documents that "
        "reached it, so later filters see fewer.</p>"
    )
    grid = f'<div class="grid">{charts}</div>' if charts else "<p>No scores stored.</p>"
    return Section("Filter scores", note + grid)


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
    metrics = f"runs/{run}/metrics.jsonl"
    if not ws.storage.exists(metrics):
        return Section(f"Training (run {_e(run)})", "<p>Not trained yet.</p>")
    rows = [json.loads(line) for line in ws.storage.read_text(metrics).splitlines()]
    if not rows:
        return Section(f"Training (run {_e(run)})", "<p>No step logged yet.</p>")
    losses = sorted({k for row in rows for k in row if k.endswith("loss")})  # train, evals
    series = {k: [(r["step"], r[k]) for r in rows if k in r] for k in losses}
    body = _lines_chart("Loss (nats per token) per step", series)
    body += _table(["last step", "value"], [[_e(k), _e(v)] for k, v in rows[-1].items()])
    return Section(f"Training (run {_e(run)})", body)


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


# Nothing may load from outside the page; the script reports whether every chart was drawn
# (the browser test reads #charts-status).
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
.grid {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(370px, 1fr)); }}
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
  document.getElementById("charts-status").textContent =
    `${{drawn.length}} of ${{charts.length}} charts drawn`;
}});
</script>
</body></html>
"""


# ----- charts: inline SVG, drawn here (milliseconds each, sharp at any zoom) -----

WIDTH = 760  # px
LABEL_WIDTH = 230  # px, the labels left of horizontal bars
COLORS = ("#3b75af", "#d1603d", "#519e3e", "#8d69b8")  # kept, dropped, then more series
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def _svg(width: int, height: float, shapes: list[str], caption: str) -> str:
    return (
        f'<figure><svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height:.0f}" viewBox="0 0 {width} {height:.0f}" {FONT} role="img" '
        f'aria-label="{_e(caption)}">{"".join(shapes)}</svg>'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def _legend(series: list[str], x: float, y: float) -> list[str]:
    shapes = []
    for i, name in enumerate(series):
        shapes.append(
            f'<rect x="{x + i * 90}" y="{y - 10}" width="10" height="10" fill="{_color(i)}"/>'
            f'<text x="{x + i * 90 + 14}" y="{y}">{_e(name)}</text>'
        )
    return shapes


def _number(value: float) -> str:
    """Short tick labels: 12, 3.5, 0.042, 1.2k, 3.4M."""
    for limit, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


def _hbars(caption: str, rows: list[tuple[str, list[int]]], series: list[str]) -> str:
    """One horizontal bar per label, its values stacked in `series` order (colors as COLORS)."""
    bar, step = 16, 22
    top = 20 if len(series) > 1 else 2
    longest = max((sum(values) for _, values in rows), default=0) or 1
    scale = (WIDTH - LABEL_WIDTH - 110) / longest
    shapes = _legend(series, LABEL_WIDTH, 12) if len(series) > 1 else []
    for i, (label, values) in enumerate(rows):
        y = top + i * step
        short = label if len(label) <= 36 else label[:35] + "…"
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

    def x(self, value: float) -> float:
        lo, hi = self.x_range
        return self.left + (value - lo) / ((hi - lo) or 1) * (self.width - self.left - 8)

    def y(self, value: float) -> float:
        lo, hi = self.y_range
        inner = self.height - self.top - self.bottom
        return self.top + inner - (value - lo) / ((hi - lo) or 1) * inner

    def axes(self, x_ticks: list[tuple[float, str]], y_ticks: list[tuple[float, str]]) -> list[str]:
        base = self.height - self.bottom
        shapes = [
            f'<line x1="{self.left}" y1="{base}" x2="{self.width - 8}" y2="{base}" stroke="#999"/>',
            f'<line x1="{self.left}" y1="{self.top}" x2="{self.left}" y2="{base}" stroke="#999"/>',
        ]
        for i, (value, label) in enumerate(x_ticks):  # the end ticks stay inside the chart
            anchor = "start" if i == 0 else "end" if i == len(x_ticks) - 1 else "middle"
            x = self.x(value)
            shapes.append(
                f'<text x="{x:.1f}" y="{base + 15}" text-anchor="{anchor}">{label}</text>'
            )
        for value, label in y_ticks:
            shapes.append(
                f'<text x="{self.left - 4}" y="{self.y(value) + 4:.1f}" text-anchor="end">'
                f"{label}</text>"
            )
        return shapes


def _histogram_chart(caption: str, hist: Histogram, log10_x: bool, width: int = WIDTH) -> str:
    """Kept and dropped counts per bin, overlaid; `log10_x`: the edges are log10 of the values."""
    peak = max(max(hist.kept), max(hist.dropped), 1)
    frame = _Frame(width, 170, (hist.edges[0], hist.edges[-1]), (0, peak))
    shapes = _legend(["kept", "dropped"], frame.left, 12)
    for counts, color in ((hist.kept, COLORS[0]), (hist.dropped, COLORS[1])):
        for i, n in enumerate(counts):
            if n:
                x0, x1 = frame.x(hist.edges[i]), frame.x(hist.edges[i + 1])
                shapes.append(
                    f'<rect x="{x0:.1f}" y="{frame.y(n):.1f}" width="{x1 - x0:.1f}" '
                    f'height="{frame.y(0) - frame.y(n):.1f}" fill="{color}" fill-opacity="0.6">'
                    f"<title>{n:,}</title></rect>"
                )
    ticks = [hist.edges[0], hist.edges[len(hist.edges) // 2], hist.edges[-1]]
    x_ticks = [(t, _number(10**t if log10_x else t)) for t in ticks]
    return _svg(
        width, 170, shapes + frame.axes(x_ticks, [(0, "0"), (peak, _number(peak))]), caption
    )


def _lines_chart(caption: str, series: dict[str, list[tuple[float, float]]]) -> str:
    """One polyline per series (points: x, y), with a dot on series of few points."""
    points = [p for line in series.values() for p in line]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    frame = _Frame(WIDTH, 260, (min(xs), max(xs)), (min(ys), max(ys)))
    shapes = _legend(list(series), frame.left, 12)
    for i, (name, line) in enumerate(series.items()):
        color = _color(i)
        coords = " ".join(f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y in line)
        shapes.append(
            f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="1.5">'
            f"<title>{_e(name)}</title></polyline>"
        )
        if len(line) <= 50:
            shapes += [
                f'<circle cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="2.5" fill="{color}"/>'
                for x, y in line
            ]
    x_ticks = [(v, _number(v)) for v in (min(xs), max(xs))]
    y_ticks = [(v, _number(v)) for v in (min(ys), max(ys))]
    return _svg(WIDTH, 260, shapes + frame.axes(x_ticks, y_ticks), caption)
