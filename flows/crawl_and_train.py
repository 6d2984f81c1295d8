"""The crawl-and-train flow: a crawl generation, then every stale stage, then training.

What a scheduled run does (DESIGN.md, "Generations"): the crawl adds a generation to every
crawlable source; each later stage runs as a subflow only when its manifest says it is stale
(so a rerun after a crash or a config change does only what is needed); training starts over
or continues from its last checkpoint as `train.init` says, and is skipped when the run is up
to date. The result says what ran, what was skipped and where the outputs are.
"""

from __future__ import annotations

import importlib
from typing import Any

from prefect import flow, get_run_logger

from flows.artifacts import publish_crawl_and_train
from flows.common import load_run
from model.train import run_status
from pipeline import stage as stage_api
from pipeline.crawl.crawler import crawlable
from pipeline.stages import pipeline_order
from pipeline.workspace import Workspace


@flow(name="crawl_and_train")
def crawl_and_train_flow(
    config_path: str, overrides: list[str] | None = None, force: bool = False
) -> dict[str, Any]:
    """`force` rebuilds every stage and starts training over; the crawl never is up to date."""
    cfg, ws = load_run(config_path, overrides)
    log = get_run_logger()
    ran: dict[str, Any] = {}
    skipped: dict[str, str] = {}

    def run_stage(name: str) -> Any:
        log.info(f"{name}: running")
        ran[name] = importlib.import_module(f"flows.{name}").run(config_path, overrides, force)
        return ran[name]

    def skip(name: str, why: str) -> None:
        log.info(f"{name}: skipped, {why}")
        skipped[name] = why

    with ws.lock("crawl_and_train flow"):  # re-entrant: each subflow takes it again
        if cfg.crawl.sources or any(crawlable(source) for source in cfg.sources):
            run_stage("crawl")
        else:
            skip("crawl", "no source to crawl (WARC files and imports only)")
        for stage in pipeline_order(cfg):
            current = None if force else stage_api.up_to_date(stage, cfg, ws)
            if current is None:
                run_stage(stage.name)
            else:
                skip(stage.name, f"up to date ({current.version})")
        train_state = run_status(cfg, ws)
        if force or train_state["state"] != "up to date":
            run_stage("train")
        else:
            skip("train", f"run {cfg.train.run} is up to date at step {train_state['step']}")
        result = {"ran": list(ran), "skipped": skipped, "outputs": outputs(cfg, ws)}
        publish_crawl_and_train(ws, result)
        return result


def outputs(cfg: Any, ws: Workspace) -> dict[str, str]:
    """Where each stage's current output and the training run are."""
    found = {}
    for stage in pipeline_order(cfg):
        version = ws.current_version(stage.name)
        if version is not None:
            found[stage.name] = ws.storage.url(ws.stage_dir(stage.name, version))
    found["train"] = ws.storage.url(f"runs/{cfg.train.run}")
    return found


def run(config_path: str, overrides: list[str] | None = None, force: bool = False) -> dict:
    return crawl_and_train_flow(config_path, overrides, force)
