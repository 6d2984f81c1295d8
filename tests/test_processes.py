"""Pool workers end with the process that started them: after a SIGKILL of `textmill run`
alone (no cleanup runs), no worker is left and no part is written after it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO
from tests.helpers import article, write_config, write_warc

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")

PAGES_PER_UNIT = 2000  # ~10 s of extraction each: both units are under way at the kill


def _slow_inputs(folder: Path) -> list[str]:
    """Two WARC files, one work unit each."""
    for name in ("a", "b"):
        pages = [
            {"url": f"https://{name}.example/{i}", "body": article(f"{name} {i}", "Words. " * 40)}
            for i in range(PAGES_PER_UNIT)
        ]
        write_warc(folder / f"{name}.warc.gz", pages)
    return [str(folder / "*.warc.gz")]


def _wait_for(done: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {seconds} s for {what}")
        time.sleep(0.1)


def _units_under_way(tmp: Path) -> int:
    """Units that have reported progress and not finished (pipeline/progress.py's files: "done
    total docs finished"), in the progress folder the run made in its TMPDIR."""
    count = 0
    for path in tmp.glob("textmill-progress-*/*"):
        try:
            fields = path.read_text().split()
        except OSError:  # replaced while read
            continue
        count += len(fields) == 4 and int(fields[2]) > 0 and fields[3] == "0"
    return count


def _pool_workers(parent: psutil.Process) -> list[psutil.Process]:
    """The parent's spawned pool workers (not multiprocessing's resource tracker)."""
    return [p for p in parent.children() if "spawn_main" in " ".join(p.cmdline())]


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _kill_the_parent_mid_units(command: list[str], tmp_path: Path, env: dict[str, str]) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    log = tmp_path / "run.log"
    with open(log, "w") as out:
        run = subprocess.Popen(
            command,
            cwd=REPO,
            env={**env, "TMPDIR": str(tmp)},  # where its progress folder goes
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    workers: list[psutil.Process] = []
    try:
        _wait_for(lambda: _units_under_way(tmp) == 2 or run.poll() is not None, 240, "2 units")
        assert run.poll() is None, log.read_text()[-3000:]
        workers = _pool_workers(psutil.Process(run.pid))
        assert len(workers) == 2
        datasets = tmp_path / "workspace" / "datasets"
        before = _files(datasets)
        os.kill(run.pid, signal.SIGKILL)  # the parent only
        run.wait()
        _, alive = psutil.wait_procs(workers, timeout=5)
        assert alive == [], f"workers {[p.pid for p in alive]} outlived their parent"
        assert _files(datasets) == before  # nothing written after the kill
    finally:  # nothing left behind for the tests after this one, whatever failed
        for worker in workers:
            with suppress(psutil.NoSuchProcess):
                worker.kill()
        if run.poll() is None:
            run.kill()
            run.wait()


def _config(tmp_path: Path) -> str:
    runner = {"task_runner": "processes", "workers": 2, "chunk_mb": 100}
    return str(write_config(tmp_path, _slow_inputs(tmp_path / "in"), runner=runner))


def test_plain_runner_workers_end_with_their_parent(tmp_path):
    command = [sys.executable, "-m", "pipeline.cli", "run", "extract", "--no-prefect"]
    _kill_the_parent_mid_units([*command, "-c", _config(tmp_path)], tmp_path, dict(os.environ))


@pytest.mark.prefect
def test_prefect_process_pool_workers_end_with_the_flow_process(prefect_server, tmp_path):
    command = [sys.executable, "-m", "pipeline.cli", "run", "extract", "-c", _config(tmp_path)]
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    _kill_the_parent_mid_units(command, tmp_path, env)
