"""Benchmark of the tokenizer and shards stages on Tiny Shakespeare and ten Gutenberg books.

What it measures
  The documents are `<repo>/../shared/data/tinyshakespeare/input.txt` (or
  `$TEXTMILL_SHARED_DATA/...`), cut at blank lines into speeches grouped into documents of about
  3 KB, plus each book of `gutenberg/books/*.txt` as one document (decoded as UTF-8 with or
  without a BOM, else ISO-8859-1; CRLF made LF). They are written as `text/plain; charset=utf-8`
  response records into one WARC file (record ids and dates fixed, so the file, the documents'
  ids and their train/val split are the same on every run), and the real stages run on them
  in this one process, without Prefect (`pipeline.stage.run` with the serial runner): extract,
  then tokenizer and shards.

  - `train_mb_per_s`: UTF-8 megabytes (10^6 bytes) of the train split / the tokenizer stage's
    wall time, end to end (reading Parquet, training, writing tokenizer.json, committing), at
    vocabulary 16384. `train_mb_per_s_training_only` divides by the stage's own `train_s`.
  - `encode_tokens_per_s`: tokens written (train + val, end-of-text tokens included) / the
    wall time of the whole `run(SHARDS, ...)` call (plan, encode every part, shuffle, write the
    Parquet shards, commit), vocabulary 16384, one process (the `tokenizers` library uses its
    own thread pool, as in the raw figure). The first build is the warm-up; the timed runs are
    forced rebuilds (a fresh version folder each, every part encoded again).
  - `raw_encode_batch_tokens_per_s`: the same tokenizer loaded with `Tokenizer.from_file`,
    `encode_special_tokens = True` (as the stage), `encode_batch(texts,
    add_special_tokens=False)` in batches of 1024 documents over the extract dataset's texts
    (already in memory), counting tokens + 1 end-of-text per document. One warm-up run.
    Raw and stage runs alternate, and each figure is the best of `--repeats` runs (medians are
    reported too, and `*_per_cpu_s` / `ratio_to_raw_cpu` from the process's CPU time, all
    threads, which other load on the machine disturbs less than wall time).
  - `ratio_to_raw` = encode_tokens_per_s / raw_encode_batch_tokens_per_s (target >= 0.9).
  - `bytes_per_token`: for vocabularies 4096, 16384 and 32768 (each a tokenizer version of
    its own in the same workspace), UTF-8 bytes / tokens of the held-out val split, from the
    shards manifest (tokens include one end-of-text per document);
    `bytes_per_token_all_docs` is the same over train + val.

How to run it (from the repository root)
  .venv/bin/python bench/tokenize.py                   # about two minutes on 2 cores
  .venv/bin/python bench/tokenize.py --repeats 9       # more timed runs (less noise)
  .venv/bin/python bench/tokenize.py --profile 25      # + cProfile of one shards run (stderr)
  .venv/bin/python bench/tokenize.py --keep /tmp/btok  # keep the WARC and workspace to inspect

Progress goes to stderr; stdout holds only one JSON object.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's folder comes first on sys.path, where bench/tokenize.py would
# shadow the standard library's `tokenize`: put the repository root there instead.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import cProfile
import io
import pstats
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._common import (
    REPO,
    add_keep_option,
    logger,
    reject_used_keep,
    run_benchmark,
    shared_data,
    speech_documents,
    versions,
    write_text_warc,
)

log = logger("bench/tokenize")

SHAKESPEARE = Path("tinyshakespeare") / "input.txt"
BOOKS = Path("gutenberg") / "books"
DOC_CHARS = 3000  # Shakespeare speeches are grouped into documents of about this size
MAIN_VOCAB = 16384
VOCAB_SIZES = (4096, 16384, 32768)
BATCH_DOCS = 1024  # as the shards stage's encode_batch calls
MB = 1_000_000
TARGETS = {"ratio_to_raw": 0.9}


# ----- the corpus -----


@dataclass(frozen=True)
class Doc:
    source: str
    url: str
    text: str


def read_text(path: Path) -> str:
    """UTF-8 (a BOM is dropped), else ISO-8859-1; CRLF and lone CR become LF."""
    from pipeline.gutenberg import read_book_file

    return read_book_file(path).replace("\r\n", "\n").replace("\r", "\n")


def load_docs(data: Path) -> list[Doc]:
    docs = [
        Doc("shakespeare", f"https://tinyshakespeare.invalid/doc-{n:04d}", text)
        for n, text in enumerate(speech_documents(read_text(data / SHAKESPEARE), DOC_CHARS))
    ]
    for path in sorted((data / BOOKS).glob("*.txt")):
        docs.append(
            Doc("gutenberg", f"https://gutenberg.invalid/books/{path.name}", read_text(path))
        )
    return docs


# ----- the WARC and the run config -----


def write_config(folder: Path, warc: Path, workspace: Path) -> Path:
    import yaml

    config = {
        "workspace": str(workspace),
        "sources": [{"name": "books", "kind": "book", "warc": [str(warc)]}],
        "runner": {"task_runner": "serial", "workers": 1},
        "tokenizer": {"dataset": "extract", "vocab_size": MAIN_VOCAB, "val_fraction": 0.05},
        "shards": {"row_tokens": 2048},
    }
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


# ----- the runs -----


@dataclass
class Timed:
    """Seconds of one run: wall clock, and CPU time of this process (all its threads)."""

    wall: float
    cpu: float


@contextmanager
def timed() -> Iterator[Timed]:
    timing = Timed(0.0, 0.0)
    wall, cpu = time.perf_counter(), time.process_time()
    yield timing
    timing.wall, timing.cpu = time.perf_counter() - wall, time.process_time() - cpu


class Bench:
    """The run config, workspace and stage runner of one benchmark."""

    def __init__(self, config_path: Path) -> None:
        from pipeline.config import load_config
        from pipeline.workspace import Workspace

        self.config_path = config_path
        self.cfg = load_config(config_path)
        self.ws = Workspace(self.cfg.workspace_root)

    def run(
        self, stage_name: str, vocab: int = MAIN_VOCAB, force: bool = False
    ) -> tuple[dict[str, Any], Timed]:
        """One stage, built in this process; its summary and the time the call took."""
        from pipeline.config import load_config
        from pipeline.runner import make_map
        from pipeline.stage import run
        from pipeline.stages import get_stage

        cfg = load_config(self.config_path, [f"tokenizer.vocab_size={vocab}"])
        with timed() as timing:
            result = run(get_stage(stage_name), cfg, self.ws, make_map(cfg.runner), force=force)
        if not result["built"] or (stage_name != "tokenizer" and result["units_run"] == 0):
            raise RuntimeError(f"{stage_name} did no work (vocab {vocab}): {result}")
        return result, timing

    def manifest(self, stage_name: str) -> Any:
        from pipeline.datasets import Dataset

        return Dataset.current(self.ws, stage_name).manifest

    def extract_texts(self) -> tuple[list[str], list[str]]:
        from pipeline.datasets import Dataset

        table = Dataset.current(self.ws, "extract").read(["id", "text"])
        return table.column("id").to_pylist(), table.column("text").to_pylist()

    def tokenizer_file(self) -> str:
        from pipeline import tokenizer as tokenizer_stage

        _, rel = tokenizer_stage.current(self.ws)
        return self.ws.storage.path(rel)


def raw_encode(tokenizer: Any, texts: list[str]) -> int:
    """encode_batch over the texts as the stage calls it: tokens, +1 end-of-text per document."""
    tokens = 0
    for start in range(0, len(texts), BATCH_DOCS):
        for encoding in tokenizer.encode_batch(
            texts[start : start + BATCH_DOCS], add_special_tokens=False
        ):
            tokens += len(encoding.ids) + 1
    return tokens


def split_tokens(manifest: Any) -> int:
    return sum(int(s["tokens"]) for s in manifest.stats["splits"].values())


def profile(call: Callable[[], Any], top: int) -> None:
    """cProfile of one call; the top entries by own and cumulative time, to stderr."""
    profiler = cProfile.Profile()
    profiler.runcall(call)
    for order in ("tottime", "cumulative"):
        log(f"profile of one forced shards run, top {top} by {order}:")
        stream = io.StringIO()
        pstats.Stats(profiler, stream=stream).strip_dirs().sort_stats(order).print_stats(top)
        print(stream.getvalue(), file=sys.stderr, flush=True)


def benchmark(args: argparse.Namespace, data: Path, folder: Path) -> dict[str, Any]:
    bench_started = time.perf_counter()
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from pipeline.tokenizer import split_of

    docs = load_docs(data)
    warc = folder / "books.warc.gz"
    write_text_warc([(doc.url, doc.text) for doc in docs], warc)
    log(
        f"{len(docs)} documents ({sum(d.source == 'shakespeare' for d in docs)} Shakespeare, "
        f"{sum(d.source == 'gutenberg' for d in docs)} books) in {warc}"
    )
    bench = Bench(write_config(folder, warc, folder / "workspace"))

    extract, extract_time = bench.run("extract")
    log(f"extract: {extract['docs_out']} documents in {extract_time.wall:.1f} s")
    ids, texts = bench.extract_texts()
    if len(texts) != len(docs):
        raise RuntimeError(f"extract kept {len(texts)} of {len(docs)} documents: {extract}")
    val_fraction = bench.cfg.tokenizer.val_fraction
    split_bytes = {"train": 0, "val": 0}
    for doc_id, text in zip(ids, texts, strict=True):
        split_bytes[split_of(doc_id, val_fraction)] += len(text.encode("utf-8"))

    # Each vocabulary: a tokenizer version and a shards build. The main one comes last, so it is
    # current for the timed runs (the tokenizer stage finds it up to date and makes it current).
    per_vocab: dict[int, dict[str, Any]] = {}
    for vocab in sorted(VOCAB_SIZES, key=lambda v: v == MAIN_VOCAB):
        _, tok_time = bench.run("tokenizer", vocab)
        tok_s = tok_time.wall
        tok_stats = bench.manifest("tokenizer").stats
        shards, shards_time = bench.run("shards", vocab)
        shards_s = shards_time.wall
        splits = bench.manifest("shards").stats["splits"]
        per_vocab[vocab] = {
            "tokenizer_wall_s": round(tok_s, 3),
            "train_s": tok_stats["train_s"],
            "train_chars": tok_stats["train_chars"],
            "train_docs": tok_stats["train_docs"],
            "shards_first_build_s": round(shards_s, 3),
            "splits": splits,
        }
        log(
            f"vocab {vocab}: tokenizer {tok_s:.1f} s (training {tok_stats['train_s']:.1f} s), "
            f"shards {shards_s:.1f} s: {shards['headline']}"
        )

    # Timed: forced shards rebuilds and raw encode_batch, alternating, on the main tokenizer.
    from tokenizers import Tokenizer

    raw_tokenizer = Tokenizer.from_file(bench.tokenizer_file())
    raw_tokenizer.encode_special_tokens = True
    with timed() as warm:
        raw_tokens = raw_encode(raw_tokenizer, texts)
    log(f"raw encode_batch warm-up: {raw_tokens:,} tokens in {warm.wall:.2f} s")
    ours: list[Timed] = []
    raw: list[Timed] = []
    for n in range(args.repeats):
        result, ours_run = bench.run("shards", force=True)
        ours.append(ours_run)
        written = split_tokens(bench.manifest("shards"))
        with timed() as raw_run:
            tokens = raw_encode(raw_tokenizer, texts)
        raw.append(raw_run)
        if (tokens, written) != (raw_tokens, raw_tokens):
            raise RuntimeError(
                f"token counts differ: raw {raw_tokens} then {tokens}, shards wrote {written}"
            )
        log(
            f"run {n + 1}/{args.repeats}: shards {ours_run.wall:.2f} s "
            f"(cpu {ours_run.cpu:.2f} s, {result['units_run']} units), raw encode_batch "
            f"{raw_run.wall:.2f} s (cpu {raw_run.cpu:.2f} s)"
        )
    if args.profile:
        profile(lambda: bench.run("shards", force=True), args.profile)

    def rate(runs: list[Timed], pick: Callable[[list[float]], float], cpu: bool = False) -> float:
        return raw_tokens / pick([r.cpu if cpu else r.wall for r in runs])

    encode_rate, raw_rate = rate(ours, min), rate(raw, min)
    main = per_vocab[MAIN_VOCAB]

    figures: dict[str, Any] = {
        "train_mb_per_s": round(split_bytes["train"] / MB / main["tokenizer_wall_s"], 3),
        "encode_tokens_per_s": round(encode_rate),
        "raw_encode_batch_tokens_per_s": round(raw_rate),
        "ratio_to_raw": round(encode_rate / raw_rate, 3),
        "bytes_per_token": {
            str(v): _bytes_per_token(per_vocab[v]["splits"], ("val",)) for v in VOCAB_SIZES
        },
        "bytes_per_token_all_docs": {
            str(v): _bytes_per_token(per_vocab[v]["splits"], ("train", "val")) for v in VOCAB_SIZES
        },
        "train_mb_per_s_training_only": round(split_bytes["train"] / MB / main["train_s"], 3),
        "encode_tokens_per_s_median": round(rate(ours, statistics.median)),
        "raw_encode_batch_tokens_per_s_median": round(rate(raw, statistics.median)),
        "ratio_to_raw_median": round(
            rate(ours, statistics.median) / rate(raw, statistics.median), 3
        ),
        # CPU time of the process (all threads): less sensitive to other load on the machine.
        "encode_tokens_per_cpu_s": round(rate(ours, min, cpu=True)),
        "raw_encode_batch_tokens_per_cpu_s": round(rate(raw, min, cpu=True)),
        "ratio_to_raw_cpu": round(rate(ours, min, cpu=True) / rate(raw, min, cpu=True), 3),
        "tokens_encoded": raw_tokens,  # the stage wrote as many as raw encode_batch made
        "vocab_size": MAIN_VOCAB,
        "docs": len(texts),
        "docs_by_source": {
            "shakespeare": sum(d.source == "shakespeare" for d in docs),
            "gutenberg": sum(d.source == "gutenberg" for d in docs),
        },
        "total_mb": round(sum(split_bytes.values()) / MB, 3),
        "split_mb": {k: round(v / MB, 3) for k, v in split_bytes.items()},
        "tokens": {split: s["tokens"] for split, s in per_vocab[MAIN_VOCAB]["splits"].items()},
        "split_docs": {split: s["docs"] for split, s in per_vocab[MAIN_VOCAB]["splits"].items()},
        "shards_runs_s": [round(r.wall, 3) for r in ours],
        "shards_runs_cpu_s": [round(r.cpu, 3) for r in ours],
        "raw_runs_s": [round(r.wall, 3) for r in raw],
        "raw_runs_cpu_s": [round(r.cpu, 3) for r in raw],
        "raw_warmup_s": round(warm.wall, 3),
        "shards_units": result["units_run"],
        "per_vocab": {
            str(v): {k: val for k, val in per_vocab[v].items() if k != "splits"}
            for v in VOCAB_SIZES
        },
        "extract_s": round(extract_time.wall, 2),
        "repeats": args.repeats,
        "task_runner": "serial",
        "cpu_count": os.cpu_count(),
        "versions": versions("tokenizers", "pyarrow", "numpy", "warcio"),
        "targets": TARGETS,
    }
    figures["targets_met"] = figures["ratio_to_raw"] >= TARGETS["ratio_to_raw"]
    figures["total_s"] = round(time.perf_counter() - bench_started, 2)
    return figures


def _bytes_per_token(splits: dict[str, dict[str, Any]], names: tuple[str, ...]) -> float:
    nbytes = sum(int(splits[name]["bytes"]) for name in names)
    tokens = sum(int(splits[name]["tokens"]) for name in names)
    return round(nbytes / tokens, 4) if tokens else 0.0


# ----- plumbing -----


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark the tokenizer and shards stages on Tiny Shakespeare and books.",
        epilog="Prints one JSON object to stdout; progress goes to stderr.",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=5,
        metavar="N",
        help="timed shards and raw encode_batch runs each; the best is reported (default 5)",
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="TOP",
        help="also profile one more forced shards run with cProfile; top TOP entries to stderr",
    )
    add_keep_option(parser, "the WARC and workspace (a new or empty folder)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.profile < 0:
        parser.error("--profile must be at least 0")
    reject_used_keep(parser, args.keep, "a reused workspace would skip the stages' work")
    return args


def main(argv: list[str] | None = None) -> int:
    data = shared_data("bench/tokenize.py", SHAKESPEARE, f"{BOOKS}/11.txt")
    return run_benchmark("tokenize", parse_args(argv), data, benchmark)


if __name__ == "__main__":
    raise SystemExit(main())
