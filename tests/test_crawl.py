"""The crawl loop end to end against the local fixture server: a site through robots.txt,
sitemaps and feeds; the Gutenberg mirror; kills at seeded crash points and the resume; a
recrawl with conditional requests; every fault endpoint a recorded outcome; hostile robots.txt
delays, links in the charset the header names, hosts on addresses the crawler refuses."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import closing
from itertools import pairwise
from pathlib import Path

import yaml
from warcio.archiveiterator import ArchiveIterator

from pipeline.config import RunConfig, load_config
from pipeline.crash import CRASH_ENV, CRASH_EXIT_CODE
from pipeline.crawl.crawler import FRONTIER, crawl, crawl_sources
from pipeline.crawl.frontier import Frontier, NewUrl
from pipeline.crawl.sources import parse_feed
from pipeline.crawl.urls import host_key, normalize_url
from pipeline.crawl.warcwriter import check_warc
from pipeline.datasets import Dataset
from pipeline.gutenberg import license_text
from pipeline.runner import make_map
from pipeline.stage import run
from pipeline.stages import EXTRACT
from pipeline.workspace import Workspace
from tests.conftest import REPO, SHARED_DATA, needs_shared_data
from tests.crawl_server import CC_BY, FAULTS, CrawlServer, Page, html_page

SITE = SHARED_DATA / "feeds-sitemaps" / "site-10beasts"
FAST = {"allow_networks": ["127.0.0.0/8"], "min_delay_s": 0.01}
PROSE = (
    "The river bends twice before it reaches the old mill, and the path beside it is lined "
    "with willows that the miller planted when his children were young. "
)
# the articles the site's sitemaps list (the others are its home, section and affiliate pages)
SITE_ARTICLES = [
    f"/{name}/"
    for name in (
        "best-gaming-keyboards",
        "iphone-or-android",
        "best-gaming-laptops",
        "best-windshield-wipers",
        "best-drone-cameras",
        "best-xbox-steering-wheel",
        "best-gaming-mouse",
        "best-electric-shavers",
        "best-crossbow-reviews",
        "best-self-balancing-scooters",
        "best-wireless-routers",
        "best-iphone-accessories",
        "scholarship",
    )
]
DISALLOWED = "/best-3d-pens/"
A_DAY = 86400.0  # the longest a host waits, whatever its robots.txt asks (RFC 9309: 24 h)


def _settings(tmp_path: Path, source: dict, **crawl_settings: object) -> dict:
    return {
        "workspace": str(tmp_path / "workspace"),
        "sources": [source],
        "crawl": {**FAST, **crawl_settings},
        "runner": {"task_runner": "serial", "workers": 1},
        "extract": {"fast": True},
    }


def _config(tmp_path: Path, source: dict, **crawl_settings: object) -> RunConfig:
    return RunConfig(**_settings(tmp_path, source, **crawl_settings))


def _site(server: CrawlServer, pages: int) -> list[str]:
    """A home page linking to `pages` posts, each linking to its two neighbours."""
    paths = [f"/post/{i}/" for i in range(pages)]

    def links(targets: list[str]) -> str:
        return " ".join(f'<a href="{p}">{p}</a>' for p in targets)

    server.set("/", Page(html_page("Home", links(paths))))
    for i, path in enumerate(paths):
        neighbours = links([paths[i - 1], paths[(i + 1) % pages]])
        server.set(path, Page(html_page(f"Post {i}", PROSE * 3 + neighbours)))
    return ["/", *paths]


def _generation_records(ws: Workspace, source: str, generation: str) -> list[tuple[str, str]]:
    """(record type, target URI) of every record of a generation; each file must read whole."""
    records = []
    for path in sorted(Path(ws.storage.path(f"crawl/{source}/{generation}")).glob("*.warc.gz")):
        check_warc(path)
        with open(path, "rb") as fh:
            for record in ArchiveIterator(fh):
                records.append((record.rec_type, record.rec_headers.get_header("WARC-Target-URI")))
    return records


def _metadata_records(ws: Workspace, source: str) -> dict[str, dict]:
    found = {}
    for path in Path(ws.storage.path(f"crawl/{source}")).glob("*/*.warc.gz"):
        with open(path, "rb") as fh:
            for record in ArchiveIterator(fh):
                if record.rec_type == "metadata":
                    uri = record.rec_headers.get_header("WARC-Target-URI")
                    found[uri] = json.loads(record.content_stream().read())
    return found


def _documents(cfg: RunConfig) -> list[dict]:
    ws = Workspace(cfg.workspace_root)
    result = run(EXTRACT, cfg, ws, make_map(cfg.runner))
    return Dataset(ws, "extract", result["version"]).read().to_pylist()


def _frontier(cfg: RunConfig, source: str) -> Frontier:
    return Frontier(Path(cfg.workspace_root) / "crawl" / source / FRONTIER)


@needs_shared_data
def test_site_through_robots_sitemaps_pages_and_feeds_then_extract(tmp_path):
    with CrawlServer("127.0.0.11", site=SITE) as server:
        robots = (
            f"User-agent: *\nDisallow: {DISALLOWED}\nSitemap: {server.url('/sitemap_index.xml')}\n"
        )
        server.set("/robots.txt", Page(robots.encode(), content_type="text/plain"))
        source = {"name": "beasts", "kind": "article", "seeds": [server.url("/")]}
        cfg = _config(tmp_path, source)
        summary = crawl(cfg, Workspace(cfg.workspace_root), cfg.sources[0])
        paths = server.paths()
        feed = parse_feed(server.static("/feed/").body, server.url("/feed/"))

    assert paths[0] == "/robots.txt"
    requested = Counter(paths)
    assert {path: requested[path] for path in SITE_ARTICLES} == dict.fromkeys(SITE_ARTICLES, 1)
    assert max(requested.values()) == 1  # nothing twice: pages, sitemaps, feeds, robots.txt
    assert requested[DISALLOWED] == 0
    for discovered in ("/sitemap_index.xml", "/post-sitemap.xml", "/feed/"):
        assert requested[discovered] == 1, discovered
    assert summary["skipped"]["robots"] == 1 and summary["failed"] == {}
    with _frontier(cfg, "beasts") as frontier:
        assert frontier.get(server.url(DISALLOWED))["reason"] == "robots"

    docs = {doc["url"]: doc for doc in _documents(cfg)}
    for path in SITE_ARTICLES:
        doc = docs[server.url(path)]
        assert len(doc["text"]) > 500 and doc["source_kind"] == "article", path
    from_feed = [item for item in feed if item.url in docs]
    assert from_feed  # the feed's items carry their title and date to the documents
    for item in from_feed:
        assert (docs[item.url]["title"], docs[item.url]["date"]) == (item.title, item.published)


@needs_shared_data
def test_books_from_the_gutenberg_mirror_with_catalog_metadata_and_no_boilerplate(tmp_path):
    with CrawlServer("127.0.0.12", gutenberg=SHARED_DATA / "gutenberg") as server:
        catalog_path = "/cache/epub/feeds/pg_catalog.csv"
        source = {
            "name": "books",
            "kind": "book",
            "catalog": server.url(catalog_path),
            "mirror": server.origin,
        }
        cfg = _config(tmp_path, source)
        summary = crawl(cfg, Workspace(cfg.workspace_root), cfg.sources[0])
        catalog = list(csv.DictReader(io.StringIO(server.static(catalog_path).body.decode())))
        paths = server.paths()

    assert summary["fetched"] == 11  # the catalog and ten books
    assert not any(path.endswith((".html", ".htm")) or "/ebooks/" in path for path in paths)
    docs = {doc["url"]: doc for doc in _documents(cfg)}
    books = [doc for doc in docs.values() if doc["source_kind"] == "book"]
    assert len(books) == len(catalog) == 10
    for row in catalog:
        doc = docs[server.url(f"/cache/epub/{row['Text#']}/pg{row['Text#']}.txt")]
        assert doc["title"] == " ".join(row["Title"].split())
        assert doc["author"] == row["Authors"]
        assert doc["language"] == row["Language"].split(";")[0]  # "fr; nl": the first
        assert license_text(doc["text"]) == [], row["Title"]
        assert len(doc["text"]) > 50_000
    austen = docs[server.url("/cache/epub/1342/pg1342.txt")]["text"]
    assert "It is a truth universally acknowledged" in austen[:5000]


@needs_shared_data
def test_the_catalog_is_fetched_under_its_own_cap(tmp_path):
    with CrawlServer("127.0.0.16", gutenberg=SHARED_DATA / "gutenberg") as server:
        catalog = server.url("/cache/epub/feeds/pg_catalog.csv")
        source = {"name": "books", "kind": "book", "catalog": catalog, "mirror": server.origin}
        cfg = _config(tmp_path, source, catalog_max_bytes=100)
        summary = crawl(cfg, Workspace(cfg.workspace_root), cfg.sources[0])
    assert summary["failed"] == {"too_large": 1} and summary["fetched"] == 0


_CHILD = """
import sys
from pipeline.config import load_config
from pipeline.crawl.crawler import crawl
from pipeline.workspace import Workspace
cfg = load_config(sys.argv[1])
crawl(cfg, Workspace(cfg.workspace_root), cfg.sources[0])
"""


def _child(config: Path, crash: str | None, *command: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash:
        env[CRASH_ENV] = crash
    command = command or (sys.executable, "-c", _CHILD, str(config))
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_killed_at_seeded_crash_points_then_resumed_matches_an_uninterrupted_crawl(tmp_path):
    per_run = ("/robots.txt", "/.well-known/tdmrep.json")  # asked once by every run
    with CrawlServer("127.0.0.13") as server:
        pages = _site(server, 40)
        source = {"name": "site", "kind": "web", "seeds": [server.url("/")]}
        reference = _config(tmp_path / "reference", source)
        crawl(reference, Workspace(reference.workspace_root), reference.sources[0])
        with _frontier(reference, "site") as frontier:
            expected = sorted(frontier.urls("fetched"))
        assert len(expected) == len(pages)

        config = tmp_path / "crashing" / "run.yaml"
        config.parent.mkdir()
        config.write_text(yaml.safe_dump(_settings(tmp_path / "crashing", source)))
        before = len(server.requests)
        rng = random.Random(20261127)
        crashes = [
            f"crawl.fetched:{rng.randint(2, 5)}",  # fetched, nothing written yet
            f"warc.record:{rng.randint(2, 5)}",  # half a WARC record on disk
            f"frontier.commit:{rng.randint(10, 30)}",  # inside a frontier transaction
            f"crawl.url.done:{rng.randint(2, 5)}",  # between two URLs
            f"warc.record:{rng.randint(2, 5)}",
            "crawl.manifest.write:1",  # every URL done, half the manifest written
        ]
        for crash in crashes:
            result = _child(config, crash)
            assert result.returncode == CRASH_EXIT_CODE, (crash, result.stderr[-2000:])
        cli = (sys.executable, "-m", "pipeline.cli", "run", "crawl", "-c", str(config))
        result = _child(config, None, *cli, "--no-prefect")
        assert result.returncode == 0, result.stderr[-2000:]
        assert "(resumed)" in result.stdout
        fetches = Counter(r.path for r in server.requests[before:] if r.path not in per_run)

    cfg = load_config(config)
    ws = Workspace(cfg.workspace_root)
    with _frontier(cfg, "site") as frontier:
        assert sorted(frontier.urls("fetched")) == expected
        assert frontier.counts() == {"fetched": len(pages)}
    assert set(fetches) == set(pages)
    assert sum(n - 1 for n in fetches.values()) <= len(crashes)  # at most the one in flight
    [generation] = ws.generations("site")  # the killed runs resumed one generation
    records = _generation_records(ws, "site", generation.name)
    responses = Counter(uri for kind, uri in records if kind == "response")
    assert sorted(responses) == expected and set(responses.values()) == {1}


def test_a_recrawl_is_a_new_generation_that_stores_only_what_changed(tmp_path):
    with CrawlServer("127.0.0.14") as server:
        pages = _site(server, 8)
        source = {"name": "site", "kind": "web", "seeds": [server.url("/")]}
        cfg = _config(tmp_path, source)
        ws = Workspace(cfg.workspace_root)
        first = crawl(cfg, ws, cfg.sources[0])
        changed = ["/post/2/", "/post/5/"]
        for path in changed:
            server.set(path, Page(html_page("Rewritten", PROSE + "It changed.")))
        before = len(server.requests)
        second = crawl(cfg, ws, cfg.sources[0])
        recrawl = [r for r in server.requests[before:] if r.path in pages]

    assert second["generation"] > first["generation"]
    assert [g.name for g in ws.generations("site")] == [first["generation"], second["generation"]]
    assert sorted(r.path for r in recrawl) == sorted(pages)  # each page asked once more ...
    assert all("If-None-Match" in r.headers for r in recrawl)  # ... conditionally
    assert (second["fetched"], second["not_modified"]) == (2, len(pages) - 2)
    records = _generation_records(ws, "site", second["generation"])
    stored = sorted(uri for kind, uri in records if kind == "response")
    assert stored == sorted(server.url(path) for path in changed)
    assert sum(kind == "revisit" for kind, _ in records) == len(pages) - 2


METADATA_URL = "http://169.254.169.254/latest/meta-data/"


def test_fault_endpoints_in_a_web_crawl_end_as_recorded_outcomes(tmp_path):
    faults = [f"/fault/{name}" for name in FAULTS if name != "redirect-chain"]
    faults.append("/fault/redirect-chain/3")
    expected = {
        "binary": ("failed", "binary_body"),
        "endless": ("failed", "too_large"),
        "gzip-bomb": ("failed", "decompressed_too_large"),
        "redirect-loop": ("failed", "redirect_loop"),
        "reset": ("failed", "connection_reset"),
        "drip": ("failed", "too_slow"),
        "429": ("failed", "http_429"),
        "503": ("failed", "http_503"),
        # a redirect to another host is not followed in this host's slot: its target is a URL
        # of its own, here refused by the scope (and never contacted: a private address)
        "redirect-private": ("fetched", None),
        "redirect-metadata": ("fetched", None),
        "redirect-file": ("failed", "unsupported_scheme"),
        "noai-header": ("skipped", "x_robots_tag:noai"),
        "noai-meta": ("skipped", "meta_robots:noai"),
        "tdm-header": ("skipped", "tdm_reservation:header"),
        "tdm-meta": ("skipped", "tdm_reservation:meta"),
        "tdm-reserved/page": ("skipped", "tdm_reservation:tdmrep.json"),
        "agent-noai-header": ("fetched", None),  # scoped to CCBot, which we do not claim
        "license": ("fetched", None),
        "wrong-charset": ("fetched", None),
        "no-charset": ("fetched", None),
        "malformed": ("fetched", None),
        "redirect-chain/3": ("fetched", None),
        "redirect-chain/0": ("fetched", "redirect"),  # reached by the redirects: not again
    }
    limits = {
        "connect_timeout_s": 1,
        "read_timeout_s": 3,  # the drip (a byte a second) ends at the total timeout
        "total_timeout_s": 1.5,
        "max_bytes": 256 * 1024,
        "max_decompressed_bytes": 2**20,
        "max_attempts": 1,
    }
    with CrawlServer("127.0.0.15") as server:
        links = " ".join(f'<a href="{path}">{path}</a>' for path in faults)
        server.set("/", Page(html_page("Faults", links)))
        source = {"name": "faults", "kind": "web", "seeds": [server.url("/")]}
        cfg = _config(tmp_path, source, **limits)
        ws = Workspace(cfg.workspace_root)
        summary = crawl(cfg, ws, cfg.sources[0])  # returns: nothing raised
        with _frontier(cfg, "faults") as frontier:
            outcomes = {
                name: (row["state"], row["reason"])
                for name in expected
                for row in [frontier.get(server.url(f"/fault/{name}"))]
            }
            targets = [frontier.get(url) for url in ("http://10.0.0.1/", METADATA_URL)]
            assert [(row["state"], row["reason"]) for row in targets] == [
                ("skipped", "off_host")
            ] * 2
            assert frontier.pending() == 0
        license = _metadata_records(ws, "faults")[server.url("/fault/license")]["license"]

    assert outcomes == expected
    assert summary["fetched"] == 1 + sum(state == "fetched" for state, _ in expected.values())
    assert license == CC_BY
    _generation_records(ws, "faults", summary["generation"])  # every file reads end to end


def test_the_example_config_is_valid_and_crawls_a_source_of_each_kind():
    cfg = load_config(REPO / "configs" / "crawl-example.yaml")
    assert sorted(source.kind for source in crawl_sources(cfg)) == ["article", "book", "web"]


# ----- hostile robots.txt delays, charsets, refused addresses -----


def _crawl_within(cfg: RunConfig, ws: Workspace, seconds: float) -> dict:
    """The crawl's summary; the test fails if the crawl is not done within `seconds` (it goes
    on in a daemon thread, so a stalled crawl cannot hang the test run)."""
    done: dict = {}

    def run() -> None:
        try:
            done["summary"] = crawl(cfg, ws, cfg.sources[0])
        except BaseException as exc:
            done["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the crawl still runs after {seconds} s"
    if "error" in done:
        raise done["error"]
    return done["summary"]


def _next_start(cfg: RunConfig, source: str, server: CrawlServer) -> float:
    """The host's next start as the frontier file holds it (unix time)."""
    path = Path(cfg.workspace_root) / "crawl" / source / FRONTIER
    with closing(sqlite3.connect(path)) as db:
        query = "SELECT next_at FROM hosts WHERE host = ?"
        return db.execute(query, (host_key(server.origin),)).fetchone()[0]


def _crawl_delay(seconds: str) -> Page:
    return Page(f"User-agent: *\nCrawl-delay: {seconds}\n".encode(), content_type="text/plain")


def test_a_host_asking_for_an_hour_between_requests_does_not_hold_the_crawl(tmp_path):
    with CrawlServer("127.0.0.50") as slow, CrawlServer("127.0.0.51") as normal:
        slow.set("/robots.txt", _crawl_delay("3600"))
        _site(slow, 3)
        pages = _site(normal, 3)
        source = {"name": "two", "kind": "web", "seeds": [slow.url("/"), normal.url("/")]}
        cfg = _config(tmp_path, source)  # max_crawl_delay_s: the default, 30 s
        ws = Workspace(cfg.workspace_root)
        first = _crawl_within(cfg, ws, 30)
        second = _crawl_within(cfg, ws, 30)
        asked = slow.paths()
        with _frontier(cfg, "two") as frontier:
            seed = frontier.get(slow.url("/"))

    assert asked == ["/robots.txt"]  # one request in two runs: the next one waits an hour
    assert (first["fetched"], first["skipped"]) == (len(pages), {"crawl_delay": 1})
    assert (second["not_modified"], second["skipped"]) == (len(pages), {"crawl_delay": 1})
    assert (seed["state"], seed["reason"]) == ("skipped", "crawl_delay")  # queued again next run


def test_a_host_slower_than_the_cap_gets_one_request_per_generation_at_its_delay(tmp_path):
    with CrawlServer("127.0.0.52") as slow:
        slow.set("/robots.txt", _crawl_delay("2"))
        _site(slow, 2)
        source = {"name": "slow", "kind": "web", "seeds": [slow.url("/")]}
        cfg = _config(tmp_path, source, max_crawl_delay_s=0.5)
        ws = Workspace(cfg.workspace_root)
        asked, summaries = [], []
        for wait in (False, False, True, True):
            if wait:  # until the delay has passed since the last request, less the cap
                time.sleep(max(slow.requests[-1].wall + 1.6 - time.time(), 0))
            before = len(slow.requests)
            summaries.append(_crawl_within(cfg, ws, 20))
            asked.append([r.path for r in slow.requests[before:]])
        starts = [r.wall for r in slow.requests]
        with _frontier(cfg, "slow") as frontier:
            posts = [frontier.get(slow.url(f"/post/{i}/"))["reason"] for i in range(2)]

    # robots.txt and tdmrep.json are kept, so the host's third request is a page
    assert asked == [["/robots.txt"], [], ["/.well-known/tdmrep.json"], ["/"]]
    assert all(later - earlier >= 2 for earlier, later in pairwise(starts))
    assert [s["skipped"] for s in summaries] == [{"crawl_delay": 1}] * 3 + [{"crawl_delay": 2}]
    assert summaries[-1]["fetched"] == 1 and posts == ["crawl_delay", "crawl_delay"]


def test_a_crawl_delay_past_any_clock_neither_crashes_nor_poisons_the_frontier(tmp_path):
    with CrawlServer("127.0.0.53") as huge, CrawlServer("127.0.0.54") as normal:
        huge.set("/robots.txt", _crawl_delay("1e12"))
        _site(huge, 2)
        pages = _site(normal, 2)
        source = {"name": "huge", "kind": "web", "seeds": [huge.url("/"), normal.url("/")]}
        cfg = _config(tmp_path, source)
        ws = Workspace(cfg.workspace_root)
        summaries = [_crawl_within(cfg, ws, 30) for _ in range(2)]
        asked = huge.paths()

    assert [s["skipped"] for s in summaries] == [{"crawl_delay": 1}] * 2
    assert summaries[0]["fetched"] == len(pages)
    assert asked == ["/robots.txt"]
    assert time.time() < _next_start(cfg, "huge", huge) <= time.time() + A_DAY


def test_a_frontier_that_holds_a_next_start_past_any_clock_recovers(tmp_path):
    with CrawlServer("127.0.0.55") as poisoned, CrawlServer("127.0.0.56") as normal:
        _site(poisoned, 1)
        pages = _site(normal, 2)
        source = {"name": "old", "kind": "web", "seeds": [poisoned.url("/"), normal.url("/")]}
        cfg = _config(tmp_path, source)
        # what a run that died of `Crawl-delay: 1e12` left: its generation unfinished, and the
        # host's next start and delay 1e12 s away
        path = Path(cfg.workspace_root) / "crawl" / "old" / FRONTIER
        with Frontier(path) as frontier:
            frontier.start_generation("20250101T000000.000Z")
            frontier.add([NewUrl(normalize_url(poisoned.url("/")), source="old")])
        with closing(sqlite3.connect(path)) as db, db:
            db.execute("UPDATE hosts SET next_at = ?, delay_s = 1e12", (time.time() + 1e12,))
        summary = _crawl_within(cfg, Workspace(cfg.workspace_root), 30)
        asked = poisoned.paths()

    assert summary["resumed"] and summary["fetched"] == len(pages)
    assert summary["skipped"] == {"crawl_delay": 1} and asked == []  # waits, a day at most
    assert _next_start(cfg, "old", poisoned) <= time.time() + A_DAY


def test_links_are_read_in_the_charset_the_http_header_names(tmp_path):
    page = (
        "<!DOCTYPE html><html><head><title>Liens</title></head><body>"
        '<a href="/u/€uro">euro</a> <a href="http://bücher.example/">books</a></body></html>'
    )
    with CrawlServer("127.0.0.57") as server:
        # the charset only in the header, as Page's default content type sends it
        server.set("/", Page(page.encode("utf-8"), content_type="text/html; charset=utf-8"))
        server.set("/u/%E2%82%ACuro", Page(html_page("Euro")))
        source = {"name": "utf8", "kind": "web", "seeds": [server.url("/")]}
        cfg = _config(tmp_path, source)
        summary = crawl(cfg, Workspace(cfg.workspace_root), cfg.sources[0])
        asked = server.paths()
        with _frontier(cfg, "utf8") as frontier:
            euro = frontier.get(server.url("/u/%E2%82%ACuro"))
            books = frontier.get("http://xn--bcher-kva.example/")

    assert "/u/%E2%82%ACuro" in asked and euro["state"] == "fetched"
    assert (books["state"], books["reason"]) == ("skipped", "off_host")
    assert summary["fetched"] == 2 and summary["failed"] == {}


def test_a_host_on_a_refused_address_is_recorded_as_unsafe_not_as_robots_trouble(tmp_path):
    with CrawlServer("127.0.0.58") as allowed, CrawlServer("127.0.0.59") as private:
        allowed.set("/", Page(html_page("Home", '<a href="/moved">moved</a>')))
        allowed.set("/moved", Page(status=302, headers={"Location": private.url("/elsewhere")}))
        source = {
            "name": "refused",
            "kind": "web",
            "seeds": [allowed.url("/"), private.url("/")],
            "same_host": False,  # the redirect's target is in scope: only its address is not
        }
        # 127.0.0.59 is loopback outside allow_networks; max_attempts keeps a regression to
        # robots.txt retries short
        settings = {"allow_networks": ["127.0.0.58/32"], "max_attempts": 2}
        cfg = _config(tmp_path, source, **settings)
        summary = _crawl_within(cfg, Workspace(cfg.workspace_root), 20)
        contacted = private.requests
        with _frontier(cfg, "refused") as frontier:
            outcomes = {
                path: (row["state"], row["reason"])
                for path in ("/", "/elsewhere")
                for row in [frontier.get(private.url(path))]
            }

    assert contacted == []
    assert outcomes == dict.fromkeys(("/", "/elsewhere"), ("failed", "unsafe_address"))
    assert summary["failed"] == {"unsafe_address": 2}
