"""`textmill report` over a real small run: the WARC files of ../shared/data/warc through every
stage and a tiny training run, then the page checked as HTML and in headless Chromium."""

from __future__ import annotations

import html
import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pytest
import yaml
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.config import FilterConfig, load_config
from pipeline.datasets import Dataset
from pipeline.filters import FILTERS
from pipeline.report import (
    SCORE_SERIES,
    Limit,
    _document,
    _number,
    build_report,
    histogram,
    linear_ticks,
    load_values,
    log_ticks,
    score_limits,
)
from pipeline.workspace import Workspace
from tests.conftest import SHARED_DATA, needs_shared_data

TINY_TRAIN = {
    "run": "tiny",
    "context": 16,
    "n_layer": 1,
    "n_embd": 16,
    "n_head": 2,
    "batch_size": 2,
    "max_steps": 6,
    "eval_interval": 2,  # val points at steps 2, 4 and 6: the chart must show every one
    "sample_tokens": 0,
}


def _cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def run_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """extract -> clean -> dedup -> filter -> tokenizer -> shards -> train, without Prefect."""
    folder = tmp_path_factory.mktemp("report")
    warc = SHARED_DATA / "warc"
    config = folder / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "workspace": str(folder / "workspace"),
                "sources": [
                    {
                        "name": "warc-samples",
                        "kind": "web",
                        "warc": [f"{warc}/**/*.{ext}" for ext in ("warc", "warc.gz", "arc.gz")],
                    }
                ],
                "runner": {"task_runner": "serial", "workers": 1},
                "tokenizer": {"vocab_size": 300},
                "train": TINY_TRAIN,
            }
        )
    )
    for stage in ("extract", "curate", "tokenizer", "shards", "train"):
        result = _cli("run", stage, "-c", str(config), "--no-prefect")
        assert result.exit_code == 0, result.output
    return config


@needs_shared_data
def test_the_report_shows_what_the_run_made_and_loads_nothing(run_config):
    cfg = load_config(run_config)
    ws = Workspace(cfg.workspace_root)
    page = build_report(cfg, ws)

    for stage in ("extract", "clean", "dedup", "filter"):
        manifest = Dataset.current(ws, stage).manifest
        row = f"<td>{stage}</td><td>{manifest.version}</td><td>{manifest.docs_in:,}</td>"
        assert row + f"<td>{manifest.docs_out:,}</td>" in page  # the funnel's table
        for reason in manifest.dropped:
            assert f"{stage}: {reason}" in page  # in the chart of drops and among the samples
    splits = Dataset.current(ws, "shards").manifest.stats["splits"]
    assert f"<td>train</td><td>{splits['train']['docs']:,}</td>" in page
    sections = ("Filter scores", "Languages and domains", "Dedup clusters", "Training (run tiny)")
    for title in sections:
        assert f"<h2>{title}</h2>" in page
    assert "language_score" in page and "exact_duplicate" in page and "<td>en</td>" in page
    assert 'aria-label="Bits per byte per step' in page and "val_bits_per_byte" in page
    # no external assets: every src and href points into the page
    assert not re.findall(r'(?:src|href)="(?!data:|#)', page)
    widths = [int(w) for w in re.findall(r'<svg class="chart"[^>]* width="(\d+)"', page)]
    assert len(widths) >= 10 and min(widths) >= 720


def test_sample_text_is_escaped():
    doc = {
        "id": "x",
        "url": "https://evil.example/<b>",
        "text": "<script>alert(1)</script> & <img src=x onerror=alert(2)>",
        "bytes": 60,
        "stage": "filter",
        "reason": "language:detected",
        "detail": "detected=<i>fr</i>",
    }
    shown = _document(doc)
    assert "<script>" not in shown and "<img" not in shown and "<i>" not in shown
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;img" in shown


def _chromium() -> str:
    """Debian's chromium, installed with apt-get when missing (as root); skips if impossible."""
    found = shutil.which("chromium")
    if found is None and shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "install", "-y", "chromium"], ["apt-get", "update"]):
            subprocess.run(command, env=env, capture_output=True, timeout=900)
        if shutil.which("chromium") is None:  # the package lists were stale: now updated
            subprocess.run(
                ["apt-get", "install", "-y", "chromium"], env=env, capture_output=True, timeout=900
            )
        found = shutil.which("chromium")
    if found is None:
        pytest.skip("headless Chromium is not installed and apt-get could not install `chromium`")
    return found


def _headless(chromium: str, url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [chromium, "--headless", "--disable-gpu", "--no-sandbox", *args, url],
        capture_output=True,
        text=True,
        timeout=120,
    )


@needs_shared_data
def test_the_report_renders_in_headless_chromium(run_config, tmp_path):
    chromium = _chromium()
    page = tmp_path / "report.html"
    result = _cli("report", "-c", str(run_config), "-o", str(page))
    assert result.exit_code == 0 and result.output.strip() == f"report: {page}"

    # The page's script counts the charts drawn (SVG with a size and shapes) once it has loaded.
    dom = _headless(chromium, page.as_uri(), "--window-size=1280,4000", "--dump-dom").stdout
    drawn = re.search(
        r'id="charts-status">(\d+) of (\d+) charts drawn, the narrowest (\d+) px wide<', dom
    )
    assert drawn, dom[-2000:]
    assert int(drawn[1]) == int(drawn[2]) >= 10
    assert int(drawn[3]) >= 720  # a chart is read at its own size, not squeezed into a column

    screenshot = tmp_path / "report.png"
    logged = _headless(
        chromium,
        page.as_uri(),
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1280,4000",
        f"--screenshot={screenshot}",
    )
    assert screenshot.stat().st_size > 10_000
    assert [line for line in logged.stderr.splitlines() if ":CONSOLE" in line] == []

    # The check can fail: a page with a console error and an external image is caught.
    bad = tmp_path / "bad.html"
    bad.write_text(page.read_text().replace("</body>", '<img src="https://example.org/x.png">'))
    logged = _headless(chromium, bad.as_uri(), "--enable-logging=stderr", "--v=0", "--dump-dom")
    assert any("Content Security Policy" in line for line in logged.stderr.splitlines())


# ----- the charts: round ticks, thresholds, what "dropped" counts, bits per byte -----


def _charts(page: str) -> dict[str, str]:
    """Each chart's SVG by its caption up to the first ":" or " (" (a score chart: its column)."""
    found = re.findall(r"<figure>(<svg.*?</svg>)<figcaption>(.*?)</figcaption>", page, re.S)
    return {re.split(r":| \(", html.unescape(caption))[0]: svg for svg, caption in found}


def _value(label: str) -> float:
    scale = {"k": 1e3, "M": 1e6}.get(label[-1], 1.0)
    return float(label[:-1] if scale != 1.0 else label) * scale


def _ticks(svg: str, axis: str) -> list[tuple[float, float]]:
    """(value, pixel) of an axis's tick labels (a y label sits 4 px below its value)."""
    if axis == "x":
        found = re.findall(r'class="tick x" x="([-\d.]+)"[^>]*>([^<]+)<', svg)
        return [(_value(label), float(px)) for px, label in found]
    found = re.findall(r'class="tick y" x="[-\d.]+" y="([-\d.]+)"[^>]*>([^<]+)<', svg)
    return [(_value(label), float(px) - 4) for px, label in found]


def _pixel(svg: str, axis: str, log: bool = False):
    """value -> pixel on a chart's axis, from its first and last tick."""
    (v0, p0), (v1, p1) = _ticks(svg, axis)[0], _ticks(svg, axis)[-1]
    f = math.log10 if log else float
    return lambda v: p0 + (f(v) - f(v0)) / (f(v1) - f(v0)) * (p1 - p0)


def _is_nice(value: float) -> bool:
    """1, 2 or 5 x 10^k."""
    mantissa = value / 10 ** math.floor(math.log10(value) + 1e-9)
    return any(math.isclose(mantissa, m, rel_tol=1e-6) for m in (1, 2, 5))


def _assert_round(ticks: list[float], log: bool) -> None:
    assert len(ticks) >= 2, ticks
    if log:
        assert all(_is_nice(t) for t in ticks), ticks
        return
    step = ticks[1] - ticks[0]
    assert _is_nice(step), ticks
    for t in ticks:
        assert math.isclose(t / step, round(t / step), abs_tol=1e-6), ticks
        assert math.isclose(t - ticks[0], round((t - ticks[0]) / step) * step, abs_tol=1e-9)


@pytest.mark.parametrize(
    "lo, hi", [(0, 1), (0.000214, 0.000428), (45.5, 12_500), (4.5, 346), (-3, 7), (0.288, 0.999)]
)
def test_linear_ticks_are_round_numbers_around_the_range(lo, hi):
    ticks = linear_ticks(lo, hi, 5)
    assert ticks[0] <= lo and ticks[-1] >= hi and 3 <= len(ticks) <= 11
    _assert_round(ticks, log=False)


@pytest.mark.parametrize("lo, hi", [(186, 26_200), (45, 100_000), (3, 40), (0.02, 0.9)])
def test_log_ticks_are_round_numbers_around_the_range(lo, hi):
    ticks = log_ticks(lo, hi)
    assert ticks[0] <= lo and ticks[-1] >= hi and 3 <= len(ticks) <= 12
    _assert_round(ticks, log=True)


def test_a_skewed_distribution_gets_a_log_axis_and_a_narrow_one_does_not():
    con = duckdb.connect()
    load_values(con, ["SELECT 0 AS s, 10 ** (i / 250 + 1) AS x FROM range(1000) t(i)"])
    skewed = histogram(con, "x", "s", ["all"])  # 10 to 100,000
    load_values(con, ["SELECT 0 AS s, i / 1000 AS x FROM range(1000) t(i)"])
    narrow = histogram(con, "x", "s", ["all"])  # 0 to 1
    assert skewed.log and not narrow.log
    assert sum(skewed.counts["all"]) == sum(narrow.counts["all"]) == 1000
    assert 10 ** skewed.edges[0] <= 10 and 10 ** skewed.edges[-1] >= 1e5 * 0.99


def _left_of(hist, at: float) -> int:
    counts = hist.counts["all"]
    return sum(n for i, n in enumerate(counts) if hist.edges[i + 1] <= at + 1e-9)


def test_no_bar_straddles_a_limit_and_a_value_on_it_is_on_the_side_it_is_kept():
    con = duckdb.connect()
    load_values(con, ["SELECT 0 AS s, x FROM (VALUES (0.0), (0.1), (0.3), (0.3), (0.5)) v(x)"])
    hist = histogram(con, "x", "s", ["all"], [Limit(">", 0.3)])
    assert [at for at, _ in hist.lines] == [0.3]
    assert _left_of(hist, 0.3) == 4  # 0.3 is kept by "> 0.3": left of the line
    # integer scores (stop words, sentences): one bar per value, the line between 1 and 2
    load_values(con, ["SELECT 0 AS s, (i % 11)::DOUBLE AS x FROM range(110) t(i)"])
    hist = histogram(con, "x", "s", ["all"], [Limit("<", 2)])
    assert hist.integer and [at for at, _ in hist.lines] == [1.5]
    assert _left_of(hist, 1.5) == 20  # the values 0 and 1


def _either_side(limit: Limit) -> list[tuple[float, bool]]:
    """(a score, whether the limit drops it): on the limit and just past it."""
    v, eps = limit.value, 1e-6 * max(1.0, abs(limit.value))
    return {
        "<": [(v - eps, True), (v, False)],
        "<=": [(v, True), (v + eps, False)],
        ">": [(v + eps, True), (v, False)],
        ">=": [(v, True), (v - eps, False)],
    }[limit.op]


def test_the_report_limits_are_the_ones_each_filters_keep_applies(tmp_path):
    """score_limits writes out the filters' rules: each limit checked against the filter's own
    `keep`, on a config with non-default thresholds; every numeric score has its limits."""
    evals = tmp_path / "eval.txt"
    evals.write_text(" ".join(f"word{i}" for i in range(30)))
    cfg = FilterConfig.model_validate(
        {
            "steps": [n for n in FILTERS if n != "quality"],  # quality needs a trained model
            "gopher_quality": {"min_doc_words": 7, "max_avg_word_length": 12.5},
            "gopher_repetition": {"top_n_grams": {2: 0.25, 5: 0.1}},
            "c4_quality": {"min_sentences": 3, "curly_bracket": False},
            "fineweb_quality": {"line_punct_thr": 0.2, "short_line_thr": 0.5},
            "decontamination": {"eval_files": [str(evals)], "min_matches": 2},
            "quality": {"min_score": 0.7},
        }
    )
    limits = score_limits(cfg)
    assert Limit("<", 7.0) in limits["gopher_quality_words"]
    assert limits["gopher_repetition_top_5_gram"] == [Limit(">", 0.1)]
    assert limits["c4_quality_curly_bracket"] == []  # the rule is off
    for step in FILTERS:
        cls, section = FILTERS[step], getattr(cfg, step)
        # quality: its `keep` reads only the config, so a stand-in spares loading a model
        f = cls(section) if step != "quality" else SimpleNamespace(cfg=section)
        names = cls.score_names(section)
        base = {n: "" if n in cls.text_scores else 0.0 for n in names}
        for name in names:
            if name in cls.text_scores:
                continue
            column = f"{step}_{name}"
            assert column in limits
            others = frozenset(names) - {name}
            for limit in limits[column]:
                for value, dropped in _either_side(limit):
                    kept = cls.keep(f, {**base, name: value}, ignore=others)
                    assert kept == ((False, name) if dropped else (True, None)), (column, value)


@needs_shared_data
def test_each_score_chart_draws_the_limit_it_was_filtered_with(run_config):
    cfg = load_config(run_config)
    ws = Workspace(cfg.workspace_root)
    language = cfg.filter.language.model_copy(update={"min_score": 0.8})  # tried, not yet run
    tried = cfg.model_copy(update={"filter": cfg.filter.model_copy(update={"language": language})})
    page = build_report(tried, ws)
    charts = _charts(page)
    built = FilterConfig.model_validate(Dataset.current(ws, "filter").manifest.config)
    columns = [c for c in score_limits(built) if any(c.startswith(s) for s in built.steps)]
    assert {"language_score", "gopher_quality_words", "c4_quality_sentences"} <= set(charts)
    for column in columns:
        svg = charts[column]
        drawn = re.findall(r'class="limit" data-op="([^"]+)" data-value="([^"]+)"', svg)
        drawn = {(html.unescape(op), float(v)) for op, v in drawn}
        beyond = " ".join(
            html.unescape(t) for t in re.findall(r'class="off-axis"[^>]*>([^<]+)<', svg)
        )
        for limit in score_limits(built)[column]:
            assert (limit.op, limit.value) in drawn or f" {_number(limit.value)} " in beyond, column

    # the line is where its value is on the axis, and the side it drops is shaded
    svg = charts["language_score"]
    x = _pixel(svg, "x")
    line = re.search(r'data-value="0.65" x1="([\d.]+)"[^>]*stroke="#222"', svg)
    assert line and float(line[1]) == pytest.approx(x(0.65), abs=0.2)
    shade = re.search(
        r'<rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)"[^>]*fill-opacity="0.08"', svg
    )
    assert float(shade[1]) == pytest.approx(x(_ticks(svg, "x")[0][0]), abs=0.2)  # from the start
    assert float(shade[1]) + float(shade[2]) == pytest.approx(x(0.65), abs=0.2)  # to the line
    # the run config's own threshold, tried on the stored scores, is drawn dashed beside it
    now = re.search(r'data-value="0.8" x1="([\d.]+)"[^>]*stroke-dasharray', svg)
    assert now and float(now[1]) == pytest.approx(x(0.8), abs=0.2)
    assert "config now: &lt; 0.8" in svg and "&lt; 0.65 dropped" in svg


@needs_shared_data
def test_a_score_chart_counts_as_dropped_only_what_its_own_filter_dropped(run_config):
    cfg = load_config(run_config)
    ws = Workspace(cfg.workspace_root)
    page = build_report(cfg, ws)
    charts = _charts(page)
    filtered = Dataset.current(ws, "filter")
    m = filtered.manifest
    rejected = filtered.read(rejected=True).to_pylist()
    checked = 0
    for step in m.config["steps"]:
        own = {r.split(":", 1)[1]: n for r, n in m.dropped.items() if r.startswith(f"{step}:")}
        for column in (c for c in charts if c.startswith(f"{step}_")):
            counts = dict.fromkeys(SCORE_SERIES, 0)
            for name, n in re.findall(
                rf"<title>[^<]*: ({'|'.join(SCORE_SERIES)}) ([\d,]+)</", charts[column]
            ):
                counts[name] += int(n.replace(",", ""))
            this_rule, other_rules = counts[SCORE_SERIES[1]], counts[SCORE_SERIES[2]]
            assert this_rule == own.get(column.removeprefix(f"{step}_"), 0), column
            assert this_rule + other_rules == sum(own.values()), column
            assert counts[SCORE_SERIES[0]] == m.counts[f"{step}_scored"] - sum(own.values())
            checked += 1
    assert checked >= 20
    # the data tell the two apart: rejected documents gopher_quality scored, a later filter dropped
    own = sum(n for r, n in m.dropped.items() if r.startswith("gopher_quality:"))
    assert sum(1 for row in rejected if row["gopher_quality_words"] is not None) > own > 0


@needs_shared_data
def test_the_training_chart_is_bits_per_byte_with_every_val_point_and_the_unigram(run_config):
    from pipeline.demo import unigram_bits_per_byte  # the same baseline, computed in memory

    cfg = load_config(run_config)
    ws = Workspace(cfg.workspace_root)
    svg = _charts(build_report(cfg, ws))["Bits per byte per step"]
    metrics = (Path(cfg.workspace_root) / "runs" / "tiny" / "metrics.jsonl").read_text()
    rows = [json.loads(line) for line in metrics.splitlines()]
    x, y = _pixel(svg, "x"), _pixel(svg, "y")

    val = [(r["step"], r["val_bits_per_byte"]) for r in rows if "val_bits_per_byte" in r]
    points = re.findall(r'class="point" data-series="val" cx="([\d.]+)" cy="([\d.]+)"', svg)
    assert len(val) == 3 and len(points) == len(val)
    for (cx, cy), (step, bits) in zip(points, val, strict=True):
        assert float(cx) == pytest.approx(x(step), abs=0.2)
        assert float(cy) == pytest.approx(y(bits), abs=0.2)

    stats = Dataset.current(ws, "shards").manifest.stats
    train = stats["splits"]["train"]
    per_byte = train["tokens"] / train["bytes"] / math.log(2)
    line = re.search(r'<polyline class="line" points="([^"]+)"', svg)[1].split()
    assert len(line) == len(rows)
    for point, row in zip(line, rows, strict=True):
        assert float(point.split(",")[1]) == pytest.approx(y(row["loss"] * per_byte), abs=0.2)

    unigram = unigram_bits_per_byte(ws, stats)
    level = re.search(r'class="level" data-value="([^"]+)" x1="[\d.]+" y1="([\d.]+)"', svg)
    assert float(level[1]) == pytest.approx(unigram, rel=1e-4)
    assert float(level[2]) == pytest.approx(y(unigram), abs=0.2)


@needs_shared_data
def test_every_chart_axis_has_round_ticks(run_config):
    cfg = load_config(run_config)
    page = build_report(cfg, Workspace(cfg.workspace_root))
    figures = re.findall(r"<figure>(<svg.*?</svg>)<figcaption>(.*?)</figcaption>", page, re.S)
    axes = 0
    for svg, caption in figures:
        for axis in ("x", "y"):
            ticks = [v for v, _ in _ticks(svg, axis)]
            if ticks:  # horizontal bar charts have none
                _assert_round(ticks, log=axis == "x" and "log scale" in caption)
                axes += 1
    assert axes >= 40
