"""Versions, CURRENT, per-input caching, status and gc: the storage contract of DESIGN.md."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import load_config
from pipeline.datasets import Dataset
from pipeline.runner import make_map
from pipeline.stage import run
from pipeline.stages import EXTRACT, stage_status
from pipeline.workspace import Workspace
from tests.helpers import article, write_config, write_warc


def _pages(tmp_path: Path, name: str, n: int) -> Path:
    records = [
        {"url": f"https://{name}.example/{i}", "body": article(f"{name} {i}")} for i in range(n)
    ]
    return write_warc(tmp_path / "in" / f"{name}.warc.gz", records)


def _build(config: Path, *overrides: str, force: bool = False) -> dict:
    cfg = load_config(config, list(overrides))
    return run(EXTRACT, cfg, Workspace(cfg.workspace_root), make_map(cfg.runner), force)


def _status(config: Path, *overrides: str):
    cfg = load_config(config, list(overrides))
    return stage_status(EXTRACT, cfg, Workspace(cfg.workspace_root))


def test_second_run_is_up_to_date_and_does_no_work(tmp_path):
    _pages(tmp_path, "a", 3)
    config = write_config(tmp_path, [str(tmp_path / "in" / "*.warc.gz")])
    assert _status(config).state == "missing"
    first = _build(config)
    assert first["built"] and first["docs_out"] == 3
    ws = Workspace(str(tmp_path / "workspace"))
    part = tmp_path / "workspace" / Dataset.current(ws, "extract").part_paths()[0]
    mtime = part.stat().st_mtime_ns
    second = _build(config)
    assert not second["built"] and second["version"] == first["version"]
    assert second["units_run"] == 0
    assert part.stat().st_mtime_ns == mtime
    assert _status(config).state == "up to date"


def test_changed_setting_builds_a_new_version_beside_the_old(tmp_path):
    _pages(tmp_path, "a", 2)
    config = write_config(tmp_path, [str(tmp_path / "in" / "*.warc.gz")])
    ws = Workspace(str(tmp_path / "workspace"))
    old = _build(config)["version"]

    status = _status(config, "extract.timeout_s=2")
    assert status.state == "stale"
    assert status.reasons == ["extract.timeout_s changed: 20.0 -> 2.0"]
    new = _build(config, "extract.timeout_s=2")
    assert new["built"] and new["version"] != old
    assert ws.current_version("extract") == new["version"]
    assert set(ws.committed_versions("extract")) == {old, new["version"]}
    assert Dataset(ws, "extract", old).read(["url"]).num_rows == 2  # old stays readable

    # Going back to the old setting is instant: that version still exists.
    back = _build(config)
    assert not back["built"] and back["version"] == old
    assert ws.current_version("extract") == old


def test_new_input_file_costs_only_that_file(tmp_path):
    _pages(tmp_path, "a", 3)
    config = write_config(tmp_path, [str(tmp_path / "in" / "*.warc.gz")])
    _build(config)
    _pages(tmp_path, "b", 2)
    status = _status(config)
    assert status.state == "stale"
    assert status.reasons == ["inputs changed: 1 new, 0 removed, 0 changed files"]
    result = _build(config)
    assert result["built"] and result["units_run"] == 1 and result["units_reused"] == 1
    assert result["docs_out"] == 5


def test_force_rebuilds_into_a_fresh_folder_with_identical_content(tmp_path):
    _pages(tmp_path, "a", 2)
    config = write_config(tmp_path, [str(tmp_path / "in" / "*.warc.gz")])
    ws = Workspace(str(tmp_path / "workspace"))
    first = _build(config)
    forced = _build(config, force=True)
    assert forced["built"] and forced["units_run"] == 1 and forced["units_reused"] == 0
    assert forced["version"] == f"{first['version']}-r1"
    assert _status(config).state == "up to date"
    assert (
        Dataset(ws, "extract", first["version"]).read().to_pylist()
        == Dataset.current(ws, "extract").read().to_pylist()
    )


def test_gc_keeps_the_newest_versions_and_current(tmp_path):
    _pages(tmp_path, "a", 1)
    config = write_config(tmp_path, [str(tmp_path / "in" / "*.warc.gz")])
    ws = Workspace(str(tmp_path / "workspace"))
    versions = [_build(config, f"extract.timeout_s={t}")["version"] for t in (1, 2, 3)]
    _build(config, "extract.timeout_s=1")  # CURRENT back to the oldest
    (tmp_path / "workspace" / "datasets" / "extract" / "deadbeef").mkdir()  # a killed build
    removed = ws.gc(keep=1)
    assert sorted(removed["extract"]) == sorted([versions[1], "deadbeef"])
    assert set(ws.versions("extract")) == {versions[0], versions[2]}
    assert ws.current_version("extract") == versions[0]


def test_config_section_outside_the_stage_does_not_change_its_version(tmp_path):
    _pages(tmp_path, "a", 1)
    config = write_config(tmp_path, [str(tmp_path / "in" / "*.warc.gz")])
    first = _build(config)
    again = _build(config, "runner.workers=3", "runner.chunk_mb=1")
    assert not again["built"] and again["version"] == first["version"]
