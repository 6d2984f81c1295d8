"""The tokenizer stage: a byte-level BPE tokenizer trained on the train split of a dataset.

Documents are assigned to train or validation by a hash of their id, so adding documents never
moves old ones between splits. Training streams batches from Parquet (never the corpus in
memory), is deterministic for the same input and config, and can be capped for very large
corpora. The output, `<root>/tokenizer/<version>/tokenizer.json`, loads with `tokenizers` and,
with the config files beside it, with `transformers.PreTrainedTokenizerFast.from_pretrained`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from functools import lru_cache
from importlib.metadata import version
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from pipeline import progress
from pipeline.config import RunConfig, TokenizerConfig
from pipeline.datasets import Dataset, DatasetError, Manifest, PartResult
from pipeline.stage import Reduced
from pipeline.storage import UnreadableFile
from pipeline.workspace import Workspace

NAME = "tokenizer"
CODE_VERSION = f"1+tokenizers{version('tokenizers')}"
TOKENIZER_FILE = "tokenizer.json"


class TokenizerMismatch(DatasetError):
    """Shards or a model asked to work with a tokenizer other than the one they were made with."""


def split_of(doc_id: str, val_fraction: float) -> str:
    """'train' or 'val', decided by the id alone: stable as the corpus grows."""
    bucket = int.from_bytes(hashlib.sha256(b"split:" + doc_id.encode()).digest()[:8], "big")
    return "val" if bucket / 2**64 < val_fraction else "train"


def list_inputs(cfg: RunConfig, ws: Workspace) -> dict[str, str]:
    dataset = Dataset.current(ws, cfg.tokenizer.dataset)
    if dataset.manifest.docs_out == 0:
        raise DatasetError(
            f"tokenizer: the {dataset.stage} dataset (version {dataset.version}) has no documents"
        )
    return {
        "dataset": dataset.stage,
        "version": dataset.version,
        "content": dataset.manifest.content,
    }


def describe_inputs(inputs: dict[str, str]) -> dict[str, str]:
    """The tokenizer depends on its dataset's content, not on the folder that holds it (a
    byte-identical forced rebuild of the dataset leaves the tokenizer up to date)."""
    return {"dataset": inputs["dataset"], "content": inputs["content"]}


def train_texts(dataset: Dataset, cfg: TokenizerConfig) -> Iterator[list[str]]:
    """Batches of train-split texts in dataset order, up to `max_train_chars`."""
    budget = cfg.max_train_chars
    batches = progress.iterate(  # reading is most of the work; the merges after it are not shown
        dataset.iter_batches(["id", "text"], batch_size=1000),
        f"{NAME}: reading documents",
        dataset.manifest.docs_out,
        weight=lambda batch: batch.num_rows,
    )
    for batch in batches:
        ids, all_texts = batch.column("id").to_pylist(), batch.column("text").to_pylist()
        texts = [
            text
            for doc_id, text in zip(ids, all_texts, strict=True)
            if split_of(doc_id, cfg.val_fraction) == "train"
        ]
        if budget is not None:
            kept = []
            for text in texts:
                if budget <= 0:
                    break
                kept.append(text[:budget])
                budget -= len(kept[-1])
            texts = kept
        if texts:
            yield texts
        if budget is not None and budget <= 0:
            return


def new_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def train(build: Any, parts: list[PartResult]) -> Reduced:
    """The stage's reduce step: train, then write tokenizer.json and the transformers files."""
    cfg: TokenizerConfig = build.config
    ws: Workspace = build.builder.ws
    dataset = Dataset(ws, build.raw_inputs["dataset"], build.raw_inputs["version"])
    started = time.perf_counter()
    chars = docs = 0

    def counted(batches: Iterator[list[str]]) -> Iterator[list[str]]:
        nonlocal chars, docs
        for texts in batches:
            docs += len(texts)
            chars += sum(len(t) for t in texts)
            yield texts

    tokenizer = new_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=cfg.special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(counted(train_texts(dataset, cfg)), trainer=trainer)
    if docs == 0:
        raise DatasetError(
            f"tokenizer: no train documents in {dataset.stage} version {dataset.version} "
            f"(val_fraction {cfg.val_fraction})"
        )
    eos, pad, *extra = cfg.special_tokens
    files = [
        build.builder.write_file(TOKENIZER_FILE, tokenizer.to_str(pretty=True).encode()),
        build.builder.write_file(
            "tokenizer_config.json",
            _json(
                {
                    "tokenizer_class": "PreTrainedTokenizerFast",
                    "bos_token": eos,
                    "eos_token": eos,
                    "pad_token": pad,
                    "additional_special_tokens": extra,
                    "clean_up_tokenization_spaces": False,
                }
            ),
        ),
        build.builder.write_file(
            "special_tokens_map.json",
            _json(
                {
                    "bos_token": eos,
                    "eos_token": eos,
                    "pad_token": pad,
                    "additional_special_tokens": extra,
                }
            ),
        ),
    ]
    stats = {
        "vocab_size": tokenizer.get_vocab_size(),
        "special_tokens": {t: tokenizer.token_to_id(t) for t in cfg.special_tokens},
        "train_docs": docs,
        "train_chars": chars,
        "train_s": round(time.perf_counter() - started, 3),
        "dataset": dataset.stage,
        "dataset_version": dataset.version,
    }
    return Reduced(files, stats)


def headline(manifest: Any) -> str:
    stats = manifest.stats
    return (
        f"vocabulary {stats['vocab_size']:,}, trained on {stats['train_docs']} documents "
        f"({stats['train_chars']:,} characters) of {stats['dataset']} {stats['dataset_version']}"
    )


def _json(obj: dict) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode()


def current(ws: Workspace) -> tuple[Manifest, str]:
    """(manifest, workspace-relative path of tokenizer.json) of the current tokenizer."""
    manifest = Dataset.current(ws, NAME).manifest
    return manifest, f"{ws.stage_dir(NAME, manifest.version)}/{TOKENIZER_FILE}"


@lru_cache(maxsize=4)
def load(root: str, rel_path: str) -> Tokenizer:
    """A tokenizer from the workspace, cached per process (workers load it once)."""
    storage = Workspace(root).storage
    try:
        return Tokenizer.from_str(storage.read_text(rel_path))
    except Exception as exc:  # tokenizers raises a bare Exception for a garbled file
        raise DatasetError(
            f"{UnreadableFile(storage.url(rel_path), 'a tokenizer', exc)}: a damaged file; "
            f"`textmill run {NAME} --force` builds it again"
        ) from None
