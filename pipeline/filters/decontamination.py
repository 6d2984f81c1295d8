"""Decontamination: drop training documents that share long word n-grams with evaluation texts,
so benchmark scores measure generalisation, not memory (Brown et al. 2020, GPT-3, appendix C:
13-grams; also used by Llama and OLMo's decontamination)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import xxhash

from pipeline.config import ConfigError, FilterConfig
from pipeline.filters.base import Document, Filter, Score, first_failure

_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant: a polynomial rolling hash


class Decontamination(Filter):
    """Drops a document with at least `min_matches` (default 1) word n-grams (default 13, as
    GPT-3) in common with the evaluation files. Words are lowercased, punctuation is ignored.
    The evaluation n-grams are hashed to 64 bits once (8 bytes each, sorted) when the filter is
    made; a document's n-grams are hashed with numpy and looked up by binary search, so time is
    linear in its words. An evaluation text shorter than n words adds nothing (too short to
    match reliably). Files: `.jsonl` (every string value of each record is a text of its own, so
    questions, passages and answers all count) or any other file as one plain text."""

    name = "decontamination"
    scores = ("matches",)

    def __init__(self, cfg: FilterConfig.Decontamination):
        self.cfg = cfg
        hashes = [
            ngram_hashes(Document({"text": text}).words, cfg.ngram)
            for text in read_eval_texts(cfg.eval_files)
        ]
        self.eval_hashes = np.unique(np.concatenate([np.empty(0, np.uint64), *hashes]))
        if not len(self.eval_hashes):
            raise ConfigError(
                f"filter.decontamination.eval_files: no text of {cfg.ngram} words or more in "
                f"{', '.join(cfg.eval_files)}: nothing to match"
            )

    def score(self, doc: Document) -> dict[str, Score]:
        found = ngram_hashes(doc.words, self.cfg.ngram)
        where = np.searchsorted(self.eval_hashes, found).clip(max=len(self.eval_hashes) - 1)
        return {"matches": float(np.count_nonzero(self.eval_hashes[where] == found))}

    def keep(
        self, scores: dict[str, Score], ignore: frozenset[str] = frozenset()
    ) -> tuple[bool, str | None]:
        return first_failure(("matches", scores["matches"] >= self.cfg.min_matches), ignore=ignore)


def ngram_hashes(words: list[str], n: int) -> np.ndarray:
    """64-bit hashes of every n-gram of the words (xxh3 per word, then a rolling combination)."""
    if len(words) < n:
        return np.empty(0, np.uint64)
    vocabulary = {w: xxhash.xxh3_64_intdigest(w.encode()) for w in set(words)}
    word_hashes = np.fromiter((vocabulary[w] for w in words), np.uint64, len(words))
    count = len(words) - n + 1
    hashes = np.zeros(count, np.uint64)
    for i in range(n):  # uint64 arithmetic wraps around, as a hash should
        hashes = hashes * _MULTIPLIER + word_hashes[i : i + count]
    return hashes


def read_eval_texts(paths: list[str]) -> Iterator[str]:
    """The texts of the evaluation files; a missing or malformed file is an error naming it."""
    for path in paths:
        try:
            with open(path, encoding="utf-8") as fh:
                if not path.endswith(".jsonl"):
                    yield fh.read()
                    continue
                for number, line in enumerate(fh, 1):
                    if line.strip():
                        yield from _strings(_json_record(line, path, number))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"filter.decontamination.eval_files: cannot read {path}: {exc}"
            ) from None


def _json_record(line: str, path: str, number: int) -> object:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"filter.decontamination.eval_files: {path} line {number} is not JSON: {exc}"
        ) from None


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
