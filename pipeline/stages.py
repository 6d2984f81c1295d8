"""The stages in pipeline order, and `status`: each stage up to date, stale (and why) or missing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline import extract
from pipeline.config import RunConfig
from pipeline.datasets import Dataset
from pipeline.stage import MapStage, target_key
from pipeline.workspace import Workspace

EXTRACT = MapStage(
    name=extract.NAME,
    code_version=extract.CODE_VERSION,
    section=lambda cfg: cfg.extract,
    list_inputs=extract.list_inputs,
    describe_inputs=extract.version_inputs,
    plan_units=lambda cfg, files: extract.plan_units(files, int(cfg.runner.chunk_mb * 2**20)),
    unit_key=extract.unit_key,
    process=extract.process_unit,
)

STAGES: dict[str, MapStage] = {stage.name: stage for stage in (EXTRACT,)}


def get_stage(name: str) -> MapStage:
    if name not in STAGES:
        raise KeyError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
    return STAGES[name]


@dataclass
class StageStatus:
    stage: str
    state: str  # "up to date" | "stale" | "missing"
    version: str | None = None  # the current version, if any
    reasons: list[str] = field(default_factory=list)
    docs_out: int | None = None
    dropped: dict[str, int] = field(default_factory=dict)
    errors: int = 0

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def stage_status(stage: MapStage, cfg: RunConfig, ws: Workspace) -> StageStatus:
    current = ws.current_version(stage.name)
    if current is None or not ws.is_committed(stage.name, current):
        return StageStatus(stage.name, "missing", reasons=["never built"])
    manifest = Dataset(ws, stage.name, current).manifest
    status = StageStatus(
        stage.name,
        "up to date",
        current,
        docs_out=manifest.docs_out,
        dropped=manifest.dropped,
        errors=len(manifest.errors),
    )
    key, inputs = target_key(stage, cfg, ws)
    if key != manifest.key:
        status.state = "stale"
        status.reasons = _why_stale(stage, cfg, manifest, inputs)
    return status


def _why_stale(stage: MapStage, cfg: RunConfig, manifest: Any, inputs: Any) -> list[str]:
    reasons = []
    if manifest.code_version != stage.code_version:
        reasons.append(f"code changed (v{manifest.code_version} -> v{stage.code_version})")
    config = stage.section(cfg).model_dump(mode="json")
    for name in sorted(set(config) | set(manifest.config)):
        old, new = manifest.config.get(name), config.get(name)
        if old != new:
            reasons.append(f"{stage.name}.{name} changed: {old!r} -> {new!r}")
    if inputs != manifest.inputs:
        reasons.append(_describe_input_change(manifest.inputs, inputs))
    return reasons or ["version differs"]


def _describe_input_change(old: Any, new: Any) -> str:
    """Inputs listed as files ({path, sha256, ...}): say how many were added/removed/changed."""
    if not (isinstance(old, list) and isinstance(new, list)):
        return "inputs changed"
    before = {item.get("path"): item for item in old}
    after = {item.get("path"): item for item in new}
    added = len(after.keys() - before.keys())
    removed = len(before.keys() - after.keys())
    changed = sum(1 for p in after.keys() & before.keys() if after[p] != before[p])
    return f"inputs changed: {added} new, {removed} removed, {changed} changed files"
