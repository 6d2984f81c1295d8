"""The shards stage: documents encoded with the current tokenizer into Parquet token streams.

Map: each part of the dataset is encoded (`encode_batch`, end-of-text appended) into a token
file and an index of its documents (split, source, hostname, offset, tokens, UTF-8 bytes).
Parts are keyed by their content and the tokenizer, so a new crawl generation encodes only its
own documents, and a new `row_tokens` or mixture re-encodes nothing.

Reduce: per split, documents are shuffled deterministically (by id and seed), the mixture is
applied to train (per-source weights: ×2 repeats a document, ×0.5 keeps half of them, chosen by
id hash; a cap on tokens per hostname), and the joined stream is cut into rows of `row_tokens`
ids, in the narrowest integer type for the vocabulary, in shard files of about `shard_mb`:

    <root>/shards/<version>/{train,val}/shard-00000.parquet     column `tokens`: list<uint16>
    <root>/shards/<version>/eval/<name>/shard-00000.parquet     one per external evaluation set

The manifest gives tokens and UTF-8 bytes per split (bits per byte needs both), documents,
tokens per source, the tokenizer's version and digest, and the dataset's version.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import progress
from pipeline import tokenizer as tokenizer_stage
from pipeline.config import ConfigError, RunConfig, ShardsConfig
from pipeline.datasets import Dataset, PartResult, VersionBuilder, short_digest
from pipeline.stage import Reduced
from pipeline.storage import sha256_bytes
from pipeline.workspace import Workspace

NAME = "shards"
CODE_VERSION = "2"
SPLITS = ("train", "val")
INDEX_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("split", pa.string()),
        ("source", pa.string()),
        ("source_kind", pa.string()),
        ("hostname", pa.string()),
        ("offset", pa.int64()),  # where the document starts in the part's token file
        ("tokens", pa.int64()),  # with its end-of-text token
        ("bytes", pa.int64()),  # UTF-8 bytes of its text
    ]
)


@dataclass(frozen=True)
class Unit:
    part: str  # workspace-relative path of one dataset part
    part_sha256: str
    tokenizer_path: str
    tokenizer_content: str  # the tokenizer version's content digest
    val_fraction: float


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)


# ----- inputs and units -----


def list_inputs(cfg: RunConfig, ws: Workspace) -> dict[str, Any]:
    tokenizer, tokenizer_path = tokenizer_stage.current(ws)
    dataset = Dataset.current(ws, cfg.tokenizer.dataset)
    eval_sets = {}
    for name, path in sorted(cfg.shards.eval_sets.items()):
        url = cfg.resolve(path)
        try:
            eval_sets[name] = {"path": url, "sha256": ws.file_digests([url])[url][0]}
        except FileNotFoundError:
            raise ConfigError(f"shards.eval_sets.{name}: file not found: {url}") from None
    return {
        "tokenizer": tokenizer.version,
        "tokenizer_content": tokenizer.content,
        "tokenizer_path": tokenizer_path,
        "dataset": dataset.stage,
        "dataset_version": dataset.version,
        "dataset_content": dataset.manifest.content,
        "parts": [(f"{dataset.dir}/{p.file}", p.sha256) for p in dataset.manifest.parts],
        "val_fraction": cfg.tokenizer.val_fraction,
        "eval_sets": eval_sets,
    }


def describe_inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    """What the shards depend on: the contents of the tokenizer and the dataset, not their
    folder names (a byte-identical forced rebuild of either leaves the shards up to date)."""
    return {
        "tokenizer": inputs["tokenizer_content"],
        "dataset": inputs["dataset"],
        "dataset_content": inputs["dataset_content"],
        "eval_sets": {name: e["sha256"] for name, e in inputs["eval_sets"].items()},
    }


def plan_units(cfg: RunConfig, ws: Workspace, inputs: dict[str, Any]) -> list[Unit]:
    return [
        Unit(
            part, sha, inputs["tokenizer_path"], inputs["tokenizer_content"], inputs["val_fraction"]
        )
        for part, sha in inputs["parts"]
    ]


def unit_key(unit: Unit, cfg: ShardsConfig) -> str:
    """The encoding of a part depends on its content, the tokenizer and the split only."""
    identity = {k: v for k, v in asdict(unit).items() if k not in ("part", "tokenizer_path")}
    return short_digest(NAME, CODE_VERSION, identity)


# ----- map: encode one part -----


def load_tokenizer(root: str, rel_path: str) -> Any:
    tokenizer = tokenizer_stage.load(root, rel_path)
    # Text that happens to contain "<|endoftext|>" is text: only we put document boundaries.
    tokenizer.encode_special_tokens = True
    return tokenizer


def encode_part(unit: Unit, key: str, cfg: ShardsConfig, out: VersionBuilder) -> PartResult:
    started = time.perf_counter()
    storage = out.ws.storage
    tokenizer = load_tokenizer(out.ws.root, unit.tokenizer_path)
    eot = tokenizer.token_to_id(_special_tokens(tokenizer)[0])
    dtype = token_dtype(tokenizer.get_vocab_size())
    table = storage.read_parquet(unit.part, ["id", "text", "source", "source_kind", "hostname"])
    texts = table.column("text").to_pylist()
    ids = table.column("id").to_pylist()

    chunks: list[np.ndarray] = []
    lengths: list[int] = []
    report = progress.unit(key, len(texts))  # the parent knows a part's path, not its size
    for start in range(0, len(texts), 1024):  # bounded memory for huge parts
        batch = texts[start : start + 1024]
        for encoding in tokenizer.encode_batch(batch, add_special_tokens=False):
            tokens = np.asarray([*encoding.ids, eot], dtype=dtype)
            chunks.append(tokens)
            lengths.append(len(tokens))
        report.advance(len(batch))
    stream = np.concatenate(chunks) if chunks else np.zeros(0, dtype)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if lengths else []

    buffer = io.BytesIO()
    np.save(buffer, stream, allow_pickle=False)
    tokens_file = f"tokens-{key}.npy"
    storage.write_bytes(f"{out.dir}/{tokens_file}", buffer.getvalue())
    index = pa.table(
        {
            "id": ids,
            "split": [tokenizer_stage.split_of(i, unit.val_fraction) for i in ids],
            "source": table.column("source"),
            "source_kind": table.column("source_kind"),
            "hostname": table.column("hostname"),
            "offset": offsets,
            "tokens": lengths,
            "bytes": [len(t.encode("utf-8")) for t in texts],
        },
        schema=INDEX_SCHEMA,
    )
    rejected = pa.table({"id": pa.array([], pa.string()), "reason": pa.array([], pa.string())})
    part = out.write_part(
        key,
        index,
        rejected,
        counts={"docs": len(ids), "tokens": int(stream.size)},
        seconds=round(time.perf_counter() - started, 3),
        unit={"part": unit.part},
        extra_files=[tokens_file],
    )
    report.finish()
    return part


def _special_tokens(tokenizer: Any) -> list[str]:
    """The special tokens in id order: end-of-text first (as the tokenizer stage adds them)."""
    added = tokenizer.get_added_tokens_decoder()
    return [added[i].content for i in sorted(added) if added[i].special]


# ----- reduce: mixture, shuffle, rows, shard files -----


def _fraction(*parts: Any) -> float:
    """A deterministic number in [0, 1) from the given values."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _weight(cfg: ShardsConfig, source: str, kind: str) -> float:
    return cfg.source_weights.get(source, cfg.source_weights.get(kind, 1.0))


def plan_documents(index: pa.Table, cfg: ShardsConfig) -> tuple[dict[str, list[int]], Counter]:
    """Row numbers of `index` per split, in output order (repeats included); and the documents
    the domain cap dropped, per hostname."""
    ids = index.column("id").to_pylist()
    splits = index.column("split").to_pylist()
    sources = index.column("source").to_pylist()
    kinds = index.column("source_kind").to_pylist()
    hosts = index.column("hostname").to_pylist()
    tokens = index.column("tokens").to_pylist()
    keyed: dict[str, list[tuple[float, int]]] = {split: [] for split in SPLITS}
    for row, doc_id in enumerate(ids):
        copies = 1
        if splits[row] == "train":
            weight = _weight(cfg, sources[row], kinds[row])
            whole = int(weight)
            copies = whole + (_fraction("weight", doc_id) < weight - whole)
        for copy in range(copies):
            keyed[splits[row]].append((_fraction("order", cfg.seed, doc_id, copy), row))
    order = {split: [row for _, row in sorted(keyed[split])] for split in SPLITS}

    capped: Counter[str] = Counter()
    if cfg.domain_token_cap is not None:
        used: Counter[str] = Counter()
        kept = []
        for row in order["train"]:
            host = hosts[row] or ""
            if used[host] + tokens[row] > cfg.domain_token_cap:
                capped[host] += 1
                continue
            used[host] += tokens[row]
            kept.append(row)
        order["train"] = kept
    return order, capped


class ShardWriter:
    """Joins token arrays into rows of `row_tokens` and rows into shard files."""

    def __init__(self, out: VersionBuilder, folder: str, cfg: ShardsConfig, dtype: np.dtype):
        self.out, self.folder, self.row_tokens, self.dtype = out, folder, cfg.row_tokens, dtype
        self.shard_tokens = max(cfg.row_tokens, int(cfg.shard_mb * 2**20 / dtype.itemsize))
        self.shard_tokens -= self.shard_tokens % cfg.row_tokens  # whole rows per shard
        self.pending: list[np.ndarray] = []
        self.pending_tokens = 0
        self.files: list[dict[str, Any]] = []
        self.tokens = 0

    def add(self, tokens: np.ndarray) -> None:
        self.pending.append(tokens)
        self.pending_tokens += len(tokens)
        self.tokens += len(tokens)
        while self.pending_tokens >= self.shard_tokens:
            stream = np.concatenate(self.pending)
            self._write(stream[: self.shard_tokens])
            rest = stream[self.shard_tokens :]
            self.pending, self.pending_tokens = [rest], len(rest)

    def close(self) -> list[dict[str, Any]]:
        if self.pending_tokens:
            self._write(np.concatenate(self.pending))
        self.pending, self.pending_tokens = [], 0
        return self.files

    def _write(self, stream: np.ndarray) -> None:
        offsets = np.append(np.arange(0, len(stream), self.row_tokens), len(stream))
        rows = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(stream))
        sink = pa.BufferOutputStream()
        pq.write_table(pa.table({"tokens": rows}), sink, compression="zstd")
        data = sink.getvalue().to_pybytes()
        entry = self.out.write_file(f"{self.folder}/shard-{len(self.files):05d}.parquet", data)
        self.files.append({**entry, "rows": len(offsets) - 1, "tokens": len(stream)})


def headline(manifest: Any) -> str:
    splits = manifest.stats["splits"]
    return ", ".join(
        [f"{name} {s['tokens']:,} tokens ({s['docs']} docs)" for name, s in splits.items()]
        + [f"eval/{name} {e['tokens']:,} tokens" for name, e in manifest.stats["eval_sets"].items()]
    )


def write_shards(build: Any, parts: list[PartResult]) -> Reduced:
    """The stage's reduce step."""
    cfg: ShardsConfig = build.config
    out: VersionBuilder = build.builder
    inputs = build.raw_inputs
    tokenizer = load_tokenizer(out.ws.root, inputs["tokenizer_path"])
    dtype = token_dtype(tokenizer.get_vocab_size())
    storage = out.ws.storage

    tables, streams = [], []
    for number, part in enumerate(parts):
        table = storage.read_parquet(f"{out.dir}/{part.file}")
        tables.append(table.append_column("part", pa.array([number] * table.num_rows, pa.int32())))
        streams.append(_load_tokens(out, part.extra_files[0]))
    index = pa.concat_tables(tables)
    if index.num_rows == 0:
        raise ConfigError(f"shards: the {inputs['dataset']} dataset has no documents to encode")
    order, capped = plan_documents(index, cfg)

    part_of = index.column("part").to_numpy()
    offset = index.column("offset").to_numpy()
    length = index.column("tokens").to_numpy()
    nbytes = index.column("bytes").to_numpy()
    sources = index.column("source").to_pylist()
    files: list[dict[str, Any]] = []
    splits: dict[str, dict[str, Any]] = {}
    tokens_by_source: Counter[str] = Counter()
    for split in SPLITS:
        writer = ShardWriter(out, split, cfg, dtype)
        for row in order[split]:
            writer.add(streams[part_of[row]][offset[row] : offset[row] + length[row]])
            if split == "train":
                tokens_by_source[sources[row]] += int(length[row])
        files += writer.close()
        splits[split] = {
            "docs": len(order[split]),
            "tokens": writer.tokens,
            "bytes": int(sum(nbytes[row] for row in order[split])),
            "shards": len(writer.files),
        }

    eval_sets = {}
    eot = tokenizer.token_to_id(_special_tokens(tokenizer)[0])
    for name, entry in inputs["eval_sets"].items():
        text = _eval_set_text(name, entry["path"])
        writer = ShardWriter(out, f"eval/{name}", cfg, dtype)
        writer.add(np.asarray([*tokenizer.encode(text, add_special_tokens=False).ids, eot], dtype))
        files += writer.close()
        eval_sets[name] = {"tokens": writer.tokens, "bytes": len(text.encode("utf-8"))}

    tokenizer_json = storage.read_bytes(inputs["tokenizer_path"])
    stats = {
        "splits": splits,
        "eval_sets": eval_sets,
        "tokens_by_source": dict(sorted(tokens_by_source.items())),
        "docs_dropped_by_domain_cap": sum(capped.values()),
        "tokenizer_version": inputs["tokenizer"],
        "tokenizer_sha256": sha256_bytes(tokenizer_json),
        "dataset": inputs["dataset"],
        "dataset_version": inputs["dataset_version"],
        "dtype": dtype.name,
        "row_tokens": cfg.row_tokens,
        "eot_id": eot,
        "vocab_size": tokenizer.get_vocab_size(),
    }
    return Reduced(files, stats)


def _eval_set_text(name: str, url: str) -> str:
    with fsspec.open(url, "rb") as fh:
        raw = fh.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"shards.eval_sets.{name}: {url} is not UTF-8 text (byte {exc.start + 1})"
        ) from None


def _load_tokens(out: VersionBuilder, rel: str) -> np.ndarray:
    storage = out.ws.storage
    path = f"{out.dir}/{rel}"
    if storage.is_local:  # memory-mapped: the OS pages tokens in as they are written out
        return np.load(storage.path(path), mmap_mode="r")
    return np.load(io.BytesIO(storage.read_bytes(path)))


# ----- reading shards back -----


def token_stream(ws: Workspace, split: str, version: str | None = None) -> np.ndarray:
    """All tokens of one split (`train`, `val` or `eval/<name>`) joined, in order."""
    dataset = Dataset(ws, NAME, version) if version else Dataset.current(ws, NAME)
    arrays = [
        dataset.read_parquet(entry["file"]).column("tokens").combine_chunks()  # size checked
        for entry in dataset.manifest.files
        if entry["file"].startswith(f"{split}/shard-")
    ]
    dtype = np.dtype(dataset.manifest.stats["dtype"])
    if not arrays:
        return np.zeros(0, dtype)
    flat = [array.flatten().to_numpy(zero_copy_only=False) for array in arrays]
    return np.concatenate(flat).astype(dtype)


def check_tokenizer(ws: Workspace, tokenizer_json: bytes, version: str | None = None) -> None:
    """Raise TokenizerMismatch unless the shards were made with this very tokenizer."""
    dataset = Dataset(ws, NAME, version) if version else Dataset.current(ws, NAME)
    expected = dataset.manifest.stats["tokenizer_sha256"]
    if sha256_bytes(tokenizer_json) != expected:
        raise tokenizer_stage.TokenizerMismatch(
            f"shards {dataset.version} were encoded with tokenizer "
            f"{dataset.manifest.stats['tokenizer_version']} (sha256 {expected[:12]}…), "
            "not with the tokenizer given: rebuild the shards (`textmill run shards`)"
        )
