"""The extract flow: one task per WARC file (or chunk of a large one), on a process pool."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.common import load_run, run_configured, run_map_stage
from pipeline.stages import EXTRACT

# Our own per-unit cache (part keys) decides what is redone; Prefect's would only duplicate it.
extract_unit = task(EXTRACT.process, name="extract-unit", retries=1, cache_policy=NO_CACHE)


@flow(name="extract")
def extract_flow(config_path: str, overrides: list[str] | None = None, force: bool = False) -> dict:
    cfg, ws = load_run(config_path, overrides)
    return run_map_stage(EXTRACT, extract_unit, cfg, ws, force)


def run(config_path: str, overrides: list[str] | None = None, force: bool = False) -> dict:
    return run_configured(extract_flow, config_path, overrides, force)
