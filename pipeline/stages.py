"""The stages in pipeline order, and `status`: each stage up to date, stale (and why) or missing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline import clean, dedup, docmap, extract, shards, tokenizer
from pipeline import filter as filter_stage
from pipeline.config import ConfigError, RunConfig
from pipeline.datasets import DatasetError
from pipeline.stage import MapStage, current_manifest, target_key
from pipeline.workspace import Workspace

EXTRACT = MapStage(
    name=extract.NAME,
    code_version=extract.CODE_VERSION,
    upstream=lambda cfg: (),  # crawl generations and listed WARC files
    section=lambda cfg: cfg.extract,
    list_inputs=extract.list_inputs,
    describe_inputs=extract.version_inputs,
    plan_units=lambda cfg, ws, files: extract.plan_units(
        ws, files, int(cfg.runner.chunk_mb * 2**20)
    ),
    unit_key=extract.unit_key,
    process=extract.process_unit,
)


def clean_part(unit: docmap.PartUnit, key: str, cfg: Any, out: Any) -> Any:
    return docmap.map_documents(clean.NAME, unit, key, cfg, out, clean.prepare)


def filter_part(unit: docmap.PartUnit, key: str, cfg: Any, out: Any) -> Any:
    fields = filter_stage.score_fields(cfg)
    return docmap.map_documents(
        filter_stage.NAME, unit, key, cfg, out, filter_stage.prepare, fields
    )


def _document_stage(module: Any, section: Callable[[RunConfig], Any], **steps: Any) -> MapStage:
    """A stage that reads the document dataset its config section names, part by part."""
    return MapStage(
        name=module.NAME,
        code_version=module.CODE_VERSION,
        upstream=lambda cfg: (section(cfg).dataset,),
        section=section,
        list_inputs=lambda cfg, ws: docmap.list_parts(ws, section(cfg).dataset),
        describe_inputs=docmap.describe_parts,
        plan_units=lambda cfg, ws, parts: parts,
        **{"unit_key": lambda unit, cfg: docmap.part_key(module, unit, cfg), **steps},
    )


CLEAN = _document_stage(clean, lambda cfg: cfg.clean, process=clean_part)
DEDUP = _document_stage(
    dedup,
    lambda cfg: cfg.dedup,
    unit_key=dedup.signature_key,
    process=dedup.signature_part,
    reduce=dedup.write_out,
)
FILTER = _document_stage(filter_stage, lambda cfg: cfg.filter, process=filter_part)

TOKENIZER = MapStage(
    name=tokenizer.NAME,
    code_version=tokenizer.CODE_VERSION,
    upstream=lambda cfg: (cfg.tokenizer.dataset,),
    section=lambda cfg: cfg.tokenizer,
    list_inputs=tokenizer.list_inputs,
    describe_inputs=tokenizer.describe_inputs,
    reduce=tokenizer.train,
    headline=tokenizer.headline,
)

SHARDS = MapStage(
    name=shards.NAME,
    code_version=shards.CODE_VERSION,
    upstream=lambda cfg: (cfg.tokenizer.dataset, tokenizer.NAME),
    section=lambda cfg: cfg.shards,
    list_inputs=shards.list_inputs,
    describe_inputs=shards.describe_inputs,
    plan_units=shards.plan_units,
    unit_key=shards.unit_key,
    process=shards.encode_part,
    reduce=shards.write_shards,
    headline=shards.headline,
)

STAGES: dict[str, MapStage] = {
    stage.name: stage for stage in (EXTRACT, CLEAN, DEDUP, FILTER, TOKENIZER, SHARDS)
}
CURATE = ("clean", "dedup", "filter")
DOCUMENT_STAGES = ("extract", *CURATE)  # their outputs are documents (takedown rewrites them)


def pipeline_order(cfg: RunConfig) -> list[MapStage]:
    """Every stage, each after the stages it reads (the config may reorder clean, dedup and
    filter; it is validated to have no loops)."""
    ordered: list[str] = []

    def visit(name: str) -> None:
        if name in ordered:
            return
        for upstream in STAGES[name].upstream(cfg):
            visit(upstream)
        ordered.append(name)

    for name in STAGES:
        visit(name)
    return [STAGES[name] for name in ordered]


def curate_order(cfg: RunConfig) -> list[str]:
    """clean, dedup and filter in the order their inputs give."""
    return [stage.name for stage in pipeline_order(cfg) if stage.name in CURATE]


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
    headline: str | None = None  # what the version holds, for stages whose output is not documents

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def stage_status(
    stage: MapStage, cfg: RunConfig, ws: Workspace, upstream: dict[str, StageStatus] | None = None
) -> StageStatus:
    """`upstream`: the statuses of earlier stages; a stage is stale when one it reads is."""
    manifest = current_manifest(ws, stage.name)
    if manifest is None:
        needs = [name for name in stage.upstream(cfg) if ws.current_version(name) is None]
        reason = f"needs {', '.join(needs)} first" if needs else "never built"
        return StageStatus(stage.name, "missing", reasons=[reason])
    status = StageStatus(
        stage.name,
        "up to date",
        manifest.version,
        docs_out=manifest.docs_out,
        dropped=manifest.dropped,
        errors=len(manifest.errors),
        headline=stage.headline(manifest) if stage.headline else None,
    )
    behind = [
        f"upstream {name} is {upstream[name].state}"
        for name in stage.upstream(cfg)
        if upstream and name in upstream and upstream[name].state != "up to date"
    ]
    try:
        key, inputs = target_key(stage, cfg, ws)
    except (DatasetError, ConfigError) as exc:  # e.g. an input glob that matches nothing now
        key, inputs, behind = None, None, [*behind, str(exc)]
    if key is not None and key != manifest.key:
        behind += _why_stale(stage, cfg, manifest, inputs)
    if behind:
        status.state, status.reasons = "stale", behind
    return status


def all_statuses(cfg: RunConfig, ws: Workspace) -> list[StageStatus]:
    """Every stage in pipeline order, each judged with its upstream stages' states."""
    statuses: dict[str, StageStatus] = {}
    for stage in pipeline_order(cfg):
        statuses[stage.name] = stage_status(stage, cfg, ws, statuses)
    return list(statuses.values())


def _why_stale(stage: MapStage, cfg: RunConfig, manifest: Any, inputs: Any) -> list[str]:
    reasons = []
    if manifest.code_version != stage.code_version:
        reasons.append(f"code changed (v{manifest.code_version} -> v{stage.code_version})")
    config = stage.section(cfg).model_dump(mode="json")
    reasons += [
        f"{key} changed: {old!r} -> {new!r}"
        for key, old, new in changed_settings(stage.name, manifest.config, config)
    ]
    if inputs != manifest.inputs:
        reasons += _describe_input_change(manifest.inputs, inputs)
    return reasons or ["version differs"]


def changed_settings(prefix: str, old: Any, new: Any) -> list[tuple[str, Any, Any]]:
    """(dotted key, old, new) of each setting that differs, down to the leaves: one line says
    `filter.language.min_score`, not the whole section twice."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            change
            for key in sorted(set(old) | set(new), key=str)
            for change in changed_settings(f"{prefix}.{key}", old.get(key), new.get(key))
        ]
    return [] if old == new else [(prefix, old, new)]


def _describe_input_change(old: Any, new: Any) -> list[str]:
    """The takedown list (pipeline/takedown.py), then the other inputs: those listed as files
    ({path, sha256, ...}) say how many were added/removed/changed; a dataset, a tokenizer or
    evaluation files say which changed."""
    reasons = []
    if _takedown_of(old) != _takedown_of(new):
        reasons.append("the takedown list changed (`textmill takedown` applies it cheaply)")
    old, new = _without_takedown(old), _without_takedown(new)
    if old == new:
        return reasons
    if isinstance(old, dict) and isinstance(new, dict):
        return [*reasons, *_named_input_changes(old, new)]
    if not (isinstance(old, list) and isinstance(new, list)):
        return [*reasons, "inputs changed"]
    before = {item.get("path"): item for item in old}
    after = {item.get("path"): item for item in new}
    added = len(after.keys() - before.keys())
    removed = len(before.keys() - after.keys())
    changed = sum(1 for p in after.keys() & before.keys() if after[p] != before[p])
    return [*reasons, f"inputs changed: {added} new, {removed} removed, {changed} changed files"]


def _named_input_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """One line per input that changed, with the dataset it is, e.g. "input dataset: clean's
    documents changed (3 parts, 120 rows -> 4 parts, 150 rows)"."""
    if "rows" in new and old.get("dataset") == new.get("dataset"):  # a document dataset's parts
        return [
            f"input {new['dataset']}: its documents changed ({old.get('parts')} parts, "
            f"{old.get('rows')} rows -> {new['parts']} parts, {new['rows']} rows)"
        ]
    return [
        f"input {key} changed: {old.get(key)!r} -> {new.get(key)!r}"
        if not isinstance(new.get(key), dict | list)
        else f"input {key} changed"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]


def _takedown_of(inputs: Any) -> Any:
    """The takedown list's digest that a stage's inputs record (per file, for extract)."""
    if isinstance(inputs, dict):
        return inputs.get("takedown")
    return {item.get("takedown") for item in inputs} if isinstance(inputs, list) else None


def _without_takedown(inputs: Any) -> Any:
    if isinstance(inputs, dict):
        return {k: v for k, v in inputs.items() if k != "takedown"}
    if isinstance(inputs, list):
        return [_without_takedown(item) for item in inputs]
    return inputs
