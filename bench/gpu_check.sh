#!/usr/bin/env bash
# GPU check of the model and training step: a ~124M-parameter GPT (GPT-2 small's shape: 12
# layers, 12 heads, 768 wide, context 1024, vocabulary 50304) from model/gpt.py, trained for a
# fixed number of steps on synthetic tokens with bf16 autocast, torch.compile and fused AdamW.
# Prints one JSON object: for each micro-batch size tried, tokens/s and model FLOPs utilisation
# (MFU) against the H100/H200 dense bf16 peak of 989 TFLOP/s, and the best of them (target:
# MFU >= 0.40).
#
# For a lent GPU machine (Python with torch installed there, no package registry): it needs
# nothing but torch and this checkout. Run from the repository root:
#   bash bench/gpu_check.sh                      # STEPS=30, BATCHES="16 32 64" by default
#   STEPS=50 BATCHES="24" bash bench/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PYTHON="${PYTHON:-python3}"
"$PYTHON" - <<'PY'
import json
import os
import sys
import time

import torch

from model.gpt import GPT, GPTConfig

assert torch.cuda.is_available(), "no CUDA device: this check is for a GPU machine"
steps, batches = int(os.environ.get("STEPS", 30)), os.environ.get("BATCHES", "16 32 64").split()
warmup = 5
torch.backends.cuda.matmul.allow_tf32 = True
torch.backends.cudnn.allow_tf32 = True
config = GPTConfig(vocab_size=50304, context=1024, n_layer=12, n_head=12, n_embd=768)
peak = 989e12


def measure(batch: int) -> dict:
    """Compile for this batch size (static shapes), warm up, then time `steps` optimizer steps."""
    torch.manual_seed(0)
    torch._dynamo.reset()
    torch.cuda.reset_peak_memory_stats()
    model = GPT(config).cuda()
    optimizer = model.configure_optimizers(0.1, 6e-4, (0.9, 0.95), fused=True)
    net = torch.compile(model, dynamic=False)
    data = torch.randint(0, config.vocab_size, (batch, config.context + 1), device="cuda")
    x, y = data[:, :-1], data[:, 1:]

    def step() -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            _, loss = net(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    compile_started = time.perf_counter()
    for _ in range(warmup):  # compilation and autotuning happen here
        step()
    torch.cuda.synchronize()
    compile_s = time.perf_counter() - compile_started
    started = time.perf_counter()
    for _ in range(steps):
        loss = step()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    tokens_per_s = steps * batch * config.context / seconds
    return {
        "batch": batch,
        "final_loss": round(loss.item(), 4),
        "compile_and_warmup_s": round(compile_s, 1),
        "step_ms": round(1000 * seconds / steps, 1),
        "tokens_per_s": round(tokens_per_s),
        "mfu": round(tokens_per_s * model.flops_per_token() / peak, 4),
        "max_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 1),
    }


runs = []
for batch in batches:
    runs.append(measure(int(batch)))
    print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
model = GPT(config)
best = max(runs, key=lambda run: run["mfu"])
print(json.dumps({
    "device": torch.cuda.get_device_name(),
    "torch": torch.__version__,
    "params": model.num_params(),
    "context": config.context,
    "steps": steps,
    "flops_per_token": model.flops_per_token(),
    "peak_flops": peak,
    "runs": runs,
    "best_batch": best["batch"],
    "tokens_per_s": best["tokens_per_s"],
    "mfu": best["mfu"],
    "target_mfu": 0.40,
}))
PY
