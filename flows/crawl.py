"""The crawl flow: one task per source, on threads (a crawl waits on the network; each source's
crawl runs its own pool of fetch workers)."""

from __future__ import annotations

from prefect import flow, task, unmapped
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait
from prefect.task_runners import ThreadPoolTaskRunner

from flows.artifacts import publish_crawl
from flows.common import load_run
from pipeline.crawl import crawler

crawl_source = task(crawler.crawl, name="crawl-source", cache_policy=NO_CACHE)


@flow(name="crawl")
def crawl_flow(config_path: str, overrides: list[str] | None = None, force: bool = False) -> dict:
    """Add a generation to every source with something to crawl; `force` changes nothing (a
    crawl is never up to date). Returns each source's crawl summary, by source name."""
    cfg, ws = load_run(config_path, overrides)
    sources = crawler.crawl_sources(cfg)
    with ws.lock("crawl flow"):
        futures = crawl_source.map(unmapped(cfg), unmapped(ws), sources)
        wait(futures)  # every source ends before an error releases the lock
        summaries = {
            source.name: future.result() for source, future in zip(sources, futures, strict=True)
        }
        publish_crawl(ws, summaries)
        return summaries


def run(config_path: str, overrides: list[str] | None = None, force: bool = False) -> dict:
    cfg, _ = load_run(config_path, overrides)
    workers = len(crawler.crawl_sources(cfg))
    runner = ThreadPoolTaskRunner(max_workers=workers)
    return crawl_flow.with_options(task_runner=runner)(config_path, overrides, force)
