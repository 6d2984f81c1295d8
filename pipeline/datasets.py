"""Versioned datasets: parts written atomically, a manifest written last, CURRENT moved after it.

A version folder holds one part per work unit (`part-<key>.parquet`), the documents that unit
dropped (`_rejected/part-<key>.parquet`, with a `reason` column), a marker per finished part
(`_parts/<key>.json`, its row counts, checksum and stats) and, when every part is done,
`_manifest.json`. Only a version with a manifest is ever read. A part's key is a digest of its
input and the stage config, so a finished part is reused by any later build that needs it.

For outside readers the folder is the kept documents: pyarrow (and so polars, Spark) skips `_`
and `.` names, DuckDB's `read_parquet('<folder>/*.parquet')` reads the top level, and a
document version's `.huggingface.yaml` tells Hugging Face `datasets` which files are which
(`load_dataset(folder)`: kept; `load_dataset(folder, "rejected")`: dropped).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, Field

from pipeline.crash import crash_point
from pipeline.schema import with_chars
from pipeline.storage import TMP_MARK, sha256_bytes
from pipeline.workspace import MANIFEST, Workspace

REJECTED_FOLDER = "_rejected"  # "_": readers of the version folder as a dataset skip it


class DatasetError(RuntimeError):
    """A dataset that is missing or cannot be read; the message says which and what to do."""


def short_digest(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def version_key(stage: str, code_version: str, config_digest: str, inputs: Any) -> str:
    """What a version is a function of: the stage, its code, its config section, its inputs."""
    return short_digest("version", stage, code_version, config_digest, inputs)


class PartResult(BaseModel):
    """What one work unit produced; small, so tasks can pass it between processes."""

    key: str
    file: str  # relative to the version folder
    rejected_file: str  # "" for parts that are not documents
    rows: int
    rejected_rows: int
    bytes: int
    sha256: str
    counts: dict[str, int] = Field(default_factory=dict)  # stage-specific tallies
    dropped: dict[str, int] = Field(default_factory=dict)  # reason -> documents
    errors: list[dict[str, Any]] = Field(default_factory=list)  # input problems, with where
    seconds: float = 0.0
    unit: dict[str, Any] = Field(default_factory=dict)  # which input this part came from
    extra_files: list[str] = Field(default_factory=list)  # more files of this part, if any


class Manifest(BaseModel):
    stage: str
    version: str  # the folder name
    key: str  # the version key; a forced rebuild gets a new folder with the same key
    code_version: str
    config: dict[str, Any]
    config_digest: str
    inputs: Any
    created_at: str
    parts: list[PartResult]
    docs_in: int
    docs_out: int
    dropped: dict[str, int]
    counts: dict[str, int]
    errors: list[dict[str, Any]]
    timings: dict[str, float]
    files: list[dict[str, Any]] = Field(default_factory=list)  # stage outputs beside the parts
    stats: dict[str, Any] = Field(default_factory=dict)  # stage-specific figures

    @property
    def content(self) -> str:
        """A digest of what the version holds (every part's and output file's sha256), not of
        its folder name: the stages after it key on this, so a forced rebuild whose output is
        byte-identical leaves them up to date."""
        return short_digest([p.sha256 for p in self.parts], [f["sha256"] for f in self.files])


class VersionBuilder:
    """Writes the parts of one version and commits it."""

    def __init__(self, ws: Workspace, stage: str, version: str):
        self.ws = ws
        self.stage = stage
        self.version = version
        self.dir = ws.stage_dir(stage, version)

    def __reduce__(self) -> tuple[object, ...]:
        return (VersionBuilder, (self.ws, self.stage, self.version))

    def part_marker(self, key: str) -> str:
        return f"{self.dir}/_parts/{key}.json"

    def finished_parts(self, keys: set[str], elsewhere: bool = True) -> dict[str, PartResult]:
        """Those of `keys` already finished: here (a killed build) or, if `elsewhere`, in
        another version of the stage, from which they are linked in."""
        storage = self.ws.storage
        versions = [self.version]
        if elsewhere:
            versions += [v for v in self.ws.versions(self.stage) if v != self.version]
        found: dict[str, PartResult] = {}
        for version in versions:
            folder = self.ws.stage_dir(self.stage, version)
            for name in storage.listdir(f"{folder}/_parts"):
                key = name.removesuffix(".json")
                if key not in keys or key in found:
                    continue
                part = PartResult.model_validate(storage.read_json(f"{folder}/_parts/{name}"))
                if version != self.version:
                    self._link_part(folder, part)
                found[key] = part
        return found

    def _link_part(self, folder: str, part: PartResult) -> None:
        storage = self.ws.storage
        for rel in filter(None, (part.file, part.rejected_file, *part.extra_files)):
            storage.copy(f"{folder}/{rel}", f"{self.dir}/{rel}")
        storage.write_json(self.part_marker(part.key), part.model_dump(mode="json"))

    def write_file(self, rel: str, data: bytes) -> dict[str, Any]:
        """Write one output file of the version (atomically); its manifest entry."""
        self.ws.storage.write_bytes(f"{self.dir}/{rel}", data)
        return {"file": rel, "bytes": len(data), "sha256": sha256_bytes(data)}

    def write_part(
        self, key: str, docs: pa.Table, rejected: pa.Table | None, folder: str = "", **stats: Any
    ) -> PartResult:
        """Write one unit's output: documents, rejected documents, then the 'done' marker.
        A part that is not documents (e.g. dedup's signatures) goes in a `_` folder, which
        readers of the version folder as a Parquet dataset skip, and has no rejected file."""
        storage = self.ws.storage
        docs, rejected = (
            with_chars(table) if table is not None and "text" in table.column_names else table
            for table in (docs, rejected)
        )
        rel = f"{folder}part-{key}.parquet"
        rejected_rel = "" if rejected is None else f"{REJECTED_FOLDER}/part-{key}.parquet"
        data = storage.write_parquet(f"{self.dir}/{rel}", docs, crash_name="part.write")
        if rejected is not None:
            storage.write_parquet(f"{self.dir}/{rejected_rel}", rejected)
        part = PartResult(
            key=key,
            file=rel,
            rejected_file=rejected_rel,
            rows=docs.num_rows,
            rejected_rows=0 if rejected is None else rejected.num_rows,
            bytes=len(data),
            sha256=sha256_bytes(data),
            **stats,
        )
        crash_point("part.done")
        storage.write_json(self.part_marker(key), part.model_dump(mode="json"))
        return part

    def commit(
        self,
        key: str,
        code_version: str,
        config: dict[str, Any],
        config_digest: str,
        inputs: Any,
        parts: list[PartResult],
        seconds: float,
        files: list[dict[str, Any]] | None = None,
        stats: dict[str, Any] | None = None,
    ) -> Manifest:
        """Write the manifest (the commit point), move CURRENT, drop dead builds."""
        for leftover in self.ws.storage.glob(f"{self.dir}/**/*{TMP_MARK}*"):
            self.ws.storage.remove(leftover)  # half-written files of a killed earlier attempt
        dropped: Counter[str] = Counter()
        counts: Counter[str] = Counter()
        for part in parts:
            dropped.update(part.dropped)
            counts.update(part.counts)
        docs_out = sum(p.rows for p in parts)
        manifest = Manifest(
            stage=self.stage,
            version=self.version,
            key=key,
            code_version=code_version,
            config=config,
            config_digest=config_digest,
            inputs=inputs,
            created_at=datetime.now(UTC).isoformat(),  # microseconds: orders quick rebuilds
            parts=parts,
            docs_in=docs_out + sum(dropped.values()),
            docs_out=docs_out,
            dropped=dict(sorted(dropped.items())),
            counts=dict(sorted(counts.items())),
            errors=[err for p in parts for err in p.errors],
            timings={
                "wall_s": round(seconds, 3),
                "unit_s": round(sum(p.seconds for p in parts), 3),
            },
            files=files or [],
            stats=stats or {},
        )
        if any(part.rejected_file for part in parts):  # a document dataset
            self.ws.storage.write_text(f"{self.dir}/{HF_CONFIGS_FILE}", HF_CONFIGS)
        self.ws.storage.write_json(
            f"{self.dir}/{MANIFEST}", manifest.model_dump(mode="json"), crash_name="manifest.write"
        )
        self.ws.set_current(self.stage, self.version)
        self.ws.remove_uncommitted(self.stage, keep=None)
        return manifest


# Hugging Face `datasets` reads a folder's `.huggingface.yaml` as its dataset card header (a
# README.md would do too, but pyarrow would then fail on a file that is not Parquet).
HF_CONFIGS_FILE = ".huggingface.yaml"
HF_CONFIGS = f"""# Read by Hugging Face datasets: load_dataset(folder) gives the kept documents,
# load_dataset(folder, "rejected") the documents this stage dropped, with their reasons.
configs:
- config_name: default
  data_files: [{{split: train, path: part-*.parquet}}]
- config_name: rejected
  data_files: [{{split: train, path: {REJECTED_FOLDER}/part-*.parquet}}]
"""


class Dataset:
    """A committed version of a stage's output."""

    def __init__(self, ws: Workspace, stage: str, version: str):
        path = f"{ws.stage_dir(stage, version)}/{MANIFEST}"
        if not ws.storage.exists(path):
            raise DatasetError(f"{stage} version {version} has no manifest (not committed)")
        self.ws = ws
        self.stage = stage
        self.version = version
        self.dir = ws.stage_dir(stage, version)
        self.manifest = Manifest.model_validate(ws.storage.read_json(path))

    @classmethod
    def current(cls, ws: Workspace, stage: str) -> Dataset:
        version = ws.current_version(stage)
        if version is None:
            raise DatasetError(
                f"no {stage} dataset in workspace {ws.root}: run `textmill run {stage}` first"
            )
        return cls(ws, stage, version)

    def part_paths(self, rejected: bool = False) -> list[str]:
        """The parts' files, or their rejected files (parts that are not documents have none)."""
        files = [p.rejected_file if rejected else p.file for p in self.manifest.parts]
        return [f"{self.dir}/{rel}" for rel in files if rel]

    def read(self, columns: list[str] | None = None, rejected: bool = False) -> pa.Table:
        tables = [self.ws.storage.read_parquet(p, columns) for p in self.part_paths(rejected)]
        return pa.concat_tables(tables) if tables else pa.table({})

    def iter_batches(
        self, columns: list[str] | None = None, batch_size: int = 1024
    ) -> Iterator[pa.RecordBatch]:
        for path in self.part_paths():
            yield from self.ws.storage.iter_parquet_batches(path, columns, batch_size)
