"""The clean flow: one task per part of the dataset it reads (Unicode, boilerplate lines, PII)."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.common import load_run, run_configured, run_map_stage
from pipeline.stages import CLEAN

clean_part = task(CLEAN.process, name="clean-part", retries=1, cache_policy=NO_CACHE)


@flow(name="clean")
def clean_flow(config_path: str, overrides: list[str] | None = None, force: bool = False) -> dict:
    cfg, ws = load_run(config_path, overrides)
    return run_map_stage(CLEAN, clean_part, cfg, ws, force)


def run(config_path: str, overrides: list[str] | None = None, force: bool = False) -> dict:
    return run_configured(clean_flow, config_path, overrides, force)
