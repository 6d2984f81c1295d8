"""The dedup flow: one task per part of the dataset it reads (signatures), then clustering and
the write-out in the flow's own process."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.common import load_run, run_configured, run_map_stage
from pipeline.stages import DEDUP

signature_part = task(DEDUP.process, name="signature-part", retries=1, cache_policy=NO_CACHE)


@flow(name="dedup")
def dedup_flow(config_path: str, overrides: list[str] | None = None, force: bool = False) -> dict:
    cfg, ws = load_run(config_path, overrides)
    return run_map_stage(DEDUP, signature_part, cfg, ws, force)


def run(config_path: str, overrides: list[str] | None = None, force: bool = False) -> dict:
    return run_configured(dedup_flow, config_path, overrides, force)
