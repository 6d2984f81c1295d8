"""Kill the extract stage at injected crash points; the rerun must give what an uninterrupted
run gives, and the old version must stay readable throughout. Kill `textmill gc` and
`textmill takedown` likewise: after every kill each version is whole, and a rerun finishes."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

from pipeline.config import load_config
from pipeline.crash import CRASH_ENV, CRASH_EXIT_CODE
from pipeline.datasets import Dataset
from pipeline.runner import make_map
from pipeline.stage import run
from pipeline.stages import DOCUMENT_STAGES, STAGES, all_statuses
from pipeline.workspace import Workspace
from tests.helpers import article, write_config, write_warc
from tests.test_takedown import PAGE, _build, _config, _ids

NEW_SETTING = "extract.timeout_s=19"


def _cli(config: Path, *args: str, crash: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash:
        env[CRASH_ENV] = crash
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "run",
            "extract",
            "-c",
            str(config),
            "--no-prefect",
            "--set",
            "runner.chunk_mb=0.004",
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _content(ws: Workspace, version: str) -> tuple[list, list, dict]:
    dataset = Dataset(ws, "extract", version)
    manifest = dataset.manifest.model_dump()
    for volatile in ("created_at", "timings"):
        manifest.pop(volatile)
    for part in manifest["parts"]:
        part.pop("seconds")
    return dataset.read().to_pylist(), dataset.read(rejected=True).to_pylist(), manifest


def _inputs(folder: Path) -> None:
    for name, n in (("a", 12), ("b", 3), ("c", 4)):
        records = [
            {"url": f"https://{name}.example/{i}", "body": article(f"{name} {i}")} for i in range(n)
        ]
        records.append(
            {
                "url": f"https://{name}.example/img.png",
                "body": b"\x89PNG",
                "content_type": "image/png",
            }
        )
        write_warc(folder / f"{name}.warc.gz", records)


def test_killed_at_seeded_crash_points_then_resumed_matches_uninterrupted(tmp_path):
    _inputs(tmp_path / "in")
    warcs = [str(tmp_path / "in" / "*.warc.gz")]
    reference_config = write_config(tmp_path / "reference", warcs)
    config = write_config(tmp_path / "crashing", warcs)

    assert _cli(reference_config, "--set", NEW_SETTING).returncode == 0
    reference_ws = Workspace(str(tmp_path / "reference" / "workspace"))
    expected = _content(reference_ws, reference_ws.current_version("extract"))

    assert _cli(config).returncode == 0  # the old version, which must stay readable
    ws = Workspace(str(tmp_path / "crashing" / "workspace"))
    old_version = ws.current_version("extract")
    old_content = _content(ws, old_version)

    rng = random.Random(20261127)
    crashes = [
        f"extract.record:{rng.randint(2, 8)}",  # mid-unit, between records
        f"part.write:{rng.randint(1, 3)}",  # half-way through a part file
        f"part.done:{rng.randint(1, 2)}",  # part written, its done-marker not yet
        f"unit.done:{rng.randint(1, 2)}",  # between input files / chunks
        "manifest.write:1",  # half-way through the manifest
        "current.write:1",  # manifest written, CURRENT not yet moved
    ]
    for crash in crashes:
        result = _cli(config, "--set", NEW_SETTING, crash=crash)
        assert result.returncode == CRASH_EXIT_CODE, (crash, result.stderr[-2000:])
        assert ws.current_version("extract") == old_version, crash
        assert _content(ws, old_version) == old_content, crash

    # The manifest is the commit point: after the last crash the new version only lacks CURRENT.
    result = _cli(config, "--set", NEW_SETTING)
    assert result.returncode == 0, result.stderr[-2000:]
    new_version = ws.current_version("extract")
    assert f"up to date (version {new_version}" in result.stdout
    assert new_version != old_version
    assert _content(ws, new_version) == expected
    assert set(ws.versions("extract")) == {old_version, new_version}  # dead builds cleaned
    assert not list((tmp_path / "crashing" / "workspace").rglob("*.tmp-*"))


def test_a_killed_forced_rebuild_resumes_its_own_folder(tmp_path):
    _inputs(tmp_path / "in")
    config = write_config(tmp_path, [str(tmp_path / "in" / "*.warc.gz")])
    assert _cli(config).returncode == 0
    ws = Workspace(str(tmp_path / "workspace"))
    first = ws.current_version("extract")
    assert _cli(config, "--force", crash="unit.done:2").returncode == CRASH_EXIT_CODE
    resumed = _cli(config, "--force")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert ws.current_version("extract") == f"{first}-r1"
    assert "2 reused" in resumed.stdout  # the two units the killed run finished
    assert _content(ws, first)[:2] == _content(ws, f"{first}-r1")[:2]


def _textmill(config: Path, *args: str, crash: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args, "-c", str(config)],
        env={**env, CRASH_ENV: crash} if crash else env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _assert_whole(ws: Workspace, when: str) -> None:
    """Every committed version holds every file its manifest names, as it names it, and every
    stage's CURRENT names one of them."""
    for stage in ws.stages_on_disk():
        assert ws.current_version(stage) in ws.committed_versions(stage), (when, stage)
        for version in ws.committed_versions(stage):
            assert Dataset(ws, stage, version).problems() == [], (when, stage, version)


def test_killed_gc_and_takedown_at_seeded_points_then_rerun_leave_every_version_whole(tmp_path):
    config = _config(tmp_path)
    stages = ("extract", "clean", "dedup", "filter", "tokenizer", "shards")
    cfg = load_config(config, ["clean.min_words=0", "tokenizer.vocab_size=290"])
    ws = Workspace(cfg.workspace_root)
    for name in stages:  # older versions of five stages, for gc to delete
        run(STAGES[name], cfg, ws, make_map(cfg.runner))
    _build(config, *stages)
    rng = random.Random(20261206)

    # gc, killed twice (after a version's manifest is deleted, before its files), then rerun.
    for crash in (f"gc.remove:{rng.randint(1, 3)}", f"gc.remove:{rng.randint(1, 2)}"):
        killed = _textmill(config, "gc", "--keep", "1", crash=crash)
        assert killed.returncode == CRASH_EXIT_CODE, (crash, killed.stderr[-2000:])
        _assert_whole(ws, crash)
    assert _textmill(config, "gc", "--keep", "1").returncode == 0
    assert all(ws.versions(stage) == [ws.current_version(stage)] for stage in stages)

    # A takedown killed five times, each rerun (with the page again, or with no target)
    # killed further on, then finished.
    steps = [
        ("takedown.listed:1", [PAGE]),  # the list and the job written, nothing rewritten
        (f"part.write:{rng.randint(1, 2)}", []),  # half-way through a rewritten part
        ("current.write:1", [PAGE]),  # a rewrite committed, CURRENT not moved to it
        (f"manifest.write:{rng.randint(1, 2)}", []),  # half-way through a manifest
        ("part.done:1", [PAGE]),  # a part rewritten, its marker not written
    ]
    for crash, targets in steps:
        killed = _textmill(config, "takedown", *targets, crash=crash)
        assert killed.returncode == CRASH_EXIT_CODE, (crash, killed.stderr[-2000:])
        _assert_whole(ws, crash)
    finished = _textmill(config, "takedown")
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "finished the takedown begun" in finished.stdout

    # The takedown is applied: the page is in no current dataset, nor in the shards.
    for stage in DOCUMENT_STAGES:
        assert "a0" not in _ids(ws, stage), stage
    shards = Dataset.current(ws, "shards")
    assert "a0" not in {i for p in shards.part_paths() for i in ws.storage.read_parquet(p)["id"]}
    statuses = {s.stage: s.state for s in all_statuses(load_config(config), ws)}
    assert {statuses[name] for name in DOCUMENT_STAGES} == {"up to date"}

    # A gc killed again and rerun removes the versions from before the takedown.
    assert _textmill(config, "gc", "--keep", "1", crash="gc.remove:1").returncode == CRASH_EXIT_CODE
    assert _textmill(config, "gc", "--keep", "1").returncode == 0
    _assert_whole(ws, "gc after the takedown")
    assert _textmill(config, "verify").returncode == 0

    # The next build works, and applies the list itself.
    built = _textmill(config, "run", "curate", "--no-prefect", "--set", "clean.min_words=3")
    assert built.returncode == 0, built.stderr[-2000:]
    assert "a0" not in _ids(ws, "filter")
