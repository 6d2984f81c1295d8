"""Prefect artifacts: what each stage and training run did, in the Prefect UI.

A stage publishes a table of its counts (documents in and out, dropped per reason, its tallies)
and a markdown summary with a few documents kept and dropped; training publishes its progress
while it runs and a table of its final metrics. Keys are stable per workspace and stage
(`textmill-<workspace digest>-<stage>`), so the UI shows each key's history across scheduled runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from pipeline.config import RunConfig
from pipeline.datasets import Dataset, Manifest, short_digest
from pipeline.inspect import connect
from pipeline.report import dataset_source, dropped_samples, kept_samples
from pipeline.stage import MapStage
from pipeline.workspace import Workspace

SAMPLES = 3  # kept documents shown, and dropped ones per reason
PREVIEW_CHARS = 300


def artifact_key(ws: Workspace, *names: str) -> str:
    """Prefect keys allow lowercase letters, digits and dashes only."""
    name = re.sub(r"[^a-z0-9-]+", "-", "-".join(names).lower()).strip("-")
    return f"textmill-{short_digest(ws.root)[:8]}-{name}"


def never_fails(publish: Callable[..., None]) -> Callable[..., None]:
    """Artifacts are for people: failing to publish one warns, and never fails the flow whose
    work is already committed."""

    @wraps(publish)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            publish(*args, **kwargs)
        except Exception as exc:  # any failure: the committed data is safe either way
            get_run_logger().warning(f"could not publish the {publish.__name__} artifacts: {exc}")

    return wrapper


@never_fails
def publish_stage(ws: Workspace, stage: MapStage, manifest: Manifest) -> None:
    """The counts table and the markdown summary of a committed stage version."""
    rows = [
        {"count": "documents in", "value": manifest.docs_in},
        {"count": "documents out", "value": manifest.docs_out},
        *({"count": f"dropped: {r}", "value": n} for r, n in manifest.dropped.items()),
        *({"count": name, "value": n} for name, n in manifest.counts.items()),
        {"count": "input errors", "value": len(manifest.errors)},
    ]
    about = f"{manifest.stage} version {manifest.version} in {ws.root}"
    create_table_artifact(rows, key=artifact_key(ws, manifest.stage), description=about)
    create_markdown_artifact(
        _summary(ws, stage, manifest),
        key=artifact_key(ws, manifest.stage, "summary"),
        description=about,
    )


@never_fails
def publish_crawl(ws: Workspace, summaries: dict[str, dict[str, Any]]) -> None:
    """One table row per source crawled: what the new generation holds."""
    counts = ("fetched", "not_modified", "requests")
    rows = [
        {
            "source": source,
            "generation": s["generation"],
            **{name: s[name] for name in counts},
            "failed": sum(s["failed"].values()),
            "skipped": sum(s["skipped"].values()),
            "warc_files": len(s["warc_files"]),
        }
        for source, s in summaries.items()
    ]
    create_table_artifact(rows, key=artifact_key(ws, "crawl"), description=f"crawl of {ws.root}")


@never_fails
def publish_crawl_and_train(ws: Workspace, result: dict[str, Any]) -> None:
    """What a crawl-and-train run did: each stage ran or skipped (and why), and the outputs."""
    lines = [f"# crawl-and-train of `{ws.root}`", "", "| stage | done | output |", "|---|---|---|"]
    for name in ["crawl", *result["outputs"]]:  # in pipeline order
        done = "ran" if name in result["ran"] else f"skipped: {result['skipped'].get(name)}"
        lines.append(f"| {name} | {done} | {result['outputs'].get(name, '-')} |")
    create_markdown_artifact(
        "\n".join(lines), key=artifact_key(ws, "crawl-and-train"), description="what ran"
    )


class TrainProgress:
    """A progress artifact of a training run, moved on each time training logs a line (its
    step is the last line of metrics.jsonl, written before the log line)."""

    def __init__(self, cfg: RunConfig, ws: Workspace, log: Any):
        self.cfg, self.ws, self.log = cfg, ws, log
        self.metrics = Path(ws.storage.path(f"runs/{cfg.train.run}/metrics.jsonl"))
        self.id = create_progress_artifact(
            0.0,
            key=artifact_key(ws, "train", cfg.train.run, "progress"),
            description=f"training run {cfg.train.run} in {ws.root}: share of max_steps done",
        )

    def __call__(self, line: str) -> None:
        self.log(line)
        last = _last_line(self.metrics)
        if last is not None:
            self._moved_to(json.loads(last)["step"])

    def _moved_to(self, step: int) -> None:
        update_progress_artifact(self.id, round(100 * min(1.0, step / self.cfg.train.max_steps), 1))

    def finish(self, result: dict[str, Any]) -> None:
        """The final metrics, as a table."""
        run = self.cfg.train.run
        self._moved_to(result["step"])
        create_table_artifact(
            [{"metric": name, "value": value} for name, value in result.items()],
            key=artifact_key(self.ws, "train", run),
            description=f"training run {run} in {self.ws.root}: the last step",
        )


def _last_line(path: Path) -> str | None:
    """The last line of a file, without reading the whole file."""
    if not path.exists():
        return None
    with open(path, "rb") as fh:
        fh.seek(max(0, fh.seek(0, 2) - 4096))
        lines = fh.read().decode("utf-8", "replace").splitlines()
    return lines[-1] if lines else None


def _summary(ws: Workspace, stage: MapStage, manifest: Manifest) -> str:
    title = f"# {manifest.stage} {manifest.version}\n\n"
    built = f"built in {manifest.timings.get('wall_s', 0):.1f} s"
    if stage.headline:  # not documents: what it holds, and its figures
        figures = json.dumps(manifest.stats, indent=2)
        return f"{title}{stage.headline(manifest)}; {built}.\n\n```json\n{figures}\n```\n"
    dropped = ", ".join(f"{r} {n:,}" for r, n in manifest.dropped.items()) or "none"
    text = f"{title}{manifest.docs_out:,} documents out of {manifest.docs_in:,}; "
    text += f"dropped: {dropped}; {built}.\n"
    dataset = Dataset(ws, manifest.stage, manifest.version)
    with connect(ws) as con:
        kept_source = dataset_source(ws, dataset)
        dropped_source = dataset_source(ws, dataset, rejected=True)
        kept = kept_samples(con, kept_source, SAMPLES) if kept_source else []
        rejected = dropped_samples(con, dropped_source, SAMPLES) if dropped_source else []
    text += "\n## Kept\n\n" + "".join(_sample(doc) for doc in kept)
    return text + "\n## Dropped\n\n" + "".join(_sample(doc) for doc in rejected)


def _sample(doc: dict[str, Any]) -> str:
    """A document as a markdown list item; its text in a code span, so that nothing in it is
    read as markdown or HTML."""
    why = f"{doc['reason']} ({doc.get('detail') or ''}) " if "reason" in doc else ""
    preview = " ".join(doc["text"][:PREVIEW_CHARS].split())
    return f"- {_code(why + (doc['url'] or doc['id']))}: {_code(preview)}\n"


def _code(text: str) -> str:
    return "`` " + text.replace("`", "'") + " ``"
