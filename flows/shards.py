"""The shards flow: one task per dataset part (encode), then the shuffle and shard writing."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.common import load_run, run_configured, run_map_stage
from pipeline.stages import SHARDS

encode_part = task(SHARDS.process, name="encode-part", retries=1, cache_policy=NO_CACHE)


@flow(name="shards")
def shards_flow(config_path: str, overrides: list[str] | None = None, force: bool = False) -> dict:
    cfg, ws = load_run(config_path, overrides)
    return run_map_stage(SHARDS, encode_part, cfg, ws, force)


def run(config_path: str, overrides: list[str] | None = None, force: bool = False) -> dict:
    return run_configured(shards_flow, config_path, overrides, force)
