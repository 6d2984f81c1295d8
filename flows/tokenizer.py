"""The tokenizer flow: train byte-level BPE on the dataset's train split (one step, no map)."""

from __future__ import annotations

from prefect import flow

from flows.common import load_run, run_configured, run_map_stage
from pipeline.stages import TOKENIZER


@flow(name="tokenizer")
def tokenizer_flow(
    config_path: str, overrides: list[str] | None = None, force: bool = False
) -> dict:
    cfg, ws = load_run(config_path, overrides)
    return run_map_stage(TOKENIZER, None, cfg, ws, force)


def run(config_path: str, overrides: list[str] | None = None, force: bool = False) -> dict:
    return run_configured(tokenizer_flow, config_path, overrides, force)
