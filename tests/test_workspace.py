"""The workspace lock: one writer, a clear message, stale locks of dead processes taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from pipeline.workspace import Workspace, WorkspaceLocked


def test_a_second_writer_is_refused_with_who_holds_the_lock(tmp_path):
    ws = Workspace(str(tmp_path))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pipeline.workspace import Workspace\n"
            f"with Workspace({str(tmp_path)!r}).lock('scheduled crawl-and-train'):\n"
            "    print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(WorkspaceLocked) as err, ws.lock("textmill run extract"):
            pass
        message = str(err.value)
        assert "scheduled crawl-and-train" in message and f"pid {holder.pid}" in message
        assert str(tmp_path / "LOCK") in message
    finally:
        holder.kill()
        holder.wait()
    with ws.lock("textmill run extract"):  # its process is gone: the stale lock is taken over
        assert json.loads((tmp_path / "LOCK").read_text())["pid"] == os.getpid()
    assert not (tmp_path / "LOCK").exists()


def test_lock_is_reentrant_in_one_process(tmp_path):
    ws = Workspace(str(tmp_path))
    with ws.lock("run curate"), ws.lock("run clean"):
        assert (tmp_path / "LOCK").exists()
    assert not (tmp_path / "LOCK").exists()


def test_a_lock_held_on_another_host_is_never_taken_over(tmp_path):
    (tmp_path / "LOCK").write_text(
        json.dumps({"pid": 1, "host": socket.gethostname() + "-elsewhere", "purpose": "run dedup"})
    )
    with pytest.raises(WorkspaceLocked, match="run dedup"), Workspace(str(tmp_path)).lock("x"):
        pass


def test_lock_is_reentrant_across_workspace_objects_of_one_root(tmp_path):
    with Workspace(str(tmp_path)).lock("crawl-and-train"), Workspace(str(tmp_path)).lock("extract"):
        assert (tmp_path / "LOCK").exists()
    assert not (tmp_path / "LOCK").exists()
