"""Running a stage's work units without Prefect: serially, on threads or on processes.

The Prefect flows map the same functions with Prefect's task runners; this is the plain path
(`textmill run --no-prefect`, tests, debugging), with a progress bar on a terminal.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipeline.config import RunnerConfig


def make_map(runner: RunnerConfig, label: str = "units") -> Callable[..., list[Any]]:
    """A `map_fn(fn, [args, ...])` that keeps the input order in its results."""

    def map_fn(fn: Callable[..., Any], args: list[tuple[Any, ...]]) -> list[Any]:
        with _progress() as progress:
            bar = progress.add_task(label, total=len(args))
            if runner.task_runner == "serial" or runner.workers == 1 or len(args) <= 1:
                results = []
                for item in args:
                    results.append(fn(*item))
                    progress.advance(bar)
                return results
            with _executor(runner) as pool:
                futures = {pool.submit(fn, *item): i for i, item in enumerate(args)}
                results = [None] * len(args)
                try:
                    for future in as_completed(futures):
                        results[futures[future]] = future.result()
                        progress.advance(bar)
                except BaseException:
                    pool.shutdown(cancel_futures=True)  # units not started yet never start
                    raise
                return results

    return map_fn


def _executor(runner: RunnerConfig) -> Executor:
    if runner.task_runner == "threads":
        return ThreadPoolExecutor(max_workers=runner.workers)
    # spawn: workers start clean, as under Prefect's process pool (no forked locks or threads)
    return ProcessPoolExecutor(runner.workers, mp_context=multiprocessing.get_context("spawn"))


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not sys.stderr.isatty(),
        transient=True,
    )
