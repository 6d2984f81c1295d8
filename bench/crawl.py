"""Benchmark of the crawl stage: throughput against the politeness bound, judged by the servers.

What it measures
  bench/crawl_hosts.py serves, in a process of its own, 32 sites on 127.0.0.2 ... 127.0.0.33
  (`--hosts`), 60 HTML pages each (`--pages`: a home page, sections, articles of Project
  Gutenberg prose from `<repo>/../shared/data/gutenberg/books`), a robots.txt that disallows
  /private/ (every article links there), links between the sites and to one more site outside
  the crawl's scope. Every response is delayed 50 ms ± 20 ms (`--latency`, `--jitter`).
  `textmill run crawl --no-prefect` then crawls every site from its home page (same_host,
  min_delay_s 0.2, 32 requests in flight, 32 threads), a process of its own timed end to end.

  The servers record every request's arrival (CLOCK_MONOTONIC) and everything is judged from
  those records alone:
  - `robots_violations`: requests for a disallowed path, plus requests that reached a host
    before its robots.txt was requested (/.well-known/tdmrep.json included);
  - `politeness_violations`: two consecutive arrivals on one host closer than `delay_s` less
    `tolerance_s` (5 ms, `--tolerance`: how much later one loopback request may be seen than
    another by a busy threaded server on a 2-core machine, where a new connection, the
    handler thread's start and the GIL each add some; the smallest gap is `min_gap_s`);
  - `scope_violations`: requests to the outside site;
  - `pages`: distinct HTML pages of the sites fetched by an unconditional GET (which the
    server answers with 200), `pages_per_host_min` (target >= 50), `page_refetches`.
  `crawl_s` is the first request's arrival to the last one's plus one `delay_s` (the last
  request's own slot), so a crawler that keeps every host busy at the politeness delay scores
  exactly the bound. `pages_per_s` = every request to the sites (robots.txt, tdmrep.json,
  pages: `requests`) / crawl_s; `politeness_bound_pages_per_s` = hosts / delay_s;
  `ratio_to_bound` = their ratio (target >= 0.85). `wall_s` is the crawler process from start to
  exit (start-up and the WARC and manifest writes included), split into `startup_s`, crawl_s and
  `finish_s`. `peak_rss_mb` is the crawler process's peak resident set and `cpu_s` its user +
  system time, start-up included (wait4's rusage).

  Then the generation's WARC files are read end to end with warcio (`warc`), and
  `textmill run extract --no-prefect` makes documents of them (`extract_docs`; --skip-extract).

How to run it (from the repository root)
  .venv/bin/python bench/crawl.py                    # 32 x 60 pages: 2 min, 12-20 s of it crawl
  .venv/bin/python bench/crawl.py --hosts 4 --skip-extract     # a quick smoke run
  .venv/bin/python bench/crawl.py --set crawl.latency_factor=0 # try a crawl setting
  .venv/bin/python bench/crawl.py --keep /tmp/bc     # keep the workspace and the request log

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
import importlib.util
import json
import statistics
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench._common import (
    REPO,
    add_keep_option,
    logger,
    reject_used_keep,
    run_benchmark,
    shared_data,
    versions,
)

log = logger("bench/crawl")

SOURCE_NAME = "bench"
TOLERANCE_S = 0.005
TARGETS = {
    "ratio_to_bound": 0.85,
    "pages_per_host_min": 50,
    "robots_violations": 0,
    "politeness_violations": 0,
    "scope_violations": 0,
}
REQUESTS_COUNTED = (
    "every request that reached the in-scope hosts (robots.txt, tdmrep.json, pages, anything "
    "else) / crawl_s, where crawl_s = last arrival - first arrival + delay_s"
)
TEXTMILL = str(Path(sys.executable).parent / "textmill")


# ----- judging, from the servers' request log alone -----


def judge(request_log: dict[str, Any], delay_s: float, tolerance_s: float) -> dict[str, Any]:
    """The figures of a crawl from the request log that bench/crawl_hosts.py writes."""
    sites = [h for h in request_log["hosts"] if h["in_scope"]]
    kinds: Counter[str] = Counter()
    robots: Counter[str] = Counter()  # robots.txt violations by reason (one request may have two)
    robots_violations = politeness = refetches = 0
    pages_per_host, gaps, firsts, lasts = [], [], [], []
    for host in sites:
        requests = sorted(host["requests"], key=lambda r: r["t"])
        paths = [urlsplit(r["path"]).path for r in requests]
        robots_at = paths.index("/robots.txt") if "/robots.txt" in paths else len(paths)
        fetched: Counter[str] = Counter()
        for i, (request, path) in enumerate(zip(requests, paths, strict=True)):
            kind = _kind(path, request, host)
            kinds[kind] += 1
            if kind == "page":
                fetched[path] += 1
            reasons = {"disallowed": kind == "disallowed", "before_robots": i < robots_at}
            robots.update(reason for reason, hit in reasons.items() if hit)
            robots_violations += any(reasons.values())
        pages_per_host.append(len(fetched))
        refetches += sum(fetched.values()) - len(fetched)
        times = [r["t"] for r in requests]
        host_gaps = [b - a for a, b in pairwise(times)]
        politeness += sum(gap < delay_s - tolerance_s for gap in host_gaps)
        gaps += host_gaps
        if times:
            firsts.append(times[0])
            lasts.append(times[-1])
    requests_total = sum(kinds.values())
    start, last = arrival_span(request_log)
    crawl_s = last - start + delay_s
    rate = requests_total / crawl_s
    bound = len(sites) / delay_s
    outside = sum(len(h["requests"]) for h in request_log["hosts"] if not h["in_scope"])
    return {
        "hosts": len(sites),
        "pages": sum(pages_per_host),
        "pages_per_host_min": min(pages_per_host, default=0),
        "pages_missed": sum(len(h["pages"]) for h in sites) - sum(pages_per_host),
        "page_refetches": refetches,
        "requests": requests_total,
        "requests_by_kind": dict(sorted(kinds.items())),
        "crawl_s": round(crawl_s, 3),
        "pages_per_s": round(rate, 2),
        "pages_per_s_counts": REQUESTS_COUNTED,
        "politeness_bound_pages_per_s": round(bound, 2),
        "ratio_to_bound": round(rate / bound, 4),
        "robots_violations": robots_violations,
        "robots_violations_by_reason": {r: robots[r] for r in ("disallowed", "before_robots")},
        "politeness_violations": politeness,
        "tolerance_s": tolerance_s,
        "min_gap_s": round(min(gaps), 4) if gaps else None,
        "gap_s": _quantiles(gaps),
        # where the time goes: hosts that start late or finish early leave their slots unused
        "host_first_request_s": _quantiles([t - start for t in firsts]),
        "host_last_request_s": _quantiles([t - start for t in lasts]),
        "scope_violations": outside,
    }


def arrival_span(request_log: dict[str, Any]) -> tuple[float, float]:
    """The first and the last arrival (time.monotonic()) of a request on an in-scope host."""
    times = [r["t"] for h in request_log["hosts"] if h["in_scope"] for r in h["requests"]]
    return (min(times), max(times)) if times else (0.0, 0.0)


def _kind(path: str, request: dict[str, Any], host: dict[str, Any]) -> str:
    if path.startswith(tuple(host["disallowed"])):
        return "disallowed"
    if path == "/robots.txt":
        return "robots.txt"
    if path in host["pages"] and request["method"] == "GET" and not request["conditional"]:
        return "page"  # CrawlServer answers it with 200
    return "other"


def _quantiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    tenth = (
        statistics.quantiles(ordered, n=10, method="inclusive") if len(ordered) > 1 else ordered * 9
    )
    return {
        "min": round(ordered[0], 4),
        "p50": round(statistics.median(ordered), 4),
        "p90": round(tenth[-1], 4),
        "max": round(ordered[-1], 4),
    }


# ----- the servers, the crawler, its output -----


@contextmanager
def fixture_web(args: argparse.Namespace, books: Path, request_log: Path) -> Iterator[list[str]]:
    """bench/crawl_hosts.py as a process of its own; yields the sites' origins. On the way out
    it is told to stop (stdin closed) and writes `request_log`."""
    cmd = [
        sys.executable,
        str(REPO / "bench" / "crawl_hosts.py"),
        f"--books={books}",
        f"--log={request_log}",
        f"--hosts={args.hosts}",
        f"--pages={args.pages}",
        f"--latency={args.latency}",
        f"--jitter={args.jitter}",
        f"--seed={args.seed}",
    ]
    servers = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        ready = servers.stdout.readline()
        if not ready:
            sys.exit(f"bench/crawl.py: the fixture servers did not start: {' '.join(cmd)}")
        yield json.loads(ready)["origins"]
    finally:
        servers.stdin.close()
        try:
            servers.wait(timeout=60)
        except subprocess.TimeoutExpired:
            servers.kill()
            servers.wait()
    if not request_log.exists():
        sys.exit(f"bench/crawl.py: the fixture servers exited ({servers.returncode}) without a log")


def crawl_stage_missing() -> str | None:
    """Why `textmill run crawl` cannot run yet, or None."""
    if importlib.util.find_spec("pipeline.crawl.crawler") is None:
        return "pipeline/crawl/crawler.py (the crawl loop) is not there yet"
    help_run = subprocess.run(
        [TEXTMILL, "run", "crawl", "--help"], capture_output=True, text=True, check=False
    )
    if help_run.returncode != 0:
        return f"`textmill run crawl --help` fails:\n{help_run.stderr.strip()[-2000:]}"
    return None


def write_config(folder: Path, origins: list[str], args: argparse.Namespace) -> Path:
    import yaml

    config = {
        "workspace": str(folder / "workspace"),
        "sources": [
            {
                "name": SOURCE_NAME,
                "kind": "web",
                "seeds": [origin + "/" for origin in origins],
                "same_host": True,
                "max_depth": 10,
            }
        ],
        "crawl": {
            "min_delay_s": args.delay,
            "max_concurrency": args.concurrency,
            "allow_networks": ["127.0.0.0/8"],
        },
        "runner": {"task_runner": "threads", "workers": args.concurrency},
    }
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class Process:
    started: float  # time.monotonic() just before the start
    seconds: float
    cpu_s: float  # user + system time of the process and the children it waited for
    peak_rss_mb: float


def run_textmill(stage: str, config: Path, folder: Path, timeout_s: float, *sets: str) -> Process:
    """`textmill run STAGE --no-prefect` (its output to stderr), timed from start to exit, with
    its peak RSS from wait4; exit 1 naming the stage if it fails or runs past `timeout_s`."""
    cmd = [TEXTMILL, "run", stage, "--no-prefect", "-c", str(config)]
    cmd += [f"--set={s}" for s in sets]
    env = {**os.environ, "PREFECT_HOME": str(folder / "prefect-home")}
    env.pop("PREFECT_API_URL", None)
    log(" ".join(cmd))
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env)
    killer = threading.Timer(timeout_s, proc.kill)
    killer.start()
    _, status, usage = os.wait4(proc.pid, 0)
    killer.cancel()
    seconds = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        late = f" after the {timeout_s:.0f} s time limit" if seconds >= timeout_s else ""
        sys.exit(
            f"bench/crawl.py: `{' '.join(cmd)}` failed (exit {proc.returncode}){late}; its "
            "output is above, on stderr."
        )
    cpu_s = usage.ru_utime + usage.ru_stime
    return Process(started, seconds, cpu_s, usage.ru_maxrss / 1024)  # ru_maxrss: KiB on Linux


def read_warcs(workspace: Path) -> dict[str, Any]:
    """The source's generations and WARC files, every record read to its end with warcio and
    its digests checked. warcio reads a record cut short without complaint, so a record whose
    Content-Length was not all there counts as an error too."""
    from warcio.archiveiterator import ArchiveIterator

    source = workspace / "crawl" / SOURCE_NAME
    files = sorted(source.glob("*/*.warc.gz"))
    records: Counter[str] = Counter()
    errors = []
    for path in files:
        try:
            with path.open("rb") as fh:
                archive = ArchiveIterator(fh, check_digests=True)
                for record in archive:
                    record.content_stream().read()
                    records[record.rec_type] += 1
                    where = f"{path.name} at {archive.get_record_offset()}"
                    if record.raw_stream.limit:
                        errors.append(f"{where}: {record.raw_stream.limit} bytes missing")
                    if record.digest_checker.passed is False:
                        errors.append(f"{where}: {'; '.join(record.digest_checker.problems)}")
        except Exception as exc:  # a broken file is a finding, not a crash of the benchmark
            errors.append(f"{path.name}: {type(exc).__name__}: {exc}")
    return {
        "generations": len({p.parent for p in files}),
        "manifests": len(list(source.glob("*/_manifest.json"))),
        "files": len(files),
        "bytes": sum(p.stat().st_size for p in files),
        "records": dict(sorted(records.items())),
        "readable": not errors,
        "errors": errors[:10],
    }


def extracted_documents(workspace: Path) -> int:
    from pipeline.datasets import Dataset
    from pipeline.workspace import Workspace

    return Dataset.current(Workspace(str(workspace)), "extract").manifest.docs_out


# ----- the benchmark -----


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark the crawl stage on local fixture sites, judged by the servers.",
        epilog="Prints one JSON object to stdout; progress goes to stderr.",
    )
    parser.add_argument("--hosts", type=int, default=32, help="sites (default 32)")
    parser.add_argument("--pages", type=int, default=60, help="HTML pages a site (default 60)")
    parser.add_argument(
        "--delay",
        type=float,
        default=0.2,
        help="politeness delay between two request starts on one host, s (default 0.2)",
    )
    parser.add_argument("--latency", type=float, default=0.05, help="response delay, s")
    parser.add_argument("--jitter", type=float, default=0.02, help="± this, uniform, s")
    parser.add_argument(
        "--concurrency", type=int, default=32, help="requests in flight and threads (default 32)"
    )
    parser.add_argument("--seed", type=int, default=0, help="the sites' text and delays")
    parser.add_argument(
        "--timeout", type=float, default=600, help="longest crawl or extract run, s (default 600)"
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=TOLERANCE_S,
        help=f"arrival jitter forgiven in the politeness check, s (default {TOLERANCE_S})",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override the crawl's run config, as textmill's --set (repeatable), "
        "e.g. --set crawl.latency_factor=0",
    )
    parser.add_argument("--skip-extract", action="store_true", help="no extract stage run")
    add_keep_option(parser, "the workspace and request log (a new or empty folder)")
    args = parser.parse_args(argv)
    if args.delay <= 0:
        parser.error("--delay must be positive")
    reject_used_keep(parser, args.keep, "a reused frontier skips work")
    return args


def benchmark(args: argparse.Namespace, data: Path, folder: Path) -> dict[str, Any]:
    bench_started = time.perf_counter()
    start_load = round(os.getloadavg()[0], 2)  # other work on the machine skews the timings
    missing = crawl_stage_missing()
    if missing:
        sys.exit(f"bench/crawl.py: {missing}")
    request_log_path = folder / "requests.json"
    with fixture_web(args, data / "gutenberg" / "books", request_log_path) as origins:
        log(f"{len(origins)} sites x {args.pages} pages up: {origins[0]} ... {origins[-1]}")
        config = write_config(folder, origins, args)
        crawl = run_textmill("crawl", config, folder, args.timeout, *args.overrides)
    request_log = json.loads(request_log_path.read_text(encoding="utf-8"))
    figures = judge(request_log, args.delay, args.tolerance)
    first, last = arrival_span(request_log)
    log(
        f"crawl: {figures['requests']} requests, {figures['pages']} pages in "
        f"{figures['crawl_s']:.1f} s ({crawl.seconds:.1f} s with start-up): "
        f"ratio to bound {figures['ratio_to_bound']:.3f}"
    )
    figures.update(
        {
            "delay_s": args.delay,
            "latency_s": args.latency,
            "latency_jitter_s": args.jitter,
            "concurrency": args.concurrency,
            "overrides": args.overrides,
            "wall_s": round(crawl.seconds, 2),
            "startup_s": round(first - crawl.started, 2),
            "finish_s": round(crawl.started + crawl.seconds - last, 2),
            "peak_rss_mb": round(crawl.peak_rss_mb, 1),
            # CPU seconds of the crawler process, start-up included: near wall_s x cores means
            # the crawl was short of CPU, not waiting on the politeness delay
            "cpu_s": round(crawl.cpu_s, 2),
            "warc": read_warcs(folder / "workspace"),
        }
    )
    if not args.skip_extract:
        extract = run_textmill(
            "extract",
            config,
            folder,
            args.timeout,
            "runner.task_runner=processes",
            "runner.workers=2",
        )
        figures["extract_docs"] = extracted_documents(folder / "workspace")
        figures["extract_s"] = round(extract.seconds, 2)
    figures.update(
        {
            "targets": TARGETS,
            "targets_met": targets_met(figures),
            "load_average_1m": {"start": start_load, "end": round(os.getloadavg()[0], 2)},
            "cpu_count": os.cpu_count(),
            "versions": versions("requests", "urllib3", "warcio", "protego"),
            "bench_s": round(time.perf_counter() - bench_started, 2),
        }
    )
    return figures


def targets_met(figures: dict[str, Any]) -> bool:
    return (
        figures["ratio_to_bound"] >= TARGETS["ratio_to_bound"]
        and figures["pages_per_host_min"] >= TARGETS["pages_per_host_min"]
        and all(figures[key] <= TARGETS[key] for key in TARGETS if key.endswith("_violations"))
        and figures["warc"]["readable"]
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_benchmark("crawl", args, shared_data("bench/crawl.py", "gutenberg/books"), benchmark)


if __name__ == "__main__":
    raise SystemExit(main())
