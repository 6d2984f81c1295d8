"""The crawl-and-train chain as plain Python: which steps are stale, and the loop over them.

The steps are the crawl, every stage in pipeline order, then training. A step runs when
`skip_reason` finds no reason to skip it: the crawl whenever a source has something to crawl
(each run adds a generation), a stage when its current version is not what the config asks for
now, training when its run is missing, unfinished or stale. Each decision is taken just before
the step, after the steps before it ran, so a config change redoes that stage and everything
that reads it, and a rerun after a kill does only what is left. The Prefect flow
(flows/crawl_and_train.py) and `textmill run crawl_and_train --no-prefect` both call
`crawl_and_train`, each with its own way to run one step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from model.runs import run_status
from pipeline import stage as stage_api
from pipeline.config import RunConfig
from pipeline.crawl.crawler import crawlable
from pipeline.stages import StageStatus, get_stage, pipeline_order
from pipeline.workspace import Workspace

logger = logging.getLogger(__name__)


def steps(cfg: RunConfig) -> list[str]:
    return ["crawl", *(stage.name for stage in pipeline_order(cfg)), "train"]


def skip_reason(step: str, cfg: RunConfig, ws: Workspace, force: bool = False) -> str | None:
    """Why `step` need not run now, or None when it must. `force` runs every stage and starts
    training over; nothing makes a crawl up to date."""
    if step == "crawl":
        if cfg.crawl.sources or any(crawlable(source) for source in cfg.sources):
            return None
        return "no source to crawl (WARC files and imports only)"
    if force:
        return None
    if step == "train":
        run = run_status(cfg, ws)
        if run["state"] != "up to date":
            return None
        return f"run {cfg.train.run} is up to date ({run['session']})"
    current = stage_api.up_to_date(get_stage(step), cfg, ws)
    return None if current is None else f"up to date ({current.version})"


def train_status(cfg: RunConfig, ws: Workspace, statuses: list[StageStatus]) -> dict[str, Any]:
    """The run's status (model/train.py's run_status, a JSON-ready dict), judged with the
    stages' statuses too: a run trained on the current shards is stale while those shards are
    themselves stale. A run whose session ended at its time budget is up to date, as one that
    trained max_steps steps; one killed before either is unfinished."""
    run = run_status(cfg, ws)
    shards = next(s for s in statuses if s.stage == "shards")
    if run["state"] == "up to date" and shards.state != "up to date":
        return {**run, "state": "stale", "reasons": [f"upstream shards is {shards.state}"]}
    return run


def crawl_and_train(
    cfg: RunConfig,
    ws: Workspace,
    run_step: Callable[[str], Any],
    force: bool = False,
    log: Callable[[str], None] = logger.info,
) -> dict[str, Any]:
    """Run every step that `skip_reason` does not skip, with `run_step(name)`, under the
    workspace lock; then the retention (`retention.keep_versions`, when set). Returns what ran,
    what was skipped (and why), where the outputs are and what the retention removed."""
    ran: list[str] = []
    skipped: dict[str, str] = {}
    with ws.lock("crawl_and_train"):  # re-entrant: each step takes it again
        for step in steps(cfg):
            why = skip_reason(step, cfg, ws, force)
            if why is None:
                log(f"{step}: running")
                run_step(step)
                ran.append(step)
            else:
                log(f"{step}: skipped, {why}")
                skipped[step] = why
        removed = retain(cfg, ws)
    return {"ran": ran, "skipped": skipped, "outputs": outputs(cfg, ws), "removed": removed}


def retain(cfg: RunConfig, ws: Workspace) -> dict[str, list[str]]:
    """What the config's retention removes (nothing when `retention.keep_versions` is unset)."""
    if cfg.retention.keep_versions is None:
        return {}
    return ws.gc(cfg.retention.keep_versions, cfg.extract.generation_window)


def outputs(cfg: RunConfig, ws: Workspace) -> dict[str, str]:
    """Where each stage's current output and the training run are."""
    found = {}
    for stage in pipeline_order(cfg):
        version = ws.current_version(stage.name)
        if version is not None:
            found[stage.name] = ws.storage.url(ws.stage_dir(stage.name, version))
    found["train"] = ws.storage.url(f"runs/{cfg.train.run}")
    return found
