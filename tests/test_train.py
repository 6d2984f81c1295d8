"""The model and the training loop: exact resume, DDP equivalence, overfitting, NaN stop."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from model.data import WindowLoader
from model.gpt import GPT, GPTConfig
from model.muon import Muon
from model.runs import run_status
from model.train import NonFiniteLoss, lr_at, sample, train
from pipeline.config import TrainConfig, load_config
from pipeline.crash import CRASH_ENV, CRASH_EXIT_CODE
from pipeline.crawl_and_train import skip_reason
from pipeline.runner import make_map
from pipeline.stage import run
from pipeline.stages import EXTRACT, SHARDS, TOKENIZER
from pipeline.workspace import Workspace
from tests.helpers import article, write_warc

TINY = {
    "context": 32,
    "n_layer": 2,
    "n_head": 2,
    "n_embd": 32,
    "batch_size": 4,
    "warmup_steps": 2,
    "eval_interval": 5,
    "eval_windows": 4,
    "sample_tokens": 8,
}


@pytest.fixture(scope="module")
def shards_workspace(tmp_path_factory) -> Path:
    """A workspace with extract, tokenizer and shards built from ~40 small pages."""
    folder = tmp_path_factory.mktemp("train")
    pages = [
        {"url": f"https://t.example/{i}", "body": article(f"Page {i}", f"Number {i} here.")}
        for i in range(40)
    ]
    write_warc(folder / "in" / "pages.warc.gz", pages)
    config = _config(folder, {})
    cfg = load_config(config)
    ws = Workspace(cfg.workspace_root)
    for stage in (EXTRACT, TOKENIZER, SHARDS):
        run(stage, cfg, ws, make_map(cfg.runner))
    return folder


def _config(folder: Path, train: dict, name: str = "run.yaml") -> Path:
    path = folder / name
    path.write_text(
        yaml.safe_dump(
            {
                "workspace": str(folder / "workspace"),
                "sources": [{"name": "pages", "warc": [str(folder / "in" / "pages.warc.gz")]}],
                "runner": {"task_runner": "serial"},
                "tokenizer": {"dataset": "extract", "vocab_size": 300, "val_fraction": 0.1},
                "shards": {"row_tokens": 64},
                "train": {**TINY, **train},
            }
        )
    )
    return path


def _train(folder: Path, **train_cfg) -> dict:
    cfg = load_config(_config(folder, train_cfg, f"run-{train_cfg.get('run', 'main')}.yaml"))
    return train(cfg, Workspace(cfg.workspace_root), log=lambda message: None)


def _weights(folder: Path, run_name: str) -> dict[str, torch.Tensor]:
    return load_file(
        str(folder / "workspace" / "runs" / run_name / "checkpoint" / "model.safetensors")
    )


def _losses(folder: Path, run_name: str) -> list[float]:
    path = folder / "workspace" / "runs" / run_name / "metrics.jsonl"
    return [json.loads(line)["loss"] for line in path.read_text().splitlines()]


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_resume_after_a_kill_is_exact(shards_workspace, optimizer):
    folder, straight, killed = shards_workspace, f"straight-{optimizer}", f"killed-{optimizer}"
    settings = {"max_steps": 20, "checkpoint_interval": 10, "optimizer": optimizer}
    _train(folder, run=straight, **settings)

    config = _config(folder, {**TINY, "run": killed, **settings}, f"run-killed-{optimizer}.yaml")
    crashed = subprocess.run(
        [sys.executable, "-m", "model.train", "-c", str(config)],
        env={**os.environ, CRASH_ENV: "train.step:11"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert crashed.returncode == CRASH_EXIT_CODE, crashed.stderr[-2000:]
    assert len(_losses(folder, killed)) == 10
    result = _train(folder, run=killed, **settings)
    assert result["steps_run"] == 10

    assert _losses(folder, killed) == _losses(folder, straight)
    uninterrupted, resumed = _weights(folder, straight), _weights(folder, killed)
    assert uninterrupted.keys() == resumed.keys()
    assert all(torch.equal(uninterrupted[k], resumed[k]) for k in uninterrupted)
    run_dir = folder / "workspace" / "runs" / killed
    assert (run_dir / "loss.png").stat().st_size > 1000 and (run_dir / "samples.txt").exists()


def test_ddp_on_two_processes_matches_one_process_on_the_global_batch(shards_workspace):
    folder = shards_workspace
    steps = {"max_steps": 6, "warmup_steps": 0, "learning_rate": 3e-3, "checkpoint_interval": 6}
    _train(folder, run="single", batch_size=8, **steps)
    config = _config(folder, {**TINY, **steps, "run": "ddp", "batch_size": 4}, "run-ddp.yaml")
    ddp = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29517",
            "-m",
            "model.train",
            "-c",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single, parallel = _weights(folder, "single"), _weights(folder, "ddp")
    assert lr_at(5, load_config(config).train) > 0
    assert all(torch.allclose(single[k], parallel[k], atol=1e-5) for k in single)
    assert not all(torch.equal(single[k], _initial(folder)[k]) for k in single)  # it moved


def _initial(folder: Path) -> dict[str, torch.Tensor]:
    cfg = load_config(folder / "run-single.yaml").train
    torch.manual_seed(cfg.seed)
    vocab = json.loads((folder / "workspace" / "runs" / "single" / "run.json").read_text())
    model = GPT(GPTConfig(**vocab["model"]))
    return {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}


@pytest.mark.parametrize("muon_lr", [None, 0.02])
def test_overfits_a_tiny_shard_and_an_untrained_model_does_not(muon_lr):
    torch.manual_seed(0)
    data = torch.randint(0, 50, (4, 33))
    config = GPTConfig(vocab_size=50, context=32, n_layer=2, n_head=2, n_embd=64)
    model = GPT(config)
    untrained = model(data[:, :-1], data[:, 1:])[1].item()
    assert untrained > 3.0  # about ln(50) = 3.9 for an untrained model
    optimizer = model.configure_optimizers(0.0, 3e-3, (0.9, 0.95), muon_lr=muon_lr)
    for _ in range(300):
        loss = model(data[:, :-1], data[:, 1:])[1]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert loss.item() < 0.05


def test_a_nan_loss_stops_with_a_clear_error_and_keeps_the_checkpoint(shards_workspace):
    folder = shards_workspace
    _train(folder, run="nan", max_steps=4, checkpoint_interval=2)
    good = _weights(folder, "nan")
    with pytest.raises(NonFiniteLoss, match="last good checkpoint"):
        _train(
            folder,
            run="nan",
            max_steps=8,
            checkpoint_interval=2,
            learning_rate=1e30,
            warmup_steps=0,
        )
    state = torch.load(folder / "workspace/runs/nan/checkpoint/state.pt", weights_only=True)
    kept = _weights(folder, "nan")
    assert all(torch.isfinite(v).all() for v in kept.values())  # no bad step was saved
    assert state["step"] == 4 or any(not torch.equal(good[k], kept[k]) for k in good)


def test_windows_are_deterministic_and_the_cursor_restores_exactly():
    tokens = np.arange(1000, dtype=np.uint16)
    first = WindowLoader(tokens, context=10, batch_size=3, seed=7)
    batches = [first.next_batch()[0] for _ in range(40)]  # crosses epochs (99 windows)
    again = WindowLoader(tokens, context=10, batch_size=3, seed=7)
    for _ in range(17):
        again.next_batch()
    resumed = WindowLoader(tokens, context=10, batch_size=3, seed=7)
    resumed.load_state(again.state())
    assert all(torch.equal(resumed.next_batch()[0], b) for b in batches[17:])
    x, y = batches[0], WindowLoader(tokens, 10, 3, 7).next_batch()[1]
    assert torch.equal(x[:, 1:], y[:, :-1])


def test_sampling_from_a_run(shards_workspace):
    folder = shards_workspace
    _train(folder, run="sampled", max_steps=2)
    ws = Workspace(str(folder / "workspace"))
    text = sample(ws, folder / "workspace" / "runs" / "sampled", "Page", 10)
    assert text.startswith("Page") and len(text) > len("Page")


def test_lr_schedule():
    cfg = TrainConfig(learning_rate=1.0, min_lr=0.1, warmup_steps=10, max_steps=110)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(60, cfg) == pytest.approx(0.55) and lr_at(110, cfg) == pytest.approx(0.1)


def test_resuming_with_other_model_settings_is_refused(shards_workspace):
    _train(shards_workspace, run="resized", max_steps=2)
    with pytest.raises(ValueError, match=r"other model settings \(n_embd\).*--force"):
        _train(shards_workspace, run="resized", max_steps=4, n_embd=64)
    cfg = load_config(_config(shards_workspace, {**TINY, "run": "resized", "max_steps": 4}))
    status = run_status(cfg, Workspace(cfg.workspace_root))
    assert status["state"] == "unfinished" and status["step"] == 2
    cfg = load_config(_config(shards_workspace, {**TINY, "run": "resized", "context": 16}))
    assert run_status(cfg, Workspace(cfg.workspace_root))["reasons"] == [
        "train.context changed: 32 -> 16"
    ]


def test_muon_trains_the_blocks_matrices_on_the_schedule_and_resumes_only_as_muon(
    shards_workspace,
):
    model = GPT(GPTConfig(vocab_size=50, context=8, n_layer=2, n_head=2, n_embd=16))
    optimizers = model.configure_optimizers(0.1, 1e-3, (0.9, 0.95), muon_lr=0.02)
    adamw, muon = optimizers.optimizers
    assert isinstance(adamw, torch.optim.AdamW)
    assert isinstance(muon, Muon)
    by_muon = {id(p) for group in muon.param_groups for p in group["params"]}
    assert by_muon == {id(p) for p in model.blocks.parameters() if p.dim() == 2}
    assert id(model.wte.weight) not in by_muon  # the embedding (and tied head) stays on AdamW
    assert [g.get("lr_scale", 1.0) for g in optimizers.param_groups] == [1.0, 1.0, 20.0]

    _train(shards_workspace, run="muon", max_steps=2, optimizer="muon", learning_rate=1e-3)
    with pytest.raises(ValueError, match=r"optimizer state does not fit train\.optimizer=adamw"):
        _train(shards_workspace, run="muon", max_steps=4)


def test_a_finished_run_continues_on_new_data_for_max_steps_more(shards_workspace, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(shards_workspace, folder)
    first = _train(folder, run="grows", max_steps=4)
    assert first["step"] == 4
    cfg = load_config(_config(folder, {**TINY, "run": "grows", "max_steps": 4}))
    ws = Workspace(cfg.workspace_root)
    assert run_status(cfg, ws)["state"] == "up to date"

    cfg = cfg.model_copy(update={"shards": cfg.shards.model_copy(update={"row_tokens": 32})})
    run(SHARDS, cfg, ws, make_map(cfg.runner))  # a new shards version of the same tokens
    assert run_status(cfg, ws)["reasons"][0].startswith("shards changed")
    assert train(cfg, ws, log=lambda message: None)["steps_run"] == 0  # nothing new to learn
    assert run_status(cfg, ws)["state"] == "up to date"

    # A later crawl brings pages never seen: other documents to train on, whatever the ids
    # that the fixture's WARC (random record ids and dates) gives its pages. (Moving pages to
    # val with a larger val_fraction did not: 1.5% of fixtures have no page between 0.1 and
    # 0.2, and then the training tokens, the tokenizer too, stay the same.)
    later = [
        {"url": f"https://t.example/later/{i}", "body": article(f"Later {i}", f"Item {i} is new.")}
        for i in range(10)
    ]
    warc = write_warc(folder / "in" / "later.warc.gz", later)
    source = cfg.sources[0].model_copy(update={"warc": [*cfg.sources[0].warc, str(warc)]})
    cfg = cfg.model_copy(update={"sources": [source]})
    for stage in (EXTRACT, TOKENIZER, SHARDS):
        run(stage, cfg, ws, make_map(cfg.runner))
    second = train(cfg, ws, log=lambda message: None)
    assert second["steps_run"] == 4 and second["step"] == 8
    assert second["lr"] == pytest.approx(lr_at(3, cfg.train))  # a whole schedule again
    assert run_status(cfg, ws)["state"] == "up to date"


def _status(folder: Path, **train_cfg) -> dict:
    cfg = load_config(_config(folder, {**TINY, **train_cfg}, "status.yaml"))
    return run_status(cfg, Workspace(cfg.workspace_root))


def test_a_session_that_reached_its_time_budget_is_finished(shards_workspace):
    # a budget that the first step already spends: the session ends there, whatever the speed
    budget = {"run": "minute", "max_steps": 100_000, "time_budget_s": 0.001}
    result = _train(shards_workspace, **budget)
    assert result["stopped"] == "time_budget" and result["step"] < 100_000
    state_file = shards_workspace / "workspace/runs/minute/checkpoint/state.pt"
    assert torch.load(state_file, weights_only=True)["stopped"] == "time_budget"

    status = _status(shards_workspace, **budget)
    assert status["state"] == "up to date" and status["reasons"] == []
    assert status["stopped"] == "time_budget"
    assert status["session"] == f"finished: time budget of 0.001 s reached at step {result['step']}"
    assert json.loads(json.dumps(status)) == status  # `textmill status --json` shows it as is
    cfg = load_config(_config(shards_workspace, {**TINY, **budget}, "status.yaml"))
    assert skip_reason("train", cfg, Workspace(cfg.workspace_root)) == (
        f"run minute is up to date ({status['session']})"
    )
    again = _train(shards_workspace, **budget)  # the same tokens: nothing more to learn
    assert again["steps_run"] == 0 and again["stopped"] == "time_budget"

    longer = _status(shards_workspace, **{**budget, "time_budget_s": 600})
    assert longer["state"] == "unfinished" and longer["stopped"] is None
    assert longer["reasons"][0].startswith(f"at step {result['step']} of 100000, after ")
    assert longer["reasons"][0].endswith(" of its time budget of 600 s")


class Killed(BaseException):
    """Stands for a kill: training stops between two checkpoints."""


def test_a_killed_session_is_unfinished_and_resumes_with_the_rest_of_its_time(
    shards_workspace, monkeypatch
):
    calls = iter(range(1, 100))

    def killed_at_step_3(name: str) -> None:
        if name == "train.step" and next(calls) == 3:
            raise Killed

    budget = {"run": "killed-timed", "max_steps": 1000, "time_budget_s": 600}
    monkeypatch.setattr("model.train.crash_point", killed_at_step_3)
    with pytest.raises(Killed):
        _train(shards_workspace, checkpoint_interval=2, **budget)
    monkeypatch.undo()
    status = _status(shards_workspace, **budget)
    assert status["state"] == "unfinished" and status["step"] == 2
    assert status["stopped"] is None
    assert status["reasons"][0].startswith("at step 2 of 1000, after ")
    spent = status["session_s"]
    assert spent > 0

    # The two steps before the kill count towards the session's time: with a budget they
    # already spent, the resumed session has no time left.
    spent_budget = {**budget, "time_budget_s": spent / 2}
    assert _status(shards_workspace, **spent_budget)["state"] == "up to date"
    assert _train(shards_workspace, **spent_budget)["steps_run"] == 0


def test_time_schedule_decays_by_the_clock():
    cfg = TrainConfig(
        learning_rate=1.0,
        min_lr=0.0,
        warmup_steps=0,
        max_steps=10**6,
        time_budget_s=100,
        schedule="time",
    )
    assert lr_at(5, cfg, elapsed_s=0) == pytest.approx(1.0)
    assert lr_at(5, cfg, elapsed_s=50) == pytest.approx(0.5)
    assert lr_at(5, cfg, elapsed_s=100) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="needs time_budget_s"):
        TrainConfig(schedule="time")


def test_each_epoch_cuts_windows_at_a_new_offset():
    loader = WindowLoader(np.arange(10_000, dtype=np.uint16), context=10, batch_size=4, seed=1)
    starts = set()
    for _ in range(3000):  # about twelve epochs
        starts |= {int(row[0]) % 10 for row in loader.next_batch()[0]}
    assert len(starts) > 3


# ----- kills inside the checkpoint swap -----

SWAP = {"max_steps": 30, "checkpoint_interval": 10}
# What a kill at each crash point of the swap leaves in the run folder
LEFT_BY_A_KILL = {
    "checkpoint.write": ["checkpoint", "checkpoint.new"],  # the new one half written
    "checkpoint.swap": ["checkpoint.new", "checkpoint.old"],
    "checkpoint.swapped": ["checkpoint", "checkpoint.old"],
    "checkpoint.old.remove": ["checkpoint", "checkpoint.old"],  # the old one half removed
}


@pytest.fixture(scope="module")
def straight_30(shards_workspace) -> str:
    """A run of 30 steps that nothing interrupted, with checkpoints at steps 10, 20 and 30."""
    _train(shards_workspace, run="straight-30", **SWAP)
    return "straight-30"


@pytest.mark.parametrize("point", list(LEFT_BY_A_KILL))
def test_a_kill_inside_the_checkpoint_swap_resumes_exactly(shards_workspace, straight_30, point):
    """Killed in the second checkpoint (step 20), when the first is there to be swapped out;
    the rerun resumes from whichever checkpoint the kill left and checkpoints again at 30."""
    folder, killed = shards_workspace, f"swap-{point}"
    config = _config(folder, {**TINY, "run": killed, **SWAP}, f"run-{killed}.yaml")
    crashed = subprocess.run(
        [sys.executable, "-m", "model.train", "-c", str(config)],
        env={**os.environ, CRASH_ENV: f"{point}:2"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert crashed.returncode == CRASH_EXIT_CODE, crashed.stderr[-2000:]
    run_dir = folder / "workspace" / "runs" / killed
    assert sorted(p.name for p in run_dir.glob("checkpoint*")) == LEFT_BY_A_KILL[point]

    result = _train(folder, run=killed, **SWAP)
    assert result["step"] == 30
    assert _losses(folder, killed) == _losses(folder, straight_30)
    uninterrupted, resumed = _weights(folder, straight_30), _weights(folder, killed)
    assert uninterrupted.keys() == resumed.keys()
    assert all(torch.equal(uninterrupted[k], resumed[k]) for k in uninterrupted)
    assert sorted(p.name for p in run_dir.glob("checkpoint*")) == ["checkpoint"]


def test_a_checkpoint_old_left_beside_the_checkpoint_does_not_stop_training(shards_workspace):
    """What a kill between the swap's rename and the removal of `checkpoint.old` leaves: both
    folders complete. The next checkpoint replaces them (it used to fail with "Directory not
    empty: checkpoint -> checkpoint.old" at every later run)."""
    folder = shards_workspace
    _train(folder, run="leftover", max_steps=10, checkpoint_interval=10)
    run_dir = folder / "workspace" / "runs" / "leftover"
    shutil.copytree(run_dir / "checkpoint", run_dir / "checkpoint.old")
    result = _train(folder, run="leftover", max_steps=20, checkpoint_interval=10)
    assert result["step"] == 20 and result["steps_run"] == 10
    assert sorted(p.name for p in run_dir.glob("checkpoint*")) == ["checkpoint"]
    state = torch.load(run_dir / "checkpoint" / "state.pt", weights_only=True)
    assert state["step"] == 20
