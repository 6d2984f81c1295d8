"""The crawl loop: one crawl run (a generation) of one source, polite and resumable.

`crawl(cfg, ws, source)` fetches what the source names and what it discovers, and writes it as
WARC files in `<root>/crawl/<source>/<generation>/`, with `_manifest.json` written last.

Scheduling. The frontier (SQLite) hands out URLs: `claim` picks a URL of a host whose next start
time has come and which has a free slot (`max_per_host`, one by default). One dispatcher thread
claims and hands each URL to a pool of `max_concurrency` fetch workers (one `Fetcher`, whose
connection to a host serves every worker). The frontier schedules hosts in memory and writes
one transaction per claim, per outcome and per page's new links. When no host is ready it
sleeps on a condition variable until the earliest next start time the frontier knows, or until
a worker finishes: no polling.
A host's next start is `delay` after the start of its last request, where delay is the larger
of `min_delay_s`, robots.txt's Crawl-delay and `latency_factor` times the last response's
duration (a host that slows down is backed off). The start is when the request's bytes were
handed to the socket, after connecting (safety.py records it), and the delay counts from there
plus `SEND_MARGIN_S`, so the gap between two starts as the server sees them is not shorter than
the delay even when the sends are late under load. A transient failure (timeout, 429,
5xx) puts the URL and its whole host aside for the retry delay (`fetch.retry_delay`). A host
whose Crawl-delay is longer than `max_crawl_delay_s` does not hold the run (nor the workspace
lock) for it: it gets one request per generation, once its delay has passed since the last one,
and its other URLs wait for the next generation, skipped with reason `crawl_delay` (the
frontier's `max_delay_s`); its robots.txt and tdmrep.json are kept in the frontier, so that
request can go to a page.

Per URL, in its host's slot: a URL the workspace's takedown list names (pipeline/takedown.py)
is skipped (`takedown`) without a request; then robots.txt first for every host (the fetch of
robots.txt takes the slot, the URL waits for the next one), then tdmrep.json when
`crawl.tdmrep` is on, the same way; a URL robots.txt disallows is skipped (`robots`), a host
whose robots.txt is unreachable is put aside and asked again later (or given up:
`robots_unreachable`), and a host the crawler may not reach (safety.py: a private or loopback
address outside `allow_networks`) fails its URLs with the fetcher's reason (`unsafe_address`),
nothing sent. Then the fetch (conditional when an earlier generation fetched the URL),
the opt-out checks (consent.py: skipped with the signal as the reason), discovery, and the WARC
records with the frontier's update.

Discovery, by source kind (pipeline/crawl/sources.py, urls.py):
- web: the seeds, then links of fetched pages within the scope (same host, URL prefixes,
  allow/deny patterns, depth, trap guards); a link refused is recorded as skipped with why.
- article: feeds, sitemaps, sitemaps listed in the robots.txt of those hosts, and the feeds
  that seed pages announce; only article URLs are fetched (`not_article` otherwise), and each
  feed item's title, author and date go with its page. Links are not followed.
- book: Project Gutenberg's catalog (`source.catalog`, a URL or a local file) selected by
  languages, subjects, ids and `max_pages`; the plain texts from `source.mirror`, never
  gutenberg.org's HTML. The catalog record goes with each book.
What a source knew about a URL, and the license a page states, are written as a JSON `metadata`
record after the response; extract puts them on the document.

A fetch that was redirected records its target in the frontier as fetched (reason `redirect`),
so the page is not fetched again under its own URL. Crash safety: the children a page leads to
are added to the frontier before the page is committed, and the page is committed (one frontier
transaction) only after its WARC records are on disk (warcwriter.py's group commit), so a kill
at any moment loses nothing and refetches only what was in flight. A run that finds the last
generation unfinished (no manifest) resumes it. Crash points (pipeline/crash.py):
`crawl.fetched` (fetched, nothing written), `warc.record` (half a record written),
`frontier.commit` (inside any frontier transaction), `crawl.url.done` (between two URLs) and
`crawl.manifest.write` (half the manifest written).

A 304 answer is written as a `revisit` record and the URL is `not_modified`; robots.txt and
tdmrep.json answers are not written (they are not documents). Durability: the WARC group commit
fsyncs before the frontier commits, and the frontier runs WAL with synchronous=NORMAL: a killed
process loses nothing committed; a power cut may lose the frontier's last commits, which makes
the next run cut a little more of the WARC files and fetch those URLs again.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lxml.html import HtmlElement

from pipeline import takedown
from pipeline.config import ConfigError, RunConfig, SourceConfig
from pipeline.crash import crash_point
from pipeline.crawl import consent, sources, warcwriter
from pipeline.crawl.fetch import REDIRECT_NOT_FOLLOWED, Fetcher, FetchResult, Outcome, retry_delay
from pipeline.crawl.frontier import LONGEST_DELAY_S, Claim, Frontier, NewUrl
from pipeline.crawl.robots import Robots, RobotsCache, RobotsState, fetch_options, robots_url
from pipeline.crawl.urls import CrawlRules, Limits, Scope, extract_links, host_key, normalize_url
from pipeline.storage import sha256_file
from pipeline.workspace import MANIFEST, Workspace

HTML_TYPES = {"text/html", "application/xhtml+xml"}
ROLE = "role"  # metadata key, the crawler's own: what a URL is fetched for (Role below)
FRONTIER = "frontier.sqlite"
# added to the politeness delay: what a loaded machine may put between reading the clock and
# the server reading the request (the send system call, a thread waiting for its turn: Python
# switches threads every 5 ms), so that the server never sees two starts closer than the delay;
# 0.5-2.5% of a 1-0.2 s delay
SEND_MARGIN_S = 0.005

logger = logging.getLogger(__name__)


class Role:
    """What a URL is fetched for; a page unless its metadata says otherwise."""

    PAGE = "page"  # stored for extract; a web page's links are followed
    SEED = "seed"  # an article source's start page: stored, its feeds are read
    FEED = "feed"
    SITEMAP = "sitemap"
    CATALOG = "catalog"  # Project Gutenberg's pg_catalog.csv


def crawlable(source: SourceConfig) -> bool:
    """Does the source name anything to crawl?"""
    return bool(source.seeds or source.feeds or source.sitemaps or source.catalog)


def crawl_sources(cfg: RunConfig) -> list[SourceConfig]:
    """The sources `textmill run crawl` crawls: `crawl.sources`, or every crawlable one."""
    by_name = {source.name: source for source in cfg.sources}
    if cfg.crawl.sources:
        unknown = [name for name in cfg.crawl.sources if name not in by_name]
        if unknown:
            raise ConfigError(f"crawl.sources: no source named {', '.join(unknown)}")
        chosen = [by_name[name] for name in cfg.crawl.sources]
    else:
        chosen = [source for source in cfg.sources if crawlable(source)]
    idle = [source.name for source in chosen if not crawlable(source)]
    if idle:
        raise ConfigError(
            f"sources.{idle[0]}: nothing to crawl (no seeds, feeds, sitemaps or catalog)"
        )
    if not chosen:
        raise ConfigError("crawl: no source has seeds, feeds, sitemaps or a catalog")
    return chosen


def crawl(
    cfg: RunConfig,
    ws: Workspace,
    source: SourceConfig,
    log: Callable[[str], None] = logger.info,
) -> dict[str, Any]:
    """Crawl `source` into a new generation (or finish the one a killed run left) and return
    its summary: generation, fetched, not_modified, failed and skipped by reason, requests,
    bytes, seconds, warc_files."""
    if not ws.storage.is_local:
        raise ConfigError(
            f"crawl: the workspace {ws.root} must be a local folder (the frontier is SQLite and "
            "WARC files are appended to)"
        )
    if source.kind == "book" and source.catalog and not source.mirror:
        raise ConfigError(f"sources.{source.name}.mirror: a book source needs a mirror base URL")
    with _Crawl(cfg, ws, source, log) as run:
        return run.run()


def payload_digest(payload: bytes) -> str:
    """WARC-Payload-Digest as the WARC writer computes it: sha1, base32."""
    return "sha1:" + base64.b32encode(hashlib.sha1(payload).digest()).decode("ascii")


class _Crawl:
    def __init__(self, cfg: RunConfig, ws: Workspace, source: SourceConfig, log: Callable):
        self.run_cfg, self.cfg, self.source, self.ws, self.log = cfg, cfg.crawl, source, ws, log
        self.base = f"crawl/{source.name}"
        self.folder = Path(ws.storage.path(self.base))
        self.frontier = Frontier(
            self.folder / FRONTIER,
            delay_s=self.cfg.min_delay_s,
            per_host=self.cfg.max_per_host,
            max_attempts=self.cfg.max_attempts,
            # a book source's budget is applied to the catalog selection (max_books)
            max_pages=None if source.kind == "book" else source.max_pages,
            max_pages_per_host=source.max_pages_per_host,
            max_delay_s=self.cfg.max_crawl_delay_s,
        )
        starts = [*source.seeds, *source.feeds, *source.sitemaps]
        patterns = {
            "prefixes": tuple(source.url_prefixes),
            "allow": tuple(source.allow_patterns),
            "deny": tuple(source.deny_patterns),
        }
        scope = Scope.same_host(starts, **patterns) if source.same_host else Scope(**patterns)
        self.rules = CrawlRules(scope=scope, limits=Limits(max_depth=source.max_depth))
        self.fetcher = Fetcher(self.cfg)
        self.robots = RobotsCache(self.cfg)
        self.tdmrep = consent.TdmRepCache(self.cfg)
        self.takedown = takedown.load(ws)  # the workspace's takedown list as the crawl starts
        self.writer: warcwriter.GenerationWriter | None = None
        self._changed = threading.Condition()  # a worker finished: the dispatcher looks again
        self._error: BaseException | None = None
        self._stats_lock = threading.Lock()
        self.requests = self.bytes = 0
        self._seen: set[str] = set()  # URLs found this run (the frontier knows them from then)

    def __enter__(self) -> _Crawl:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.writer is not None:
            self.writer.close()
        self.fetcher.close()
        self.frontier.close()

    # ----- the run -----

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        generation, resumed = self._open_generation()
        self.writer = warcwriter.GenerationWriter(
            self.folder / generation,
            prefix=self.source.name,
            max_bytes=int(self.cfg.warc_max_mb * 2**20),
            committed=self.frontier.warc_ends(generation),
            info={"http-header-user-agent": self.cfg.user_agent, "robots": "classic"},
        )
        what = "resumes" if resumed else "starts"
        self.log(f"crawl {self.source.name}: {what} generation {generation}")
        self._add_starting_points()
        with ThreadPoolExecutor(self.cfg.max_concurrency, f"crawl-{self.source.name}") as pool:
            self._dispatch(pool)
        self.writer.close()
        summary = self._summary(generation, resumed, time.monotonic() - started)
        self._write_manifest(generation, summary)
        self.frontier.finish_generation()
        self.log(
            f"crawl {self.source.name}: generation {generation}: {summary['fetched']} fetched, "
            f"{summary['not_modified']} not modified, {sum(summary['failed'].values())} failed, "
            f"{sum(summary['skipped'].values())} skipped; {summary['requests']} requests in "
            f"{summary['seconds']} s"
        )
        return summary

    def _open_generation(self) -> tuple[str, bool]:
        """The unfinished generation of a killed run, or a new one named by the UTC time."""
        current = self.frontier.generation
        if current and not self.frontier.generation_finished(current):
            if not self.ws.storage.exists(f"{self.base}/{current}/{MANIFEST}"):
                return current, True
            self.frontier.finish_generation()  # killed after its manifest was written
        now = datetime.now(UTC)
        name = f"{now:%Y%m%dT%H%M%S}.{now.microsecond // 1000:03d}Z"
        if current and name <= current:
            raise RuntimeError(
                f"crawl {self.source.name}: the clock is behind the last generation {current}"
            )
        self.frontier.start_generation(name)
        return name, False

    def _add_starting_points(self) -> None:
        """The URLs the config names (known ones stay as they are), and a local catalog's books."""
        source = self.source
        seed_role = Role.SEED if source.kind == "article" else Role.PAGE
        named = [(url, seed_role) for url in source.seeds]
        named += [(url, Role.FEED) for url in source.feeds]
        named += [(url, Role.SITEMAP) for url in source.sitemaps]
        catalog = source.catalog
        if catalog and "://" in catalog:
            named.append((catalog, Role.CATALOG))
        elif catalog:
            path = self.run_cfg.resolve(catalog)
            try:
                self.frontier.add(self._books(sources.select_books(path, **self._selection())))
            except (OSError, sources.SourceError) as exc:
                raise ConfigError(f"sources.{source.name}.catalog: {exc}") from None
        items = []
        for url, role in named:
            try:
                items.append(NewUrl(normalize_url(url), source=source.name, metadata=_role(role)))
            except ValueError as exc:
                raise ConfigError(f"sources.{source.name}: {exc}") from None
        self.frontier.add(items)

    def _dispatch(self, pool: ThreadPoolExecutor) -> None:
        """Hand claimed URLs to the workers until nothing is queued or in flight."""
        slots = threading.Semaphore(self.cfg.max_concurrency)

        def finished(future: Future) -> None:
            slots.release()
            with self._changed:
                if future.exception() is not None and self._error is None:
                    self._error = future.exception()
                self._changed.notify()

        while True:
            slots.acquire()
            claim = self._next_claim()
            if claim is None:
                break
            pool.submit(self._work, claim).add_done_callback(finished)
        pool.shutdown(wait=True)
        if self._error is not None:
            raise self._error

    def _next_claim(self) -> Claim | None:
        """The next URL whose host is ready, waiting until one is; None when the crawl is
        done (or a worker failed)."""
        with self._changed:
            while self._error is None:
                claim = self.frontier.claim()
                if claim is not None:
                    return claim
                if self.frontier.pending() == 0:
                    return None
                ready_at = self.frontier.next_ready_at()
                # a day at a time at most: a time further off (a Retry-After the config lets
                # through) would overflow the lock's timeout; waking up once a day costs nothing
                wait = None if ready_at is None else max(ready_at - time.time(), 0)
                self._changed.wait(None if wait is None else min(wait, LONGEST_DELAY_S))
            return None

    # ----- one URL -----

    def _work(self, claim: Claim) -> None:
        url, host = claim.url, claim.host
        if takedown.matches(self.takedown, url, None):  # before robots.txt: not one request
            self.frontier.mark_skipped(url, takedown.REASON)
            return
        robots = self._robots_rules(url)
        if robots is None:  # robots.txt takes this slot; the URL waits for the next one
            self._robots(claim)
            self.frontier.release(url)
            return
        if robots.state is RobotsState.REFUSED:  # nothing was sent, and nothing will be
            self.frontier.mark_failed(url, robots.reason)
            return
        if robots.state is RobotsState.UNREACHABLE:
            if robots.retry_in_s is None:
                self.frontier.mark_failed(url, "robots_unreachable")
            else:
                self.frontier.release(url, retry_at=time.time() + robots.retry_in_s)
            return
        if not robots.allowed(url, self.cfg.agents):
            self.frontier.mark_skipped(url, "robots")
            return
        if self.cfg.consent and self.cfg.tdmrep:
            rules = self._tdmrep_rules(url)
            if rules is None:  # tdmrep.json takes this slot, like robots.txt
                answer = self._request(host, consent.tdmrep_url(url), content_types=[])
                self.tdmrep.record(url, answer)
                self._keep_tdmrep(url, robots, answer)
                self.frontier.release(url)
                return
            reserved = rules.opt_out(url)
            if reserved:
                self.frontier.mark_skipped(url, reserved)
                return
        # the catalog is larger than any page (pg_catalog.csv: about 14 MB in 2025)
        is_catalog = (claim.metadata or {}).get(ROLE) == Role.CATALOG
        result = self._request(
            host,
            url,
            etag=claim.etag,
            last_modified=claim.last_modified,
            max_bytes=self.cfg.catalog_max_bytes if is_catalog else None,
            may_follow=lambda target: self._may_follow(claim, target),
        )
        crash_point("crawl.fetched")
        self._record(claim, result)
        crash_point("crawl.url.done")

    def _robots(self, claim: Claim) -> Robots:
        answer = self._request(claim.host, robots_url(claim.url), **fetch_options(self.cfg))
        robots = self.robots.record(claim.url, answer)
        if robots.state is RobotsState.REFUSED:
            self.log(f"crawl {self.source.name}: not reached: {answer.detail}")
        delay = self._delay(robots)
        if self._too_slow(robots):
            self.frontier.keep_file(robots_url(claim.url), robots.text, time.time())
            self.log(
                f"crawl {self.source.name}: {claim.host} asks for {delay:g} s between requests,"
                f" more than crawl.max_crawl_delay_s ({self.cfg.max_crawl_delay_s:g} s): one"
                " request per generation, its other URLs wait (skipped: crawl_delay)"
            )
        self.frontier.set_host_delay(claim.host, delay)
        if robots.state is RobotsState.UNREACHABLE and robots.retry_in_s is not None:
            delay = robots.retry_in_s
        self.frontier.defer_host(claim.host, delay)  # Crawl-delay, known only now
        if self.source.kind == "article" and robots.sitemaps:
            found = []
            for url in robots.sitemaps:
                try:
                    found.append(
                        NewUrl(
                            normalize_url(url),
                            claim.depth,
                            self.source.name,
                            claim.url,
                            _role(Role.SITEMAP),
                        )
                    )
                except ValueError:
                    continue  # a Sitemap line that is not an http(s) URL
            self.frontier.add(found)
        return robots

    def _may_follow(self, claim: Claim, target: str) -> str | None:
        """A redirect is followed at once only where a link to its target would be fetched in
        this host's slot: the same host, in scope, not taken down, allowed by robots.txt. Any
        other target is queued as a URL of its own (`_record`), to be judged and fetched in its
        host's slot, after that host's robots.txt."""
        try:
            url = normalize_url(target)
        except ValueError:
            return None  # not http(s): fetch refuses it itself, with its reason
        if host_key(url) != claim.host:
            return "other_host"
        if takedown.matches(self.takedown, url, None):
            return takedown.REASON
        robots = self.robots.lookup(url)
        if robots is None or not robots.allowed(url, self.cfg.agents):
            return "robots"
        return self.rules.refuse(url, claim.depth)

    def _delay(self, robots: Robots | None) -> float:
        crawl_delay = robots.crawl_delay(self.cfg.agents) if robots else None
        return max(self.cfg.min_delay_s, crawl_delay or 0.0)

    def _too_slow(self, robots: Robots | None) -> bool:
        """Does the host ask for more time between requests than a crawl run waits?"""
        return self._delay(robots) > self.cfg.max_crawl_delay_s

    # ----- robots.txt and tdmrep.json: cached for the run, kept for a slow host -----

    def _robots_rules(self, url: str) -> Robots | None:
        """The rules of `url`'s origin: read this run, or kept by an earlier one for a slow host
        (and still fresh); None: robots.txt must be fetched."""
        robots = self.robots.lookup(url)
        kept = self._kept(robots_url(url)) if robots is None else None
        if kept is not None:
            text, age = kept
            robots = self.robots.restore(url, text or "", age)
            self.frontier.set_host_delay(host_key(url), self._delay(robots))
        return robots

    def _tdmrep_rules(self, url: str) -> consent.TdmRep | None:
        rules = self.tdmrep.lookup(url)
        kept = self._kept(consent.tdmrep_url(url)) if rules is None else None
        return self.tdmrep.restore(url, *kept) if kept is not None else rules

    def _keep_tdmrep(self, url: str, robots: Robots, answer: FetchResult) -> None:
        """Keep a slow host's tdmrep.json (its text, or None for none); an unreachable one is
        asked for again."""
        if not self._too_slow(robots) or answer.outcome is Outcome.RETRY:
            return
        text = consent.tdmrep_text(answer) if answer.outcome is Outcome.FETCHED else None
        self.frontier.keep_file(consent.tdmrep_url(url), text, time.time())

    def _kept(self, url: str) -> tuple[str | None, float] | None:
        """(text, age in seconds) of a file the frontier keeps, while `robots_ttl_s` allows."""
        kept = self.frontier.kept_file(url)
        if kept is None:
            return None
        text, fetched_at = kept
        age = time.time() - fetched_at
        return (text, age) if 0 <= age < self.cfg.robots_ttl_s else None

    def _request(self, host: str, url: str, **options: Any) -> FetchResult:
        """Fetch once, count it, and set the host's next start from when it was sent."""
        result = self.fetcher.fetch(url, **options)
        sent = [exchange.sent_at for exchange in result.exchanges]
        last_start = sent[-1] if sent and sent[-1] else time.time() - result.elapsed_s
        delay = max(
            self._delay(self.robots.lookup(url)), self.cfg.latency_factor * result.elapsed_s
        )
        self.frontier.defer_host(host, delay + SEND_MARGIN_S, now=last_start)
        with self._stats_lock:
            self.requests += max(len(sent), 1)
            self.bytes += sum(len(exchange.payload) for exchange in result.exchanges)
        return result

    def _record(self, claim: Claim, result: FetchResult) -> None:
        """The outcome: WARC records first, then the frontier (in the writer's on_written)."""
        url, frontier = claim.url, self.frontier
        if result.outcome is Outcome.RETRY:
            delay = retry_delay(claim.attempts + 1, result.retry_after_s, self.cfg)
            if delay is not None:
                frontier.defer_host(claim.host, delay)  # the host is struggling: leave it be
            self._store(
                result,
                None,
                lambda at: frontier.mark_failed(
                    url, result.reason or "retry", retry_in=delay, status=result.status, stored=at
                ),
            )
            return
        if result.reason == REDIRECT_NOT_FOLLOWED and result.redirect_target:
            # the 3xx answer is what this URL gave; its target is judged as a URL of its own
            target = normalize_url(result.redirect_target)
            frontier.add(self._new(claim, [(target, claim.depth, claim.metadata)], True))
            self._store(
                result,
                None,
                lambda at: frontier.mark_fetched(url, result.status or 302, at, redirected_to=None),
            )
            return
        if result.outcome is Outcome.FAILED:
            self._store(
                result,
                None,
                lambda at: frontier.mark_failed(
                    url, result.reason or "failed", status=result.status, stored=at
                ),
            )
            return
        if result.outcome is Outcome.NOT_MODIFIED:
            previous = warcwriter.PreviousCapture(url, claim.fetched_at, claim.payload_digest)
            self._store(
                result,
                None,
                lambda at: frontier.mark_fetched(
                    url, 304, at, etag=result.etag, last_modified=result.last_modified
                ),
                previous,
            )
            return
        html = result.content_type in HTML_TYPES
        tree = consent.html_tree(result.body, result.charset) if html else None
        opted_out = consent.opt_out(result, tree, self.cfg) if self.cfg.consent else None
        if opted_out:
            frontier.mark_skipped(url, opted_out)
            return
        try:
            frontier.add(self._discover(claim, result, tree))
        except sources.SourceError as exc:
            role = (claim.metadata or {}).get(ROLE, Role.PAGE)
            self.log(f"crawl {self.source.name}: {exc}")
            reason = f"unreadable_{role}"
            self._store(
                result,
                None,
                lambda at: frontier.mark_failed(url, reason, status=result.status, stored=at),
            )
            return
        self._store(
            result,
            self._metadata(claim, result, tree),
            lambda at: frontier.mark_fetched(
                url,
                result.status or 200,
                at,
                payload_digest=payload_digest(result.final.payload),
                etag=result.etag,
                last_modified=result.last_modified,
                redirected_to=_redirect_target(result),
            ),
        )

    def _store(
        self,
        result: FetchResult,
        metadata: dict[str, Any] | None,
        commit: Callable[[warcwriter.WarcLocation | None], None],
        previous: warcwriter.PreviousCapture | None = None,
    ) -> None:
        """Write the exchanges (the redirect hops, the final one) and commit once on disk; a
        fetch that got no answer at all is committed with nothing stored."""
        if not result.exchanges:
            commit(None)
            return
        *hops, final = result.exchanges
        self.writer.write_exchange(
            final, redirects=hops, metadata=metadata, previous=previous, on_written=commit
        )

    # ----- discovery -----

    def _discover(
        self, claim: Claim, result: FetchResult, tree: HtmlElement | None
    ) -> list[NewUrl]:
        """The URLs a fetched document leads to (raises SourceError for an unreadable feed,
        sitemap or catalog); `tree` is an HTML page parsed."""
        role = (claim.metadata or {}).get(ROLE, Role.PAGE)
        base, body, kind = result.final_url, result.body, self.source.kind
        if role == Role.SITEMAP:
            sitemap = sources.parse_sitemap(body, base)
            children = [(e.url, claim.depth, _role(Role.SITEMAP)) for e in sitemap.sitemaps]
            return self._new(claim, children) + self._pages(
                claim, [(e.url, None) for e in sitemap.pages]
            )
        if role == Role.FEED:
            items = sources.parse_feed(body, base)
            return self._pages(claim, [(item.url, item.metadata()) for item in items])
        if role == Role.CATALOG:
            books = sources.select_books(body, **self._selection(), name=claim.url)
            return self._books(books)
        if result.content_type not in HTML_TYPES:
            return []
        page = body if tree is None else tree
        if kind == "article":
            feeds = sources.find_feed_links(page, base, result.charset)
            return self._new(claim, [(u, claim.depth, _role(Role.FEED)) for u in feeds], True)
        if kind == "web":
            links = extract_links(page, base, result.charset)
            return self._new(claim, [(u, claim.depth + 1, None) for u in links], True)
        return []

    def _pages(self, claim: Claim, found: list[tuple[str, dict | None]]) -> list[NewUrl]:
        """Pages named by a feed or sitemap: for an article source, only articles."""
        pages = self._new(claim, [(url, claim.depth + 1, meta) for url, meta in found], True)
        if self.source.kind != "article":
            return pages
        return [
            page
            if page.skip or sources.is_article_url(page.url)
            else NewUrl(
                page.url, page.depth, page.source, page.discovered_from, None, "not_article"
            )
            for page in pages
        ]

    def _new(
        self, claim: Claim, found: list[tuple[str, int, dict | None]], checked: bool = False
    ) -> list[NewUrl]:
        """NewUrls found by `claim` and not by an earlier document of this run; `checked` ones
        pass the crawl rules and robots.txt first (a refused one is recorded as skipped, with
        the reason)."""
        with self._stats_lock:  # pages link to the same menus and sections over and over
            fresh = [item for item in found if item[0] not in self._seen]
            self._seen.update(url for url, _, _ in fresh)
        items = []
        for url, depth, metadata in fresh:
            skip = None
            if checked:
                skip = self.rules.refuse(url, depth)
                robots = self.robots.lookup(url)
                # only rules decide here: an unreachable or refused host's URLs are recorded
                # with their own reason when claimed
                if skip is None and robots and robots.state is RobotsState.PARSED:
                    skip = None if robots.allowed(url, self.cfg.agents) else "robots"
            items.append(NewUrl(url, depth, self.source.name, claim.url, metadata, skip))
        return items

    def _selection(self) -> dict[str, Any]:
        source = self.source
        return {
            "languages": source.languages,
            "subjects": source.subjects,
            "ids": source.ids,
            "max_books": source.max_pages,
        }

    def _books(self, books: list[sources.Book]) -> list[NewUrl]:
        mirror = self.source.mirror or ""
        return [
            NewUrl(
                normalize_url(sources.gutenberg_text_url(mirror, book.id)),
                source=self.source.name,
                # extract reads `language`: the catalog's first (books in several are rare)
                metadata={
                    **book.metadata,
                    "language": next(iter(book.metadata["languages"]), None),
                },
            )
            for book in books
        ]

    def _metadata(
        self, claim: Claim, result: FetchResult, tree: HtmlElement | None
    ) -> dict[str, Any] | None:
        """What the source knew (a feed item, a catalog record) and the page's license."""
        known = {k: v for k, v in (claim.metadata or {}).items() if k != ROLE}
        license = consent.page_license(result, tree)
        if license:
            known["license"] = license
        return known or None

    # ----- the end -----

    def _summary(self, generation: str, resumed: bool, seconds: float) -> dict[str, Any]:
        counts = self.frontier.counts(generation)
        by_reason: dict[str, dict[str, int]] = {"failed": {}, "skipped": {}}
        for (state, reason), n in sorted(self.frontier.reasons(generation).items()):
            if state in by_reason:
                by_reason[state][reason] = n
        return {
            "source": self.source.name,
            "generation": generation,
            "resumed": resumed,
            "fetched": counts.get("fetched", 0),
            "not_modified": counts.get("not_modified", 0),
            "failed": by_reason["failed"],
            "skipped": by_reason["skipped"],
            "requests": self.requests,  # this process's, robots.txt and retries included
            "bytes": self.bytes,  # as transferred
            "seconds": round(seconds, 3),
            "warc_files": self.writer.files if self.writer else [],
        }

    def _write_manifest(self, generation: str, summary: dict[str, Any]) -> None:
        folder = f"{self.base}/{generation}"
        files = []
        for name in summary["warc_files"]:
            path = self.folder / generation / name
            sha256 = sha256_file(self.ws.storage.fs, str(path))
            files.append({"name": name, "size": path.stat().st_size, "sha256": sha256})
        manifest = {
            "source": self.source.name,
            "kind": self.source.kind,
            "generation": generation,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "files": files,
            "counts": {k: v for k, v in summary.items() if k not in ("source", "warc_files")},
        }
        self.ws.storage.write_json(
            f"{folder}/{MANIFEST}", manifest, crash_name="crawl.manifest.write"
        )


def _role(role: str) -> dict[str, str]:
    return {ROLE: role}


def _redirect_target(result: FetchResult) -> str | None:
    """The normalized URL a redirected fetch reached, for the frontier to record."""
    if len(result.exchanges) < 2:
        return None
    try:
        return normalize_url(result.final_url)
    except ValueError:  # one the frontier could not hold (too long, say): not recorded
        return None
