"""Takedown: a page and a site taken out of a real small run (extract -> clean -> dedup ->
filter -> tokenizer -> shards -> train): gone from every current dataset and from the shards,
kept in rejected/ without their text, the run that saw them named, and skipped by the next
crawl; a build with the list drops them itself; a stale stage stops a takedown before it
changes anything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from pipeline import takedown
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.crash import CRASH_ENV, CRASH_EXIT_CODE
from pipeline.crawl.crawler import FRONTIER, crawl
from pipeline.crawl.frontier import Frontier
from pipeline.datasets import Dataset
from pipeline.runner import make_map
from pipeline.stage import run
from pipeline.stages import DOCUMENT_STAGES, STAGES, all_statuses
from pipeline.workspace import Workspace
from tests.crawl_server import CrawlServer, Page, html_page
from tests.test_curate import _documents

TINY = {
    "tokenizer": {"vocab_size": 300},
    "train": {
        **{"context": 16, "n_layer": 1, "n_embd": 16, "n_head": 2, "batch_size": 2},
        **{"max_steps": 2, "run": "tiny"},
    },
}
PAGE = "https://example.org/0"  # a0: kept by every stage, and the copy its dedup cluster keeps
SITE = "example.net"  # mirror.example.net: an exact and a near copy, which dedup rejected


def _config(tmp_path: Path, sources: list[dict] | None = None, **sections: dict) -> Path:
    """The curate tests' documents (tests/test_curate.py), and any more sources."""
    docs = {"name": "docs", "kind": "web", "documents": [str(_documents(tmp_path))]}
    data = {
        "workspace": str(tmp_path / "workspace"),
        "sources": [docs, *(sources or [])],
        "runner": {"task_runner": "serial", "workers": 1},
        "crawl": {"allow_networks": ["127.0.0.0/8"], "min_delay_s": 0.01},
        **TINY,
        **sections,
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _build(config: Path, *stages: str) -> Workspace:
    cfg = load_config(config)
    ws = Workspace(cfg.workspace_root)
    for name in stages:
        run(STAGES[name], cfg, ws, make_map(cfg.runner))
    return ws


def _cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _ids(ws: Workspace, stage: str) -> set[str]:
    return set(Dataset.current(ws, stage).read(["id"])["id"].to_pylist())


def _rejected(ws: Workspace, stage: str) -> dict[str, dict]:
    return {row["id"]: row for row in Dataset.current(ws, stage).read(rejected=True).to_pylist()}


def test_a_page_and_a_site_leave_every_dataset_and_the_shards_and_the_next_crawl(tmp_path):
    from model.train import train

    with CrawlServer("127.0.0.17") as server:
        for i in range(3):
            server.set(f"/post/{i}/", Page(html_page(f"Post {i}")))
        server.set(
            "/", Page(html_page("Home", " ".join(f'<a href="/post/{i}/">p</a>' for i in range(3))))
        )
        site = {"name": "site", "kind": "web", "seeds": [server.url("/")]}
        config = _config(tmp_path, [site])
        ws = _build(config, "extract", "clean", "dedup", "filter", "tokenizer", "shards")
        cfg = load_config(config)
        train(cfg, ws, log=lambda line: None)
        assert {"a0", "copy", "near"} <= _ids(ws, "extract") and "a0" in _ids(ws, "filter")
        old_shards = ws.current_version("shards")

        taken = server.url("/post/1/")
        result = _cli("takedown", PAGE, SITE, taken, "-c", str(config), "--note", "req-7", "--json")
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        statuses = {s.stage: s for s in all_statuses(cfg, ws)}  # before the crawl makes news
        again = _cli("takedown", PAGE, "-c", str(config), "--json")

        crawled = crawl(cfg, ws, cfg.sources[1])
        asked = {r.path for r in server.requests}

    # Gone from every current dataset, in rejected/ with the reason, the entry and no text.
    gone = {"a0", "copy", "near"}
    for stage in DOCUMENT_STAGES:
        assert not gone & _ids(ws, stage), stage
    for stage, ids in {"extract": gone, "clean": gone, "dedup": {"a0"}, "filter": {"a0"}}.items():
        rejected = _rejected(ws, stage)
        for doc_id in ids:
            row = rejected[doc_id]
            assert (row["stage"], row["reason"], row["text"]) == (stage, "takedown", ""), row
        assert rejected["a0"]["detail"] == f"url {PAGE}"
    assert _rejected(ws, "extract")["near"]["detail"] == f"domain {SITE}"
    dedup_rejected = _rejected(ws, "dedup")
    assert dedup_rejected["copy"]["reason"] == "exact_duplicate"  # rejected before: text gone
    assert dedup_rejected["copy"]["text"] == "" and dedup_rejected["near"]["text"] == ""
    assert _ids(ws, "filter") == {"a1", "a2"}
    removed = {s["stage"]: s["removed"] for s in report["stages"]}
    assert removed == {"extract": 3, "clean": 3, "dedup": 1, "filter": 1}
    assert "keep none" in next(s["note"] for s in report["stages"] if s["stage"] == "dedup")

    # The shards were rebuilt without them; the run trained on the old ones is named.
    new_shards = Dataset.current(ws, "shards")
    assert new_shards.version != old_shards and report["shards"]["built"]
    indexed = {
        i
        for path in new_shards.part_paths()
        for i in ws.storage.read_parquet(path)["id"].to_pylist()
    }
    assert indexed == {"a1", "a2"}
    [seen] = report["runs"]
    assert (seen["run"], seen["shards_version"], seen["documents"]) == ("tiny", old_shards, 1)

    # The document stages were up to date with the list; the tokenizer was not retrained.
    assert all(statuses[name].state == "up to date" for name in DOCUMENT_STAGES)
    assert statuses["tokenizer"].state == "stale"
    listed = takedown.load(ws)
    assert {(e.kind, e.value, e.note) for e in listed.entries} == {
        ("url", PAGE, "req-7"),
        ("domain", SITE, "req-7"),
        ("url", taken, "req-7"),
    }

    # Again: nothing left to do, and the run is still named.
    again = json.loads(again.stdout)
    assert [s["removed"] for s in again["stages"]] == [0, 0, 0, 0] and again["runs"]

    # The next crawl skipped the taken-down page and fetched the others.
    assert "/post/1/" not in asked and {"/post/0/", "/post/2/"} <= asked
    assert crawled["skipped"].get("takedown") == 1
    with Frontier(Path(ws.storage.path(f"crawl/site/{FRONTIER}"))) as frontier:
        assert frontier.get(taken)["reason"] == "takedown"


def test_a_build_with_the_list_drops_what_it_names_and_a_stale_stage_stops_a_takedown(tmp_path):
    config = _config(tmp_path)
    ws = Workspace(str(tmp_path / "workspace"))
    with ws.lock("test"):
        takedown.add(ws, [takedown.parse("MIRROR.example.net.")])
    _build(config, "extract", "clean")
    rejected = _rejected(ws, "extract")
    assert {i for i, row in rejected.items() if row["reason"] == "takedown"} == {"copy", "near"}
    assert rejected["copy"]["detail"] == "domain mirror.example.net"
    assert "copy" not in _ids(ws, "clean") | set(_rejected(ws, "clean"))

    data = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**data, "clean": {"min_words": 5}}))
    before = ws.storage.read_text(takedown.LIST_FILE)
    result = _cli("takedown", PAGE, "-c", str(config))
    assert result.exit_code == 1 and "clean is stale" in result.stderr
    assert "clean.min_words changed" in result.stderr and "nothing was changed" in result.stderr
    assert ws.storage.read_text(takedown.LIST_FILE) == before


@pytest.mark.parametrize(
    "text, message",
    [
        ("example.org/page", "needs its scheme"),
        ("ftp://example.org/x", "not an http"),
        ("a b", "neither"),
    ],
)
def test_a_bad_entry_is_an_error_that_names_it(text, message):
    with pytest.raises(takedown.TakedownError, match=message):
        takedown.parse(text)


def test_matching_normalizes_urls_and_covers_subdomains():
    listed = takedown.TakedownList(
        [
            takedown.parse("HTTPS://Example.org:443/a/../page?utm_source=x"),
            takedown.parse("*.Site.test"),
        ]
    )
    assert listed.entries[0].value == "https://example.org/page"
    assert takedown.matches(listed, "https://example.org/page#top", None).kind == "url"
    assert takedown.matches(listed, "https://example.org/other", "example.org") is None
    assert takedown.matches(listed, None, "deep.www.site.test").value == "site.test"
    assert takedown.matches(listed, "https://notsite.test/", None) is None
    assert takedown.digest(listed) != takedown.digest(takedown.TakedownList()) == ""


@pytest.mark.parametrize(
    "crash, again",
    [
        ("part.write:2", [PAGE]),  # killed rewriting clean: the same targets again
        ("current.write:1", []),  # extract rewritten, CURRENT not moved: no targets, to finish
    ],
)
def test_a_killed_takedown_is_finished_by_the_next_one(tmp_path, crash, again):
    config = _config(tmp_path)
    ws = _build(config, "extract", "clean", "dedup", "filter", "tokenizer", "shards")
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    killed = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "takedown", PAGE, "-c", str(config)],
        env={**env, CRASH_ENV: crash},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == CRASH_EXIT_CODE, killed.stderr[-2000:]
    assert "a0" in _ids(ws, "filter")  # the kill left the page in the corpus

    result = _cli("takedown", *again, "-c", str(config))
    assert result.exit_code == 0, result.output
    assert "finished the takedown begun" in result.stdout
    for stage in DOCUMENT_STAGES:
        assert "a0" not in _ids(ws, stage), stage
        assert _rejected(ws, stage)["a0"]["reason"] == "takedown", stage
    shards = Dataset.current(ws, "shards")
    indexed = {i for p in shards.part_paths() for i in ws.storage.read_parquet(p)["id"].to_pylist()}
    assert "a0" not in indexed
    statuses = {s.stage: s for s in all_statuses(load_config(config), ws)}
    assert all(statuses[name].state == "up to date" for name in DOCUMENT_STAGES)
    assert takedown.pending_job(ws) is None
    assert _cli("takedown", "-c", str(config)).exit_code == 2  # nothing left to finish


def test_a_killed_takedown_whose_stage_changed_since_is_refused_until_it_is_run(tmp_path):
    config = _config(tmp_path)
    ws = _build(config, "extract", "clean", "dedup", "filter", "tokenizer", "shards")
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    killed = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "takedown", PAGE, "-c", str(config)],
        env={**env, CRASH_ENV: "part.write:2"},  # extract rewritten, clean not
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == CRASH_EXIT_CODE, killed.stderr[-2000:]
    data = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**data, "clean": {"min_words": 5}}))
    before = ws.storage.read_text(takedown.LIST_FILE)

    refused = _cli("takedown", "-c", str(config))
    assert refused.exit_code == 1
    assert "clean has another code version or config" in refused.stderr
    assert "nothing was changed" in refused.stderr and "`textmill run clean`" in refused.stderr
    assert ws.storage.read_text(takedown.LIST_FILE) == before

    _build(config, "clean", "dedup", "filter")  # what it said to do: they apply the list
    finished = _cli("takedown", "-c", str(config))
    assert finished.exit_code == 0, finished.output
    assert all("a0" not in _ids(ws, stage) for stage in DOCUMENT_STAGES)
    assert takedown.pending_job(ws) is None
