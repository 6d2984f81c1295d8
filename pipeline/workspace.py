"""The workspace: where every stage reads and writes (layout in DESIGN.md).

    <root>/crawl/<source>/<generation>/*.warc.gz   + _manifest.json when that crawl run ended
    <root>/datasets/<stage>/<version>/part-*.parquet, rejected/, _manifest.json (written last)
    <root>/datasets/<stage>/CURRENT                names the current version
    <root>/tokenizer/<version>/, <root>/shards/<version>/   versioned the same way, with CURRENT
    <root>/LOCK                                    who is writing now

One workspace has one writer at a time: the lock says who holds it.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import fsspec

from pipeline.crash import crash_point
from pipeline.storage import TMP_MARK, Storage, sha256_file

MANIFEST = "_manifest.json"
CURRENT = "CURRENT"
LOCK = "LOCK"
# Stages whose outputs are not document datasets live at the top of the workspace.
TOP_LEVEL_STAGES = ("tokenizer", "shards")

# Locks this process holds, by workspace root, with their nesting depth: the lock is re-entrant
# within a process (a parent flow holds it while its subflows run), whatever Workspace object.
_held: dict[str, int] = {}


class WorkspaceLocked(RuntimeError):
    """Another process is writing to this workspace."""


@dataclass(frozen=True)
class Generation:
    """One crawl run of one source: its WARC files, readable once its manifest exists."""

    source: str
    name: str
    folder: str  # relative to the workspace root


class Workspace:
    def __init__(self, root: str):
        self.storage = Storage(root)
        self.root = root

    def __reduce__(self) -> tuple[object, ...]:
        return (Workspace, (self.root,))

    # ----- stage outputs: versions and the CURRENT pointer -----

    def stage_dir(self, stage: str, version: str | None = None) -> str:
        base = stage if stage in TOP_LEVEL_STAGES else f"datasets/{stage}"
        return f"{base}/{version}" if version else base

    def current_version(self, stage: str) -> str | None:
        pointer = f"{self.stage_dir(stage)}/{CURRENT}"
        if not self.storage.exists(pointer):
            return None
        return self.storage.read_text(pointer).strip() or None

    def set_current(self, stage: str, version: str) -> None:
        crash_point("current.write")
        self.storage.write_text(f"{self.stage_dir(stage)}/{CURRENT}", version + "\n")

    def is_committed(self, stage: str, version: str) -> bool:
        return self.storage.exists(f"{self.stage_dir(stage, version)}/{MANIFEST}")

    def versions(self, stage: str) -> list[str]:
        """Every version folder of a stage, committed or not."""
        return [
            name
            for name in self.storage.listdir(self.stage_dir(stage))
            if TMP_MARK not in name and self.storage.isdir(self.stage_dir(stage, name))
        ]

    def committed_versions(self, stage: str) -> list[str]:
        """Committed versions, oldest first (by commit time in their manifests)."""
        found = []
        for version in self.versions(stage):
            path = f"{self.stage_dir(stage, version)}/{MANIFEST}"
            if self.storage.exists(path):
                found.append((self.storage.read_json(path).get("created_at", ""), version))
        return [version for _, version in sorted(found)]

    def stages_on_disk(self) -> list[str]:
        datasets = self.storage.listdir("datasets")
        stages = [s for s in datasets if self.storage.isdir(f"datasets/{s}")]
        return stages + [s for s in TOP_LEVEL_STAGES if self.storage.isdir(s)]

    def remove_uncommitted(self, stage: str, keep: str | None = None) -> list[str]:
        """Delete version folders a killed run left without a manifest (except `keep`)."""
        removed = []
        for version in self.versions(stage):
            if version != keep and not self.is_committed(stage, version):
                self.storage.remove(self.stage_dir(stage, version), recursive=True)
                removed.append(version)
        return removed

    def gc(self, keep: int) -> dict[str, list[str]]:
        """Keep the newest `keep` committed versions of each stage (CURRENT always stays)."""
        if keep < 1:
            raise ValueError("gc --keep must be at least 1: the current version always stays")
        removed: dict[str, list[str]] = {}
        with self.lock("gc"):
            for stage in self.stages_on_disk():
                current = self.current_version(stage)
                committed = self.committed_versions(stage)
                kept = set(committed[-keep:]) | {current}
                gone = [v for v in committed if v not in kept]
                for version in gone:
                    self.storage.remove(self.stage_dir(stage, version), recursive=True)
                gone += self.remove_uncommitted(stage)
                if gone:
                    removed[stage] = gone
        return removed

    # ----- crawl generations -----

    def generations(self, source: str) -> list[Generation]:
        """Finished crawl generations of a source, oldest first; unfinished ones are skipped."""
        base = f"crawl/{source}"
        found = []
        for name in self.storage.listdir(base):
            folder = f"{base}/{name}"
            if self.storage.exists(f"{folder}/{MANIFEST}"):
                found.append(Generation(source=source, name=name, folder=folder))
        return found

    # ----- input files -----

    def file_digests(self, urls: list[str]) -> dict[str, tuple[str, int]]:
        """url -> (sha256, size) of input files, local or remote. Digests are cached by
        (size, mtime) in the workspace, so `status` does not rehash unchanged inputs."""
        cache_path = "cache/file-digests.json"
        cache = self.storage.read_json(cache_path) if self.storage.exists(cache_path) else {}
        result, changed = {}, False
        for url in urls:
            fs, path = fsspec.core.url_to_fs(url)
            info = fs.info(path)
            stamp = f"{info.get('size')}:{info.get('mtime') or info.get('LastModified') or ''}"
            entry = cache.get(url)
            if not entry or entry["stamp"] != stamp:
                entry = {"stamp": stamp, "sha256": sha256_file(fs, path), "size": info["size"]}
                cache[url], changed = entry, True
            result[url] = (entry["sha256"], entry["size"])
        if changed:
            self.storage.write_json(cache_path, cache)
        return result

    # ----- the lock -----

    @contextmanager
    def lock(self, purpose: str) -> Iterator[None]:
        """Hold the workspace's writer lock; re-entrant within one process."""
        key = self.storage.url(LOCK)
        if key not in _held:
            self._acquire(purpose)
        _held[key] = _held.get(key, 0) + 1
        try:
            yield
        finally:
            _held[key] -= 1
            if not _held[key]:
                del _held[key]
                self.storage.remove(LOCK)

    def lock_holder(self) -> dict | None:
        if not self.storage.exists(LOCK):
            return None
        try:
            return self.storage.read_json(LOCK)
        except (json.JSONDecodeError, FileNotFoundError):
            return {}

    def _acquire(self, purpose: str) -> None:
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "purpose": purpose,
            "command": " ".join(sys.argv),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        holder = self.lock_holder()
        if holder is not None and not _is_stale(holder):
            raise WorkspaceLocked(
                f"workspace {self.root} is locked by {holder.get('purpose', '?')} "
                f"(pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
                f"since {holder.get('since', '?')}): wait for it to finish, or delete "
                f"{self.storage.url(LOCK)} if that process is gone"
            )
        if holder is not None:
            self.storage.remove(LOCK)  # its process died without releasing it
        self.storage.makedirs("")
        if self.storage.is_local:
            try:  # O_EXCL: of two processes racing here, exactly one wins
                fd = os.open(self.storage.path(LOCK), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                raise WorkspaceLocked(
                    f"workspace {self.root} was locked by another process just now"
                ) from None
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
        else:
            self.storage.write_json(LOCK, me)


def _is_stale(holder: dict) -> bool:
    """A lock is stale when its process, on this host, no longer exists (or it is unreadable:
    its writer died between creating and filling it)."""
    if not holder:
        return True
    if holder.get("host") != socket.gethostname():
        return False
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
