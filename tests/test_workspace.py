"""The workspace lock: one writer, a clear message, never stale after a crash."""

from __future__ import annotations

import json
import os
import socket

import pytest

from pipeline.workspace import Workspace, WorkspaceLocked
from tests.helpers import lock_held_elsewhere


def test_a_second_writer_is_refused_with_who_holds_the_lock(tmp_path):
    ws = Workspace(str(tmp_path))
    with lock_held_elsewhere(tmp_path, "scheduled crawl-and-train") as holder:
        assert ws.lock_holder()["pid"] == holder.pid
        with pytest.raises(WorkspaceLocked) as err, ws.lock("textmill run extract"):
            pass
        message = str(err.value)
        assert "scheduled crawl-and-train" in message and f"pid {holder.pid}" in message
    # The holder was killed: the kernel dropped its lock, nothing stale is left behind.
    assert ws.lock_holder() is None
    with ws.lock("textmill run extract"):
        assert ws.lock_holder()["pid"] == os.getpid()
    assert ws.lock_holder() is None


def test_lock_is_reentrant_in_one_process(tmp_path):
    with Workspace(str(tmp_path)).lock("crawl-and-train"), Workspace(str(tmp_path)).lock("extract"):
        assert Workspace(str(tmp_path)).lock_holder()["purpose"] == "crawl-and-train"
    assert Workspace(str(tmp_path)).lock_holder() is None


def test_advisory_lock_on_other_filesystems(tmp_path):
    """memory:// stands in for s3://: a LOCK file with a token, not an flock."""
    ws = Workspace("memory://lock-test")
    other_host = {"pid": 1, "host": socket.gethostname() + "-elsewhere", "purpose": "run dedup"}
    ws.storage.write_json("LOCK", other_host)
    with pytest.raises(WorkspaceLocked, match=r"run dedup.*delete memory://"), ws.lock("x"):
        pass
    gone = {"pid": 2**22 + 12345, "host": socket.gethostname(), "purpose": "killed run"}
    ws.storage.write_json("LOCK", gone)  # a process of this host that no longer exists
    with ws.lock("extract"):
        ws.storage.write_json("LOCK", {**other_host, "token": "theirs"})  # someone took it over
    assert json.loads(ws.storage.read_text("LOCK"))["token"] == "theirs"  # and it was kept
    ws.storage.remove("LOCK")
