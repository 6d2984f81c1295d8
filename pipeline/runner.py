"""Running a stage's work units without Prefect: serially, on threads, on processes or on a
Dask cluster.

The Prefect flows map the same functions with Prefect's task runners; this is the plain path
(`textmill run --no-prefect`, tests, debugging). Its progress is in documents (or bytes) with
rate and ETA (pipeline/progress.py): a bar on a terminal, else a line on stderr now and then.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Any

from pipeline import progress
from pipeline.config import RunnerConfig


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
        pool = ProcessPoolExecutor(runner.workers, mp_context=multiprocessing.get_context("spawn"))
    with pool:
        yield pool
