"""The crawl-and-train chain as its users run it: a config change redoes only what it affects,
scheduled runs over a site that changed, kills at crash points across stages, a forced stage
and `status`, and the retention. Pages are paragraphs of a real novel (Pride and Prejudice, from
the shared data), so they pass the default filters; model and tokenizer are tiny."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from collections import Counter
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner, Result
from safetensors.numpy import load_file

from pipeline.cli import main
from pipeline.crash import CRASH_ENV, CRASH_EXIT_CODE
from pipeline.datasets import Dataset
from pipeline.gutenberg import read_book_file, strip_boilerplate
from pipeline.shards import token_stream
from pipeline.workspace import MANIFEST, Workspace
from tests.conftest import REPO, SHARED_DATA, needs_shared_data
from tests.crawl_server import CrawlServer, Page, html_page
from tests.helpers import write_warc

pytestmark = needs_shared_data

DOCUMENT_STAGES = ["extract", "clean", "dedup", "filter"]
STAGES = [*DOCUMENT_STAGES, "tokenizer", "shards"]
WARC_SOURCE = "pages"  # the source of the finished run's WARC file
TINY = {
    "crawl": {"allow_networks": ["127.0.0.0/8"], "min_delay_s": 0.01},
    "extract": {"fast": True},
    "runner": {"task_runner": "serial", "workers": 1},
    "tokenizer": {"vocab_size": 300, "val_fraction": 0.2},
    "shards": {"row_tokens": 64, "shard_mb": 0.05},
    "train": {
        "context": 16,
        "n_layer": 1,
        "n_head": 2,
        "n_embd": 16,
        "batch_size": 2,
        "max_steps": 4,
        "eval_interval": 2,
        "eval_windows": 4,
        "checkpoint_interval": 2,
        "sample_tokens": 0,
    },
}


@cache
def _paragraphs() -> list[str]:
    """Paragraphs of 60 to 140 words, each on one line."""
    book = read_book_file(SHARED_DATA / "gutenberg" / "books" / "1342.txt")
    text, _ = strip_boilerplate(book)
    paragraphs = [" ".join(p.split()) for p in text.split("\n\n")]
    return [p for p in paragraphs if 60 <= len(p.split()) <= 140]


def _page(n: int, paragraphs: int = 3) -> bytes:
    """Page n: `paragraphs` paragraphs of the novel, from the 3n-th on."""
    body = "".join(f"<p>{p}</p>" for p in _paragraphs()[3 * n : 3 * n + paragraphs])
    return (
        f"<!DOCTYPE html><html><head><title>Part {n}</title></head><body><article>"
        f"<h1>Part {n}</h1>{body}</article></body></html>"
    ).encode()


def _first_words(n: int) -> str:
    return " ".join(_paragraphs()[3 * n].split()[:12])


def _serve(server: CrawlServer, pages: dict[str, bytes]) -> None:
    """A home page that links to every page, and the pages."""
    links = " ".join(f'<a href="{path}">{path}</a>' for path in pages)
    server.set("/", Page(html_page("Home", links)))
    for path, body in pages.items():
        server.set(path, Page(body))


def _config(folder: Path, source: dict, **sections: dict) -> str:
    """folder/run.yaml, with its workspace in folder/workspace."""
    data = {"workspace": str(folder / "workspace"), "sources": [source], **TINY}
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _cli(*args: str) -> Result:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output[-3000:]
    return result


def _chain(config: str, *args: str) -> Result:
    """`textmill run crawl_and_train --no-prefect`, in this process."""
    return _cli("run", "crawl_and_train", "-c", config, "--no-prefect", *args)


def _ran(stdout: str) -> list[str]:
    """The steps that `textmill run crawl_and_train` says ran."""
    [line] = [line for line in stdout.splitlines() if line.startswith("crawl_and_train:")]
    return line.removeprefix("crawl_and_train: ran ").split(", ")


def _states(config: str) -> dict[str, str]:
    """Every stage's state, training's included."""
    statuses = json.loads(_cli("status", "-c", config, "--json").stdout)
    return {s["stage"]: s["state"] for s in statuses}


def _currents(ws: Workspace) -> dict[str, str | None]:
    return {stage: ws.current_version(stage) for stage in STAGES}


def _crawl_counts(ws: Workspace, source: str) -> list[dict]:
    """Each finished generation's crawl summary, oldest first."""
    return [
        ws.storage.read_json(f"{g.folder}/{MANIFEST}")["counts"] for g in ws.generations(source)
    ]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A whole run (no crawl: a WARC file of 8 pages, the first one short)."""
    folder = tmp_path_factory.mktemp("finished")
    records = [
        {"url": f"https://novel.example/{n}", "body": _page(n, 1 if n == 0 else 3)}
        for n in range(8)
    ]
    warc = write_warc(folder / "in" / "pages.warc.gz", records)
    config = _config(folder, {"name": WARC_SOURCE, "kind": "web", "warc": [str(warc)]})
    assert _ran(_chain(config).stdout) == [*STAGES, "train"]
    return folder


def _copy_of(finished: Path, folder: Path, **sections: dict) -> str:
    """A copy of the finished run's workspace, with its config (changed by `sections`)."""
    shutil.copytree(finished / "workspace", folder / "workspace")
    warc = str(finished / "in" / "pages.warc.gz")
    return _config(folder, {"name": WARC_SOURCE, "kind": "web", "warc": [warc]}, **sections)


@pytest.mark.prefect
def test_a_filter_change_redoes_filter_and_what_follows_and_nothing_before(
    prefect_server, finished_run, tmp_path
):
    import flows.crawl_and_train

    finished = Workspace(str(finished_run / "workspace"))
    before = _currents(finished)
    filtered_before = Dataset.current(finished, "filter").manifest.docs_out
    # C4's sentence rule dropped the short page (one paragraph, 3 sentences): now it passes;
    # training starts over on the new shards
    config = _copy_of(
        finished_run,
        tmp_path,
        filter={"c4_quality": {"min_sentences": 3}},
        train={**TINY["train"], "init": "scratch"},
    )
    ws = Workspace(str(tmp_path / "workspace"))
    result = flows.crawl_and_train.run(config)

    assert result["ran"] == ["filter", "tokenizer", "shards", "train"]
    assert list(result["skipped"]) == ["crawl", *DOCUMENT_STAGES[:3]]
    assert all(why.startswith("up to date") for s, why in result["skipped"].items() if s != "crawl")
    after = _currents(ws)
    assert {s: after[s] == before[s] for s in STAGES} == {
        "extract": True,
        "clean": True,
        "dedup": True,
        "filter": False,
        "tokenizer": False,
        "shards": False,
    }
    for stage, version in after.items():
        assert result["outputs"][stage] == ws.storage.url(ws.stage_dir(stage, version))
    filtered = Dataset.current(ws, "filter")
    assert filtered.manifest.docs_out == filtered_before + 1
    assert "https://novel.example/0" in filtered.read(["url"]).column("url").to_pylist()
    run = json.loads((tmp_path / "workspace/runs/main/run.json").read_text())
    assert run["shards_version"] == after["shards"] and run["started_from"] is None
    metrics = (tmp_path / "workspace/runs/main/metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in metrics] == [1, 2, 3, 4]  # trained anew
    assert all(state == "up to date" for state in _states(config).values())


@pytest.mark.prefect
def test_two_scheduled_runs_over_a_site_that_changed_in_between(prefect_server, tmp_path):
    import flows.crawl_and_train

    pages = {f"/p/{n}/": _page(n) for n in range(6)}
    with CrawlServer("127.0.0.41") as server:
        _serve(server, pages)
        config = _config(tmp_path, {"name": "site", "kind": "web", "seeds": [server.url("/")]})
        first = flows.crawl_and_train.run(config)
        # one page rewritten, one page added (the home page links to it)
        changed, added = {"/p/2/": _page(20)}, {"/p/6/": _page(6)}
        _serve(server, {**pages, **changed, **added})
        before = len(server.requests)
        # the second run as a user starts it, on the running server
        second = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "run", "crawl_and_train", "-c", config],
            cwd=REPO,
            env={**os.environ, "PREFECT_API_URL": prefect_server},
            capture_output=True,
            text=True,
            timeout=300,
        )
        requests = server.requests[before:]

    assert second.returncode == 0, second.stderr[-3000:]
    assert f"Prefect API: {prefect_server}" in second.stderr
    assert first["ran"] == _ran(second.stdout) == ["crawl", *STAGES, "train"]
    ws = Workspace(str(tmp_path / "workspace"))
    for stage in STAGES:  # where the outputs are
        where = ws.storage.url(ws.stage_dir(stage, ws.current_version(stage)))
        assert f"  {stage}: {where}\n" in second.stdout
    assert len(ws.generations("site")) == 2
    unchanged = ["/p/0/", "/p/1/", "/p/3/", "/p/4/", "/p/5/"]
    asked = Counter(r.path for r in requests)
    assert all(asked[path] == 1 for path in ["/", *pages, "/p/6/"])
    conditional = {r.path for r in requests if "If-None-Match" in r.headers}
    assert conditional == {"/", *pages}  # everything known is asked conditionally ...
    counts = _crawl_counts(ws, "site")[-1]  # ... and what did not change answers 304
    assert (counts["fetched"], counts["not_modified"]) == (3, len(unchanged))  # home, 2, 6

    corpus = Dataset.current(ws, "filter").read(["url", "text"]).to_pylist()
    urls = Counter(doc["url"].removeprefix(server.origin) for doc in corpus)
    # each page once, the rewritten one twice: its earlier text stays, as the corpus is the
    # union of the generations (DESIGN.md, "Generations")
    assert urls == {**dict.fromkeys(unchanged, 1), "/p/2/": 2, "/p/6/": 1}
    texts = " ".join(doc["text"] for doc in corpus)
    assert _first_words(20) in texts and _first_words(6) in texts


def _died_in(output: str) -> str:
    """The step a killed run was in: the last one it started (Prefect's log lines end with
    "Flow run 'name' - STEP: running")."""
    started = [
        line.rsplit(" - ", 1)[-1].split(":")[0]
        for line in output.splitlines()
        if line.endswith(": running")
    ]
    return started[-1]


def _weights(ws: Workspace) -> dict[str, np.ndarray]:
    return load_file(ws.storage.path("runs/main/checkpoint/model.safetensors"))


def test_killed_at_crash_points_across_stages_then_rerun_matches_an_uninterrupted_run(
    prefect_server, tmp_path
):
    pages = {f"/p/{n}/": _page(n) for n in range(8)}
    rng = random.Random(20260508)
    # (crash point, the step it kills): counts are per process, and after the crawl every
    # stage is rebuilt in each run (each run adds a generation), so manifest.write:3 is the
    # third stage's manifest
    crashes = [
        (f"crawl.url.done:{rng.randint(2, 4)}", "crawl"),  # between two URLs
        ("part.done:1", "extract"),  # a part in place, not yet marked complete
        ("manifest.write:3", "dedup"),  # half the manifest written
        ("current.write:4", "filter"),  # committed, CURRENT not moved yet
        (f"train.step:{rng.randint(3, 4)}", "train"),  # after the checkpoint at step 2
    ]
    with CrawlServer("127.0.0.42") as server:
        _serve(server, pages)
        source = {"name": "site", "kind": "web", "seeds": [server.url("/")]}
        config = _config(tmp_path / "killed", source)
        # the parent flow and its subflows, on the running Prefect server
        command = [sys.executable, "-m", "pipeline.cli", "run", "crawl_and_train", "-c", config]
        clean_env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
        clean_env["PREFECT_API_URL"] = prefect_server
        for crash, step in crashes:
            killed = subprocess.run(
                command,
                cwd=REPO,
                env={**clean_env, CRASH_ENV: crash},
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert killed.returncode == CRASH_EXIT_CODE, (crash, killed.stderr[-3000:])
            assert _died_in(killed.stdout + killed.stderr) == step, crash
        rerun = subprocess.run(
            command, cwd=REPO, env=clean_env, capture_output=True, text=True, timeout=300
        )
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert "from step 2" in rerun.stdout + rerun.stderr  # training went on from its checkpoint

    ws = Workspace(str(tmp_path / "killed" / "workspace"))
    counts = _crawl_counts(ws, "site")
    assert counts[0]["fetched"] == len(pages) + 1  # the pages and the home page ...
    assert all(later["fetched"] == 0 for later in counts[1:])  # ... fetched once in all
    assert all(ws.is_committed(stage, ws.current_version(stage)) for stage in STAGES)

    # The same generations, built by one uninterrupted run (no seeds: nothing to crawl)
    reference = tmp_path / "reference"
    shutil.copytree(
        ws.storage.path("crawl"),
        reference / "workspace" / "crawl",
        ignore=shutil.ignore_patterns("frontier.sqlite*"),
    )
    straight = _chain(_config(reference, {"name": "site", "kind": "web"}))
    assert _ran(straight.stdout) == [*STAGES, "train"]
    expected = Workspace(str(reference / "workspace"))

    assert _currents(ws) == _currents(expected)  # same inputs and settings: same versions
    for stage in DOCUMENT_STAGES:
        for rejected in (False, True):
            got = Dataset.current(ws, stage).read(rejected=rejected).to_pylist()
            assert got == Dataset.current(expected, stage).read(rejected=rejected).to_pylist()
            assert got or rejected, stage
    tokenizer = f"tokenizer/{ws.current_version('tokenizer')}/tokenizer.json"
    assert ws.storage.read_bytes(tokenizer) == expected.storage.read_bytes(tokenizer)
    for split in ("train", "val"):
        assert np.array_equal(token_stream(ws, split), token_stream(expected, split))
    weights, expected_weights = _weights(ws), _weights(expected)
    assert weights.keys() == expected_weights.keys()
    assert all(np.array_equal(weights[k], expected_weights[k]) for k in weights)


def test_a_forced_stage_makes_what_reads_it_stale_in_status(finished_run, tmp_path, monkeypatch):
    from pipeline import clean

    config = _copy_of(finished_run, tmp_path)
    ws = Workspace(str(tmp_path / "workspace"))
    before = _currents(ws)
    # as after an update of a library clean uses: the code version is the same, the output not
    real_tidy = clean.tidy_spaces
    monkeypatch.setattr(clean, "tidy_spaces", lambda text: real_tidy(text).replace("Mr.", "Mr"))
    _cli("run", "clean", "-c", config, "--force", "--no-prefect")

    assert ws.current_version("clean") == f"{before['clean']}-r1"
    states = _states(config)
    assert states == {
        "extract": "up to date",
        "clean": "up to date",
        "dedup": "stale",
        "filter": "stale",
        "tokenizer": "stale",
        "shards": "stale",
        "train": "stale",
    }
    status = _cli("status", "-c", config).stdout
    assert "dedup is stale: input clean: its documents changed" in status
    assert "train (run main): stale" in status and "train is stale: upstream shards" in status

    rerun = _chain(config)
    assert _ran(rerun.stdout) == ["dedup", "filter", "tokenizer", "shards", "train"]
    assert "skipped clean: up to date" in rerun.stdout
    assert all(state == "up to date" for state in _states(config).values())
    assert "train (run main): up to date" in _cli("status", "-c", config).stdout

    removed = _cli("gc", "-c", config, "--keep", "1").stdout
    assert f"clean: removed {before['clean']}\n" in removed
    assert ws.versions("clean") == [f"{before['clean']}-r1"]
    assert all(state == "up to date" for state in _states(config).values())


def test_retention_keeps_the_newest_versions_and_the_generations_in_the_window(tmp_path):
    """Each run adds pages; retention keeps one version per stage and two generations."""
    pages: dict[str, bytes] = {}
    with CrawlServer("127.0.0.43") as server:
        source = {"name": "site", "kind": "web", "seeds": [server.url("/")]}
        config = _config(
            tmp_path,
            source,
            retention={"keep_versions": 1},
            extract={"fast": True, "generation_window": 2},
        )
        outputs = []
        for run in range(3):
            pages.update({f"/p/{n}/": _page(n) for n in range(3 * run, 3 * run + 3)})
            _serve(server, pages)
            outputs.append(_chain(config).stdout)

    ws = Workspace(str(tmp_path / "workspace"))
    first, second, third = outputs
    assert "removed" not in first
    assert all(f"{stage}: removed " in second for stage in STAGES)
    assert "crawl/site: removed" not in second  # two generations: both in the window
    [gone] = [line for line in third.splitlines() if line.startswith("crawl/site: removed ")]
    kept = [g.name for g in ws.generations("site")]
    assert len(kept) == 2 and gone.removeprefix("crawl/site: removed ") < kept[0]
    for stage in STAGES:
        assert ws.versions(stage) == [ws.current_version(stage)], stage
    # nothing the current versions read is gone: every stage is up to date, and its documents
    # are the pages of the generations in the window
    assert all(state == "up to date" for state in _states(config).values())
    urls = Dataset.current(ws, "dedup").read(["url"]).column("url").to_pylist()
    assert sorted(url.removeprefix(server.origin) for url in urls) == [
        f"/p/{n}/" for n in range(3, 9)
    ]
