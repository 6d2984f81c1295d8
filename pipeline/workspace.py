"""The workspace: where every stage reads and writes (layout in DESIGN.md).

    <root>/crawl/<source>/<generation>/*.warc.gz   + _manifest.json when that crawl run ended
    <root>/datasets/<stage>/<version>/part-*.parquet, rejected/, _manifest.json (written last)
    <root>/datasets/<stage>/CURRENT                names the current version
    <root>/tokenizer/<version>/, <root>/shards/<version>/   versioned the same way, with CURRENT
    <root>/LOCK                                    who is writing now

One workspace has one writer at a time: the lock says who holds it.
"""

from __future__ import annotations

import fcntl
import json
import os
import posixpath
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import fsspec

from pipeline.config import is_folder_name
from pipeline.crash import crash_point
from pipeline.storage import TMP_MARK, Storage, UnreadableFile, sha256_file

MANIFEST = "_manifest.json"
CURRENT = "CURRENT"
LOCK = "LOCK"
# Stages whose outputs are not document datasets live at the top of the workspace.
TOP_LEVEL_STAGES = ("tokenizer", "shards")

# Locks this process holds, by lock URL: [nesting depth, flock fd, token]. The lock is
# re-entrant within a process (a parent flow holds it while its subflows run).
_held: dict[str, list[Any]] = {}

_warned: set[str] = set()


def warn_once(message: str) -> None:
    """A problem that does not stop the work, said on stderr (where progress goes too), once
    per process."""
    if message not in _warned:
        _warned.add(message)
        print(f"textmill: warning: {message}", file=sys.stderr, flush=True)


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
        """The version CURRENT names. Only a plain folder name of the stage's own folder: a
        path (`../../elsewhere`) would have readers follow it out of the workspace."""
        pointer = f"{self.stage_dir(stage)}/{CURRENT}"
        if not self.storage.exists(pointer):
            return None
        version = self.storage.read_text(pointer).strip()
        if version and not is_folder_name(version):
            raise ValueError(
                f"{self.storage.url(pointer)}: names {version[:80]!r}, not a version folder "
                f"of {stage} (a plain folder name, such as 6cf45e10882573eb): a damaged or "
                "edited file; write the name of a version there, or delete it"
            )
        return version or None

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

    def committed_versions(self, stage: str, warn: bool = True) -> list[str]:
        """Committed versions, oldest first (by commit time in their manifests). A version whose
        manifest cannot be read is not committed data: it is left out (with a warning)."""
        found, unreadable = self._read_commit_times(stage)
        for version, problem in unreadable.items() if warn else ():
            warn_once(f"{stage} version {version}: {problem}")
        return [version for _, version in sorted(found)]

    def unreadable_versions(self, stage: str) -> dict[str, str]:
        """Versions with a manifest that cannot be read: version -> what is wrong and what to do."""
        return self._read_commit_times(stage)[1]

    def _read_commit_times(self, stage: str) -> tuple[list[tuple[str, str]], dict[str, str]]:
        found, unreadable = [], {}
        for version in self.versions(stage):
            path = f"{self.stage_dir(stage, version)}/{MANIFEST}"
            if not self.storage.exists(path):
                continue
            try:
                found.append((str(self.read_manifest_json(path).get("created_at", "")), version))
            except UnreadableFile as exc:
                unreadable[version] = (
                    f"{exc}: not committed data (`textmill run {stage}` builds it again, "
                    "`textmill gc` removes it unless it is current)"
                )
        return found, unreadable

    def read_manifest_json(self, path: str) -> dict[str, Any]:
        """A manifest as JSON; UnreadableFile if it is not a JSON object (truncated, garbled)."""
        data = self.storage.read_json(path)
        if not isinstance(data, dict):
            raise UnreadableFile(self.storage.url(path), "a manifest", TypeError("not an object"))
        return data

    def stages_on_disk(self) -> list[str]:
        datasets = self.storage.listdir("datasets")
        stages = [s for s in datasets if self.storage.isdir(f"datasets/{s}")]
        return stages + [s for s in TOP_LEVEL_STAGES if self.storage.isdir(s)]

    def remove_uncommitted(self, stage: str, keep: str | None = None) -> list[str]:
        """Delete version folders a killed run (or gc) left without a manifest (except `keep`)."""
        removed = []
        for version in self.versions(stage):
            if version != keep and not self.is_committed(stage, version):
                self.storage.remove(self.stage_dir(stage, version), recursive=True)
                removed.append(version)
        return removed

    def _remove_committed(self, folder: str) -> None:
        """The manifest (the commit point) first, then the files: a gc killed half-way leaves a
        folder that claims nothing, which no build reads and the next gc removes."""
        self.storage.remove(f"{folder}/{MANIFEST}")
        crash_point("gc.remove")
        self.storage.remove(folder, recursive=True)

    def gc(self, keep: int, generation_window: int | None = None) -> dict[str, list[str]]:
        """Keep the newest `keep` committed versions of each stage (CURRENT always stays) and
        delete the folders of killed builds; with a `generation_window`, also delete each
        source's finished crawl generations older than the newest `generation_window` (no stage
        reads them; the frontier keeps every URL's history, so recrawls stay conditional).
        Returns what was removed: versions by stage, generations by `crawl/<source>`."""
        if keep < 1:
            raise ValueError("gc --keep must be at least 1: the current version always stays")
        removed: dict[str, list[str]] = {}
        with self.lock("gc"):
            for stage in self.stages_on_disk():
                current = self.current_version(stage)
                committed = self.committed_versions(stage)
                kept = set(committed[-keep:]) | {current}
                # A manifest that cannot be read commits nothing: such a folder goes as a
                # killed build's does (unless it is current, which `textmill run` rebuilds).
                gone = [v for v in committed if v not in kept]
                gone += [v for v in self.unreadable_versions(stage) if v != current]
                for version in gone:
                    self._remove_committed(self.stage_dir(stage, version))
                gone += self.remove_uncommitted(stage)
                if gone:
                    removed[stage] = gone
            for source in self.storage.listdir("crawl") if generation_window else []:
                gone = self._old_generations(source, generation_window)
                for folder in gone:
                    self._remove_committed(folder)
                if gone:
                    removed[f"crawl/{source}"] = [posixpath.basename(f) for f in gone]
        return removed

    def _old_generations(self, source: str, window: int) -> list[str]:
        """Folders of the finished generations before the newest `window`, and of those a gc
        killed half-way left without a manifest (older than a finished one: a killed crawl's
        unfinished generation is always the newest, and is left for the crawl to resume)."""
        finished = self.generations(source)
        if not finished:
            return []
        oldest_kept = finished[-window:][0].name
        leftovers = [
            f"crawl/{source}/{name}"
            for name in self.storage.listdir(f"crawl/{source}")
            if name < oldest_kept
            and self.storage.isdir(f"crawl/{source}/{name}")
            and not self.storage.exists(f"crawl/{source}/{name}/{MANIFEST}")
        ]
        return [g.folder for g in finished[:-window]] + leftovers

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

    @contextmanager
    def cache(self, name: str) -> Iterator[dict[str, Any]]:
        """A JSON dict kept in <root>/cache/<name>.json, written back if the block changed it.
        Only facts derived from file contents belong here: losing it only costs time, so an
        unreadable one is started again (with a warning)."""
        path = f"cache/{name}.json"
        try:
            data = self.storage.read_json(path) if self.storage.exists(path) else {}
        except UnreadableFile as exc:
            warn_once(f"{exc}: a cache, rebuilt")
            data = None
        if not isinstance(data, dict):
            data = {}
        before = json.dumps(data, sort_keys=True)
        yield data
        if json.dumps(data, sort_keys=True) != before:
            self.storage.write_json(path, data)

    def file_digests(self, urls: list[str]) -> dict[str, tuple[str, int]]:
        """url -> (sha256, size) of input files, local or remote. Digests are cached by
        (size, mtime, ...) in the workspace, so `status` does not rehash unchanged inputs."""
        with self.cache("file-digests") as cache:
            return {url: self._file_digest(url, cache) for url in urls}

    @staticmethod
    def _file_digest(url: str, cache: dict[str, Any]) -> tuple[str, int]:
        fs, path = fsspec.core.url_to_fs(url)
        info = fs.info(path)
        # Local files: inode and ctime too, so a same-size file copied in with its old mtime
        # (cp -p, rsync -t) is still seen as changed. Object stores: the ETag.
        stamp = ":".join(
            str(info.get(field, ""))
            for field in ("size", "mtime", "ino", "created", "LastModified", "ETag")
        )
        entry = cache.get(url)
        if not _cached_digest(entry) or entry["stamp"] != stamp:
            entry = {"stamp": stamp, "sha256": sha256_file(fs, path), "size": info["size"]}
            cache[url] = entry
        return entry["sha256"], entry["size"]

    # ----- the lock -----

    @contextmanager
    def lock(self, purpose: str) -> Iterator[None]:
        """Hold the workspace's writer lock; re-entrant within one process.

        On a local disk it is an flock on <root>/LOCK: the kernel drops it when its process
        dies, so a killed run never leaves a stale lock. On other filesystems it is advisory:
        a LOCK file with a token, taken over when its process (on this host) is gone."""
        key = self.storage.url(LOCK)
        if key not in _held:
            _held[key] = [0, *self._acquire(purpose)]
        _held[key][0] += 1
        try:
            yield
        finally:
            _held[key][0] -= 1
            if not _held[key][0]:
                _, fd, token = _held.pop(key)
                self._release(fd, token)

    def lock_holder(self) -> dict[str, Any] | None:
        """Who holds the lock now ({} when that cannot be read), or None when nobody does."""
        if not self.storage.exists(LOCK):
            return None
        if self.storage.is_local:
            fd = os.open(self.storage.path(LOCK), os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return None  # nobody holds it
            except BlockingIOError:
                pass
            finally:
                os.close(fd)
        try:
            holder = self.storage.read_json(LOCK)
        except (UnreadableFile, FileNotFoundError):
            return {}
        if not self.storage.is_local and _is_stale(holder):
            return None
        return holder

    def _acquire(self, purpose: str) -> tuple[int | None, str]:
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "purpose": purpose,
            "command": " ".join(sys.argv),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "token": uuid.uuid4().hex,
        }
        self.storage.makedirs("")
        if self.storage.is_local:
            fd = os.open(self.storage.path(LOCK), os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise WorkspaceLocked(self._locked_message(self.lock_holder() or {})) from None
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(me).encode())
            return fd, me["token"]
        holder = self.lock_holder()
        if holder is not None:
            raise WorkspaceLocked(
                self._locked_message(holder) + f" (or delete {self.storage.url(LOCK)} if that "
                "process is gone)"
            )
        self.storage.write_json(LOCK, me)
        return None, me["token"]

    def _release(self, fd: int | None, token: str) -> None:
        if fd is not None:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            return
        holder = self.lock_holder()
        if holder and holder.get("token") == token:  # never remove another process's lock
            self.storage.remove(LOCK)

    def _locked_message(self, holder: dict[str, Any]) -> str:
        return (
            f"workspace {self.root} is locked by {holder.get('purpose', '?')} "
            f"(pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
            f"since {holder.get('since', '?')}): wait for it to finish"
        )


def _cached_digest(entry: Any) -> bool:
    """Whether a file-digest cache entry is whole (an edited cache may hold anything)."""
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("sha256"), str)
        and isinstance(entry.get("size"), int)
        and "stamp" in entry
    )


def _is_stale(holder: dict[str, Any]) -> bool:
    """An advisory lock is stale when its process, on this host, no longer exists (or it is
    unreadable: its writer died between creating and filling it)."""
    if not holder:
        return True
    if holder.get("host") != socket.gethostname():
        return False
    pid = holder.get("pid")
    return not isinstance(pid, int) or not process_alive(pid)


def process_alive(pid: int) -> bool:
    """Whether a process of this host with this id exists (signal 0 only asks, POSIX)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        pass
    return True
