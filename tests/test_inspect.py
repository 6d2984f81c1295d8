"""`textmill inspect` and `textmill lineage` over a real small run: real pages from the shared
data in two crawl generations, through every stage to a tiny model run."""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from click.testing import CliRunner
from warcio.archiveiterator import ArchiveIterator

from pipeline import filter as filter_stage
from pipeline.cli import main
from pipeline.config import FilterConfig, load_config
from pipeline.datasets import Dataset, VersionBuilder
from pipeline.filters import Filter
from pipeline.inspect import (
    THRESHOLDS,
    Catalog,
    _Judge,
    _numbers,
    _overridden,
    document,
    funnel,
    sample,
    sql,
    summary,
    whatif,
)
from pipeline.lineage import lineage
from pipeline.runner import make_map
from pipeline.schema import DOCUMENT_SCHEMA, documents_table, rejected_schema_of
from pipeline.stage import run
from pipeline.stages import STAGES
from pipeline.workspace import Workspace
from tests.conftest import SHARED_DATA, needs_shared_data
from tests.helpers import write_config, write_warc

PAGES = SHARED_DATA / "trafilatura-eval" / "html" / "eval"
ENGLISH = {
    "bbc.com.52241221.html.gz": "https://www.bbc.com/news/world-us-canada-52241221",
    "nytimes.com.blackouts.html.gz": "https://www.nytimes.com/2020/08/16/business/california-blackouts.html",
    "economist.com.thinking.html.gz": "https://www.economist.com/open-future/2018/06/18/why-collaborative-thinking-beats-individual-smarts",
    "theatlantic.com.disasters.html.gz": "https://www.theatlantic.com/ideas/archive/2020/08/californias-disasters-are-a-warning-climate-change-is-here/615610/",
    "wired.com.burn.html.gz": "https://www.wired.com/story/ai-great-things-burn-planet/",
    "security.googleblog.com.protection.html.gz": "https://security.googleblog.com/2020/05/enhanced-safe-browsing-protection-now.html",
    "blog.gaijinpot.com.chikan.html.gz": "https://blog.gaijinpot.com/tweet-of-the-week-67-dealing-with-chikan/",
    "edition.cnn.com-royal.html.gz": "https://edition.cnn.com/2021/03/08/uk/meghan-harry-oprah-interview-recap-scli-gbr-intl/index.html",
}
FRENCH = (
    "bondyblog.fr.paris-8.html.gz",
    "https://www.bondyblog.fr/societe/a-paris-8-un-peu-de-tension-beaucoup-d-actions/",
)
GERMAN = (
    "verfassungsblog.de.expertinnen.html.gz",
    "https://verfassungsblog.de/expertinnen-in-der-krise/",
)
MIRROR = "https://mirror.example.net/bbc-copy"  # the BBC page again, in the later generation
GENERATIONS = ("20240101T000000.000Z", "20240201T000000.000Z")
TINY_MODEL = {
    "context": 32,
    "n_layer": 1,
    "n_head": 2,
    "n_embd": 32,
    "batch_size": 4,
    "max_steps": 2,
    "warmup_steps": 1,
    "eval_interval": 2,
    "eval_windows": 2,
    "sample_tokens": 4,
    "run": "tiny",
}
CURATED = ("extract", "clean", "dedup", "filter", "tokenizer", "shards")


def _generation(root: Path, name: str, pages: list[tuple[str, str]]) -> None:
    """A crawl generation as the crawler leaves it: a WARC file, then its manifest."""
    folder = root / "crawl" / "news" / name
    records = [
        {"url": url, "body": gzip.decompress((PAGES / file).read_bytes())} for file, url in pages
    ]
    warc = write_warc(folder / "news-00000.warc.gz", records)
    manifest = {
        "source": "news",
        "kind": "web",
        "generation": name,
        "created_at": f"{name[:4]}-{name[4:6]}-{name[6:8]}T00:00:00+00:00",
        "files": [
            {
                "name": warc.name,
                "size": warc.stat().st_size,
                "sha256": hashlib.sha256(warc.read_bytes()).hexdigest(),
            }
        ],
        "counts": {"fetched": len(pages)},
    }
    (folder / "_manifest.json").write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The config of a workspace built through every stage and a 2-step model run."""
    from model.train import train

    folder = tmp_path_factory.mktemp("inspect")
    _generation(folder / "workspace", GENERATIONS[0], [*ENGLISH.items(), FRENCH])
    bbc = next(iter(ENGLISH))
    _generation(folder / "workspace", GENERATIONS[1], [(bbc, MIRROR), GERMAN])
    config = write_config(
        folder,
        [],
        sources=[{"name": "news", "kind": "web"}],
        tokenizer={"vocab_size": 400, "val_fraction": 0.2},
        shards={"row_tokens": 32},
        train=TINY_MODEL,
    )
    cfg = load_config(config)
    ws = Workspace(cfg.workspace_root)
    for name in CURATED:
        run(STAGES[name], cfg, ws, make_map(cfg.runner))
    train(cfg, ws, log=lambda message: None)
    return config


def _setup(config: Path) -> tuple[Catalog, Workspace]:
    cfg = load_config(config)
    ws = Workspace(cfg.workspace_root)
    return Catalog(cfg, ws), ws


def _docs(ws: Workspace, stage: str, rejected: bool = False) -> list[dict]:
    return Dataset.current(ws, stage).read(rejected=rejected).to_pylist()


def _by_url(ws: Workspace, url: str) -> dict:
    """The extracted document of a page (ids are digests of the WARC bytes)."""
    return next(d for d in _docs(ws, "extract") if d["url"] == url)


@needs_shared_data
def test_summary_counts_documents_characters_and_tokens(built):
    cat, ws = _setup(built)
    s = summary(cat)
    kept = _docs(ws, "filter")
    assert s["stage"] == "filter" and s["documents"] == len(kept) > 0
    assert s["characters"] == sum(len(d["text"]) for d in kept)
    index = Dataset.current(ws, "shards").read(["tokens"])
    assert s["tokens"] == pa.compute.sum(index["tokens"]).as_py()
    domains = {row["value"]: row["documents"] for row in s["by_domain"]}
    assert domains == {d["hostname"]: 1 for d in kept}  # one page per site
    assert s["by_language"][0]["value"] == "en"
    assert s["length"]["quantiles"]["max"] == max(len(d["text"]) for d in kept)
    assert sum(h["documents"] for h in s["length"]["histogram"]) == len(kept)
    # No shards were made from extract: its tokens are unknown, not zero.
    assert summary(cat, "extract")["tokens"] is None
    # The stored counts that summary sums follow the text through every stage that edits it.
    for stage in ("extract", "clean", "dedup", "filter"):
        for rejected in (False, True):
            assert all(d["chars"] == len(d["text"]) for d in _docs(ws, stage, rejected))


@needs_shared_data
def test_funnel_follows_the_pages_through_every_stage(built):
    cat, ws = _setup(built)
    rows = {row["stage"]: row for row in funnel(cat)}
    assert list(rows) == ["crawl", "extract", "clean", "dedup", "filter"]
    assert rows["crawl"]["docs_out"] == len(ENGLISH) + 3  # pages of both generations
    assert rows["extract"]["docs_in"] == len(ENGLISH) + 3
    for before, after in [("extract", "clean"), ("clean", "dedup"), ("dedup", "filter")]:
        assert rows[after]["docs_in"] == rows[before]["docs_out"]
    assert rows["dedup"]["dropped"] == {"exact_duplicate": 1}
    assert rows["filter"]["dropped"].get("language:detected", 0) >= 2  # French and German
    total_out = rows["filter"]["docs_in"] - sum(rows["filter"]["dropped"].values())
    assert rows["filter"]["docs_out"] == total_out == len(_docs(ws, "filter"))


@needs_shared_data
def test_samples_random_by_reason_domain_search_and_score(built):
    cat, ws = _setup(built)
    kept = {d["id"]: d for d in _docs(ws, "filter")}
    first = [d["id"] for d in sample(cat, n=3, seed=7)["documents"]]
    assert len(first) == 3 and set(first) <= set(kept)
    assert [d["id"] for d in sample(cat, n=3, seed=7)["documents"]] == first  # seeded

    dropped = sample(cat, reason="exact_duplicate")["documents"]
    assert [(d["url"], d["stage"]) for d in dropped] == [(MIRROR, "dedup")]
    languages = sample(cat, reason="language")["documents"]  # language:detected and the like
    assert {FRENCH[1], GERMAN[1]} <= {d["url"] for d in languages}

    bbc = sample(cat, domain="bbc.com")["documents"]  # www.bbc.com is a subdomain
    assert [d["url"] for d in bbc] == [ENGLISH["bbc.com.52241221.html.gz"]]

    found = sample(cat, search="Safe Browsing")["documents"]
    assert found and all("Safe Browsing" in kept[d["id"]]["text"] for d in found)
    assert sample(cat, search="no page says zyzzyva")["documents"] == []

    scores = sorted(d["language_score"] for d in kept.values())
    lo, hi = scores[1], scores[-2]
    in_range = sample(cat, n=50, score=("language_score", lo, hi))["documents"]
    assert {d["id"] for d in in_range} == {
        i for i, d in kept.items() if lo <= d["language_score"] <= hi
    }
    with pytest.raises(KeyError, match="language_score"):
        sample(cat, score=("language_scor", 0, 1))


@needs_shared_data
def test_a_dropped_document_shows_its_reason_scores_and_provenance(built):
    cat, ws = _setup(built)
    french = _by_url(ws, FRENCH[1])
    doc = document(cat, french["id"])
    assert doc["dropped"]["stage"] == "filter"
    assert doc["dropped"]["reason"] == "language:detected"
    assert doc["dropped"]["detail"] == "detected=fr"
    assert doc["scores"]["language_detected"] == "fr"
    assert doc["scores"]["gopher_quality_words"] is None  # the filter stopped at language
    assert [(s["stage"], s["kept"]) for s in doc["stages"]] == [
        ("extract", True),
        ("clean", True),
        ("dedup", True),
        ("filter", False),
    ]
    where = doc["provenance"]
    assert where["url"] == FRENCH[1] and where["generation"] == GENERATIONS[0]
    # The WARC file and offset lead to the page's own response record.
    warc = Path(ws.storage.path(where["warc_file"]))
    with open(warc, "rb") as fh:
        fh.seek(where["warc_offset"])
        record = next(iter(ArchiveIterator(fh)))
        assert record.rec_headers.get_header("WARC-Target-URI") == FRENCH[1]
        assert record.rec_headers.get_header("WARC-Record-ID") == where["warc_record_id"]
    assert doc["metadata"]["hostname"] == "www.bondyblog.fr"
    assert "Paris 8" in doc["text"]


@needs_shared_data
def test_a_duplicate_names_the_document_kept_in_its_place(built):
    cat, ws = _setup(built)
    original = _by_url(ws, ENGLISH["bbc.com.52241221.html.gz"])["id"]
    copy = _by_url(ws, MIRROR)["id"]
    dup = document(cat, copy)
    assert dup["dropped"]["reason"] == "exact_duplicate"
    assert dup["dedup"]["kept_in_its_place"] == original  # the earlier generation stays
    assert dup["provenance"]["generation"] == GENERATIONS[1]
    kept = document(cat, original)
    assert kept["dropped"] is None and kept["dedup"]["kept"]
    assert [r["id"] for r in kept["dedup"]["replaced"]] == [copy]
    assert kept["scores"]["language_detected"] == "en"
    with pytest.raises(Exception, match="no document 'nope'"):
        document(cat, "nope")


@needs_shared_data
def test_whatif_count_equals_rerunning_the_filter(built):
    """A stricter language threshold. Tightening one rule can only drop more: every document
    the filter kept has all its scores stored, so each is judged exactly, and one it dropped
    stays dropped (by the same rule or an earlier one). So the what-if count is exact and
    equals a rerun of the filter stage with that threshold."""
    cat, ws = _setup(built)
    kept = _docs(ws, "filter")
    scores = sorted(d["language_score"] for d in kept)
    threshold = round((scores[len(scores) // 2 - 1] + scores[len(scores) // 2]) / 2, 6)
    override = f"filter.language.min_score={threshold}"
    answer = whatif(cat, [override])
    assert answer["unknown"] == 0 and answer["newly_kept_count"] == 0
    assert 0 < answer["kept_after"] < answer["kept_before"] == len(kept)
    before = ws.current_version("filter")
    cfg = load_config(built, [override])
    try:
        rerun = run(STAGES["filter"], cfg, ws, make_map(cfg.runner))
        assert rerun["docs_out"] == answer["kept_after"]
        now_kept = {d["id"] for d in _docs(ws, "filter")}
        assert {d["id"] for d in answer["newly_dropped"]} == {d["id"] for d in kept} - now_kept
        assert all(d["reason"] == "language:score" for d in answer["newly_dropped"])
        # The model was trained on the old filter version: lineage still says so.
        steps = lineage(cfg, ws, run="tiny")["steps"]
        assert ("filter", before) in {(s["name"], s["version"]) for s in steps}
        assert ws.current_version("filter") != before
    finally:
        cfg = load_config(built)
        run(STAGES["filter"], cfg, ws, make_map(cfg.runner))  # up to date: CURRENT moves back
    assert ws.current_version("filter") == before


@needs_shared_data
def test_whatif_does_not_guess_what_was_never_scored(built):
    cat, _ = _setup(built)
    answer = whatif(cat, ["filter.language.languages=[en, fr]"])
    unknown = {d["url"]: d for d in answer["unknown_docs"]}
    assert unknown[FRENCH[1]]["not_scored"] == "gopher_quality"
    assert unknown[FRENCH[1]]["was"] == "language:detected"
    assert GERMAN[1] not in unknown  # still not an allowed language
    assert answer["kept_after"] == answer["kept_before"]
    with pytest.raises(ValueError, match="changes what the filter scores"):
        whatif(cat, ["filter.c4_quality.min_words_per_line=5"])
    with pytest.raises(ValueError, match=r"filter\.<step>\.<setting>"):
        whatif(cat, ["dedup.ngram=3"])
    with pytest.raises(ValueError, match=r"unknown key \(did you mean min_score\?\)"):
        whatif(cat, ["filter.language.min_scor=0.5"])


def test_whatif_thresholds_name_settings_of_each_filter():
    for step, names in THRESHOLDS.items():
        section = type(getattr(FilterConfig(), step))
        assert names <= set(section.model_fields), step


@needs_shared_data
def test_sql_over_views_named_after_the_stages(built):
    cat, ws = _setup(built)
    result = sql(cat, "SELECT count(*) AS n FROM filter")
    assert result == {"columns": ["n"], "rows": [(len(_docs(ws, "filter")),)]}
    joined = sql(
        cat,
        "SELECT r.url, c.cluster FROM dedup_rejected r JOIN clusters c USING (id) "
        "WHERE r.reason = 'exact_duplicate'",
    )
    assert joined["rows"] == [(MIRROR, _by_url(ws, ENGLISH["bbc.com.52241221.html.gz"])["id"])]
    with pytest.raises(ValueError, match="views: extract"):
        sql(cat, "SELECT * FROM nowhere")


@needs_shared_data
def test_lineage_traces_the_run_to_its_warc_files(built):
    cfg = load_config(built)
    ws = Workspace(cfg.workspace_root)
    chain = lineage(cfg, ws, run="tiny")
    steps = [(s["kind"], s["name"]) for s in chain["steps"]]
    assert steps == [
        ("crawl", "news"),
        ("crawl", "news"),
        ("dataset", "extract"),
        ("dataset", "clean"),
        ("dataset", "dedup"),
        ("dataset", "filter"),
        ("tokenizer", "tokenizer"),
        ("shards", "shards"),
        ("run", "tiny"),
    ]
    versions = {s["name"]: s["version"] for s in chain["steps"] if s["kind"] != "crawl"}
    for stage in CURATED:
        assert versions[stage] == ws.current_version(stage)
    by_name = {s["name"]: s for s in chain["steps"]}
    assert by_name["clean"]["inputs"] == [f"extract {versions['extract']}"]
    assert by_name["shards"]["inputs"] == [
        f"tokenizer {versions['tokenizer']}",
        f"filter {versions['filter']}",
    ]
    assert [s["version"] for s in chain["steps"][:2]] == list(GENERATIONS)
    assert {f["path"] for f in chain["warc_files"]} == {
        f"crawl/news/{g}/news-00000.warc.gz" for g in GENERATIONS
    }
    assert lineage(cfg, ws)["steps"] == chain["steps"]  # the current chain ends in the same run
    with pytest.raises(Exception, match="no run 'other'"):
        lineage(cfg, ws, run="other")


@needs_shared_data
def test_cli_views_print_tables_and_json(built):
    _, ws = _setup(built)
    runner = CliRunner()

    def cli(*args: str):
        return runner.invoke(main, [*args, "-c", str(built)], catch_exceptions=False)

    assert json.loads(cli("inspect", "summary", "--json").stdout)["documents"] == len(
        _docs(ws, "filter")
    )
    french = _by_url(ws, FRENCH[1])["id"]
    shown = cli("inspect", "doc", french).stdout
    assert "dropped by filter: language:detected (detected=fr)" in shown
    assert "language_detected" in shown and "news-00000.warc.gz" in shown
    assert "exact_duplicate" in cli("inspect", "funnel").stdout
    assert MIRROR in cli("inspect", "sample", "--reason", "exact_duplicate").stdout
    whatif_out = cli("inspect", "whatif", "--set", "filter.language.languages=[en, fr]").stdout
    assert "would pass this rule, later filters not scored" in whatif_out
    assert "news-00000.warc.gz" in cli("lineage", "--run", "tiny").stdout
    assert json.loads(cli("inspect", "sql", "SELECT 1 AS one", "--json").stdout)["rows"] == [[1]]
    failed = runner.invoke(main, ["inspect", "doc", "nope", "-c", str(built)])
    assert failed.exit_code == 1 and "no document 'nope'" in failed.stderr


def _scored_workspace(folder: Path, docs: int) -> Path:
    """A workspace whose filter version holds `docs` documents with random scores for every
    default filter, all near a threshold (on it, just below or above, or far off; a few NaN),
    verdicts decided by the filters' own `keep` as the stage does. So that documents get past
    filters of many rules, 70% of a step's scores come from a pool of ones that pass it."""
    rng = random.Random(7)
    config = write_config(folder, [])
    cfg = load_config(config)
    steps = [filter_stage.make_step(name, getattr(cfg.filter, name)) for name in cfg.filter.steps]
    passing = {step.name: _passing_scores(rng, step, cfg.filter) for step, _, _ in steps}
    rows, rejected, dropped = [], [], Counter()
    for i in range(docs):
        kind = rng.choice(["web", "web", "article", "book"])
        row = {"id": f"{i:06d}", "text": "", "url": f"https://x.example/{i}", "source_kind": kind}
        reason = None
        for step, skip_kinds, ignore_rules in steps:
            if reason or kind in skip_kinds:
                continue
            if rng.random() < 0.7:
                scores = rng.choice(passing[step.name])
            else:
                scores = _random_scores(rng, step, cfg.filter)
            row.update({f"{step.name}_{name}": v for name, v in scores.items()})
            keep, rule = step.keep(scores, ignore_rules.get(kind, frozenset()))
            if not keep:
                reason = f"{step.name}:{rule}"
        if reason:
            rejected.append({**row, "stage": "filter", "reason": reason, "detail": ""})
            dropped[reason] += 1
        else:
            rows.append(row)
    ws = Workspace(cfg.workspace_root)
    schema = pa.schema([*DOCUMENT_SCHEMA, *filter_stage.score_fields(cfg.filter)])
    out = VersionBuilder(ws, "filter", "scored")
    part = out.write_part(
        "0",
        documents_table(rows, schema),
        documents_table(rejected, rejected_schema_of(schema)),
        dropped=dict(dropped),
    )
    section = cfg.filter.model_dump(mode="json")
    out.commit("scored", "test", section, cfg.filter.digest(), {}, [part], 0.0)
    return config


def _random_scores(rng: random.Random, step: Filter, cfg: FilterConfig) -> dict[str, Any]:
    """Text scores, and numbers near one of the numbers of the step's settings (or NaN)."""
    numbers = sorted({0.0} | _numbers(getattr(cfg, step.name).model_dump()))
    texts = [None, "bad.example"] if step.name == "url_blocklist" else ["en", "fr"]
    scores: dict[str, Any] = {}
    for name in type(step).score_names(getattr(cfg, step.name)):
        if name in step.text_scores:
            scores[name] = rng.choice(texts)
        elif rng.random() < 0.02:
            scores[name] = math.nan
        else:
            scores[name] = rng.choice(numbers) * rng.choice([0, 0.5, 0.99, 1, 1, 1.01, 2])
    return scores


def _passing_scores(rng: random.Random, step: Filter, cfg: FilterConfig) -> list[dict]:
    """50 random score sets that the step keeps: the score of each failed rule (a rule is named
    by its score) drawn again until none fails."""
    passing: list[dict] = []
    while len(passing) < 50:
        scores = _random_scores(rng, step, cfg)
        while not (verdict := step.keep(scores))[0]:
            scores[verdict[1]] = _random_scores(rng, step, cfg)[verdict[1]]
        passing.append(scores)
    return passing


@pytest.mark.parametrize(
    "overrides",
    [
        ["filter.language.min_score=0.3"],
        ["filter.language.languages=[en, fr]"],
        ["filter.gopher_quality.max_doc_words=50000", "filter.gopher_quality.min_stop_words=1"],
        ["filter.gopher_repetition.dup_line_frac=0.1", "filter.c4_quality.curly_bracket=false"],
        ["filter.fineweb_quality.line_punct_thr=0.3", "filter.fineweb_quality.skip_kinds=[book]"],
        ["filter.c4_quality.ignore_rules={web: [sentences]}"],
    ],
)
def test_whatif_judges_as_keep_on_every_document(tmp_path, overrides):
    """The what-if decides per group of documents whose scores lie between the same threshold
    numbers: the same outcome as `keep` on each document, boundary values and NaN included."""
    config = _scored_workspace(tmp_path, 3000)
    cat, _ = _setup(config)
    answer = whatif(cat, overrides, limit=10_000)
    old = FilterConfig.model_validate(cat.dataset("filter").manifest.config)
    judge = _Judge(old, _overridden(old, overrides), cat.cfg)
    expected: dict[str, set[str]] = {"dropped": set(), "kept": set(), "unknown": set()}
    after = Counter(cat.dataset("filter").manifest.dropped)
    for row in cat.rows("SELECT * FROM filter UNION ALL BY NAME SELECT * FROM filter_rejected"):
        was = row.get("reason")
        if was and was.split(":")[0] not in judge.reached:
            continue
        outcome, what = judge.verdict(row["source_kind"], was, row)
        if was:
            after[was] -= 1
        if outcome == "dropped":
            after[what] += 1
        if outcome == "unknown" or outcome == ("kept" if was else "dropped"):
            expected[outcome].add(row["id"])
    assert {d["id"] for d in answer["newly_dropped"]} == expected["dropped"]
    assert {d["id"] for d in answer["newly_kept"]} == expected["kept"]
    assert {d["id"] for d in answer["unknown_docs"]} == expected["unknown"]
    assert answer["dropped_after"] == {r: n for r, n in sorted(after.items()) if n}
    assert sum(len(ids) for ids in expected.values()) > 0  # the change changes something
