"""What every stage flow shares: loading the run, choosing the task runner, mapping units."""

from __future__ import annotations

from typing import Any

from prefect import Task, unmapped
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from pipeline import stage
from pipeline.config import RunConfig, RunnerConfig, load_config
from pipeline.datasets import Dataset
from pipeline.stage import MapStage
from pipeline.workspace import Workspace


def load_run(config_path: str, overrides: list[str] | None) -> tuple[RunConfig, Workspace]:
    cfg = load_config(config_path, overrides or [])
    return cfg, Workspace(cfg.workspace_root)


def task_runner(runner: RunnerConfig) -> TaskRunner:
    if runner.task_runner == "processes" and runner.workers > 1:
        return ProcessPoolTaskRunner(max_workers=runner.workers)
    workers = 1 if runner.task_runner == "serial" else runner.workers
    return ThreadPoolTaskRunner(max_workers=workers)


def run_map_stage(
    map_stage: MapStage, unit_task: Task, cfg: RunConfig, ws: Workspace, force: bool
) -> dict[str, Any]:
    """Plan, map the unit task over what is left to do, commit; all under the workspace lock."""
    with ws.lock(f"{map_stage.name} flow"):
        build = stage.begin(map_stage, cfg, ws, force)
        if build.up_to_date:
            return stage.summary(build, Dataset(ws, map_stage.name, build.version).manifest)
        futures = unit_task.map(
            [unit for unit, _ in build.todo],
            [key for _, key in build.todo],
            unmapped(build.config),
            unmapped(build.builder),
        )
        return stage.summary(build, stage.finish(build, [f.result() for f in futures]))
