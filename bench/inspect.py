"""Benchmark of `textmill inspect`'s views (pipeline/inspect.py) on a curated dataset of
1,000,000 documents.

What it measures
  A workspace is written as the curate stages leave it, through `VersionBuilder`: a dedup
  version (its parts, the near duplicates it dropped in rejected/, its cluster table) and a
  filter version over it (the documents with every filter's score columns, the dropped ones in
  rejected/ with their reasons), `--docs` (1,000,000) documents kept by the filter. The extract
  and clean versions are left out: they would only double the disk the benchmark needs, and the
  views read them as they read dedup's.
  Texts: slices of a buffer of pseudo-words drawn from a Zipf vocabulary, in sentences and
  paragraphs; lengths log-normal around a median of 3,000 characters (sigma 0.75, as web pages),
  and 1 in 1,000 documents a book (source kind `book`) of a median 300,000 characters (sigma
  0.5: a Gutenberg novel). RARE (a string that occurs nowhere else) is put in RARE_DOCS
  documents spread over the dataset, so that a search for it reads every text.
  Scores: drawn per document from distributions that mostly pass the default thresholds (about
  10% are dropped); each document's verdict is the filters' own `keep` on them, as the filter
  stage decides, and the scores of the steps after the one that dropped it are null.
  Then each view runs once on a fresh `Catalog`, timed: `summary_s` (the filter dataset),
  `funnel_s`, `sample_s` (10 random documents), `by_id_s` (a document kept in place of a
  duplicate: every stage's kept and rejected documents are searched, and its cluster),
  `search_s` (the documents containing RARE: the first SEARCH_LIMIT (20) matches, here fewer,
  so the whole text column is read: the worst case), `whatif_s` (language min_score 0.65 ->
  0.8: the first step, so every document is judged again). `search_common_seconds`: a search
  for a word in most documents, which stops at the first 20 matches. `load_average_1m`: other
  work on the machine slows every view.
  Target: every `_s` view under 5 seconds on this machine (2 cores).

How to run it (from the repository root)
  .venv/bin/python bench/inspect.py                       # 1,000,000 documents (3.6 GB of disk)
  .venv/bin/python bench/inspect.py --docs 20000          # a quick run
  .venv/bin/python bench/inspect.py --keep /tmp/bi        # keep the workspace; a later run with
                                                          # the same --keep and --docs reuses it

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
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import yaml

from bench._common import logger, run_benchmark
from pipeline import filter as filter_stage
from pipeline.config import FilterConfig, RunConfig, load_config
from pipeline.datasets import PartResult, VersionBuilder
from pipeline.dedup import CLUSTER_SCHEMA, CLUSTERS_FILE, parquet_bytes
from pipeline.inspect import Catalog, document, funnel, sample, summary, whatif
from pipeline.schema import DOCUMENT_SCHEMA, rejected_schema_of, with_chars
from pipeline.workspace import Workspace

log = logger("bench/inspect")

PART_DOCS = 25_000  # documents per dedup part
MEDIAN_CHARS, SIGMA = 3_000, 0.75
BOOK_MEDIAN_CHARS, BOOK_SIGMA, BOOK_SHARE = 300_000, 0.5, 0.001
DUPLICATE_SHARE = 0.05  # of dedup's input: dropped as near duplicates of a kept document
BUFFER_CHARS = 32_000_000  # the text that documents are slices of
RARE = "quokka-sextant-0931"
RARE_DOCS = 3
COMMON = " the "
HOSTS = 50_000
WHATIF = "filter.language.min_score=0.8"


def text_buffer(rng: np.random.Generator) -> bytes:
    """Pseudo-words of a Zipf vocabulary in sentences of ~15 words and paragraphs of ~5."""
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "qua", "ber", "ston", "ing"]
    vocabulary = ["the", "of", "and", "to", "in"] + [
        "".join(rng.choice(syllables, size=rng.integers(1, 4))) for _ in range(20_000)
    ]
    words = np.array(vocabulary)[
        np.minimum(rng.zipf(1.2, BUFFER_CHARS // 6), len(vocabulary)) - 1
    ].astype(object)
    ends = rng.random(len(words))
    words[ends < 1 / 15] += "."
    words[ends < 1 / 75] += "\n\n"
    return " ".join(words).replace("\n\n ", "\n\n").encode()[:BUFFER_CHARS]


def lengths(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(characters of each document, whether it is a book)."""
    book = rng.random(n) < BOOK_SHARE
    chars = np.where(
        book,
        rng.lognormal(np.log(BOOK_MEDIAN_CHARS), BOOK_SIGMA, n),
        rng.lognormal(np.log(MEDIAN_CHARS), SIGMA, n),
    )
    return np.clip(chars, 50, BUFFER_CHARS // 4).astype(np.int64), book


def texts(rng: np.random.Generator, buffer: bytes, chars: np.ndarray, rare: set[int]) -> pa.Array:
    """Slices of the buffer at random offsets, RARE in the documents numbered in `rare`."""
    starts = rng.integers(0, len(buffer) - chars)
    pieces = [buffer[s : s + c] for s, c in zip(starts.tolist(), chars.tolist(), strict=True)]
    for i in rare:
        pieces[i] = pieces[i][: len(pieces[i]) // 2] + f" {RARE} ".encode() + pieces[i][-10:]
    return pa.array([p.decode() for p in pieces], pa.string())


def scores(rng: np.random.Generator, chars: np.ndarray) -> dict[str, np.ndarray]:
    """Every default filter score of each document, mostly passing the default thresholds."""
    n = len(chars)
    words = chars / 6.0

    def tail(scale: float, zero: float) -> np.ndarray:  # mostly 0, an exponential tail
        return np.where(rng.random(n) < zero, 0.0, rng.exponential(scale, n))

    detected = np.where(rng.random(n) < 0.95, "en", rng.choice(["fr", "de", "es", "ja"], n))
    values: dict[str, Any] = {
        "language_detected": detected.astype(object),
        "language_score": 1 - rng.beta(1.0, 12.0, n),
        "gopher_quality_words": np.round(words),
        "gopher_quality_mean_word_length": rng.normal(4.8, 0.5, n),
        "gopher_quality_hash_ratio": tail(0.005, 0.9),
        "gopher_quality_ellipsis_ratio": tail(0.01, 0.8),
        "gopher_quality_bullet_lines_ratio": tail(0.1, 0.7),
        "gopher_quality_ellipsis_lines_ratio": tail(0.05, 0.9),
        "gopher_quality_alpha_words_ratio": 1 - rng.beta(1.0, 20.0, n),
        "gopher_quality_stop_words": np.round(words * 0.3),
        "c4_quality_sentences": np.round(chars / 90.0),
        "c4_quality_lorem_ipsum": (rng.random(n) < 0.001).astype(float),
        "c4_quality_curly_bracket": (rng.random(n) < 0.01).astype(float),
        "fineweb_quality_line_punct_ratio": rng.beta(5.0, 2.0, n),
        "fineweb_quality_short_line_ratio": rng.beta(1.0, 8.0, n),
        "fineweb_quality_char_dup_ratio": tail(0.02, 0.6),
        "fineweb_quality_list_ratio": tail(0.05, 0.5),
        "url_blocklist_domain": np.where(rng.random(n) < 0.002, "blocked.example", None),
        "url_blocklist_substring": np.full(n, None, object),
    }
    for name in ("dup_para_frac", "dup_para_char_frac", "dup_line_frac", "dup_line_char_frac"):
        values[f"gopher_repetition_{name}"] = tail(0.03, 0.7)
    for k in (2, 3, 4):
        values[f"gopher_repetition_top_{k}_gram"] = rng.beta(2.0, 40.0 + 10 * k, n)
    for k in range(5, 11):
        values[f"gopher_repetition_dup_{k}_gram"] = tail(0.02, 0.6)
    return values


def judge(
    cfg: FilterConfig, kinds: list[str], values: dict[str, np.ndarray]
) -> list[tuple[str, str] | None]:
    """Each document's verdict as the filter stage gives it: the steps in order, their own
    `keep`; the scores of the steps after a failure (or of a skipped step) become null."""
    steps = [filter_stage.make_step(name, getattr(cfg, name)) for name in cfg.steps]
    names = {s.name: type(s).score_names(getattr(cfg, s.name)) for s, _, _ in steps}
    columns = {name: values[name].tolist() for name in values}
    verdicts: list[tuple[str, str] | None] = []
    for i, kind in enumerate(kinds):
        verdict = None
        for step, skip_kinds, ignore_rules in steps:
            own = [f"{step.name}_{s}" for s in names[step.name]]
            if verdict is not None or kind in skip_kinds:
                for column in own:
                    columns[column][i] = None
                continue
            keep, rule = step.keep(
                {s: columns[c][i] for s, c in zip(names[step.name], own, strict=True)},
                ignore_rules.get(kind, frozenset()),
            )
            if not keep:
                verdict = (f"{step.name}:{rule}", f"{rule}={columns[f'{step.name}_{rule}'][i]}")
        verdicts.append(verdict)
    for name, column in columns.items():
        values[name] = column
    return verdicts


def build(root: Path, docs: int, seed: int = 0) -> dict[str, Any]:
    """The workspace: config, dedup version, filter version. Returns the config's path and
    the id of a document to look up (a dedup cluster's kept one)."""
    config = root / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "workspace": str(root / "workspace"),
                "sources": [{"name": "web", "kind": "web"}],
                "runner": {"task_runner": "serial", "workers": 1},
            }
        )
    )
    cfg = load_config(config)
    ws = Workspace(cfg.workspace_root)
    rng = np.random.default_rng(seed)
    buffer = text_buffer(rng)
    log(f"text buffer: {len(buffer):,} characters")
    hosts = [f"site{i}.example.org" for i in range(HOSTS)]
    score_fields = filter_stage.score_fields(cfg.filter)
    filter_schema = pa.schema([*DOCUMENT_SCHEMA, *score_fields])
    dedup_out = VersionBuilder(ws, "dedup", "bench-dedup")
    filter_out = VersionBuilder(ws, "filter", "bench-filter")
    dedup_parts: list[PartResult] = []
    filter_parts: list[PartResult] = []
    clusters: list[pa.Table] = []
    kept_total, number, lookup = 0, 0, ""
    rare_at = set(rng.choice(docs, RARE_DOCS, replace=False).tolist())  # filter-kept numbers
    while kept_total < docs:
        key = f"{len(dedup_parts):05d}"
        n = PART_DOCS
        chars, book = lengths(rng, n)
        kinds = np.where(book, "book", "web").tolist()
        values = scores(rng, chars)
        verdicts = judge(cfg.filter, kinds, values)
        kept = np.array([v is None for v in verdicts])
        # The RARE documents are kept ones; their numbers count kept documents.
        kept_numbers = np.cumsum(kept) - 1 + kept_total
        rare = {i for i in np.flatnonzero(kept).tolist() if kept_numbers[i] in rare_at}
        host = rng.zipf(1.3, n) % HOSTS
        ids = [f"{number + i:016x}" for i in range(n)]
        given = {
            "id": ids,
            "text": texts(rng, buffer, chars, rare),
            "source": ["web"] * n,
            "source_kind": kinds,
            "url": [f"https://{hosts[h]}/page/{number + i}" for i, h in enumerate(host)],
            "generation": ["20240101T000000.000Z"] * n,
            "warc_file": [f"crawl/web/20240101T000000.000Z/web-{key}.warc.gz"] * n,
            "warc_offset": (np.arange(n) * 4096).tolist(),
            "hostname": [hosts[h] for h in host],
            "language": values["language_detected"],
        }
        table = with_chars(  # the other columns (title, author...) null
            pa.table(
                [given.get(f.name, pa.nulls(n, f.type)) for f in DOCUMENT_SCHEMA],
                schema=DOCUMENT_SCHEMA,
            )
        )
        # Near duplicates: copies of the first documents of the part, dropped by dedup.
        copies = table.slice(0, int(n * DUPLICATE_SHARE))
        copy_ids = pa.array([f"d{i}" for i in ids[: copies.num_rows]])
        dropped = copies.set_column(0, "id", copy_ids)
        reasons = {"stage": "dedup", "reason": "near_duplicate", "detail": "similarity=0.9"}
        for name, value in reasons.items():
            dropped = dropped.append_column(name, pa.array([value] * copies.num_rows))
        dedup_parts.append(
            dedup_out.write_part(
                key,
                table,
                dropped.cast(rejected_schema_of(table.schema)),
                dropped={"near_duplicate": copies.num_rows},
            )
        )
        clusters.append(
            pa.table(
                {
                    "id": pa.concat_arrays([pa.array(ids[: copies.num_rows]), copy_ids]),
                    "cluster": ids[: copies.num_rows] * 2,
                    "kept": [True] * copies.num_rows + [False] * copies.num_rows,
                    "kind": [None] * copies.num_rows + ["near"] * copies.num_rows,
                    "similarity": [1.0] * copies.num_rows + [0.9] * copies.num_rows,
                    "kept_by": ["smaller_id"] * (2 * copies.num_rows),
                },
                schema=CLUSTER_SCHEMA,
            )
        )
        lookup = lookup or ids[0]
        scored = table
        for field in score_fields:
            scored = scored.append_column(field, pa.array(values[field.name], field.type))
        keep = np.flatnonzero(kept)[: docs - kept_total]
        drop = np.flatnonzero(~kept)
        rejected = scored.take(drop)
        for name, column in (
            ("stage", ["filter"] * len(drop)),
            ("reason", [verdicts[i][0] for i in drop]),
            ("detail", [verdicts[i][1] for i in drop]),
        ):
            rejected = rejected.append_column(name, pa.array(column, pa.string()))
        filter_parts.append(
            filter_out.write_part(
                key,
                scored.take(keep).cast(filter_schema),
                rejected.cast(rejected_schema_of(filter_schema)),
                dropped=dict(Counter(verdicts[i][0] for i in drop)),
            )
        )
        kept_total += len(keep)
        number += n
        log(f"part {key}: {kept_total:,} of {docs:,} documents kept")
    files = [dedup_out.write_file(CLUSTERS_FILE, parquet_bytes(pa.concat_tables(clusters)))]
    _commit(cfg, dedup_out, dedup_parts, files, {"dataset": "clean"})
    _commit(cfg, filter_out, filter_parts, [], {"dataset": "dedup"})
    return {"config": str(config), "lookup": lookup}


def _commit(
    cfg: RunConfig,
    out: VersionBuilder,
    parts: list[PartResult],
    files: list[dict[str, Any]],
    inputs: dict[str, Any],
) -> None:
    section = getattr(cfg, out.stage)
    out.commit(
        key=out.version,
        code_version="bench",
        config=section.model_dump(mode="json"),
        config_digest=section.digest(),
        inputs=inputs,
        parts=parts,
        seconds=0.0,
        files=files,
    )


def timed(view: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = view()
    return round(time.perf_counter() - started, 3), result


def benchmark(args: argparse.Namespace, _data: Path, root: Path) -> dict[str, Any]:
    built = root / "built.yaml"
    build_seconds = None
    if built.exists() and yaml.safe_load(built.read_text())["docs"] == args.docs:
        made = yaml.safe_load(built.read_text())
        log(f"reusing the workspace in {root}")
    else:
        log(f"building {args.docs:,} documents in {root}")
        build_seconds, made = timed(lambda: build(root, args.docs))
        built.write_text(yaml.safe_dump({**made, "docs": args.docs}))
    cfg = load_config(Path(made["config"]))
    cat = Catalog(cfg, Workspace(cfg.workspace_root))
    figures: dict[str, Any] = {"docs": args.docs, "build_seconds": build_seconds}
    summary_s, summed = timed(lambda: summary(cat))
    figures["summary_s"] = summary_s
    figures["funnel_s"], _ = timed(lambda: funnel(cat))
    figures["sample_s"], _ = timed(lambda: sample(cat))
    figures["by_id_s"], found = timed(lambda: document(cat, made["lookup"]))
    figures["search_s"], rare = timed(lambda: sample(cat, search=RARE))
    figures["whatif_s"], answer = timed(lambda: whatif(cat, [WHATIF]))
    figures["search_common_seconds"], common = timed(lambda: sample(cat, search=COMMON))
    cat.close()
    figures["checks"] = {
        "characters": summed["characters"],
        "median_chars": summed["length"]["quantiles"]["p50"],
        "max_chars": summed["length"]["quantiles"]["max"],
        "by_id_replaced": len(found["dedup"]["replaced"]),
        "rare_matches": len(rare["documents"]),
        "common_matches": len(common["documents"]),
        "whatif_kept_after": answer["kept_after"],
    }
    figures["load_average_1m"] = round(os.getloadavg()[0], 2)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=1_000_000, help="documents the filter keeps")
    parser.add_argument("--keep", type=Path, help="build (or reuse) the workspace here, kept")
    args = parser.parse_args()
    return run_benchmark("inspect", args, Path(), benchmark)


if __name__ == "__main__":
    sys.exit(main())
