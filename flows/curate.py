"""The curate flow: clean, dedup and filter as subflows, in the order their inputs give."""

from __future__ import annotations

from prefect import flow

from flows.clean import clean_flow
from flows.common import load_run, task_runner
from flows.dedup import dedup_flow
from flows.filter import filter_flow
from pipeline.stages import curate_order

FLOWS = {"clean": clean_flow, "dedup": dedup_flow, "filter": filter_flow}


@flow(name="curate")
def curate_flow(config_path: str, overrides: list[str] | None = None, force: bool = False) -> list:
    cfg, ws = load_run(config_path, overrides)
    with ws.lock("curate flow"):  # re-entrant: each subflow takes it again
        return [
            FLOWS[name].with_options(task_runner=task_runner(cfg.runner))(
                config_path, overrides, force
            )
            for name in curate_order(cfg)
        ]


def run(config_path: str, overrides: list[str] | None = None, force: bool = False) -> list:
    return curate_flow(config_path, overrides, force)
