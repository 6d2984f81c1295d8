"""Progress in documents (or bytes) with rate and ETA, reported from worker processes as units
go, and from the steps that run in the parent (dedup's reduce)."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from pipeline import progress
from pipeline.config import RunConfig, load_config
from pipeline.datasets import Dataset
from pipeline.runner import make_map
from pipeline.stage import run
from pipeline.stages import STAGES
from pipeline.workspace import Workspace
from tests import test_curate
from tests.helpers import article, write_config, write_warc

ROWS = 4000  # documents per part: each part takes the clean stage about a second
LINE = re.compile(r"^clean: ([\d,]+) of ([\d,]+) documents, [\d.,]+ docs/s, ETA (.+)$")


@pytest.fixture(scope="module")
def extracted(tmp_path_factory) -> Path:
    """A workspace whose extract dataset has two parts of ROWS documents each (two JSONL files
    imported), for tests to copy."""
    folder = tmp_path_factory.mktemp("extracted")
    for part in ("a", "b"):
        rows = [
            {"id": f"{part}{i}", "text": f"Note {part}{i}. {test_curate.ARTICLES[i % 3]}"}
            for i in range(ROWS)
        ]
        (folder / f"{part}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg, ws = _workspace(folder, folder / "workspace")
    assert run(STAGES["extract"], cfg, ws, make_map(cfg.runner))["docs_out"] == 2 * ROWS
    return folder


def _workspace(inputs: Path, root: Path, *overrides: str) -> tuple[RunConfig, Workspace]:
    data = {
        "workspace": str(root),
        "sources": [{"name": "notes", "kind": "web", "documents": [str(inputs / "*.jsonl")]}],
        "runner": {"task_runner": "serial", "workers": 1},
    }
    path = root.parent / f"{root.name}.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg = load_config(path, list(overrides))
    return cfg, Workspace(cfg.workspace_root)


def _copy(extracted: Path, root: Path, *overrides: str) -> tuple[RunConfig, Workspace]:
    shutil.copytree(extracted / "workspace", root)
    return _workspace(extracted, root, *overrides)


def _documents(ws: Workspace, stage: str) -> tuple[list[dict], list[dict]]:
    dataset = Dataset.current(ws, stage)
    return dataset.read().to_pylist(), dataset.read(rejected=True).to_pylist()


def _without_listener(fn, args):
    return [fn(*item) for item in args]


def test_a_process_pool_run_counts_documents_inside_units(extracted, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)  # a line at every poll
    cfg, ws = _copy(
        extracted, tmp_path / "pool", "runner.task_runner=processes", "runner.workers=2"
    )
    result = run(STAGES["clean"], cfg, ws, make_map(cfg.runner, "clean"))
    assert result["units_run"] == 2

    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("clean: ")]
    counts = [LINE.match(line) for line in lines[:-1]]
    assert all(counts), lines
    done = [int(m[1].replace(",", "")) for m in counts]
    assert {int(m[2].replace(",", "")) for m in counts} == {2 * ROWS}  # known before units run
    assert done == sorted(done) and done[-1] == 2 * ROWS
    # Progress inside units, not only as whole units end (0, ROWS, 2 * ROWS):
    assert any(0 < d < 2 * ROWS and d != ROWS for d in done), done
    assert any(re.fullmatch(r"\d+ s", m[3]) for m in counts), lines  # an ETA once they move
    assert re.match(rf"clean: {2 * ROWS:,} documents in \d+ s, [\d.,]+ docs/s$", lines[-1])

    # The same documents as a run where nobody listens.
    plain_cfg, plain_ws = _copy(extracted, tmp_path / "plain")
    monkeypatch.delenv(progress.ENV, raising=False)
    run(STAGES["clean"], plain_cfg, plain_ws, _without_listener)
    assert _documents(ws, "clean") == _documents(plain_ws, "clean")


def test_units_write_nothing_when_nobody_listens(extracted, tmp_path, monkeypatch, capfd):
    """Remote Dask workers, and stage functions called directly: no folder, no lines."""
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)
    monkeypatch.delenv(progress.ENV, raising=False)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    cfg, ws = _copy(extracted, tmp_path / "ws")
    result = run(STAGES["clean"], cfg, ws, _without_listener)
    assert result["units_run"] == 2
    report = progress.unit("some-key")
    report.update(5)
    report.finish()
    assert report.path is None and list(scratch.iterdir()) == []
    out, err = capfd.readouterr()
    assert out == err == ""


def test_dedup_reduce_shows_its_grouping_and_write_out(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)
    cfg = load_config(test_curate._config(tmp_path), [])
    ws = Workspace(cfg.workspace_root)
    for name in ("extract", "clean"):
        run(STAGES[name], cfg, ws, make_map(cfg.runner, name))
    capsys.readouterr()
    result = run(STAGES["dedup"], cfg, ws, make_map(cfg.runner, "dedup"))
    lines = capsys.readouterr().err.splitlines()

    docs = Dataset.current(ws, "clean").manifest.docs_out
    assert result["dropped"] == {"exact_duplicate": 1, "near_duplicate": 1}
    assert f"dedup: {docs:,} of {docs:,} documents" in "\n".join(lines)  # the signature map
    assert any(re.match(r"dedup: grouping band buckets: 1 of 1 partitions, ", x) for x in lines)
    assert any(re.match(r"dedup: grouping exact hashes: 1 of 1 partitions, ", x) for x in lines)
    written = [x for x in lines if x.startswith("dedup: writing parts: ")]
    assert written[-2].startswith(f"dedup: writing parts: {docs:,} of {docs:,} documents, ")
    assert re.match(rf"dedup: writing parts: {docs:,} documents in \d+ s", written[-1])


@pytest.mark.prefect
def test_flow_on_a_process_pool_logs_bytes_documents_rate_and_eta(
    prefect_server, tmp_path, monkeypatch
):
    """The issue's case: extract on a pool of processes, its progress in the flow run's log."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterTimestamp
    from prefect.client.schemas.sorting import LogSort
    from prefect.logging.handlers import APILogWorker

    import flows.extract

    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)
    for name in ("a", "b", "c"):
        pages = [
            {"url": f"https://{name}.example/{i}", "body": article(f"{name} {i}")}
            for i in range(20)
        ]
        write_warc(tmp_path / "in" / f"{name}.warc.gz", pages)
    config = str(write_config(tmp_path, [str(tmp_path / "in" / "*.warc.gz")]))
    started = datetime.now(UTC)
    result = flows.extract.run(config, ["runner.task_runner=processes", "runner.workers=2"])
    assert result["built"] and result["units_run"] == 3 and result["docs_out"] == 60

    APILogWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            LogFilter(timestamp=LogFilterTimestamp(after_=started)), sort=LogSort.TIMESTAMP_ASC
        )
    lines = [log.message for log in logs if log.message.startswith("extract: ")]
    assert lines, [log.message for log in logs]
    # Documents once the workers have said how many they have seen.
    progress_line = (
        r"extract: [\d.]+ of [\d.]+ kB, [\d.]+ kB/s(, [\d,]+ documents, [\d.,]+ docs/s)?"
    )
    assert all(re.match(progress_line + ", ETA ", line) for line in lines[:-1]), lines
    assert re.match(r"extract: [\d.]+ kB in \d+ s, [\d.]+ kB/s, 60 documents, ", lines[-1])
