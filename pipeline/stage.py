"""The stage contract, shared by every stage: plan -> map units -> reduce -> commit.

A stage's output version is a digest of (stage, code version, config section, inputs). If that
version is committed, there is nothing to do; otherwise it is built in its own folder beside the
old ones, unit by unit (each unit's part reused if any earlier build already made it), and
`CURRENT` moves only after the manifest is written. The Prefect flows and the plain runner both
call `begin`, map `process` over `build.todo`, then call `finish`, which runs the stage's
`reduce` step (if any: work over all parts at once, such as training a tokenizer) and commits.
Before any work, the input parts it will read are checked against their manifests (size and
sha256), so a part changed on disk is an error that names it, never passed on unseen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.config import RunConfig, Section
from pipeline.datasets import (
    Dataset,
    DatasetError,
    Manifest,
    PartResult,
    VersionBuilder,
    version_key,
)
from pipeline.workspace import Workspace


@dataclass
class Reduced:
    """What a reduce step made: more output files (their manifest entries), figures, and, for a
    stage whose documents are only known after seeing every part (dedup), the document parts
    that replace the map's parts in the manifest (the map's parts stay in the folder, cached)."""

    files: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    parts: list[PartResult] | None = None


Reduce = Callable[["Build", list[PartResult]], Reduced]


@dataclass(frozen=True)
class MapStage:
    """A stage that maps a function over work units, one part per unit, then optionally reduces
    all parts into more output files (returning their manifest entries and figures)."""

    name: str
    code_version: str
    upstream: Callable[[RunConfig], tuple[str, ...]]  # stages whose outputs it reads
    section: Callable[[RunConfig], Section]  # the stage's config section
    list_inputs: Callable[[RunConfig, Workspace], Any]  # cheap: decides the version
    describe_inputs: Callable[[Any], Any]  # JSON-able form of the inputs, for version + manifest
    # Map: units planned from the inputs (only when building), each processed into one part.
    plan_units: Callable[[RunConfig, Workspace, Any], list[Any]] = lambda cfg, ws, inputs: []
    unit_key: Callable[[Any, Section], str] | None = None
    process: Callable[[Any, str, Section, VersionBuilder], PartResult] | None = None
    reduce: Reduce | None = None
    # One line on what a version holds, for stages whose output is not documents.
    headline: Callable[[Manifest], str] | None = None


@dataclass
class Build:
    """One version of one stage, being built (or found up to date)."""

    stage: MapStage
    version: str
    key: str
    config: Section
    inputs: Any
    builder: VersionBuilder
    run_config: RunConfig
    raw_inputs: Any = None  # what list_inputs returned, for the reduce step
    up_to_date: bool = False
    todo: list[tuple[Any, str]] = field(default_factory=list)  # (unit, part key) to process
    keys: list[str] = field(default_factory=list)  # every part key, in plan order
    done: dict[str, PartResult] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)


def _version_key(stage: MapStage, cfg: RunConfig, raw_inputs: Any) -> tuple[str, Any]:
    """(version key, the inputs as the key and the manifest record them)."""
    inputs = stage.describe_inputs(raw_inputs)
    return version_key(stage.name, stage.code_version, stage.section(cfg).digest(), inputs), inputs


def target_key(stage: MapStage, cfg: RunConfig, ws: Workspace) -> tuple[str, Any]:
    """The version the config asks for now."""
    return _version_key(stage, cfg, stage.list_inputs(cfg, ws))


def current_manifest(ws: Workspace, stage: str) -> Manifest | None:
    """The manifest of the stage's current version, or None if it has none (yet)."""
    current = ws.current_version(stage)
    if current is None or not ws.is_committed(stage, current):
        return None
    return Dataset(ws, stage, current).manifest


def begin(
    stage: MapStage, cfg: RunConfig, ws: Workspace, force: bool = False, check_inputs: bool = True
) -> Build:
    """Decide the version and what is left to do. Call with the workspace lock held.
    `check_inputs=False`: the caller reads no input part (a takedown rewrites the stage's own)."""
    raw_inputs = stage.list_inputs(cfg, ws)
    key, inputs = _version_key(stage, cfg, raw_inputs)
    section = stage.section(cfg)
    existing = _committed_with_key(ws, stage.name, key)
    if existing and not force:
        if ws.current_version(stage.name) != existing:
            ws.set_current(stage.name, existing)  # e.g. a config change reverted: no work
        return Build(
            stage,
            existing,
            key,
            section,
            inputs,
            VersionBuilder(ws, stage.name, existing),
            cfg,
            up_to_date=True,
        )
    version = _forced_folder(ws, stage.name, key) if force else key
    builder = VersionBuilder(ws, stage.name, version)
    build = Build(stage, version, key, section, inputs, builder, cfg, raw_inputs)
    units = stage.plan_units(cfg, ws, raw_inputs)
    keyed = [(unit, stage.unit_key(unit, section)) for unit in units]
    build.keys = [k for _, k in keyed]
    # A forced build reuses nothing but what it made itself before it was killed.
    build.done = build.builder.finished_parts(set(build.keys), elsewhere=not force)
    build.todo = [(unit, k) for unit, k in keyed if k not in build.done]
    if check_inputs:
        # A reduce step may read any input part, and a stage without units all of its input.
        reads = keyed if stage.reduce else build.todo
        _check_inputs(stage, cfg, ws, [unit for unit, _ in reads], every_part=not keyed)
    return build


def _check_inputs(
    stage: MapStage, cfg: RunConfig, ws: Workspace, units: list[Any], every_part: bool
) -> None:
    """Raise DatasetError unless every upstream file the units name (a path among their fields)
    is what its manifest says, size and sha256; with `every_part`, every input part. Hashing is
    cheap beside the work that reads the parts: on this project's 2-core machine sha256 runs at
    1.4 GB/s, curation at 716 documents/s (bench/curate.py)."""
    fields = [getattr(unit, "__dict__", {}) for unit in units]
    named = {value for unit in fields for value in unit.values() if isinstance(value, str)}
    for name in stage.upstream(cfg):
        if ws.current_version(name) is None:
            continue
        dataset = Dataset.current(ws, name)
        files = dataset.expected_files()
        if every_part:
            reads = [part.file for part in dataset.manifest.parts]
        else:
            reads = [rel for rel in files if f"{dataset.dir}/{rel}" in named]
        dataset.check(reads, digest=True)


def finish(build: Build, results: list[PartResult]) -> Manifest:
    """Commit the version once every unit is done."""
    parts = {**build.done, **{p.key: p for p in results}}
    missing = [k for k in build.keys if k not in parts]
    if missing:
        raise RuntimeError(f"{build.stage.name}: {len(missing)} work units did not finish")
    ordered = [parts[k] for k in build.keys]
    reduced = build.stage.reduce(build, ordered) if build.stage.reduce else Reduced()
    return build.builder.commit(
        key=build.key,
        code_version=build.stage.code_version,
        config=build.config.model_dump(mode="json"),
        config_digest=build.config.digest(),
        inputs=build.inputs,
        parts=ordered if reduced.parts is None else reduced.parts,
        seconds=time.perf_counter() - build.started,
        files=reduced.files,
        stats=reduced.stats,
    )


def summary(
    stage: MapStage,
    manifest: Manifest,
    built: bool,
    units_run: int = 0,
    units_reused: int = 0,
) -> dict[str, Any]:
    """What a run did, for the CLI and the flows' return values."""
    return {
        "stage": manifest.stage,
        "version": manifest.version,
        "built": built,
        "units_run": units_run,
        "units_reused": units_reused,
        "docs_in": manifest.docs_in,
        "docs_out": manifest.docs_out,
        "dropped": manifest.dropped,
        "errors": len(manifest.errors),
        "wall_s": manifest.timings.get("wall_s"),
        "headline": stage.headline(manifest) if stage.headline else None,
    }


def build_summary(build: Build, manifest: Manifest) -> dict[str, Any]:
    return summary(build.stage, manifest, not build.up_to_date, len(build.todo), len(build.done))


def up_to_date(stage: MapStage, cfg: RunConfig, ws: Workspace) -> Manifest | None:
    """The current version's manifest if it is what the config asks for now, else None.
    Reads only: callers use it to skip work (and Prefect's start-up) without taking the lock.
    A current version whose manifest cannot be read is not up to date: a build replaces it."""
    try:
        manifest = current_manifest(ws, stage.name)
    except DatasetError:
        return None
    return manifest if manifest and manifest.key == target_key(stage, cfg, ws)[0] else None


MapFn = Callable[[Callable[..., PartResult], list[tuple[Any, ...]]], list[PartResult]]


def run(
    stage: MapStage, cfg: RunConfig, ws: Workspace, map_fn: MapFn, force: bool = False
) -> dict[str, Any]:
    """Build a stage without Prefect: `map_fn(process, [args, ...])` does the parallel part."""
    with ws.lock(f"textmill run {stage.name}"):
        build = begin(stage, cfg, ws, force)
        if build.up_to_date:
            return build_summary(build, Dataset(ws, stage.name, build.version).manifest)
        args = [(unit, key, build.config, build.builder) for unit, key in build.todo]
        return build_summary(build, finish(build, map_fn(stage.process, args)))


def _committed_with_key(ws: Workspace, stage: str, key: str) -> str | None:
    """The committed folder holding version `key`: the current one if it does, else the
    newest (a forced rebuild is newer than what it rebuilt). A folder whose manifest cannot be
    read holds nothing committed (`committed_versions` warns of it)."""
    current = ws.current_version(stage)
    committed = ws.committed_versions(stage)
    candidates = [current] if current in committed else []
    candidates += [v for v in reversed(committed) if v.startswith(key)]
    for version in candidates:
        try:
            if Dataset(ws, stage, version).manifest.key == key:
                return version
        except DatasetError:
            continue  # JSON, but not a manifest: not committed either
    return None


def _forced_folder(ws: Workspace, stage: str, key: str) -> str:
    """A forced rebuild keeps the version key but gets its own folder, `<key>-r<N>`: a killed
    one's folder (to resume it), else a new one."""
    taken = set(ws.versions(stage))
    n = 1
    while f"{key}-r{n}" in taken:
        if not ws.is_committed(stage, f"{key}-r{n}"):
            return f"{key}-r{n}"
        n += 1
    return f"{key}-r{n}"
