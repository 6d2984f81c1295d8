"""Benchmark of the extract stage on trafilatura's evaluation corpus: quality and speed.

What it measures
  The 990 annotated pages of `<repo>/../shared/data/trafilatura-eval` (or
  `$TEXTMILL_SHARED_DATA/trafilatura-eval`) are wrapped into one WARC file, one `response`
  record per page (`Content-Type: text/html` without a charset, as a crawler often sees it).
  The real extract stage then runs over it as a Prefect flow (process pool, 2 workers by
  default), and its documents are scored with trafilatura's own snippet evaluation
  (upstream tests/eval_common.py): every `with` snippet found in a page's text is a true
  positive, every `without` snippet found a false positive; a page without a document counts
  with empty text. Targets: snippet_f1 >= 0.925, crashes = 0, ratio_to_direct >= 1.6.

  Speed: `pages_per_s` is pages / the stage's own wall time (planning to commit, measured inside
  the flow, less `workers_start_s`: the worker processes importing Prefect); `startup_s` is
  everything else of the flow call (Prefect import, API server start, flow and task-runner
  set-up, worker start-up). `direct_pages_per_s` is trafilatura called with the same
  options in a plain loop in this one process, over the same pages already in memory;
  `ratio_to_direct` = pages_per_s / direct_pages_per_s. The direct output is scored too
  (`direct_snippet_*`), so a reader sees what the wrapping costs in quality (nothing, ideally).

How to run it (from the repository root)
  .venv/bin/python bench/extract.py                  # the full corpus: a few minutes
  .venv/bin/python bench/extract.py --limit 60       # a quick smoke run
  .venv/bin/python bench/extract.py --keep /tmp/bx   # keep the WARC and workspace to inspect

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
import gzip
import io
import json
import re
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bench._common import (
    REPO,
    add_keep_option,
    logger,
    reject_used_keep,
    run_benchmark,
    shared_data,
    versions,
)

log = logger("bench/extract")

CORPUS = "trafilatura-eval"
SOURCE_NAME = "trafilatura-eval"
STAND_IN_BASE = "https://trafilatura-eval.invalid/"
CRASH_REASONS = ("extract_error", "extract_timeout")
TARGETS = {"snippet_f1": 0.925, "crashes": 0, "ratio_to_direct": 1.6}

# The stage's extraction options (ExtractConfig defaults), used for the direct baseline too.
EXTRACT_OPTIONS: dict[str, Any] = {
    "fast": False,
    "include_comments": False,
    "include_tables": True,
    "favor_precision": False,
    "favor_recall": False,
    "with_metadata": True,
}

_WHITESPACE = re.compile(r"\s+")


# ----- the corpus -----


@dataclass(frozen=True)
class Page:
    url: str  # the evaldata key; some are not web URLs (e.g. "hard::blog.python.org.html")
    target_uri: str  # the key if it is an http(s) URL, else a stand-in one (see `target_uri`)
    file: str
    body: bytes  # the raw HTML bytes, charset unknown
    with_: tuple[str, ...]  # snippets that must appear in the main text
    without: tuple[str, ...]  # boilerplate that must not


def corpus_dir() -> Path:
    """The evaluation corpus folder, or exit 1 saying where it was looked for."""
    return shared_data("bench/extract.py", f"{CORPUS}/evaldata.json") / CORPUS


def load_pages(folder: Path, limit: int | None) -> list[Page]:
    """The annotated pages, sorted by URL, their HTML read into memory."""
    evaldata: dict[str, dict[str, Any]] = json.loads(
        (folder / "evaldata.json").read_text(encoding="utf-8")
    )
    pages = []
    missing = []
    for url in sorted(evaldata)[:limit]:
        item = evaldata[url]
        path = _page_path(folder, item["file"])
        if path is None:
            missing.append(item["file"])
            continue
        pages.append(
            Page(
                url,
                target_uri(url),
                item["file"],
                gzip.decompress(path.read_bytes()),
                tuple(item["with"]),
                tuple(item["without"]),
            )
        )
    if missing:
        sys.exit(
            f"bench/extract.py: {len(missing)} pages of evaldata.json are missing under "
            f"{folder}/html (e.g. {missing[0]}.gz): the corpus copy is incomplete."
        )
    return pages


def target_uri(key: str) -> str:
    """The page's WARC-Target-URI: its evaldata key when that is an http(s) URL. 37 keys are
    labels ("hard::…", "recall::…"); the stage rejects non-web URIs (`not_web`), so those get a
    stand-in URL under the reserved `.invalid` domain (the direct baseline uses it too)."""
    if key.strip().lower().startswith(("http://", "https://")):
        return key
    return STAND_IN_BASE + quote(key, safe="")


def _page_path(folder: Path, name: str) -> Path | None:
    for sub in ("cache", "eval"):
        path = folder / "html" / sub / f"{name}.gz"
        if path.is_file():
            return path
    return None


# ----- scoring (as upstream tests/eval_common.py) -----


@dataclass
class Confusion:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def add(self, page: Page, text: str | None) -> None:
        """Score one page's extracted text; None (no document) counts as empty text."""
        found = _norm(text or "")
        tp = sum(_norm(s) in found for s in page.with_)
        fp = sum(_norm(s) in found for s in page.without)
        self.tp += tp
        self.fp += fp
        self.fn += len(page.with_) - tp
        self.tn += len(page.without) - fp

    def scores(self, prefix: str = "snippet_") -> dict[str, float]:
        total = self.tp + self.fp + self.fn + self.tn
        return {
            f"{prefix}precision": _ratio(self.tp, self.tp + self.fp),
            f"{prefix}recall": _ratio(self.tp, self.tp + self.fn),
            f"{prefix}f1": _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn),
            f"{prefix}accuracy": _ratio(self.tp + self.tn, total),
        }

    def counts(self, prefix: str = "") -> dict[str, int]:
        return {f"{prefix}{k}": v for k, v in vars(self).items()}


def score(pages: Iterable[Page], texts: dict[str, str]) -> Confusion:
    confusion = Confusion()
    for page in pages:
        confusion.add(page, texts.get(page.url))
    return confusion


def _norm(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


def _ratio(num: float, den: float, digits: int = 4) -> float:
    return round(num / den, digits) if den else 0.0


# ----- the WARC and the run config -----


def write_warc(pages: list[Page], path: Path) -> dict[int, Page]:
    """One gzipped `response` record per page; returns record offset -> page, which is how the
    stage's documents (they carry `warc_offset`) are matched back to their page."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    by_offset: dict[int, Page] = {}
    with path.open("wb") as fh:
        writer = WARCWriter(fh, gzip=True)
        for page in pages:
            http_headers = StatusAndHeaders(
                "200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1"
            )
            record = writer.create_warc_record(
                page.target_uri,
                "response",
                payload=io.BytesIO(page.body),
                http_headers=http_headers,
            )
            by_offset[fh.tell()] = page
            writer.write_record(record)
    return by_offset


def write_config(folder: Path, warc: Path, workspace: Path, workers: int) -> Path:
    import yaml

    config = {
        "workspace": str(workspace),
        "sources": [{"name": SOURCE_NAME, "kind": "web", "warc": [str(warc)]}],
        "runner": {"task_runner": "processes", "workers": workers},
    }
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


# ----- the runs -----


def run_stage(config_path: Path, workspace: Path) -> tuple[dict[str, Any], float]:
    """The extract flow, with the embedded Prefect API; returns its summary and the seconds the
    whole call took (Prefect import and server start-up included)."""
    started = time.perf_counter()
    from flows import prefect_api

    with prefect_api(str(workspace)) as api_url:
        log(f"Prefect API at {api_url} after {time.perf_counter() - started:.1f} s")
        import flows.extract

        result = flows.extract.run(str(config_path), overrides=[], force=False)
    return result, time.perf_counter() - started


@dataclass
class StageOutput:
    texts: dict[str, str]  # page url -> extracted text
    dropped: Counter[str]  # reason -> documents
    crashes: list[dict[str, str]]  # per-page extraction errors and timeouts, file-level errors
    unmatched: int  # documents whose record offset is not one this benchmark wrote
    manifest: Any


def read_stage_output(workspace: Path, by_offset: dict[int, Page]) -> StageOutput:
    from pipeline.datasets import Dataset
    from pipeline.workspace import Workspace

    ds = Dataset.current(Workspace(str(workspace)), "extract")
    texts: dict[str, str] = {}
    unmatched = 0
    for row in _rows(ds.read(columns=["warc_offset", "url", "text"])):
        page = by_offset.get(row["warc_offset"])
        if page is None:
            unmatched += 1
        else:
            texts[page.url] = row["text"] or ""
    dropped: Counter[str] = Counter()
    crashes = []
    for row in _rows(ds.read(columns=["url", "reason", "detail"], rejected=True)):
        dropped[row["reason"]] += 1
        if row["reason"] in CRASH_REASONS:
            crashes.append({"url": row["url"], "reason": row["reason"], "detail": row["detail"]})
    for error in ds.manifest.errors:
        crashes.append(
            {
                "url": error.get("file", ""),
                "reason": "file_error",
                "detail": f"at {error.get('offset')}: {error.get('error')}",
            }
        )
    return StageOutput(texts, dropped, crashes, unmatched, ds.manifest)


def _rows(table: Any) -> list[dict[str, Any]]:
    return table.to_pylist() if table.num_rows else []


def run_direct(pages: list[Page]) -> tuple[dict[str, str], float, int]:
    """trafilatura in a plain loop over the in-memory pages: texts, seconds, crashes."""
    import trafilatura

    texts: dict[str, str] = {}
    crashes = 0
    started = time.perf_counter()
    for page in pages:
        try:
            result = trafilatura.bare_extraction(
                page.body, url=page.target_uri.strip(), **EXTRACT_OPTIONS
            )
        except Exception as exc:
            crashes += 1
            log(f"direct: {page.url}: {type(exc).__name__}: {exc}")
            continue
        if result is not None and result.text:
            texts[page.url] = result.text
    return texts, time.perf_counter() - started, crashes


# ----- plumbing -----


def prepare_environment(prefect_home: Path, keep_api_url: bool) -> None:
    """Prefect reads its settings when imported: set them first, in a private home."""
    prefect_home.mkdir(parents=True, exist_ok=True)
    os.environ["PREFECT_HOME"] = str(prefect_home)
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["DO_NOT_TRACK"] = "1"
    if not keep_api_url:
        os.environ.pop("PREFECT_API_URL", None)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark the extract stage on trafilatura's evaluation corpus.",
        epilog="Prints one JSON object to stdout; progress goes to stderr.",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="only the first N pages (sorted by URL): a quick smoke run",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="worker processes of the stage (default 2)"
    )
    add_keep_option(parser, "the WARC and workspace (a new or empty folder)")
    parser.add_argument(
        "--skip-direct",
        action="store_true",
        help="skip the direct trafilatura baseline (no ratio_to_direct)",
    )
    parser.add_argument(
        "--use-prefect-api-url",
        action="store_true",
        help="use an inherited PREFECT_API_URL instead of an embedded server",
    )
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    reject_used_keep(parser, args.keep, "a reused workspace would skip the stage's work")
    return args


def benchmark(args: argparse.Namespace, data: Path, folder: Path) -> dict[str, Any]:
    bench_started = time.perf_counter()
    pages = load_pages(data, args.limit)
    log(f"{len(pages)} pages from {data}")

    warc = folder / "trafilatura-eval.warc.gz"
    started = time.perf_counter()
    by_offset = write_warc(pages, warc)
    warc_s = time.perf_counter() - started
    log(f"wrote {warc} ({warc.stat().st_size / 2**20:.1f} MiB) in {warc_s:.1f} s")

    workspace = folder / "workspace"
    prepare_environment(folder / "prefect-home", args.use_prefect_api_url)
    config_path = write_config(folder, warc, workspace, args.workers)
    log(f"running the extract flow ({args.workers} worker processes)")
    result, flow_total_s = run_stage(config_path, workspace)
    # The flow starts its worker processes (each imports Prefect: Prefect start-up) before it
    # maps the units; that time is inside the manifest's wall_s and is reported apart.
    workers_start_s = float(result.get("workers_start_s") or 0.0)
    stage_s = float(result["wall_s"] or 0.0) - workers_start_s
    log(
        f"extract: {result['docs_out']} documents in {stage_s:.1f} s "
        f"({flow_total_s:.1f} s with Prefect start-up)"
    )

    output = read_stage_output(workspace, by_offset)
    confusion = score(pages, output.texts)
    unit_s = float(output.manifest.timings.get("unit_s", 0.0))
    figures: dict[str, Any] = {
        "pages": len(pages),
        "crashes": len(output.crashes),
        **confusion.scores(),
        "pages_per_s": _ratio(len(pages), stage_s, 2),
        "startup_s": round(flow_total_s - stage_s, 2),
    }

    if not args.skip_direct:
        log("direct baseline: trafilatura in a plain loop")
        direct_texts, direct_s, direct_crashes = run_direct(pages)
        direct_rate = _ratio(len(pages), direct_s, 2)
        log(f"direct: {len(pages)} pages in {direct_s:.1f} s")
        figures["direct_pages_per_s"] = direct_rate
        figures["ratio_to_direct"] = _ratio(figures["pages_per_s"], direct_rate, 3)
        direct = score(pages, direct_texts)
        figures.update(direct.scores("direct_snippet_"))
        figures["direct_crashes"] = direct_crashes
        figures["direct_s"] = round(direct_s, 2)
        figures["direct_docs"] = len(direct_texts)
        figures["direct_counts"] = direct.counts()

    figures.update(
        {
            "counts": confusion.counts(),
            "docs_in": result["docs_in"],
            "docs_out": result["docs_out"],
            "docs_unmatched": output.unmatched,
            "stand_in_uris": sum(p.target_uri != p.url for p in pages),
            "dropped": dict(sorted(output.dropped.items())),
            "crash_details": output.crashes[:20],
            "workers": args.workers,
            "units": result["units_run"] + result["units_reused"],
            "units_reused": result["units_reused"],
            "stage_wall_s": round(stage_s, 2),
            "workers_start_s": round(workers_start_s, 2),
            "stage_unit_s": round(unit_s, 2),  # summed time inside the units (all workers)
            "stage_parallel_efficiency": _ratio(unit_s, args.workers * stage_s, 3),
            "flow_total_s": round(flow_total_s, 2),
            "warc_bytes": warc.stat().st_size,
            "warc_write_s": round(warc_s, 2),
            "cpu_count": os.cpu_count(),
            "versions": versions("trafilatura", "lxml", "warcio", "prefect"),
            "targets": TARGETS,
            "total_s": round(time.perf_counter() - bench_started, 2),
        }
    )
    met = figures["snippet_f1"] >= TARGETS["snippet_f1"] and figures["crashes"] == 0
    if "ratio_to_direct" in figures:
        met = met and figures["ratio_to_direct"] >= TARGETS["ratio_to_direct"]
    figures["targets_met"] = met
    return figures


def main(argv: list[str] | None = None) -> int:
    return run_benchmark("extract", parse_args(argv), corpus_dir(), benchmark)


if __name__ == "__main__":
    raise SystemExit(main())
