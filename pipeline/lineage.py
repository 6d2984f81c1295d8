"""Lineage: the chain crawl generations -> dataset versions -> tokenizer -> shards -> model runs.

Every step records what it read, and the chain is found by following those records back: a
model run names its shards version (`run.json`), the shards their tokenizer and dataset
versions, the tokenizer its dataset version, a document stage its input dataset (by a digest of
its parts, matched here to the version that holds them) and extract its input files with their
crawl generations. So a model is traced to the exact WARC files, and pages, it learned from,
even after newer versions have become current (as long as `textmill gc` kept them).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline import shards, tokenizer
from pipeline.config import RunConfig
from pipeline.datasets import Dataset, DatasetError, Manifest, short_digest
from pipeline.workspace import MANIFEST, TOP_LEVEL_STAGES, Workspace

RUNS = "runs"


@dataclass
class Step:
    """One link of the chain."""

    kind: str  # crawl | files | dataset | tokenizer | shards | run
    name: str  # the source, stage or run
    version: str | None  # crawl: the generation
    created_at: str | None = None
    config_digest: str | None = None
    code_version: str | None = None
    inputs: list[str] = field(default_factory=list)  # "<name> <version>" of what it read
    detail: str = ""


def lineage(cfg: RunConfig, ws: Workspace, run: str | None = None) -> dict[str, Any]:
    """The chain that led to a model run (`run`), or, without one, to the current shards (or
    the newest step built so far) and the runs trained on them. Returns the steps, inputs
    before the steps that read them, the WARC files at the start of the chain, and the other
    runs in the workspace (with the shards version each was trained on)."""
    runs = _runs(ws)
    if run is not None and run not in runs:
        raise DatasetError(
            f"no run {run!r} in {ws.storage.url(RUNS)}; runs: {', '.join(runs) or 'none'}"
        )
    chain = _Chain(ws)
    if run is not None:
        chain.visit("shards", runs[run]["shards_version"])
        on_chain = [run]
    else:
        target = _newest_built(cfg, ws)
        chain.visit(*target)
        on_chain = [name for name, r in runs.items() if target == ("shards", r["shards_version"])]
    for name in on_chain:
        chain.steps.append(_run_step(ws, name, runs[name]))
    return {
        "steps": [asdict(step) for step in chain.steps],
        "warc_files": chain.files,
        "other_runs": [
            {"run": name, "shards_version": r["shards_version"]}
            for name, r in runs.items()
            if name not in on_chain
        ],
    }


def _runs(ws: Workspace) -> dict[str, dict[str, Any]]:
    """run name -> its run.json, for every run that has one."""
    found = {}
    for name in ws.storage.listdir(RUNS):
        path = f"{RUNS}/{name}/run.json"
        if ws.storage.exists(path):
            found[name] = ws.storage.read_json(path)
    return found


def _newest_built(cfg: RunConfig, ws: Workspace) -> tuple[str, str]:
    """The furthest step of the chain that has a current version."""
    for stage in ("shards", "tokenizer", cfg.tokenizer.dataset):
        version = ws.current_version(stage)
        if version is not None:
            return stage, version
    raise DatasetError(
        f"nothing built in workspace {ws.root} yet: run `textmill run {cfg.tokenizer.dataset}`"
    )


def _run_step(ws: Workspace, name: str, recorded: dict[str, Any]) -> Step:
    metrics = f"{RUNS}/{name}/metrics.jsonl"
    lines = ws.storage.read_text(metrics).splitlines() if ws.storage.exists(metrics) else []
    last = json.loads(lines[-1]) if lines else {}
    try:
        modified = ws.storage.fs.modified(ws.storage.path(metrics)).isoformat()
    except (FileNotFoundError, NotImplementedError):
        modified = None
    return Step(
        kind="run",
        name=name,
        version=None,
        created_at=modified,
        config_digest=short_digest(recorded.get("train")),
        inputs=[
            f"shards {recorded['shards_version']}",
            f"tokenizer {recorded['tokenizer_version']}",
        ],
        detail=f"{recorded.get('params', 0):,} parameters, step {last.get('step', 0)}"
        + (f", loss {last['loss']}" if "loss" in last else "")
        + (f", started from {recorded['started_from']}" if recorded.get("started_from") else ""),
    )


class _Chain:
    """Steps found by following inputs back, each after the steps it read (depth first)."""

    def __init__(self, ws: Workspace):
        self.ws = ws
        self.steps: list[Step] = []
        self.seen: set[tuple[str, str | None]] = set()
        self.files: list[dict[str, Any]] = []

    def visit(self, stage: str, version: str | None) -> str:
        """Add the step of `stage` at `version` (and everything it read); its "name version"."""
        label = f"{stage} {version}"
        if (stage, version) in self.seen:
            return label
        self.seen.add((stage, version))
        try:
            manifest = Dataset(self.ws, stage, version).manifest
        except DatasetError:
            self.steps.append(
                Step("dataset", stage, version, detail="not found: removed by `textmill gc`?")
            )
            return label
        inputs = self._inputs(stage, manifest)
        kind = stage if stage in TOP_LEVEL_STAGES else "dataset"
        self.steps.append(
            Step(
                kind=kind,
                name=stage,
                version=version,
                created_at=manifest.created_at,
                config_digest=manifest.config_digest,
                code_version=manifest.code_version,
                inputs=inputs,
                detail=_describe(stage, manifest),
            )
        )
        return label

    def _inputs(self, stage: str, manifest: Manifest) -> list[str]:
        recorded = manifest.inputs
        built_from = manifest.stats  # the very folders the build read (its key: their content)
        if stage == "shards":
            return [
                self.visit("tokenizer", built_from["tokenizer_version"]),
                self.visit(built_from["dataset"], built_from["dataset_version"]),
            ]
        if stage == "tokenizer":
            return [self.visit(built_from["dataset"], built_from["dataset_version"])]
        if isinstance(recorded, dict):  # a document stage reading another: by content
            upstream = recorded["dataset"]
            return [self.visit(upstream, self._version_with(upstream, recorded, manifest))]
        return self._read_files(recorded)  # extract: input files, by crawl generation

    def _version_with(self, stage: str, recorded: dict[str, Any], reader: Manifest) -> str | None:
        """The version of `stage` whose parts are the content `reader` recorded: the newest
        committed before `reader` (a forced rebuild has the same content), else any."""
        matches = []
        for version in self.ws.committed_versions(stage):
            manifest = Dataset(self.ws, stage, version).manifest
            if short_digest([p.sha256 for p in manifest.parts]) == recorded["content"]:
                matches.append(manifest)
        before = [m for m in matches if m.created_at <= reader.created_at]
        chosen = (before or matches)[-1:] if matches else []
        return chosen[0].version if chosen else None

    def _read_files(self, files: list[dict[str, Any]]) -> list[str]:
        """extract's inputs: a step per crawl generation, one per source's listed files."""
        self.files += files
        generations = dict.fromkeys(
            (f["source"], f["generation"]) for f in files if f["generation"]
        )
        listed = Counter(f["source"] for f in files if f["generation"] is None)
        for source, generation in generations:
            self.steps.append(self._generation(source, generation))
        for source, count in listed.items():
            self.steps.append(Step("files", source, None, detail=f"{count} files the config lists"))
        return [f"crawl/{s} {g}" for s, g in generations] + [f"files {s}" for s in listed]

    def _generation(self, source: str, generation: str) -> Step:
        recorded = self.ws.storage.read_json(f"crawl/{source}/{generation}/{MANIFEST}")
        counts = recorded.get("counts", {})
        return Step(
            kind="crawl",
            name=source,
            version=generation,
            created_at=recorded.get("created_at"),
            detail=f"{len(recorded.get('files', []))} WARC files, "
            f"{counts.get('fetched', 0)} pages fetched",
        )


def _describe(stage: str, manifest: Manifest) -> str:
    if stage == "shards":
        return shards.headline(manifest)
    if stage == "tokenizer":
        return tokenizer.headline(manifest)
    return f"{manifest.docs_out:,} documents of {manifest.docs_in:,}"
