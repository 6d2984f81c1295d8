"""The train flow: one task that trains (or resumes) the configured run in this process."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.artifacts import TrainProgress
from flows.common import load_run
from model.train import train

train_task = task(train, name="train", cache_policy=NO_CACHE)


@flow(name="train")
def train_flow(config_path: str, overrides: list[str] | None = None, force: bool = False) -> dict:
    cfg, ws = load_run(config_path, overrides)
    with ws.lock("train flow"):
        progress = TrainProgress(cfg, ws, log=print)
        result = train_task(cfg, ws, log=progress, restart=force)
        progress.finish(result)
        return result


def run(config_path: str, overrides: list[str] | None = None, force: bool = False) -> dict:
    return train_flow(config_path, overrides, force)
