"""Count models over a split's tokens: the baselines a trained model must beat.

`unigram_probs` is add-k smoothed token frequencies; `unigram_loss` scores a token stream with
them the way the model is scored (every token after the first, mean nats per token).
"""

from __future__ import annotations

import numpy as np


def unigram_probs(train: np.ndarray, vocab_size: int, k: float) -> np.ndarray:
    counts = np.bincount(train, minlength=vocab_size).astype(np.float64)
    return (counts + k) / (counts.sum() + k * vocab_size)


def unigram_loss(probs: np.ndarray, tokens: np.ndarray) -> float:
    return float(-np.log(probs[tokens[1:]]).mean())
