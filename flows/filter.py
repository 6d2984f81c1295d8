"""The filter flow: one task per part of the dataset it reads (language ID, heuristics, ...)."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.common import load_run, run_configured, run_map_stage
from pipeline.stages import FILTER

filter_part = task(FILTER.process, name="filter-part", retries=1, cache_policy=NO_CACHE)


@flow(name="filter")
def filter_flow(config_path: str, overrides: list[str] | None = None, force: bool = False) -> dict:
    cfg, ws = load_run(config_path, overrides)
    return run_map_stage(FILTER, filter_part, cfg, ws, force)


def run(config_path: str, overrides: list[str] | None = None, force: bool = False) -> dict:
    return run_configured(filter_flow, config_path, overrides, force)
