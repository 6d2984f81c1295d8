"""Progress of long steps in documents (or bytes), with rate and ETA, across worker processes.

A map stage's units run in worker processes (a spawned process pool, a local Dask cluster) or in
this one. A unit says how far it is through a small file of its own, `$TEXTMILL_PROGRESS/<key>`
(`unit(key)`: rewritten at most every WRITE_EVERY_S, by an atomic replace); when the variable is
unset nobody listens (a remote Dask worker, a test calling a stage function) and the unit writes
nothing. The parent names the folder before its pool starts (`listen`), knows what each unit
weighs before it runs (`unit_size`: a part's documents, a WARC range's bytes), and `watch_map`
polls the files and adds them up; a unit whose file never comes counts whole once it finishes.

In the parent, a `Meter` shows one step: a bar on a terminal (stderr), else a line every
LOG_EVERY_S ("extract: 1,234 of 5,000 documents, 120 docs/s, ETA 31 s") to the log `showing`
names (a flow's run logger), by default stderr. Steps that run in the parent (dedup's grouping
and write-out, the tokenizer's reading) count what they loop over with `iterate`.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, TypeVar

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

ENV = "TEXTMILL_PROGRESS"
WRITE_EVERY_S = 0.2  # a worker rewrites its file at most this often
POLL_EVERY_S = 0.25  # the parent reads the files this often
LOG_EVERY_S = 15.0  # off a terminal: one line per step this often

T = TypeVar("T")

# ----- in the worker: how far one unit is -----


class UnitProgress:
    """How far one unit is: `done` (in its stage's measure), the documents it has seen, and its
    `total` when the parent cannot know it in advance."""

    __slots__ = ("docs", "done", "next_write", "path", "total")

    def __init__(self, path: str | None, total: int | None = None):
        self.path, self.total = path, total
        self.done = self.docs = 0
        self.next_write = 0.0

    def update(self, done: int, docs: int | None = None) -> None:
        """Cheap enough for a per-document loop: two stores and, when listened to, a clock read."""
        self.done = done
        self.docs = done if docs is None else docs
        if self.path is not None and time.monotonic() >= self.next_write:
            self._write(finished=False)

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n)

    def finish(self, docs: int | None = None) -> None:
        """The unit is done, with `docs` documents if not as last updated (a unit that fails
        never calls this: its retry starts again)."""
        self.docs = self.docs if docs is None else docs
        if self.path is not None:
            self._write(finished=True)

    def _write(self, finished: bool) -> None:
        self.next_write = time.monotonic() + WRITE_EVERY_S
        total = -1 if self.total is None else self.total
        scratch = f"{self.path}.{os.getpid()}.tmp"
        try:
            with open(scratch, "w") as fh:
                fh.write(f"{self.done} {total} {self.docs} {int(finished)}")
            os.replace(scratch, self.path)  # the parent never reads half a file
        except OSError:  # the parent (and its folder) is gone: progress is not worth an error
            self.path = None


def unit(key: str, total: int | None = None) -> UnitProgress:
    """The progress of the unit whose part key is `key`, reported where the parent listens."""
    folder = os.environ.get(ENV)
    return UnitProgress(os.path.join(folder, key) if folder else None, total)


# ----- in the parent: one step on the terminal or in the log -----

# Where lines go off a terminal. A plain global, not a context variable: steps may run on
# threads the flow did not start (the tokenizer trainer pulls its documents on its own threads).
_log: Callable[[str], None] | None = None


@contextmanager
def showing(log: Callable[[str], None]) -> Iterator[None]:
    """Off a terminal, steps started in this block write their lines to `log`."""
    global _log
    outer, _log = _log, log
    try:
        yield
    finally:
        _log = outer


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class _Bars:
    """One rich display for every meter open at once (rich allows one live display)."""

    def __init__(self) -> None:
        self.progress: Progress | None = None
        self.users = 0
        self.lock = threading.Lock()

    def open(self) -> Progress:
        with self.lock:
            if self.progress is None:
                self.progress = Progress(
                    TextColumn("[bold]{task.description}"),
                    BarColumn(),
                    TextColumn("{task.fields[status]}"),
                    TimeElapsedColumn(),
                    transient=True,
                )
                self.progress.start()
            self.users += 1
            return self.progress

    def close(self) -> None:
        with self.lock:
            self.users -= 1
            if self.users == 0 and self.progress is not None:
                self.progress.stop()
                self.progress = None


_bars = _Bars()


class Meter:
    """One step shown in the parent: a bar on a terminal, else a line every LOG_EVERY_S to the
    log, and a last line when it ends (if it wrote one before: short steps stay quiet)."""

    def __init__(self, label: str, total: int | None, noun: str = "documents"):
        self.label, self.total, self.noun = label, total, noun
        self.done, self.docs = 0, None
        self.started = time.monotonic()
        # (time, done, docs) when work was first seen: rates count from there, so that a
        # pool's start-up (seconds of imports) does not make the first ETAs hours long
        self.moved: tuple[float, int, int] | None = None
        self.next_line = self.started + LOG_EVERY_S
        self.logged = False
        self.log = _log or _stderr
        self.lock = threading.Lock()
        self.bars = _bars.open() if sys.stderr.isatty() else None
        if self.bars is not None:
            self.task = self.bars.add_task(label, total=total, status=self.status())

    def update(self, done: int, total: int | None = None, docs: int | None = None) -> None:
        with self.lock:
            now = time.monotonic()
            self.done, self.docs = done, docs
            self.total = self.total if total is None else total
            if self.moved is None and done > 0:
                self.moved = (now, done, docs or 0)
            if self.bars is not None:
                self.bars.update(self.task, completed=done, total=self.total, status=self.status())
            elif now >= self.next_line:
                self.next_line = now + LOG_EVERY_S
                self.log(f"{self.label}: {self.status()}")
                self.logged = True

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n, docs=self.docs)

    def close(self, complete: bool = True) -> None:
        """`complete`: the step ended without an error, so all of it is done."""
        with self.lock:
            if complete and self.total is not None:
                self.done = max(self.done, self.total)
            if self.bars is not None:
                self.bars.remove_task(self.task)
                _bars.close()
                self.bars = None
            elif self.logged and complete:  # "extract: 5,000 documents in 41 s, 120 docs/s"
                seconds = time.monotonic() - self.started
                per_s = (self.done / seconds, (self.docs or 0) / seconds) if seconds else (0, 0)
                amount = f"{self._amount(self.done)} {self._unit()}"
                self.log(f"{self.label}: {amount} in {_duration(seconds)}, {self._rates(*per_s)}")

    def status(self) -> str:
        """'1,234 of 5,000 documents, 120 docs/s, ETA 31 s' (no total: no ETA)."""
        per_s, docs_per_s = self._per_s()
        rates = self._rates(per_s, docs_per_s)
        if self.total is None:
            return f"{self._amount(self.done)} {self._unit()}, {rates}"
        amounts = f"{self._amount(self.done)} of {self._amount(self.total)} {self._unit()}"
        left = max(self.total - self.done, 0)
        eta = _duration(left / per_s) if per_s > 0 else ("0 s" if left == 0 else "?")
        return f"{amounts}, {rates}, ETA {eta}"

    def _per_s(self) -> tuple[float, float]:
        """(done, documents) per second since work was first seen."""
        if self.moved is None:
            return 0.0, 0.0
        since, done, docs = self.moved
        seconds = time.monotonic() - since
        if seconds <= 0:
            return 0.0, 0.0
        return (self.done - done) / seconds, ((self.docs or 0) - docs) / seconds

    def _unit(self) -> str:
        return _byte_unit(self.total or self.done)[1] if self.noun == "bytes" else self.noun

    def _amount(self, n: int) -> str:
        if self.noun != "bytes":
            return f"{n:,}"
        return f"{n / _byte_unit(self.total or self.done)[0]:,.1f}"  # "12.3 of 40.0 MB"

    def _rates(self, per_s: float, docs_per_s: float) -> str:
        """'120 docs/s'; for bytes '1.2 MB/s, 1,234 documents, 340 docs/s' (documents when
        the workers say how many they have seen)."""
        if self.noun != "bytes":
            noun = "docs" if self.noun == "documents" else self.noun
            return f"{_number(per_s)} {noun}/s"
        size, unit = _byte_unit(per_s)
        text = f"{per_s / size:,.1f} {unit}/s"
        if self.docs is not None:
            text += f", {self.docs:,} documents, {_number(docs_per_s)} docs/s"
        return text


def _byte_unit(n: float) -> tuple[float, str]:
    for size, unit in ((1e9, "GB"), (1e6, "MB")):
        if n >= size:
            return size, unit
    return 1e3, "kB"


def _number(x: float) -> str:
    return f"{x:,.0f}" if x >= 10 else f"{x:.1f}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def iterate(
    items: Iterable[T],
    label: str,
    total: int | None,
    noun: str = "documents",
    weight: Callable[[T], int] | None = None,
) -> Iterator[T]:
    """`items`, each counted (by `weight`, else 1) once the loop over them has dealt with it."""
    meter = Meter(label, total, noun)
    complete = False
    try:
        for item in items:
            yield item
            meter.advance(1 if weight is None else weight(item))
        complete = True
    finally:
        meter.close(complete)


# ----- in the parent: the units of a map, from their files -----

_folder: tuple[int, str] | None = None  # (pid, folder): a forked child makes its own


def listen() -> str:
    """The folder this process's workers report to, made on the first call and named in the
    environment, which worker processes inherit: call it before a pool or cluster starts."""
    global _folder
    if _folder is None or _folder[0] != os.getpid():
        path = tempfile.mkdtemp(prefix="textmill-progress-")
        atexit.register(shutil.rmtree, path, True)
        _folder = (os.getpid(), path)
    os.environ[ENV] = _folder[1]  # again each time: a test may have restored the environment
    return _folder[1]


def unit_size(unit: Any) -> tuple[int | None, str]:
    """What a unit weighs before it runs, and in what: the documents of a dataset part (`rows`),
    the bytes of a range of a file (`file.size`, `start`, `end`); (None, "documents") when
    unknown (its worker says when it starts)."""
    rows = getattr(unit, "rows", None)
    if isinstance(rows, int):
        return rows, "documents"
    file = getattr(unit, "file", None)
    if hasattr(file, "size") and hasattr(unit, "start"):
        end = file.size if unit.end is None else unit.end
        return end - unit.start, "bytes"
    return None, "documents"


@dataclass
class _Report:
    done: int
    total: int | None
    docs: int
    finished: bool


class UnitWatch:
    """The progress of a map's units, from their workers' files and from their completions
    (`done(i)`), polled on a thread of its own while the block runs."""

    def __init__(self, label: str, keys: list[str | None], sizes: list[int | None], noun: str):
        self.keys, self.sizes = keys, sizes
        self.finished = [False] * len(keys)  # set from other threads: a list, not a set
        self.reports: dict[int, _Report] = {}
        self.folder = os.environ.get(ENV)
        self.meter = Meter(label, self._tally()[1], noun)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="textmill-progress", daemon=True)

    def done(self, i: int) -> None:
        self.finished[i] = True

    def __enter__(self) -> UnitWatch:
        self.thread.start()
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        self.stopped.set()
        self.thread.join()
        self.poll()
        self.meter.close(complete=kind is None)
        for key in self.keys:  # what a finished unit wrote is no longer needed
            if key is not None and self.folder:
                _remove(os.path.join(self.folder, key))

    def _run(self) -> None:
        while not self.stopped.wait(POLL_EVERY_S):
            self.poll()

    def poll(self) -> None:
        self._read_files()
        done, total, docs = self._tally()
        self.meter.update(done, total, docs)

    def _read_files(self) -> None:
        """The files of units not known finished from their own last word (a unit that ends
        also says how many documents it saw)."""
        if not self.folder:
            return
        try:
            present = set(os.listdir(self.folder))
        except OSError:
            return
        for i, key in enumerate(self.keys):
            if key in present and not (i in self.reports and self.reports[i].finished):
                report = _read_report(os.path.join(self.folder, key))
                if report is not None:
                    self.reports[i] = report

    def _tally(self) -> tuple[int, int | None, int | None]:
        """(done, total, documents seen): a unit of unknown size weighs what its worker says,
        or, before it says, the mean of the others."""
        sizes = [
            size if size is not None else getattr(self.reports.get(i), "total", None)
            for i, size in enumerate(self.sizes)
        ]
        known = [s for s in sizes if s is not None]
        guess = round(sum(known) / len(known)) if known else None
        done = docs = 0
        for i, size in enumerate(sizes):
            report = self.reports.get(i)
            if self.finished[i] or (report and report.finished):
                done += size if size is not None else guess or 0
            elif report:
                done += report.done if size is None else min(report.done, size)
            docs += report.docs if report else 0
        total = None if guess is None else sum(s if s is not None else guess for s in sizes)
        return done, total, docs if self.reports else None


def _read_report(path: str) -> _Report | None:
    try:
        with open(path) as fh:
            done, total, docs, finished = (int(x) for x in fh.read().split())
    except (OSError, ValueError):  # gone, or not written yet
        return None
    return _Report(done, None if total < 0 else total, docs, bool(finished))


def _remove(path: str) -> None:
    with suppress(OSError):
        os.remove(path)


def watch_map(label: str, args: list[tuple[Any, ...]]) -> UnitWatch:
    """A watch over `map_fn(fn, args)`: a stage's (unit, key, config, builder) tuples weigh what
    their units weigh (unit_size); other args count as one unit each."""
    staged = all(len(item) >= 2 and isinstance(item[1], str) for item in args)
    if not staged:
        return UnitWatch(label, [None] * len(args), [1] * len(args), "units")
    measured = [unit_size(item[0]) for item in args]
    noun = measured[0][1] if measured else "documents"
    return UnitWatch(label, [item[1] for item in args], [size for size, _ in measured], noun)
