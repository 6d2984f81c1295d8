"""Kill the extract stage at injected crash points; the rerun must give what an uninterrupted
run gives, and the old version must stay readable throughout."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

from pipeline.crash import CRASH_ENV, CRASH_EXIT_CODE
from pipeline.datasets import Dataset
from pipeline.workspace import Workspace
from tests.helpers import article, write_config, write_warc

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
