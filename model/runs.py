"""A training run's state, as `textmill status` and crawl-and-train read it: a few small files,
no torch, nothing downloaded but them (on an s3:// workspace too).

    <root>/runs/<run>/run.json                    what the run trains on (shards) and with what
    <root>/runs/<run>/checkpoint/progress.json    how far its session got (written in every
                                                  checkpoint, before state.pt completes it)
    <root>/runs/<run>/metrics.jsonl               its evaluations

A session is what one set of training tokens gets: `max_steps` steps, or `time_budget_s` seconds
of training when that comes first (model/train.py's loop stops by `session_over` too).
"""

from __future__ import annotations

import json
from typing import Any

from pipeline.config import RunConfig, TrainConfig
from pipeline.datasets import Dataset
from pipeline.workspace import Workspace

CHECKPOINTS = ("checkpoint", "checkpoint.old")  # the second: a kill caught the swap
PROGRESS_FILE = "progress.json"
PROGRESS_KEYS = ("step", "session_start", "session_s", "stopped")
# Settings that change what a run learns from or what it is; the rest (budgets, intervals,
# samples) can change between resumed sessions of one run.
MODEL_AND_DATA_KEYS = (
    "context",
    "n_layer",
    "n_head",
    "n_embd",
    "dropout",
    "batch_size",
    "grad_accum",
    "seed",
    "optimizer",
)


def session_over(step: int, last_step: int, session_s: float, tc: TrainConfig) -> str | None:
    """Why the session is over, "max_steps" or "time_budget"; None while it goes on."""
    if step >= last_step:
        return "max_steps"
    if tc.time_budget_s is not None and session_s >= tc.time_budget_s:
        return "time_budget"
    return None


def run_status(cfg: RunConfig, ws: Workspace) -> dict[str, Any]:
    """The configured run: missing, unfinished (its session has trained neither max_steps steps
    nor time_budget_s seconds yet: it was killed, or is training now), stale (trained on other
    shards, or with other settings) or up to date. Judged by `session_over`, as the training
    loop judges it, so an up-to-date run is one that `train` would not train further.

    A JSON-ready dict: run, state, reasons (why it is not up to date), and once trained: step,
    session (a line on its current session, e.g. "finished: time budget of 60 s reached at step
    320"), session_s (its seconds of training), stopped (what ended it: "max_steps",
    "time_budget", or None while it has not ended) and the last evaluation's *_bits_per_byte."""
    folder = f"runs/{cfg.train.run}"
    if not ws.storage.exists(f"{folder}/run.json"):
        return {"run": cfg.train.run, "state": "missing", "reasons": ["never trained"]}
    recorded = ws.storage.read_json(f"{folder}/run.json")
    saved = _saved_progress(ws, folder)
    step, session_s = int(saved.get("step", 0)), float(saved.get("session_s", 0.0))
    last_step = int(saved.get("session_start", 0)) + cfg.train.max_steps
    over = session_over(step, last_step, session_s, cfg.train)
    session = _session_line(step, last_step, session_s, cfg.train, over)
    reasons = [*_shards_change(recorded, ws), *_settings_change(recorded, cfg.train)]
    state = "stale" if reasons else "up to date"
    if not reasons and over is None:
        state, reasons = "unfinished", [session]
    return {
        "run": cfg.train.run,
        "state": state,
        "reasons": reasons,
        "step": step,
        "session": session,
        "session_s": session_s,
        "stopped": over,
        **_last_evaluation(ws, folder),
    }


def _saved_progress(ws: Workspace, folder: str) -> dict[str, Any]:
    """How far the last complete checkpoint got; {} before the first one."""
    for name in CHECKPOINTS:
        checkpoint = f"{folder}/{name}"
        if not ws.storage.exists(f"{checkpoint}/state.pt"):
            continue
        if ws.storage.exists(f"{checkpoint}/{PROGRESS_FILE}"):
            return ws.storage.read_json(f"{checkpoint}/{PROGRESS_FILE}")
        # A checkpoint written before progress.json existed: only its state.pt says
        import torch  # only for such a checkpoint: status otherwise never loads torch

        with ws.storage.fs.open(ws.storage.path(f"{checkpoint}/state.pt"), "rb") as fh:
            state = torch.load(fh, weights_only=True)
        return {key: state.get(key) for key in PROGRESS_KEYS if key in state}
    return {}


def _shards_change(recorded: dict[str, Any], ws: Workspace) -> list[str]:
    """[] when the current shards hold what the run trained on: by content, so a forced rebuild
    with identical tokens changes nothing (runs from before that recorded only the folder)."""
    current = ws.current_version("shards")
    if current is None or "shards_content" not in recorded:
        same = recorded["shards_version"] == current
    else:
        same = Dataset(ws, "shards", current).manifest.content == recorded["shards_content"]
    return [] if same else [f"shards changed: {recorded['shards_version']} -> {current}"]


def _settings_change(recorded: dict[str, Any], tc: TrainConfig) -> list[str]:
    settings = tc.model_dump(mode="json")
    return [
        f"train.{key} changed: {recorded['train'].get(key)!r} -> {settings[key]!r}"
        for key in MODEL_AND_DATA_KEYS
        if recorded["train"].get(key) != settings[key]
    ]


def _last_evaluation(ws: Workspace, folder: str) -> dict[str, float]:
    path = f"{folder}/metrics.jsonl"
    last: dict[str, float] = {}
    for line in ws.storage.read_text(path).splitlines() if ws.storage.exists(path) else []:
        row = json.loads(line)
        last = {k: v for k, v in row.items() if k.endswith("bits_per_byte")} or last
    return last


def _session_line(
    step: int, last_step: int, session_s: float, tc: TrainConfig, over: str | None
) -> str:
    """How far the session is, in the words `textmill status` shows."""
    if over == "max_steps":
        return f"finished: max_steps ({tc.max_steps}) reached at step {step}"
    if over == "time_budget":
        return f"finished: time budget of {tc.time_budget_s:g} s reached at step {step}"
    if tc.time_budget_s is None:
        return f"at step {step} of {last_step}"
    return (
        f"at step {step} of {last_step}, after {session_s:.0f} s of its time budget of "
        f"{tc.time_budget_s:g} s"
    )
