"""Takedown: pages and sites that must leave the corpus, and stay out of it.

The workspace's takedown list, `<root>/takedown.json`, holds entries of two kinds: `url` (a page,
by its normalized URL, pipeline/crawl/urls.py) and `domain` (a lowercase host name; it covers
its subdomains). Each entry has the time it was added and an optional note.

How the list acts:
- Every document stage (extract, clean, dedup's write-out, filter) drops the documents it
  matches, into `rejected/` with `reason="takedown"`, a `detail` naming the entry, and no text
  (a takedown removes the content; the provenance stays to show what was removed). The list's
  digest is part of those stages' version inputs and part keys, so `textmill status` shows a
  new entry as making them stale, and a rebuild applies it.
- The crawler skips matching URLs in every later crawl (skipped, reason `takedown`).
- `textmill takedown` (`take_down` here) adds entries and brings the current datasets up to date
  cheaply, without re-extracting or re-filtering anything: for each document stage in pipeline
  order, a new version (the key a full rebuild would give it) whose parts are the current
  version's parts with the matching documents moved to `rejected/`; parts without a match are
  linked in as they are. Rejected rows of earlier reasons that match lose their text too. Dedup
  keeps its clusters: a cluster whose kept document is taken down keeps nothing (its duplicates
  stay rejected; `textmill run dedup --force` would pick another copy). Then the shards are
  rebuilt (the normal shards stage: unchanged parts are not encoded again). The tokenizer is
  not retrained: it was trained on text that included the removed documents, which the command
  says. Last, the model runs whose shards were built from a dataset version holding a matching
  document are named. Older versions keep the documents until `textmill gc` removes them.

Only up-to-date document stages can be rewritten this way (their version must differ from a
full rebuild's by the list alone): a stale one is an error before anything changes, and
`textmill run` (which applies the list) is the way forward.

A takedown is a job that finishes even if it is killed: the new entries and the job (the
version each document stage had when it began, and what was asked) are written to the list
file together, in one atomic write, before any dataset changes; the job is cleared once the
shards are rebuilt. While one is pending, `textmill takedown` first finishes it: each stage
still at the version it began from is rewritten (those stages are stale only by the list),
each stage rewritten already is left as it is. Run it again with the same targets, or with
none (`textmill takedown -c CFG`). Only a stage changed since the job began in another way
(a config edited, an input rebuilt) stops it, before anything changes: `textmill run` it.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.config import RunConfig
from pipeline.crash import crash_point
from pipeline.crawl.urls import normalize_url
from pipeline.datasets import (
    REJECTED_FOLDER,
    Dataset,
    DatasetError,
    PartResult,
    VersionBuilder,
    short_digest,
)
from pipeline.stage import Build, MapStage, begin, target_key
from pipeline.workspace import Workspace

LIST_FILE = "takedown.json"
REASON = "takedown"
KINDS = ("url", "domain")
_HOST = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")


class TakedownError(ValueError):
    """A bad takedown entry or list file; the message says which and where."""


@dataclass(frozen=True)
class Entry:
    kind: str  # url | domain
    value: str  # the normalized URL, or the lowercase host (IDNA as punycode)
    added: str  # ISO time
    note: str | None = None

    def describe(self) -> str:
        return f"{self.kind} {self.value}"


class TakedownList:
    """The entries, indexed for matching: URLs by host (only documents of those hosts have their
    URL normalized), domains by name."""

    def __init__(self, entries: list[Entry] | tuple[Entry, ...] = ()):
        self.entries = list(entries)
        self.urls = {e.value: e for e in self.entries if e.kind == "url"}
        self.domains = {e.value: e for e in self.entries if e.kind == "domain"}
        self.url_hosts = {urlsplit(url).hostname for url in self.urls}

    def __len__(self) -> int:
        return len(self.entries)


def parse(text: str, note: str | None = None, added: str | None = None) -> Entry:
    """An entry from what a user typed: a URL (with its scheme) or a domain name."""
    value = text.strip()
    added = added or datetime.now(UTC).isoformat(timespec="seconds")
    if "://" in value:
        try:
            return Entry("url", normalize_url(value), added, note)
        except ValueError as exc:
            raise TakedownError(f"takedown: {exc}") from None
    host = _normal_host(value.removeprefix("*."))
    if not host or not _HOST.match(host):
        hint = " (a page needs its scheme: https://…)" if "/" in value else ""
        raise TakedownError(f"takedown: {text!r} is neither a URL nor a domain name{hint}")
    return Entry("domain", host, added, note)


def read_list_file(path: str) -> list[str]:
    """URLs and domains of a text file, one a line; blank lines and `#` comments are skipped."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise TakedownError(f"takedown --file: cannot read {path}: {exc.strerror}") from None
    found = []
    for number, line in enumerate(lines, 1):
        item = line.split("#", 1)[0].strip()
        if item:
            try:
                parse(item)
            except TakedownError as exc:
                raise TakedownError(f"{path}:{number}: {exc}") from None
            found.append(item)
    return found


def load(ws: Workspace) -> TakedownList:
    """The workspace's list (empty when it has none)."""
    if not ws.storage.exists(LIST_FILE):
        return TakedownList()
    where = ws.storage.url(LIST_FILE)
    try:
        data = ws.storage.read_json(LIST_FILE)
        return TakedownList([Entry(**item) for item in data["entries"]])
    except (ValueError, KeyError, TypeError) as exc:
        raise TakedownError(f"{where}: not a takedown list ({type(exc).__name__}: {exc})") from None


def load_checked(ws: Workspace, expected: str, stage: str) -> TakedownList:
    """The list a build planned with (by its digest): a list edited since is an error, so a part
    never holds what its key does not say."""
    listed = load(ws)
    if digest(listed) != expected:
        raise TakedownError(
            f"{stage}: {ws.storage.url(LIST_FILE)} changed while the stage was being built; "
            "run it again"
        )
    return listed


def add(ws: Workspace, entries: list[Entry], job: dict[str, Any] | None = None) -> list[Entry]:
    """Add entries to the workspace's list (those already in it are left as they were); returns
    the ones added. `job`: a takedown job to record as pending in the same write (or None to
    leave the file's job as it is). Call with the workspace lock held."""
    listed = load(ws)
    known = {(e.kind, e.value) for e in listed.entries}
    added = []
    for entry in entries:
        if (entry.kind, entry.value) not in known:
            known.add((entry.kind, entry.value))
            added.append(entry)
    if added or job is not None:
        _write(ws, [*listed.entries, *added], job if job is not None else pending_job(ws))
    return added


def pending_job(ws: Workspace) -> dict[str, Any] | None:
    """The takedown a kill left unfinished ({started, entries, versions}), or None."""
    if not ws.storage.exists(LIST_FILE):
        return None
    try:
        job = ws.storage.read_json(LIST_FILE).get("pending")
    except (ValueError, AttributeError):
        return None  # `load` says what is wrong with the file
    return job if isinstance(job, dict) else None


def _write(ws: Workspace, entries: list[Entry], job: dict[str, Any] | None) -> None:
    data: dict[str, Any] = {"entries": [asdict(e) for e in entries]}
    if job:
        data["pending"] = job
    ws.storage.write_json(LIST_FILE, data)


def digest(listed: TakedownList) -> str:
    """What of the list decides which documents stay: its (kind, value) pairs ("" when empty)."""
    if not listed.entries:
        return ""
    return short_digest(sorted((e.kind, e.value) for e in listed.entries))


def matches(listed: TakedownList, url: str | None, hostname: str | None) -> Entry | None:
    """The entry that takes a document (or URL) down, or None."""
    if not listed.entries:
        return None
    host = _document_host(url, hostname)
    if not host:
        return None
    labels = host.split(".")
    for i in range(len(labels)):
        entry = listed.domains.get(".".join(labels[i:]))
        if entry:
            return entry
    if url and host in listed.url_hosts:
        try:
            return listed.urls.get(normalize_url(url))
        except ValueError:
            return None
    return None


def rejected_row(doc: dict[str, Any], entry: Entry, stage: str) -> dict[str, Any]:
    """A taken-down document as a rejected row: its provenance, never its text."""
    return {**doc, "text": "", "stage": stage, "reason": REASON, "detail": entry.describe()}


def screen(
    docs: list[dict[str, Any]], listed: TakedownList, stage: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(documents that stay, rejected rows of those the list takes down)."""
    kept, removed = [], []
    for doc in docs:
        entry = matches(listed, doc.get("url"), doc.get("hostname"))
        if entry is None:
            kept.append(doc)
        else:
            removed.append(rejected_row(doc, entry, stage))
    return kept, removed


def screen_table(
    docs: pa.Table, listed: TakedownList, stage: str
) -> tuple[pa.Table, list[dict[str, Any]]]:
    """`screen` for a table of documents."""
    hits = _match_table(listed, docs)
    if not any(hits):
        return docs, []
    taken = pa.array([hit is not None for hit in hits], pa.bool_())
    found = [hit for hit in hits if hit is not None]
    removed = [
        rejected_row(doc, hit, stage)
        for doc, hit in zip(docs.filter(taken).to_pylist(), found, strict=True)
    ]
    return docs.filter(pc.invert(taken)), removed


def _normal_host(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return ""
    return host


def _document_host(url: str | None, hostname: str | None) -> str:
    if not hostname and url:
        try:
            hostname = urlsplit(url).hostname
        except ValueError:
            return ""
    return _normal_host(hostname) if hostname else ""


def _match_table(listed: TakedownList, table: pa.Table) -> list[Entry | None]:
    if not listed.entries:
        return [None] * table.num_rows
    urls = table["url"].to_pylist()
    hosts = table["hostname"].to_pylist()
    return [matches(listed, u, h) for u, h in zip(urls, hosts, strict=True)]


# ----- `textmill takedown`: the current datasets without the taken-down documents -----


@dataclass
class StageChange:
    """What the takedown did to one document stage."""

    stage: str
    old_version: str
    version: str
    removed: int = 0  # documents moved to rejected/
    text_removed: int = 0  # rows already rejected for another reason whose text was removed
    removed_ids: list[str] | None = None
    note: str = ""


def take_down(cfg: RunConfig, ws: Workspace, entries: list[Entry], map_fn: Any) -> dict[str, Any]:
    """Add `entries` to the list and apply it to the current datasets and shards (module
    docstring), after finishing the takedown a kill left unfinished, if any (then `entries`
    may be empty); `map_fn` runs the shards stage's units (pipeline/runner.py)."""
    with ws.lock("textmill takedown"):
        unfinished = pending_job(ws)
        if unfinished is not None:
            _check_resumable(cfg, ws, unfinished)
            result = _apply(cfg, ws, unfinished, [], map_fn)
            if not _new(ws, entries):
                return {**result, "resumed": unfinished["started"]}
        _check_up_to_date(cfg, ws)
        job = {
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "entries": [asdict(e) for e in entries],
            "versions": _document_versions(ws),
        }
        added = add(ws, entries, job)
        crash_point("takedown.listed")
        result = _apply(cfg, ws, job, added, map_fn)
    return {**result, "resumed": unfinished["started"] if unfinished else None}


def _apply(
    cfg: RunConfig, ws: Workspace, job: dict[str, Any], added: list[Entry], map_fn: Any
) -> dict[str, Any]:
    """Rewrite every document stage that the list makes stale, rebuild the shards, then clear
    the job: the result of the takedown."""
    # imported here: the stage registry imports the stage modules, which import this module
    from pipeline import stage as stage_api
    from pipeline.stages import DOCUMENT_STAGES, SHARDS, pipeline_order

    listed = load(ws)
    changes = [
        _rewrite(stage, cfg, ws, listed)
        for stage in pipeline_order(cfg)
        if stage.name in DOCUMENT_STAGES and ws.current_version(stage.name) is not None
    ]
    shards = None
    if ws.current_version(SHARDS.name) is not None:
        shards = stage_api.run(SHARDS, cfg, ws, map_fn)
    _write(ws, listed.entries, None)
    removed_ids = sorted({i for change in changes for i in change.removed_ids or []})
    for change in changes:
        change.removed_ids = None
    asked = TakedownList([Entry(**e) for e in job["entries"]])
    return {
        "added": [asdict(e) for e in added],
        "entries": len(listed),
        "list": ws.storage.url(LIST_FILE),
        "stages": [asdict(change) for change in changes],
        "removed_ids": removed_ids,
        "tokenizer": ws.current_version("tokenizer"),
        "shards": shards,
        "runs": runs_that_saw(ws, asked),
    }


def _new(ws: Workspace, entries: list[Entry]) -> bool:
    known = {(e.kind, e.value) for e in load(ws).entries}
    return any((e.kind, e.value) not in known for e in entries)


def _document_versions(ws: Workspace) -> dict[str, str]:
    from pipeline.stages import DOCUMENT_STAGES

    versions = {name: ws.current_version(name) for name in DOCUMENT_STAGES}
    return {name: version for name, version in versions.items() if version}


def _check_up_to_date(cfg: RunConfig, ws: Workspace) -> None:
    """A new takedown rewrites only up-to-date stages; a stale one stops it before any change."""
    from pipeline.stages import DOCUMENT_STAGES, all_statuses

    statuses = {s.stage: s for s in all_statuses(cfg, ws)}
    for name in DOCUMENT_STAGES:
        if statuses[name].state == "stale":
            raise DatasetError(
                f"takedown: {name} is stale ({'; '.join(statuses[name].reasons)}), so its "
                f"current version cannot be rewritten cheaply; nothing was changed. Run "
                f"`textmill run {name}` (and the stages after it) first, then the takedown"
            )


def _check_resumable(cfg: RunConfig, ws: Workspace, job: dict[str, Any]) -> None:
    """Before a pending job goes on: every document stage is up to date, or still at the version
    the job began from with the same code and config, reading its input as the job left it (the
    version it began from, or the rewrite of it). Anything else is an error; nothing changes."""
    from pipeline.stage import up_to_date
    from pipeline.stages import DOCUMENT_STAGES, pipeline_order

    began = job["versions"]
    for stage in pipeline_order(cfg):
        name = stage.name
        if name not in DOCUMENT_STAGES or ws.current_version(name) is None:
            continue
        if up_to_date(stage, cfg, ws) is not None:
            continue  # rewritten before the kill, or rebuilt since by `textmill run`
        why = _changed_since(stage, cfg, ws, began)
        if why:
            raise DatasetError(
                f"takedown: the takedown begun {job['started']} cannot be finished: {name} "
                f"{why} since it began; nothing was changed. `textmill run {name}` (and the "
                "stages after it) apply the list, then `textmill takedown -c CONFIG` finishes"
            )


def _changed_since(
    stage: MapStage, cfg: RunConfig, ws: Workspace, began: dict[str, str]
) -> str | None:
    """How a stale stage differs from what the job began with, or None if it does not."""
    current = Dataset.current(ws, stage.name)
    if current.version != began.get(stage.name):
        return f"moved to version {current.version}"
    manifest = current.manifest
    if (manifest.code_version, manifest.config_digest) != (
        stage.code_version,
        stage.section(cfg).digest(),
    ):
        return "has another code version or config"
    rewritten = False
    for upstream in stage.upstream(cfg):
        now = ws.current_version(upstream)
        if upstream in began and now != began[upstream]:
            rewritten_from = Dataset(ws, upstream, now).manifest.stats.get("takedown_of")
            if rewritten_from != began[upstream]:
                return f"reads {upstream} {now}, which is not the takedown's rewrite of its input"
            rewritten = True
    # Its inputs may differ by the list, and (from a rewritten input) by what that took out.
    ignored = {"takedown", "rows", "content"} if rewritten else {"takedown"}
    if _without(manifest.inputs, ignored) != _without(target_key(stage, cfg, ws)[1], ignored):
        return "has other inputs (new or changed files)"
    return None


def _without(inputs: Any, keys: set[str]) -> Any:
    """Inputs as a manifest records them, without `keys` at any depth."""
    if isinstance(inputs, dict):
        return {k: _without(v, keys) for k, v in inputs.items() if k not in keys}
    if isinstance(inputs, list):
        return [_without(item, keys) for item in inputs]
    return inputs


def _rewrite(stage: MapStage, cfg: RunConfig, ws: Workspace, listed: TakedownList) -> StageChange:
    """A new version of `stage`: its current parts without the documents `listed` takes down."""
    from pipeline import dedup  # imports this module

    started = time.perf_counter()
    old = Dataset.current(ws, stage.name)
    build = begin(stage, cfg, ws, check_inputs=False)  # it reads the stage's own parts, not those
    change = StageChange(stage.name, old.version, build.version)
    if build.up_to_date:
        change.note = "the list was applied already"
        return change
    keys = build.keys
    if stage.name == dedup.NAME:  # the map's keys are its signatures'; parts are the write-out's
        keys = dedup.output_keys(keys, digest(listed))
    if len(keys) != len(old.manifest.parts):
        raise DatasetError(
            f"takedown: {stage.name} {old.version} has {len(old.manifest.parts)} parts, a build "
            f"now would have {len(keys)}: run `textmill run {stage.name}`"
        )
    old.check(digest=True)  # every file it links or rewrites into the new version
    parts, removed_ids = [], []
    for key, part in zip(keys, old.manifest.parts, strict=True):
        new_part, removed, blanked = _rewrite_part(old, part, key, build.builder, listed)
        parts.append(new_part)
        removed_ids += removed
        change.text_removed += blanked
    change.removed, change.removed_ids = len(removed_ids), removed_ids
    for entry in old.manifest.files:  # e.g. dedup's clusters: unchanged
        ws.storage.copy(f"{old.dir}/{entry['file']}", f"{build.builder.dir}/{entry['file']}")
    if stage.name == dedup.NAME:
        emptied = _emptied_clusters(ws, old, removed_ids)
        if emptied:
            change.note = (
                f"{emptied} duplicate clusters lost the document they kept and now keep none "
                "(`textmill run dedup --force` keeps another copy)"
            )
    _commit(build, old, parts, time.perf_counter() - started)
    return change


def _rewrite_part(
    old: Dataset, part: PartResult, key: str, out: VersionBuilder, listed: TakedownList
) -> tuple[PartResult, list[str], int]:
    """One part without the taken-down documents, under its new key: (the part, the ids moved
    to rejected/, rejected rows whose text was removed). A part without a match is linked."""
    storage = old.ws.storage
    path, rejected_path = f"{old.dir}/{part.file}", f"{old.dir}/{part.rejected_file}"
    hits = _match_table(listed, storage.read_parquet(path, ["url", "hostname"]))
    rejected_hits = _match_table(listed, storage.read_parquet(rejected_path, ["url", "hostname"]))
    unit = {**part.unit, "takedown_of": path}
    if not any(hits) and not any(rejected_hits):
        new = part.model_copy(
            update={
                "key": key,
                "file": f"part-{key}.parquet",
                "rejected_file": f"{REJECTED_FOLDER}/part-{key}.parquet",
                "unit": unit,
            }
        )
        storage.copy(path, f"{out.dir}/{new.file}")
        storage.copy(rejected_path, f"{out.dir}/{new.rejected_file}")
        storage.write_json(out.part_marker(key), new.model_dump(mode="json"))
        return new, [], 0
    started = time.perf_counter()
    docs, removed = screen_table(storage.read_parquet(path), listed, old.stage)
    rejected = storage.read_parquet(rejected_path)
    if any(rejected_hits):
        blank = pa.array([hit is not None for hit in rejected_hits], pa.bool_())
        column = rejected.schema.get_field_index("text")
        text = pc.if_else(blank, pa.scalar("", pa.string()), rejected["text"])
        rejected = rejected.set_column(column, rejected.schema.field(column), text)
    rejected = pa.concat_tables([rejected, pa.Table.from_pylist(removed, schema=rejected.schema)])
    dropped = Counter(part.dropped)
    dropped[REASON] += len(removed)
    new = out.write_part(
        key,
        docs,
        rejected,
        counts=part.counts,
        dropped=dict(dropped),
        errors=part.errors,
        seconds=round(part.seconds + time.perf_counter() - started, 3),
        unit=unit,
    )
    return new, [row["id"] for row in removed], sum(hit is not None for hit in rejected_hits)


def _emptied_clusters(ws: Workspace, old: Dataset, removed_ids: list[str]) -> int:
    from pipeline.dedup import CLUSTERS_FILE

    if not removed_ids or not ws.storage.exists(f"{old.dir}/{CLUSTERS_FILE}"):
        return 0
    clusters = ws.storage.read_parquet(f"{old.dir}/{CLUSTERS_FILE}", ["id", "kept"])
    keepers = pc.filter(clusters["id"], clusters["kept"])
    return int(pc.sum(pc.is_in(keepers, pa.array(removed_ids, pa.string()))).as_py() or 0)


def _commit(build: Build, old: Dataset, parts: list[PartResult], seconds: float) -> None:
    """The manifest of a full build's version, its figures those of the version rewritten."""
    build.builder.commit(
        key=build.key,
        code_version=build.stage.code_version,
        config=build.config.model_dump(mode="json"),
        config_digest=build.config.digest(),
        inputs=build.inputs,
        parts=parts,
        seconds=seconds,
        files=old.manifest.files,
        stats={**old.manifest.stats, "takedown_of": old.version},
    )


# ----- who saw it -----


def runs_that_saw(ws: Workspace, listed: TakedownList) -> list[dict[str, Any]]:
    """The model runs trained on shards built from a dataset version that holds a document
    `listed` matches: each with its shards and dataset versions and how many documents. A run
    whose shards or dataset version `textmill gc` removed is listed as unknown."""
    found = []
    seen: dict[tuple[str, str], int] = {}  # (stage, version) -> matching documents
    for run_json in ws.storage.glob("runs/*/run.json"):
        run = run_json.split("/")[1]
        shards_version = ws.storage.read_json(run_json).get("shards_version")
        entry: dict[str, Any] = {"run": run, "shards_version": shards_version}
        try:
            stats = Dataset(ws, "shards", shards_version).manifest.stats
            dataset = (stats["dataset"], stats["dataset_version"])
            if dataset not in seen:
                seen[dataset] = _count_matches(Dataset(ws, *dataset), listed)
        except DatasetError as exc:
            found.append({**entry, "documents": None, "unknown": str(exc)})
            continue
        if seen[dataset]:
            stage, version = dataset
            found.append(
                {**entry, "dataset": stage, "dataset_version": version, "documents": seen[dataset]}
            )
    return found


def _count_matches(dataset: Dataset, listed: TakedownList) -> int:
    """A damaged part is a DatasetError: the run is then listed as unknown, with why."""
    return sum(
        hit is not None
        for part in dataset.manifest.parts
        for hit in _match_table(listed, dataset.read_parquet(part.file, ["url", "hostname"]))
    )


def describe_result(result: dict[str, Any]) -> list[str]:
    """The takedown's result as lines for people."""
    lines = [
        f"takedown: {len(result['added'])} entries added; the list ({result['list']}) has "
        f"{result['entries']}"
    ]
    if result.get("resumed"):
        lines.append(f"takedown: finished the takedown begun {result['resumed']}, cut short")
    for change in result["stages"]:
        if change["old_version"] == change["version"]:
            lines.append(f"{change['stage']}: version {change['version']} unchanged")
            continue
        line = (
            f"{change['stage']}: version {change['old_version']} -> {change['version']}: "
            f"{change['removed']} documents removed (to rejected/, reason {REASON}, text removed)"
        )
        if change["text_removed"]:
            line += f"; text removed from {change['text_removed']} rows rejected earlier"
        lines.append(line + (f"; {change['note']}" if change["note"] else ""))
    if result["tokenizer"]:
        lines.append(
            f"tokenizer: not retrained: version {result['tokenizer']} was trained on text that "
            "may include the removed documents (`textmill run tokenizer`, then shards, to retrain)"
        )
    shards = result["shards"]
    if shards:
        state = "built" if shards["built"] else "up to date:"
        lines.append(f"shards: {state} version {shards['version']} ({shards['headline']})")
    for run in result["runs"]:
        if run["documents"] is None:
            lines.append(f"run {run['run']}: unknown ({run['unknown']})")
        else:
            lines.append(
                f"run {run['run']} was trained on data containing {run['documents']} of these "
                f"documents (shards {run['shards_version']}, {run['dataset']} "
                f"{run['dataset_version']})"
            )
    if not result["runs"]:
        lines.append("no model run was trained on data containing them")
    lines.append("older versions keep the documents until `textmill gc` removes them")
    return lines
