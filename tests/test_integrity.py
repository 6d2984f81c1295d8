"""Damaged files in a finished run's workspace: a part whose bytes changed on disk, truncated
parts, shards, checkpoints, a garbled tokenizer, manifest or cache. Each is found where it is
read and said in one line that names the file and what to do; a reused part is built again
instead; `textmill verify` finds them all; and nothing already done is lost."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.datasets import Dataset
from pipeline.runner import make_map
from pipeline.stage import run
from pipeline.stages import EXTRACT
from pipeline.workspace import Workspace
from tests.helpers import article, write_config, write_warc
from tests.test_takedown import _build, _config


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A small run to its end (extract .. shards, 2 training steps); tests damage copies."""
    from model.train import train

    folder = tmp_path_factory.mktemp("finished")
    config = _config(folder)
    ws = _build(config, "extract", "clean", "dedup", "filter", "tokenizer", "shards")
    train(load_config(config), ws, log=lambda line: None)
    return folder


@pytest.fixture
def copy(finished, tmp_path) -> tuple[Path, Workspace]:
    """(config, workspace) of a copy of the finished run, reading the same input files."""
    shutil.copytree(finished / "workspace", tmp_path / "workspace")
    data = yaml.safe_load((finished / "run.yaml").read_text())
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({**data, "workspace": str(tmp_path / "workspace")}))
    return config, Workspace(str(tmp_path / "workspace"))


def _cli(config: Path, *args: str):
    return CliRunner().invoke(main, [*args, "-c", str(config)])


def _error(config: Path, *args: str) -> str:
    """The one line a failing command ends with (it must be a foreseen failure, not a bug)."""
    result = _cli(config, *args)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("textmill: error:")]
    assert len(lines) == 1 and "unexpected" not in lines[0], result.stderr
    return lines[0]


def _path(ws: Workspace, stage: str, which: str = "part") -> Path:
    dataset = Dataset.current(ws, stage)
    if which == "part":
        return Path(ws.storage.path(dataset.part_paths()[0]))
    return Path(ws.storage.path(dataset.dir)) / which


def _flip_four_bytes(path: Path) -> None:
    """Flip four bytes where the file still reads as Parquet, with other content (as bit rot or
    a stray write would leave it)."""
    data = path.read_bytes()
    original = pq.read_table(io.BytesIO(data)).to_pylist()
    for at in range(8, len(data) - 8):
        changed = bytearray(data)
        for i in range(at, at + 4):
            changed[i] ^= 0x20
        try:
            if pq.read_table(io.BytesIO(bytes(changed))).to_pylist() != original:
                path.write_bytes(changed)
                return
        except Exception:  # most flips break the file: find one that does not
            continue
    raise AssertionError(f"no four bytes of {path} flip into another readable table")


def _truncate(path: Path, size: int = 100) -> None:
    path.write_bytes(path.read_bytes()[:size])


def test_a_part_changed_on_disk_stops_the_build_that_reads_it_and_verify_names_it(copy):
    config, ws = copy
    part = _path(ws, "extract")
    clean_before = ws.current_version("clean")
    _flip_four_bytes(part)

    line = _error(config, "run", "clean", "--force", "--no-prefect")
    assert str(part) in line and "content changed" in line
    assert "`textmill run extract --force`" in line
    assert ws.current_version("clean") == clean_before  # nothing done is lost

    found = _cli(config, "verify")
    assert found.exit_code == 1
    assert f"DAMAGED  extract {part.parent.name} (current): {part}" in found.output
    assert "what to do: `textmill run extract --force` builds it again" in found.output
    assert "ok       clean" in found.output and "1 of 6 versions damaged" in found.stderr
    assert _cli(config, "verify", "clean").exit_code == 0

    # What it said to do works: rebuild extract, the build after it, gc the damaged version.
    assert _cli(config, "run", "extract", "--force", "--no-prefect").exit_code == 0
    assert _cli(config, "run", "clean", "--force", "--no-prefect").exit_code == 0
    assert _cli(config, "gc", "--keep", "1").exit_code == 0
    assert _cli(config, "verify").exit_code == 0


def test_a_damaged_part_is_built_again_not_reused(tmp_path):
    """A new input file: the old file's part would be linked from the version before, but its
    bytes changed on disk, so it is extracted again (and the new version holds what a clean
    build gives)."""

    def pages(name: str) -> None:
        records = [
            {"url": f"https://{name}.example/{i}", "body": article(f"{name} {i}")} for i in (1, 2)
        ]
        write_warc(tmp_path / "in" / f"{name}.warc.gz", records)

    pages("a")
    cfg = load_config(write_config(tmp_path, [str(tmp_path / "in" / "*.warc.gz")]))
    ws = Workspace(cfg.workspace_root)
    first = run(EXTRACT, cfg, ws, make_map(cfg.runner))["version"]
    expected = Dataset(ws, "extract", first).read().to_pylist()
    _flip_four_bytes(Path(ws.storage.path(Dataset(ws, "extract", first).part_paths()[0])))

    pages("b")
    result = run(EXTRACT, cfg, ws, make_map(cfg.runner))
    assert (result["units_run"], result["units_reused"]) == (2, 0)
    rows = Dataset.current(ws, "extract").read().to_pylist()
    assert [row for row in rows if row["url"].startswith("https://a.")] == expected


def test_a_truncated_part_is_one_line_naming_it_for_runs_and_inspect(copy):
    config, ws = copy
    part = _path(ws, "extract")
    _truncate(part)
    line = _error(config, "run", "clean", "--force", "--no-prefect")
    assert str(part) in line and "100 bytes" in line and "textmill run extract --force" in line
    line = _error(config, "inspect", "summary", "--stage", "extract")
    assert str(part) in line and "textmill run extract --force" in line


def test_a_garbled_current_manifest_is_named_and_the_next_run_repairs_it(copy):
    config, ws = copy
    manifest = _path(ws, "extract", "_manifest.json")
    manifest.write_text('{"stage": "extract", "version": ')
    line = _error(config, "status")
    assert str(manifest) in line and "cannot be read as JSON" in line
    assert "`textmill run extract --force`" in line
    assert _cli(config, "run", "extract", "--no-prefect").exit_code == 0
    assert _cli(config, "status").exit_code == 0
    assert Dataset.current(ws, "extract").manifest.docs_out == 7


def test_a_garbled_manifest_of_an_old_version_blocks_nothing(copy):
    config, ws = copy
    old = ws.current_version("extract")
    newer = ("--set", "extract.timeout_s=19")
    assert _cli(config, "run", "extract", "--no-prefect", *newer).exit_code == 0
    (Path(ws.storage.path(ws.stage_dir("extract", old))) / "_manifest.json").write_text("{")

    assert _cli(config, "status", *newer).exit_code == 0
    again = _cli(config, "run", "extract", "--no-prefect", *newer)
    assert again.exit_code == 0 and "up to date" in again.output
    assert "not committed data" in again.stderr and old in again.stderr
    back = _cli(config, "run", "extract", "--no-prefect")  # the old settings: built again
    assert back.exit_code == 0 and "built version" in back.output
    assert ws.current_version("extract") == old and Dataset(ws, "extract", old).manifest


def test_a_garbled_digest_cache_is_rebuilt_with_a_warning(copy):
    config, ws = copy
    cache = Path(ws.storage.path("cache/file-digests.json"))
    cache.write_text('{"x": ')
    result = _cli(config, "status")
    assert result.exit_code == 0, result.output
    assert f"textmill: warning: {cache}: cannot be read as JSON" in result.stderr
    assert "up to date" in result.output
    assert json.loads(cache.read_text())  # written again, whole


def test_a_truncated_shard_stops_training_with_one_line_naming_it(copy):
    config, ws = copy
    shard = next(Path(ws.storage.path(Dataset.current(ws, "shards").dir)).glob("train/shard-*"))
    _truncate(shard)
    line = _error(config, "run", "train", "--force", "--no-prefect")
    assert str(shard) in line and "textmill run shards --force" in line


def test_a_truncated_checkpoint_is_one_line_naming_it(copy):
    config, ws = copy
    state = Path(ws.storage.path("runs/tiny/checkpoint/state.pt"))
    _truncate(state, 300)
    line = _error(config, "run", "train", "--no-prefect", "--set", "train.max_steps=4")
    assert str(state.parent) in line and "textmill run train --force" in line


def test_a_garbled_tokenizer_is_one_line_naming_it(copy):
    config, ws = copy
    tokenizer = _path(ws, "tokenizer", "tokenizer.json")
    size = tokenizer.stat().st_size
    tokenizer.write_bytes(b'{"version": "' + b"\x00" * (size - 13))  # the same size
    line = _error(config, "sample", "The ")
    assert str(tokenizer) in line and "textmill run tokenizer --force" in line
    line = _error(config, "run", "shards", "--force", "--no-prefect")
    assert str(tokenizer) in line and "content changed" in line
