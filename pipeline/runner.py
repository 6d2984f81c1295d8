"""Running a stage's work units without Prefect: serially, on threads, on processes or on a
Dask cluster.

The Prefect flows map the same functions with Prefect's task runners; this is the plain path
(`textmill run --no-prefect`, tests, debugging). Its progress is in documents (or bytes) with
rate and ETA (pipeline/progress.py): a bar on a terminal, else a line on stderr now and then.

A process pool's workers (here and under Prefect's process pool) end with the process that
started them (`exit_with_parent`): one killed outright runs no cleanup, and its workers would
go on writing parts nobody commits, then wait for work forever.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from contextlib import contextmanager, suppress
from typing import Any

from pipeline import progress
from pipeline.config import RunnerConfig

PR_SET_PDEATHSIG = 1  # prctl option, from <linux/prctl.h>
WATCH_EVERY_S = 0.2  # how often a worker looks whether its parent is still there


def make_map(runner: RunnerConfig, label: str = "units") -> Callable[..., list[Any]]:
    """A `map_fn(fn, [args, ...])` that keeps the input order in its results."""

    def map_fn(fn: Callable[..., Any], args: list[tuple[Any, ...]]) -> list[Any]:
        progress.listen()  # before the pool starts: its workers inherit where to report
        with progress.watch_map(label, args) as watch:
            if not runner.parallel or len(args) <= 1:
                results = []
                for i, item in enumerate(args):
                    results.append(fn(*item))
                    watch.done(i)
                return results
            with _executor(runner) as pool:
                futures = {pool.submit(fn, *item): i for i, item in enumerate(args)}
                results = [None] * len(args)
                try:
                    for future in as_completed(futures):
                        results[futures[future]] = future.result()
                        watch.done(futures[future])
                except BaseException:
                    for future in futures:  # units not started yet never start
                        future.cancel()
                    raise
                return results

    return map_fn


@contextmanager
def _executor(runner: RunnerConfig) -> Iterator[Executor]:
    if runner.task_runner == "dask":
        from distributed import Client  # only when asked: it starts slowly

        if runner.dask_scheduler:
            client = Client(runner.dask_scheduler)
        else:  # a local cluster for this run
            client = Client(**runner.local_cluster_options())
        with client:
            yield client.get_executor()
        return
    if runner.task_runner == "threads":
        pool: Executor = ThreadPoolExecutor(max_workers=runner.workers)
    else:  # spawn: workers start clean, as under Prefect's process pool (no forked locks)
        pool = ProcessPoolExecutor(
            runner.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=exit_with_parent,
        )
    with pool:
        yield pool


def exit_with_parent() -> None:
    """A pool worker's initializer: the worker ends as soon as the process that started it
    does, even when that one was killed outright (SIGKILL, the OOM killer)."""
    parent = multiprocessing.parent_process()
    if parent is None:  # not a worker of a multiprocessing pool
        return
    _killed_with_parent()
    threading.Thread(
        target=_exit_when_orphaned, args=(parent,), name="exit-with-parent", daemon=True
    ).start()


def _killed_with_parent() -> None:
    """Linux: the kernel kills this process when the thread that started it ends, at once, even
    in the middle of a long call that holds the GIL. That thread lives as long as the pool here
    (the caller of map) and in Prefect's process pool (its resolver threads start the workers)."""
    if not sys.platform.startswith("linux"):
        return
    with suppress(OSError, AttributeError):  # no prctl: the watch thread still ends the worker
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _exit_when_orphaned(parent: multiprocessing.process.BaseProcess) -> None:
    """Everywhere: polls both signs that the parent is gone. Its end of the sentinel pipe may be
    held open by a process it forked, and Windows never gives an orphan a new parent."""
    while parent.is_alive() and os.getppid() == parent.pid:
        time.sleep(WATCH_EVERY_S)
    os._exit(1)
