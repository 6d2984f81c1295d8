"""What every stage flow shares: loading the run, choosing the task runner, mapping units."""

from __future__ import annotations

import importlib
import time
from typing import Any

from prefect import Flow, Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from flows.artifacts import publish_stage
from pipeline import progress, stage
from pipeline.config import RunConfig, RunnerConfig, load_config
from pipeline.datasets import Dataset
from pipeline.runner import exit_with_parent
from pipeline.stage import MapStage
from pipeline.workspace import Workspace


def load_run(config_path: str, overrides: list[str] | None) -> tuple[RunConfig, Workspace]:
    cfg = load_config(config_path, overrides or [])
    return cfg, Workspace(cfg.workspace_root)


def run_configured(
    flow_fn: Flow,
    config_path: str,
    overrides: list[str] | None,
    force: bool,
) -> dict[str, Any]:
    """Run a stage flow with the task runner its config asks for."""
    cfg, _ = load_run(config_path, overrides)
    return flow_fn.with_options(task_runner=task_runner(cfg.runner))(config_path, overrides, force)


def task_runner(runner: RunnerConfig) -> TaskRunner:
    progress.listen()  # before the pool or local cluster starts: its workers inherit it
    if runner.task_runner == "dask":
        return dask_task_runner(runner)
    if runner.task_runner == "processes" and runner.workers > 1:
        # its workers end with the flow's process, even one killed outright
        return ProcessPoolTaskRunner(max_workers=runner.workers, initializer=exit_with_parent)
    workers = 1 if runner.task_runner == "serial" else runner.workers
    return ThreadPoolTaskRunner(max_workers=workers)


def dask_task_runner(runner: RunnerConfig) -> TaskRunner:
    """Units on the Dask cluster at `runner.dask_scheduler`, or on a local cluster of
    `runner.workers` processes (one thread each) that lives as long as the flow run."""
    from prefect_dask import DaskTaskRunner  # imports dask.distributed: only when asked

    if runner.dask_scheduler:
        return DaskTaskRunner(address=runner.dask_scheduler)
    return DaskTaskRunner(cluster_kwargs=runner.local_cluster_options())


@task(name="start-worker", cache_policy=NO_CACHE)
def start_worker(module: str) -> None:
    """Import the stage's code in a worker process; the pause keeps this worker busy so that
    the next start-worker task goes to another process."""
    importlib.import_module(module)
    time.sleep(0.5)


def start_workers(runner: RunnerConfig, module: str) -> float:
    """Start every worker of a process pool (each imports Prefect and the stage's libraries,
    several seconds on a small machine) before the units are mapped. Returns the seconds taken,
    which the flow reports apart from the stage's work."""
    if runner.task_runner != "processes" or runner.workers < 2:
        return 0.0
    started = time.perf_counter()
    for future in start_worker.map([module] * runner.workers):
        future.result()
    return time.perf_counter() - started


def run_map_stage(
    map_stage: MapStage, unit_task: Task | None, cfg: RunConfig, ws: Workspace, force: bool
) -> dict[str, Any]:
    """Plan, map the unit task over what is left to do, reduce and commit; all under the
    workspace lock. The reduce step runs in the flow's own process. Progress (in documents or
    bytes, pipeline/progress.py) goes to the flow run's log, or to a bar on a terminal."""
    with ws.lock(f"{map_stage.name} flow"), progress.showing(get_run_logger().info):
        build = stage.begin(map_stage, cfg, ws, force)
        if build.up_to_date:
            return stage.build_summary(build, Dataset(ws, map_stage.name, build.version).manifest)
        workers_start_s, results = 0.0, []
        args = [(unit, key, build.config, build.builder) for unit, key in build.todo]
        if args and not cfg.runner.parallel:
            # In the flow's own (main) thread, where the per-page time limit (SIGALRM) works
            with progress.watch_map(map_stage.name, args) as watch:
                for i, arg in enumerate(args):
                    results.append(unit_task(*arg))
                    watch.done(i)
        elif args:
            if cfg.runner.task_runner in ("threads", "dask"):  # Dask workers run units on threads
                get_run_logger().warning(
                    f"on {cfg.runner.task_runner}, time limits inside units (extract.timeout_s) "
                    "cannot interrupt"
                )
            progress.listen()  # a pool's workers start below, and inherit it
            workers_start_s = start_workers(cfg.runner, map_stage.process.__module__)
            results = _map_units(map_stage.name, unit_task, args)
        manifest = stage.finish(build, results)
        publish_stage(ws, map_stage, manifest)
        result = stage.build_summary(build, manifest)
        return {**result, "workers_start_s": round(workers_start_s, 3)}


def _map_units(label: str, unit_task: Task, args: list[tuple[Any, ...]]) -> list[Any]:
    """The unit task mapped over args, with progress: from the workers' reports where they
    reach this machine, else (remote Dask workers) as units finish."""
    with progress.watch_map(label, args) as watch:
        futures = unit_task.map(*(list(column) for column in zip(*args, strict=True)))
        for i, future in enumerate(futures):
            future.add_done_callback(lambda _, i=i: watch.done(i))
        wait(futures)  # every unit ends before an error releases the lock
        return [future.result() for future in futures]
