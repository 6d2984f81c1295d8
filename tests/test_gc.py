"""`textmill gc` killed half-way: no version is left claiming to be whole, and the next gc (or
build) finishes what it started. The seeded kill test over gc and takedown is in
tests/test_crash.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.datasets import Dataset
from pipeline.runner import make_map
from pipeline.stage import run
from pipeline.stages import EXTRACT
from pipeline.storage import Storage
from pipeline.workspace import Workspace
from tests.helpers import article, write_config, write_warc


class Killed(BaseException):
    """Stands for the kill: like SIGKILL, nothing after it runs (it is no Exception)."""


def _build(config: Path, *overrides: str) -> dict:
    cfg = load_config(config, list(overrides))
    return run(EXTRACT, cfg, Workspace(cfg.workspace_root), make_map(cfg.runner))


def _gc_killed_deleting(ws: Workspace, version: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`gc --keep 1`, killed while it deletes `version`'s folder: its parts gone, the rest not."""
    real_remove = Storage.remove

    def killed_half_way(self: Storage, rel: str, recursive: bool = False) -> None:
        if recursive and rel.endswith(version):
            for part in Path(self.path(rel)).glob("part-*.parquet"):
                part.unlink()
            raise Killed
        real_remove(self, rel, recursive)

    with monkeypatch.context() as patched:
        patched.setattr(Storage, "remove", killed_half_way)
        with pytest.raises(Killed):
            ws.gc(keep=1)


def _whole(ws: Workspace) -> dict[str, list[str]]:
    """Every committed version, with the files its manifest names that are missing."""
    return {
        version: [
            p for p in Dataset(ws, "extract", version).part_paths() if not ws.storage.exists(p)
        ]
        for version in ws.committed_versions("extract")
    }


def test_a_gc_killed_while_deleting_a_version_leaves_none_claiming_to_be_whole(
    tmp_path, monkeypatch
):
    records = [{"url": f"https://a.example/{i}", "body": article(f"a {i}")} for i in range(3)]
    write_warc(tmp_path / "in" / "a.warc.gz", records)
    config = write_config(tmp_path, [str(tmp_path / "in" / "*.warc.gz")])
    ws = Workspace(str(tmp_path / "workspace"))
    old = _build(config, "extract.timeout_s=1")["version"]
    new = _build(config, "extract.timeout_s=2")["version"]
    expected = Dataset(ws, "extract", old).read().to_pylist()
    _gc_killed_deleting(ws, old, monkeypatch)

    assert _whole(ws) == {new: []}  # the half-deleted version no longer claims anything
    assert ws.gc(keep=1) == {"extract": [old]}  # the next gc finishes the job
    assert ws.versions("extract") == [new]
    rebuilt = _build(config, "extract.timeout_s=1")  # the next build that needs those parts
    assert rebuilt["built"] and rebuilt["version"] == old
    assert Dataset(ws, "extract", old).read().to_pylist() == expected


def test_a_version_gc_left_half_deleted_is_built_again_by_the_next_build(tmp_path, monkeypatch):
    """The same kill, then a build before any gc: it rebuilds the parts gc took, reusing none."""
    records = [{"url": f"https://b.example/{i}", "body": article(f"b {i}")} for i in range(3)]
    write_warc(tmp_path / "in" / "b.warc.gz", records)
    config = write_config(tmp_path, [str(tmp_path / "in" / "*.warc.gz")])
    ws = Workspace(str(tmp_path / "workspace"))
    old = _build(config, "extract.timeout_s=1")["version"]
    _build(config, "extract.timeout_s=2")
    expected = Dataset(ws, "extract", old).read().to_pylist()
    _gc_killed_deleting(ws, old, monkeypatch)

    rebuilt = _build(config, "extract.timeout_s=1")
    assert rebuilt["built"] and rebuilt["units_reused"] == 0
    assert Dataset.current(ws, "extract").read().to_pylist() == expected
