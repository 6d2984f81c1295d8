"""The crawl-and-train flow: a crawl generation, then every stale stage, then training.

What a scheduled run does (DESIGN.md, "Generations"): the crawl adds a generation to every
crawlable source; each later stage runs as a subflow only when its manifest says it is stale
(so a rerun after a crash or a config change does only what is needed); training starts over
or continues from its last checkpoint as `train.init` says, and is skipped when the run is up
to date; then the retention removes old versions when the config sets it. Which steps run is
decided in pipeline/crawl_and_train.py, as for `textmill run crawl_and_train --no-prefect`.
The result says what ran, what was skipped, where the outputs are and what was removed.
"""

from __future__ import annotations

import importlib
from typing import Any

from prefect import flow, get_run_logger

from flows.artifacts import publish_crawl_and_train
from flows.common import load_run
from pipeline import crawl_and_train as chain


@flow(name="crawl_and_train")
def crawl_and_train_flow(
    config_path: str, overrides: list[str] | None = None, force: bool = False
) -> dict[str, Any]:
    """`force` rebuilds every stage and starts training over; the crawl never is up to date."""
    cfg, ws = load_run(config_path, overrides)

    def run_step(name: str) -> Any:  # each step is its own flow, run here as a subflow
        return importlib.import_module(f"flows.{name}").run(config_path, overrides, force)

    result = chain.crawl_and_train(cfg, ws, run_step, force, log=get_run_logger().info)
    publish_crawl_and_train(ws, result)
    return result


def run(config_path: str, overrides: list[str] | None = None, force: bool = False) -> dict:
    return crawl_and_train_flow(config_path, overrides, force)
