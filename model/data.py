"""Batches for training: windows of context + 1 tokens cut from one split's token stream.

The order is a seeded permutation of the windows, drawn anew each epoch, so it is the same for
the same seed; the cursor (epoch, position) is saved in checkpoints and restored exactly. With
several processes (DDP), each takes its own slice of every global batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pipeline import shards
from pipeline.workspace import Workspace


def load_split(ws: Workspace, split: str, version: str | None = None) -> np.ndarray:
    """One split's tokens (`train`, `val`, or `eval/<name>`) from the shards stage."""
    return shards.token_stream(ws, split, version)


@dataclass
class Cursor:
    epoch: int = 0
    position: int = 0  # windows of this epoch already served (all processes together)


class WindowLoader:
    def __init__(
        self,
        tokens: np.ndarray,
        context: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.windows = (len(tokens) - 1) // context
        if self.windows < batch_size * world_size:
            raise ValueError(
                f"{len(tokens)} tokens make {self.windows} windows of {context}: fewer than one "
                f"batch of {batch_size * world_size}; lower train.batch_size or train.context"
            )
        self.tokens = torch.from_numpy(tokens.astype(np.int64))
        self.context, self.batch_size, self.seed = context, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.cursor = Cursor()
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.windows)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets), each (batch_size, context): this process's part of the batch."""
        global_batch = self.batch_size * self.world_size
        if self.cursor.position + global_batch > self.windows:  # the rest of an epoch is dropped
            self.cursor = Cursor(self.cursor.epoch + 1, 0)
            self._order = self._permutation(self.cursor.epoch)
        start = self.cursor.position + self.rank * self.batch_size
        picked = self._order[start : start + self.batch_size] * self.context
        self.cursor.position += global_batch
        rows = torch.stack([self.tokens[i : i + self.context + 1] for i in picked])
        return rows[:, :-1], rows[:, 1:]

    def state(self) -> dict[str, int]:
        return {"epoch": self.cursor.epoch, "position": self.cursor.position}

    def load_state(self, state: dict[str, int]) -> None:
        self.cursor = Cursor(int(state["epoch"]), int(state["position"]))
        self._order = self._permutation(self.cursor.epoch)


def eval_windows(tokens: np.ndarray, context: int, max_windows: int) -> torch.Tensor:
    """Up to max_windows consecutive windows (max_windows, context + 1), evenly spread."""
    count = (len(tokens) - 1) // context
    if count == 0:
        raise ValueError(f"an evaluation set of {len(tokens)} tokens is shorter than one window")
    starts = np.linspace(0, count - 1, num=min(count, max_windows)).astype(np.int64) * context
    data = torch.from_numpy(tokens.astype(np.int64))
    return torch.stack([data[s : s + context + 1] for s in starts])
