"""Muon: SGD momentum orthogonalised by Newton-Schulz iterations, for 2-D weight matrices.

Jordan et al. 2024 (https://kellerjordan.github.io/posts/muon/), as modded-nanogpt trains its
hidden matrices. The update is torch.optim.Muon's (Nesterov momentum 0.95, five quintic
Newton-Schulz steps, decoupled weight decay, the learning rate scaled by sqrt(max(1, rows /
cols))), but the iteration runs in float32 off CUDA: torch's runs it in bfloat16, which a CPU
without bfloat16 units computes about 14 times slower (887 ms against 64 ms an optimizer step
for bench/train.py's model on 2 cores).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # torch.optim.Muon's and modded-nanogpt's


def orthogonalize(matrix: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """About U V^T of the matrix's SVD (singular values pushed into roughly 0.7-1.2)."""
    a, b, c = NS_COEFFICIENTS
    x = matrix.to(torch.bfloat16 if matrix.is_cuda else torch.float32)
    tall = x.size(0) > x.size(1)
    if tall:  # iterate on the smaller Gram matrix
        x = x.T
    x = x / x.norm().clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.T if tall else x).to(matrix.dtype)


class Muon(torch.optim.Optimizer):
    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float = 0.02,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        ns_steps: int = 5,
    ):
        defaults = {"lr": lr, "weight_decay": weight_decay, "momentum": momentum}
        super().__init__(params, {**defaults, "ns_steps": ns_steps})
        for group in self.param_groups:
            if any(p.dim() != 2 for p in group["params"]):
                raise ValueError("Muon trains 2-D weight matrices only")

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(param)
                buffer = state["momentum_buffer"]
                buffer.lerp_(param.grad, 1 - momentum)
                update = orthogonalize(param.grad.lerp(buffer, momentum), group["ns_steps"])
                param.mul_(1 - lr * group["weight_decay"])
                param.add_(update, alpha=-lr * math.sqrt(max(1.0, param.size(0) / param.size(1))))
        return loss
