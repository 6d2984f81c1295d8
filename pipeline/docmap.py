"""Stages that map a function over the documents of another stage's dataset, part by part.

`clean` and `filter` are such stages (and dedup's map step reads its input the same way). Each
input part is one work unit; its output part is keyed by the input part's content and the
stage's config, so a new crawl generation costs only its own parts. Which dataset a stage reads
is part of its config (`clean.dataset`, `filter.dataset`, ...), so stages can be reordered.

A document function (what a stage module's `prepare(cfg)` returns) takes one document as a
dict, edits it in place (text, flags, score columns), adds tallies to a Counter, and returns
None to keep it or `(reason, detail)` to drop it. Dropped documents keep every column, plus
`stage`, `reason` and `detail`, in the version's `rejected/` folder. Before it, every stage drops
what the workspace's takedown list names (reason `takedown`, pipeline/takedown.py); the list's
digest is part of every part's key and of the version's inputs.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from pipeline import progress, takedown
from pipeline.config import ConfigError, Section
from pipeline.datasets import Dataset, PartResult, VersionBuilder, short_digest
from pipeline.schema import rejected_schema_of
from pipeline.workspace import Workspace

DocumentFn = Callable[[dict[str, Any], Counter], tuple[str, str] | None]
Prepare = Callable[[Any], DocumentFn]

BATCH_ROWS = 1024


@dataclass(frozen=True)
class PartUnit:
    """One part of the input dataset."""

    dataset: str
    path: str  # workspace-relative
    sha256: str
    rows: int
    context: str = ""  # digest of the files the stage reads besides its input (models, lists)
    takedown: str = ""  # digest of the workspace's takedown list


def list_parts(ws: Workspace, dataset: str, files: Sequence[str] = ()) -> list[PartUnit]:
    """The parts of `dataset`'s current version, in manifest order. `files`: what else the
    stage reads (a model, a blocklist); their content is part of every part's key."""
    current = Dataset.current(ws, dataset)
    try:
        digests = ws.file_digests(list(files))
    except FileNotFoundError as exc:
        raise ConfigError(f"a file the config lists is missing: {exc.filename or exc}") from None
    context = short_digest(sorted((path, sha) for path, (sha, _) in digests.items()))
    listed = takedown.digest(takedown.load(ws))
    return [
        PartUnit(dataset, f"{current.dir}/{part.file}", part.sha256, part.rows, context, listed)
        for part in current.manifest.parts
    ]


def describe_parts(parts: list[PartUnit]) -> dict[str, Any]:
    """What a version depends on: the dataset's name and content, not its folder name (a forced
    rebuild of the input with identical output leaves this stage up to date)."""
    name = parts[0].dataset if parts else None
    return {
        "dataset": name,
        "parts": len(parts),
        "rows": sum(p.rows for p in parts),
        "content": short_digest([p.sha256 for p in parts]),
        "files": parts[0].context if parts else None,
        "takedown": parts[0].takedown if parts else None,
    }


def part_key(stage_module: Any, unit: PartUnit, cfg: Section) -> str:
    """A part depends on its input's content, the stage's code and settings, the takedown list,
    not on which stage the input came from."""
    settings = cfg.model_dump(mode="json", exclude={"dataset"})
    identity = (unit.sha256, unit.context, unit.takedown)
    return short_digest(stage_module.NAME, stage_module.CODE_VERSION, settings, identity)


_prepared: dict[tuple[str, str, str], DocumentFn] = {}


def prepared(prepare: Prepare, cfg: Section) -> DocumentFn:
    """`prepare(cfg)` once per process and config: models and pattern sets load once."""
    key = (prepare.__module__, prepare.__qualname__, cfg.digest())
    if key not in _prepared:
        _prepared[key] = prepare(cfg)
    return _prepared[key]


def map_documents(
    stage: str,
    unit: PartUnit,
    key: str,
    cfg: Section,
    out: VersionBuilder,
    prepare: Prepare,
    added_fields: Sequence[pa.Field] = (),
) -> PartResult:
    """Apply a stage's document function to one input part and write the output part."""
    started = time.perf_counter()
    document_fn = prepared(prepare, cfg)
    listed = takedown.load_checked(out.ws, unit.takedown, stage)
    storage = out.ws.storage
    schema = storage.read_parquet_schema(unit.path)
    for column in added_fields:
        if schema.get_field_index(column.name) < 0:
            schema = schema.append(column)
    rejected_schema = rejected_schema_of(schema)
    kept: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    counts: Counter[str] = Counter()
    report = progress.unit(key)
    for batch in storage.iter_parquet_batches(unit.path, None, BATCH_ROWS):
        for doc in batch.to_pylist():
            report.advance()
            entry = takedown.matches(listed, doc.get("url"), doc.get("hostname"))
            if entry is not None:
                rejected.append(takedown.rejected_row(doc, entry, stage))
                continue
            verdict = document_fn(doc, counts)
            if verdict is None:
                kept.append(doc)
            else:
                reason, detail = verdict
                rejected.append({**doc, "stage": stage, "reason": reason, "detail": detail})
    part = out.write_part(
        key,
        pa.Table.from_pylist(kept, schema=schema),
        pa.Table.from_pylist(rejected, schema=rejected_schema),
        counts=dict(counts),
        dropped=dict(Counter(doc["reason"] for doc in rejected)),
        seconds=round(time.perf_counter() - started, 3),
        unit={"part": unit.path},
    )
    report.finish()
    return part
