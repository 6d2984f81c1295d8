"""Batches for training: windows of context + 1 tokens cut from one split's token stream.

Each epoch cuts the stream at a new offset and serves the windows in a new order, both drawn
from (seed, epoch): the model sees other windows each epoch, and the order is the same for the
same seed. The cursor (epoch, position) is saved in checkpoints and restored exactly. With
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
        if (len(tokens) - context) // context < batch_size * world_size:
            raise ValueError(
                f"{len(tokens)} tokens make too few windows of {context} for one batch of "
                f"{batch_size * world_size}; lower train.batch_size or train.context"
            )
        self.tokens = torch.from_numpy(tokens.astype(np.int64))
        self.context, self.batch_size, self.seed = context, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.cursor = Cursor()
        self._plan_epoch(0)

    def _plan_epoch(self, epoch: int) -> None:
        """This epoch's offset and window order, from (seed, epoch) alone."""
        rng = np.random.default_rng([self.seed, epoch])
        self._offset = int(rng.integers(self.context))
        self.windows = (len(self.tokens) - 1 - self._offset) // self.context
        self._order = rng.permutation(self.windows)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets), each (batch_size, context): this process's part of the batch."""
        global_batch = self.batch_size * self.world_size
        if self.cursor.position + global_batch > self.windows:  # the rest of an epoch is dropped
            self.cursor = Cursor(self.cursor.epoch + 1, 0)
            self._plan_epoch(self.cursor.epoch)
        start = self.cursor.position + self.rank * self.batch_size
        picked = self._offset + self._order[start : start + self.batch_size] * self.context
        self.cursor.position += global_batch
        rows = torch.stack([self.tokens[i : i + self.context + 1] for i in picked])
        return rows[:, :-1], rows[:, 1:]

    def state(self) -> dict[str, int]:
        return {"epoch": self.cursor.epoch, "position": self.cursor.position}

    def load_state(self, state: dict[str, int]) -> None:
        self.cursor = Cursor(int(state["epoch"]), int(state["position"]))
        self._plan_epoch(self.cursor.epoch)


def eval_windows(tokens: np.ndarray, context: int, max_windows: int) -> torch.Tensor:
    """Up to max_windows consecutive windows (max_windows, context + 1), evenly spread."""
    count = (len(tokens) - 1) // context
    if count == 0:
        raise ValueError(f"an evaluation set of {len(tokens)} tokens is shorter than one window")
    starts = np.linspace(0, count - 1, num=min(count, max_windows)).astype(np.int64) * context
    data = torch.from_numpy(tokens.astype(np.int64))
    return torch.stack([data[s : s + context + 1] for s in starts])
