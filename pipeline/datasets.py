"""Versioned datasets: parts written atomically, a manifest written last, CURRENT moved after it.

A version folder holds one part per work unit (`part-<key>.parquet`), the documents that unit
dropped (`_rejected/part-<key>.parquet`, with a `reason` column), a marker per finished part
(`_parts/<key>.json`, its row counts, checksum and stats) and, when every part is done,
`_manifest.json`. Only a version with a manifest is ever read. A part's key is a digest of its
input and the stage config, so a finished part is reused by any later build that needs it.

The manifest holds every part's size and sha256 (and its rejected file's), and every other
file's: a part's size is checked whenever it is read through its dataset, its digest whenever a
build reuses it or reads it as input, and `textmill verify` checks them all. A file that is not
what its manifest says is an error naming it and what to do; a reused part that is not is
built again instead (with a warning).

For outside readers the folder is the kept documents: pyarrow (and so polars, Spark) skips `_`
and `.` names, DuckDB's `read_parquet('<folder>/*.parquet')` reads the top level, and a
document version's `.huggingface.yaml` tells Hugging Face `datasets` which files are which
(`load_dataset(folder)`: kept; `load_dataset(folder, "rejected")`: dropped).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, Field, ValidationError

from pipeline.crash import crash_point
from pipeline.schema import with_chars
from pipeline.storage import TMP_MARK, Storage, UnreadableFile, sha256_bytes, sha256_file
from pipeline.workspace import MANIFEST, Workspace, warn_once

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
    rejected_bytes: int | None = None  # None in parts written before they were recorded
    rejected_sha256: str = ""
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
        another version of the stage, from which they are linked in. Only a part whose files
        are what its marker says is reused; any other is built again (a warning names it)."""
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
                part = self._reusable(folder, name)
                if part is None:
                    continue
                if version != self.version:
                    self._link_part(folder, part)
                found[key] = part
        return found

    def _reusable(self, folder: str, marker: str) -> PartResult | None:
        """A finished part's marker, if the part can be reused as it is."""
        storage = self.ws.storage
        try:
            part = PartResult.model_validate(storage.read_json(f"{folder}/_parts/{marker}"))
        except (UnreadableFile, ValidationError):
            return None  # a marker only saves work: without it the part is built again
        problems = [
            f"{storage.url(f'{folder}/{rel}')}: {problem}"
            for rel, (size, sha256) in part_files(part).items()
            if (problem := file_problem(storage, f"{folder}/{rel}", size, sha256, digest=True))
        ]
        if problems and storage.exists(f"{folder}/{MANIFEST}"):
            warn_once(f"{problems[0]}: not reused, built again (`textmill verify` checks the rest)")
        return None if problems else part

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
        rejected_data = b""
        if rejected is not None:
            rejected_data = storage.write_parquet(f"{self.dir}/{rejected_rel}", rejected)
        part = PartResult(
            key=key,
            file=rel,
            rejected_file=rejected_rel,
            rows=docs.num_rows,
            rejected_rows=0 if rejected is None else rejected.num_rows,
            bytes=len(data),
            sha256=sha256_bytes(data),
            rejected_bytes=len(rejected_data) if rejected is not None else None,
            rejected_sha256=sha256_bytes(rejected_data) if rejected is not None else "",
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
        try:
            self.manifest = Manifest.model_validate(ws.read_manifest_json(path))
        except (UnreadableFile, ValidationError) as exc:
            raise DatasetError(
                f"{stage} version {version}: {_manifest_problem(ws.storage.url(path), exc)}: "
                f"the version is not usable; {repair_hint(ws, stage, version)}"
            ) from None

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
        return [f"{self.dir}/{rel}" for rel in self._part_files(rejected)]

    def _part_files(self, rejected: bool = False) -> list[str]:
        files = [p.rejected_file if rejected else p.file for p in self.manifest.parts]
        return [rel for rel in files if rel]

    def read(self, columns: list[str] | None = None, rejected: bool = False) -> pa.Table:
        tables = [self.read_parquet(rel, columns) for rel in self._part_files(rejected)]
        return pa.concat_tables(tables) if tables else pa.table({})

    def iter_batches(
        self, columns: list[str] | None = None, batch_size: int = 1024
    ) -> Iterator[pa.RecordBatch]:
        for rel in self._part_files():
            self.check([rel])
            with self._read_errors():
                yield from self.ws.storage.iter_parquet_batches(
                    f"{self.dir}/{rel}", columns, batch_size
                )

    def read_parquet(self, rel: str, columns: list[str] | None = None) -> pa.Table:
        """One Parquet file of the version (relative to its folder), its size checked first."""
        self.check([rel])
        with self._read_errors():
            return self.ws.storage.read_parquet(f"{self.dir}/{rel}", columns)

    @contextmanager
    def _read_errors(self) -> Iterator[None]:
        try:
            yield
        except UnreadableFile as exc:
            raise DatasetError(f"{exc}: {repair_hint(self.ws, self.stage, self.version)}") from None

    # ----- integrity: is every file what the manifest says? -----

    def expected_files(self) -> dict[str, tuple[int | None, str]]:
        """Every file the manifest names, relative to the version folder: (bytes, sha256), None
        and "" where it records none (files of parts written before they were recorded)."""
        files: dict[str, tuple[int | None, str]] = {}
        for part in self.manifest.parts:
            files.update(part_files(part))
        for entry in self.manifest.files:
            files[entry["file"]] = (entry.get("bytes"), entry.get("sha256", ""))
        return files

    def problems(self, files: Iterable[str] | None = None, digest: bool = True) -> list[str]:
        """One line per file (of `files`, relative to the folder; default all) that is not what
        the manifest says: missing, of another size, or (with `digest`) of other content."""
        expected = self.expected_files()
        storage = self.ws.storage
        found = []
        for rel in expected if files is None else files:
            size, sha256 = expected.get(rel, (None, ""))
            problem = file_problem(storage, f"{self.dir}/{rel}", size, sha256, digest)
            if problem:
                found.append(f"{storage.url(f'{self.dir}/{rel}')}: {problem}")
        return found

    def check(self, files: Iterable[str] | None = None, digest: bool = False) -> None:
        """Raise DatasetError naming the first file of `files` (default all) that is not what
        the manifest says, and what to do. Without `digest` only sizes: a stat per file."""
        problems = self.problems(files, digest)
        if problems:
            more = f" (and {len(problems) - 1} more files)" if len(problems) > 1 else ""
            raise DatasetError(
                f"{self.stage} version {self.version}: {problems[0]}{more}: "
                f"{repair_hint(self.ws, self.stage, self.version)}"
            )


@dataclass
class VersionCheck:
    """What `verify` found in one version."""

    stage: str
    version: str
    current: bool
    files: int  # files checked
    problems: list[str]  # one line each; none when the version is whole
    advice: str = ""  # what to do, when there are problems


def verify(ws: Workspace, stages: Iterable[str] | None = None) -> list[VersionCheck]:
    """Every version of `stages` (default: every stage on disk) checked against its manifest:
    each file it names, by size and sha256; a manifest that cannot be read; a CURRENT that names
    no committed version. Reads every byte: `textmill verify`, not every run, does this."""
    checks = []
    for stage in stages or ws.stages_on_disk():
        current = ws.current_version(stage)
        for version, problem in ws.unreadable_versions(stage).items():
            checks.append(VersionCheck(stage, version, version == current, 1, [problem]))
        for version in ws.committed_versions(stage, warn=False):
            checks.append(_check_version(ws, stage, version, version == current))
        if current and current not in {c.version for c in checks if c.stage == stage}:
            problem = f"CURRENT names version {current}, which is not committed"
            checks.append(VersionCheck(stage, current, True, 0, [problem]))
        for check in checks:
            if check.stage == stage and check.problems and not check.advice:
                check.advice = repair_hint(ws, stage, check.version)
    return checks


def _check_version(ws: Workspace, stage: str, version: str, current: bool) -> VersionCheck:
    try:
        dataset = Dataset(ws, stage, version)
    except DatasetError as exc:  # JSON, but not a manifest
        return VersionCheck(stage, version, current, 1, [str(exc)])
    problems = dataset.problems(digest=True)
    return VersionCheck(stage, version, current, len(dataset.expected_files()), problems)


def part_files(part: PartResult) -> dict[str, tuple[int | None, str]]:
    """A part's files, relative to its version folder: (bytes, sha256) where recorded."""
    files: dict[str, tuple[int | None, str]] = {part.file: (part.bytes, part.sha256)}
    if part.rejected_file:
        files[part.rejected_file] = (part.rejected_bytes, part.rejected_sha256)
    for rel in part.extra_files:
        files[rel] = (None, "")
    return files


def file_problem(
    storage: Storage, rel: str, size: int | None, sha256: str, digest: bool
) -> str | None:
    """What is wrong with a file that should have `size` bytes and this sha256, or None."""
    try:
        actual = storage.size(rel)
    except FileNotFoundError:
        return "missing"
    if size is not None and actual != size:
        return f"{actual} bytes, the manifest says {size}"
    if digest and sha256 and sha256_file(storage.fs, storage.path(rel)) != sha256:
        return "its content changed (its sha256 is not the manifest's)"
    return None


def repair_hint(ws: Workspace, stage: str, version: str) -> str:
    """What to do about a damaged version."""
    if ws.current_version(stage) == version:
        return f"`textmill run {stage} --force` builds it again"
    folder = ws.storage.url(ws.stage_dir(stage, version))
    return f"it is not the current version: delete {folder} or let `textmill gc` remove it"


def _manifest_problem(url: str, exc: Exception) -> str:
    if isinstance(exc, UnreadableFile):
        return str(exc)
    first = exc.errors()[0] if isinstance(exc, ValidationError) and exc.errors() else {}
    where = ".".join(str(x) for x in first.get("loc", ()))
    return f"{url}: not a manifest ({where}: {first.get('msg', exc)})"
