"""The training loop: get batch, forward, backward, clip, step, log, evaluate, checkpoint.

Runs live in <root>/runs/<run>/: `checkpoint/` (model.safetensors + state.pt with the optimizer,
step, data cursor and RNG: a resumed run continues exactly where the saved one was),
`metrics.jsonl`, `loss.png` and `samples.txt`. AdamW with weight decay on matrices only, linear
warmup then cosine decay, gradient accumulation and clipping, a step and a time budget. A
non-finite loss stops the run with an error and leaves the last good checkpoint in place.

A session is what one set of training tokens gets: `max_steps` steps, or `time_budget_s` seconds
of training when that comes first, counted over the resumes of a killed session. The checkpoint
records how far the session got (`step`, `session_s`) and, at its end, why it ended (`stopped`):
a finished session trains no more on the same tokens, and new tokens start a new session.

Multi-process data parallel: `torchrun --nproc_per_node=N -m model.train -c CONFIG`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import xxhash
from safetensors.torch import load_model, save_model
from torch.nn.parallel import DistributedDataParallel

from model.data import WindowLoader, eval_windows, load_split
from model.gpt import GPT, GPTConfig
from model.runs import CHECKPOINTS, PROGRESS_FILE, PROGRESS_KEYS, session_over
from pipeline.config import ConfigError, RunConfig, TrainConfig, load_config
from pipeline.crash import crash_point
from pipeline.datasets import Dataset
from pipeline.storage import Storage
from pipeline.workspace import Workspace


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def lr_at(step: int, cfg: TrainConfig, elapsed_s: float = 0.0) -> float:
    """Linear warmup to learning_rate, then cosine decay to min_lr at max_steps, or, with
    `schedule: time`, at the end of this session's time budget (whatever the machine's speed)."""
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "time" and cfg.time_budget_s:
        progress = min(1.0, elapsed_s / cfg.time_budget_s)
    else:
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return cfg.min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (cfg.learning_rate - cfg.min_lr)


def model_config(cfg: TrainConfig, vocab_size: int) -> GPTConfig:
    return GPTConfig(
        vocab_size=vocab_size,
        context=cfg.context,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        n_embd=cfg.n_embd,
        dropout=cfg.dropout,
    )


# ----- checkpoints -----


def save_checkpoint(folder: Path, model: GPT, state: dict[str, Any]) -> None:
    """Write beside the old checkpoint (`.new`), then swap. A kill at any moment leaves one
    complete checkpoint for `checkpoint_folder` (state.pt, written last, marks one complete),
    and the next save clears what it left. Crash points: `checkpoint.write` (the new one half
    written), `checkpoint.swap` (the old one moved aside, the new one not yet in place),
    `checkpoint.swapped` (the new one in place, the old one still there) and
    `checkpoint.old.remove` (the old one half removed)."""
    fresh = folder.with_name(folder.name + ".new")
    old = folder.with_name(folder.name + ".old")
    _remove_checkpoint(fresh)
    fresh.mkdir(parents=True)
    save_model(model, str(fresh / "model.safetensors"))
    (fresh / "config.json").write_text(json.dumps(state["model"], indent=2))
    progress = {key: state[key] for key in PROGRESS_KEYS}  # readable without torch (status)
    (fresh / PROGRESS_FILE).write_text(json.dumps(progress))
    crash_point("checkpoint.write")
    torch.save(state, fresh / "state.pt")
    if (folder / "state.pt").exists():
        _remove_checkpoint(old)  # what a kill after the last swap left: `folder` is newer
        folder.rename(old)
    else:  # none yet, or one half fetched from shared storage: `old`, if any, is the last one
        _remove_checkpoint(folder)
    crash_point("checkpoint.swap")
    fresh.rename(folder)
    crash_point("checkpoint.swapped")
    _remove_checkpoint(old, crash="checkpoint.old.remove")


def _remove_checkpoint(folder: Path, crash: str | None = None) -> None:
    """Its completion mark first, so that a folder half removed by a kill is never taken for a
    complete checkpoint."""
    (folder / "state.pt").unlink(missing_ok=True)
    if crash:
        crash_point(crash)
    shutil.rmtree(folder, ignore_errors=True)


def checkpoint_folder(run_dir: Path) -> Path | None:
    """The run's last complete checkpoint (also one caught mid-swap by a kill)."""
    for name in CHECKPOINTS:
        if (run_dir / name / "state.pt").exists():
            return run_dir / name
    return None


def load_checkpoint(folder: Path) -> tuple[GPT, dict[str, Any]]:
    try:
        state = torch.load(folder / "state.pt", weights_only=True)
        model = GPT(GPTConfig(**state["model"]))
        load_model(model, str(folder / "model.safetensors"))
    except Exception as exc:  # torch, pickle and safetensors each fail their own way
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(
            f"checkpoint {folder} cannot be loaded ({reason.split('. ')[0]}): a damaged file; "
            "`textmill run train --force` starts the run over"
        ) from None
    return model, state


def _last_checkpoint(ws: Workspace, run_dir: Path, run: str) -> tuple[str, GPT, dict] | None:
    """Where in the workspace the run's last checkpoint is, and what it holds; None if none."""
    folder = checkpoint_folder(run_dir)
    if folder is None:
        return None
    return (ws.storage.url(f"runs/{run}/{folder.name}"), *load_checkpoint(folder))


# ----- the run folder on shared storage -----


@contextmanager
def run_folder(ws: Workspace, run: str) -> Iterator[Path]:
    """A run's folder as a local path: the folder itself on a local workspace; on shared
    storage (s3://…) a copy in a temporary folder, fetched here and sent back by `push_run`."""
    if ws.storage.is_local:
        yield Path(ws.storage.path(f"runs/{run}"))
        return
    with tempfile.TemporaryDirectory(prefix="textmill-run-") as tmp:
        local = Path(tmp) / run
        if ws.storage.isdir(f"runs/{run}"):
            ws.storage.fs.get(ws.storage.path(f"runs/{run}") + "/", str(local), recursive=True)
        yield local


def push_run(ws: Workspace, run_dir: Path, run: str, checkpoint: bool = True) -> None:
    """Send a run's local copy (`run_folder`) back to a workspace on shared storage; the
    checkpoint too unless it is unchanged since the last push."""
    if ws.storage.is_local:
        return
    for path in sorted(run_dir.iterdir()):
        if path.is_file():
            ws.storage.write_bytes(f"runs/{run}/{path.name}", path.read_bytes())
    if checkpoint and (run_dir / "checkpoint" / "state.pt").exists():
        _push_checkpoint(ws.storage, run_dir / "checkpoint", f"runs/{run}/checkpoint")


def _push_checkpoint(storage: Storage, local: Path, remote: str) -> None:
    """Object stores cannot rename folders, so the swap of `save_checkpoint` becomes an order
    of single-file writes that always leaves one complete checkpoint for `checkpoint_folder`
    (state.pt, written last, marks a folder complete): the old checkpoint is copied to
    `checkpoint.old` while `checkpoint` still holds it, then `checkpoint` is rewritten."""
    names = [*sorted(p.name for p in local.iterdir() if p.name != "state.pt"), "state.pt"]
    if storage.exists(f"{remote}/state.pt"):
        storage.remove(f"{remote}.old/state.pt")
        for name in names:
            storage.copy(f"{remote}/{name}", f"{remote}.old/{name}")
        storage.remove(f"{remote}/state.pt")
    for name in names:
        storage.write_bytes(f"{remote}/{name}", (local / name).read_bytes())


# ----- evaluation -----


@torch.no_grad()
def evaluate(model: GPT, sets: dict[str, tuple[torch.Tensor, float]], device: str) -> dict:
    """Loss (nats per token) and bits per byte on each evaluation set."""
    model.eval()
    results = {}
    for name, (windows, tokens_per_byte) in sets.items():
        total = 0.0
        for batch in windows.split(16):  # a smaller last batch weighs by its size
            batch = batch.to(device)
            total += model(batch[:, :-1], batch[:, 1:])[1].item() * len(batch)
        loss = total / len(windows)
        results[f"{name}_loss"] = round(loss, 5)
        results[f"{name}_bits_per_byte"] = round(loss / math.log(2) * tokens_per_byte, 5)
    model.train()
    return results


def evaluation_sets(ws: Workspace, manifest: Any, cfg: TrainConfig) -> dict:
    """The val split and every external evaluation set of the shards, with tokens per byte."""
    stats = manifest.stats
    wanted = {"val": stats["splits"]["val"]}
    wanted.update({f"eval/{name}": e for name, e in stats["eval_sets"].items()})
    sets = {}
    for name, counts in wanted.items():
        tokens = load_split(ws, name, manifest.version)
        if counts["bytes"] and len(tokens) > cfg.context:
            windows = eval_windows(tokens, cfg.context, cfg.eval_windows)
            sets[name.replace("eval/", "")] = (windows, counts["tokens"] / counts["bytes"])
    return sets


# ----- the loop -----


def train(cfg: RunConfig, ws: Workspace, log: Any = print, restart: bool = False) -> dict[str, Any]:
    """Train (or resume) the configured run on the current shards; returns the final metrics.
    `restart` starts the run over, whatever `train.init` says."""
    with run_folder(ws, cfg.train.run) as run_dir:
        return _train(cfg, ws, run_dir, log, restart)


def _train(cfg: RunConfig, ws: Workspace, run_dir: Path, log: Any, restart: bool) -> dict:
    tc = cfg.train.model_copy(update={"init": "scratch"}) if restart else cfg.train
    rank, world_size = _distributed()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if tc.device == "auto" else tc.device
    if device == "cuda" and world_size > 1:
        device = f"cuda:{rank}"
        torch.cuda.set_device(device)
    shards = Dataset.current(ws, "shards")
    vocab_size = shards.manifest.stats["vocab_size"]
    torch.manual_seed(tc.seed)

    found = None if tc.init == "scratch" else _last_checkpoint(ws, run_dir, tc.run)
    resuming = found is not None
    if found is None and tc.init_from:
        with run_folder(ws, tc.init_from) as other:
            found = _last_checkpoint(ws, other, tc.init_from)
        if found is None:  # a misspelt name must not quietly mean "from scratch"
            raise ConfigError(
                f"train.init_from: run {tc.init_from!r} has no checkpoint in "
                f"{ws.storage.url('runs')}"
            )
    started_from, model, state = found or (None, GPT(model_config(tc, vocab_size)), {})
    wanted = model_config(tc, vocab_size)
    changed = [
        k
        for k in ("context", "n_layer", "n_head", "n_embd")
        if getattr(model.config, k) != getattr(wanted, k)
    ]
    if resuming and changed:
        raise ValueError(
            f"run {tc.run} was trained with other model settings ({', '.join(changed)}): "
            "start it over (`--force`) or train a new run (`--set train.run=NAME`)"
        )
    if model.config.vocab_size != vocab_size:
        raise ValueError(
            f"the checkpoint has a vocabulary of {model.config.vocab_size}, the shards "
            f"{vocab_size}: they were made with different tokenizers"
        )
    model.to(device)
    optimizer = model.configure_optimizers(
        tc.weight_decay,
        tc.learning_rate,
        (tc.beta1, tc.beta2),
        fused=device.startswith("cuda"),
        muon_lr=tc.muon_lr if tc.optimizer == "muon" else None,
    )
    train_tokens = load_split(ws, "train", shards.version)
    # which data the run learns from: a new shards version may hold the very same tokens
    data_digest = xxhash.xxh3_64_hexdigest(memoryview(np.ascontiguousarray(train_tokens)))
    loader = WindowLoader(
        train_tokens,
        tc.context,
        tc.batch_size,
        tc.seed,
        rank,
        world_size,
    )
    step = session_start = 0  # a session trains max_steps steps from session_start
    session_s = 0.0  # seconds this session has trained, before this process
    if resuming:
        try:
            optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"run {tc.run}: its checkpoint's optimizer state does not fit train.optimizer="
                f"{tc.optimizer} ({exc}): start it over (`--force`) or train a new run"
            ) from None
        torch.set_rng_state(state["rng"])
        step = int(state["step"])
        if state.get("data_digest", data_digest) == data_digest:
            loader.load_state(state["cursor"])  # the same session, after a stop
            session_start = int(state.get("session_start", 0))
            session_s = float(state.get("session_s", 0.0))
        else:  # new data (a scheduled crawl-and-train): max_steps more, from the new data's start
            session_start = step
            log(f"train: run {tc.run} continues from step {step} on new data ({shards.version})")
    elif rank == 0 and tc.init == "scratch":
        shutil.rmtree(run_dir, ignore_errors=True)
        ws.storage.remove(f"runs/{tc.run}", recursive=True)  # on shared storage, that copy too
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        _keep_metrics_until(run_dir / "metrics.jsonl", step)
        (run_dir / "run.json").write_text(
            json.dumps(
                {
                    "train": tc.model_dump(mode="json"),
                    "model": model.config.to_dict(),
                    "params": model.num_params(),
                    "shards_version": shards.version,
                    "shards_content": shards.manifest.content,
                    "tokenizer_version": shards.manifest.stats["tokenizer_version"],
                    "started_from": started_from,
                },
                indent=2,
            )
        )
    eval_sets = evaluation_sets(ws, shards.manifest, tc) if rank == 0 else {}
    net = DistributedDataParallel(model) if world_size > 1 else model
    if tc.compile and device.startswith("cuda"):
        net = torch.compile(net)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda"))
    tokens_per_step = tc.batch_size * tc.context * tc.grad_accum * world_size
    log(f"train: {model.num_params():,} parameters on {device} x{world_size}, from step {step}")

    first_step = step
    last_step = session_start + tc.max_steps
    # the session's time goes on from its checkpoint, so a resumed session keeps its budget
    # and its place on a time schedule
    call_started = time.perf_counter()
    started = call_started - session_s
    # None while the session goes on: a raised max_steps or time budget continues one that ended
    stopped = session_over(step, last_step, session_s, tc)
    last: dict[str, Any] = {"step": step}
    while stopped is None:
        crash_point("train.step")
        so_far = _agreed(time.perf_counter() - started, world_size, device)
        lr = lr_at(step - session_start, tc, so_far)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        step_started = time.perf_counter()
        loss_sum = 0.0
        for micro in range(tc.grad_accum):
            x, y = (t.to(device) for t in loader.next_batch())
            if world_size > 1:  # gradients are averaged across processes on the last micro-step
                net.require_backward_grad_sync = micro == tc.grad_accum - 1
            with autocast:
                _, loss = net(x, y)
            (loss / tc.grad_accum).backward()
            loss_sum += loss.item()
        loss_value = loss_sum / tc.grad_accum
        if not math.isfinite(loss_value):
            raise NonFiniteLoss(
                f"loss is {loss_value} at step {step + 1} of run {tc.run}: stopped; the last good "
                f"checkpoint is {checkpoint_folder(run_dir) or 'none (no checkpoint yet)'}"
            )
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip or math.inf)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        session_s = _agreed(time.perf_counter() - started, world_size, device)  # stop together
        stopped = session_over(step, last_step, session_s, tc)
        done = stopped is not None
        last = {
            "step": step,
            "loss": round(loss_value, 5),
            "lr": float(f"{lr:.6g}"),
            "grad_norm": round(float(grad_norm), 4),
            "tokens_per_s": round(tokens_per_step / (time.perf_counter() - step_started), 1),
            "elapsed_s": round(session_s, 2),
        }
        if rank == 0 and (step % tc.eval_interval == 0 or done):
            last.update(evaluate(model, eval_sets, device))
        if rank == 0:
            with open(run_dir / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(last) + "\n")
            if step % 10 == 0 or done:
                log(" ".join(f"{k}={v}" for k, v in last.items()))
            if step % tc.checkpoint_interval == 0 or done:
                save_checkpoint(
                    run_dir / "checkpoint",
                    model,
                    {
                        "model": model.config.to_dict(),
                        "optimizer": optimizer.state_dict(),
                        "step": step,
                        "cursor": loader.state(),
                        "rng": torch.get_rng_state(),
                        "data_digest": data_digest,
                        "session_start": session_start,
                        "session_s": round(session_s, 3),
                        # None in a checkpoint taken on the way: a session killed after it
                        # resumes from it
                        "stopped": stopped,
                    },
                )
                push_run(ws, run_dir, tc.run)

    if rank == 0:
        _finish(run_dir, model, tc, ws, device)
        push_run(ws, run_dir, tc.run, checkpoint=False)  # the loop pushed the last one
        last["stopped"] = stopped
        last["train_s"] = round(time.perf_counter() - call_started, 2)
        last["steps_run"] = step - first_step
        last["params"] = model.num_params()
    if world_size > 1:
        dist.barrier()
    return last


def _finish(run_dir: Path, model: GPT, tc: TrainConfig, ws: Workspace, device: str) -> None:
    """The end of a session: the loss curve, and a sample of what the model writes."""
    plot_losses(run_dir)
    if tc.sample_tokens:
        text = sample(ws, run_dir, tc.sample_prompt, tc.sample_tokens, model=model, device=device)
        (run_dir / "samples.txt").write_text(text)


def _keep_metrics_until(path: Path, step: int) -> None:
    """A resumed run rewrites what the killed one logged after its checkpoint."""
    if not path.exists():
        return
    lines = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in lines))


def plot_losses(run_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], label="train loss", lw=1)
    for key in sorted({k for r in rows for k in r if k.endswith("_loss")}):
        points = [(r["step"], r[key]) for r in rows if key in r]
        ax.plot(*zip(*points, strict=True), marker="o", label=key.replace("_", " "))
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per token)")
    ax.set_title(f"run {run_dir.name}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(run_dir / "loss.png", dpi=100)
    plt.close(fig)


def sample(
    ws: Workspace,
    run_dir: Path,
    prompt: str,
    tokens: int,
    model: GPT | None = None,
    device: str = "cpu",
    temperature: float = 0.8,
    top_k: int | None = 200,
    seed: int = 0,
) -> str:
    """Text generated from a prompt by a run's model (its last checkpoint unless given)."""
    from pipeline import tokenizer as tokenizer_stage

    run = json.loads((run_dir / "run.json").read_text())
    tokenizer_dir = ws.stage_dir("tokenizer", run["tokenizer_version"])
    tokenizer = tokenizer_stage.load(ws.root, f"{tokenizer_dir}/tokenizer.json")
    if model is None:
        folder = checkpoint_folder(run_dir)
        if folder is None:
            raise FileNotFoundError(f"run {run_dir.name} has no checkpoint yet")
        model = load_checkpoint(folder)[0].to(device)
    model.eval()
    ids = tokenizer.encode(prompt).ids or [0]
    generator = torch.Generator(device=device).manual_seed(seed)
    idx = torch.tensor([ids], dtype=torch.long, device=device)
    out = model.generate(idx, tokens, temperature=temperature, top_k=top_k, generator=generator)
    model.train()
    return tokenizer.decode(out[0].tolist())


def _agreed(seconds: float, world_size: int, device: str) -> float:
    """The same elapsed time on every process (the slowest one's), so that time-driven
    decisions (learning rate, stopping) agree."""
    if world_size == 1:
        return seconds
    value = torch.tensor([seconds], dtype=torch.float64, device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return float(value.item())


def _distributed() -> tuple[int, int]:
    """(rank, world size); under torchrun, joins the process group (gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world_size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the configured run (torchrun-friendly).")
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    result = train(cfg, Workspace(cfg.workspace_root), log=lambda m: print(m, file=sys.stderr))
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(result))
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
