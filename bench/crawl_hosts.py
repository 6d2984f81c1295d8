"""The fixture web that bench/crawl.py crawls: `--hosts` sites on 127.0.0.2, 127.0.0.3, ...
(one tests.crawl_server.CrawlServer each) and one more site outside the crawl's scope, all in
this process, apart from the crawler's, so that the servers never wait on the crawler's GIL.

Each site has `--pages` HTML pages: a home page, section pages that list the articles, and the
articles, whose text is real prose (paragraphs of the Project Gutenberg books in
../shared/data/gutenberg/books, drawn with a seed). An article links to its section, to three
related articles, to an article on the next site (in scope: every site is a seed), to the
outside site (out of scope with `same_host`) and to /private/<n>/, which robots.txt disallows.
Every response waits `--latency` ± `--jitter` seconds (uniform, seeded) before it is sent.

    python bench/crawl_hosts.py --books ../shared/data/gutenberg/books --log requests.json

Once every server listens, one JSON line goes to stdout: {"origins": [...], "outside": ...}.
When stdin closes, or on SIGTERM or SIGINT, the servers stop and every request they saw is
written to `--log` (see `write_log`); then the process exits.
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
import json
import random
import re
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import date, timedelta
from html import escape
from pathlib import Path
from textwrap import shorten
from typing import Any

from pipeline.gutenberg import strip_boilerplate
from tests.crawl_server import CrawlServer, Page

ROBOTS_TXT = b"User-agent: *\nDisallow: /private/\n"
DISALLOWED = ("/private/",)
PARAGRAPHS_PER_ARTICLE = 4
ARTICLES_PER_SECTION = 11
AUTHORS = ("Mara Lind", "Jonas Weber", "Aiko Tanaka", "Samuel Okafor", "Lucía Romero")
FIRST_HOST = 2  # 127.0.0.2: 127.0.0.1 is left to whatever else runs on the machine

_SPACES = re.compile(r"\s+")


# ----- the text -----


def book_paragraphs(books: Path) -> list[str]:
    """Prose paragraphs of 300-1,500 characters from the books' text without the Project
    Gutenberg header and footer; headings, tables of contents and verse are mostly shorter."""
    paragraphs = []
    for book in sorted(books.glob("*.txt")):
        # Gutenberg's file names say the encoding: -8 is ISO-8859-1, -0 and the rest UTF-8/ASCII
        charset = "iso-8859-1" if book.stem.endswith("-8") else "utf-8-sig"
        text, _ = strip_boilerplate(book.read_bytes().decode(charset).replace("\r\n", "\n"))
        for block in text.split("\n\n"):
            paragraph = _SPACES.sub(" ", block).strip()
            if 300 <= len(paragraph) <= 1500 and not paragraph.isupper():
                paragraphs.append(paragraph)
    if not paragraphs:
        raise SystemExit(f"bench/crawl_hosts.py: no prose paragraphs in {books}/*.txt")
    return paragraphs


# ----- one site -----


@dataclass(frozen=True)
class Article:
    path: str
    title: str
    author: str
    published: date
    paragraphs: list[str]


def site_pages(
    name: str, paragraphs: list[str], pages: int, partner: str, outside: str, rng: random.Random
) -> dict[str, bytes]:
    """path -> HTML of one site of `pages` pages: a home page, sections, articles."""
    sections = max(1, (pages - 1) // (ARTICLES_PER_SECTION + 1))
    articles = [
        _article(n, rng.sample(paragraphs, PARAGRAPHS_PER_ARTICLE), rng)
        for n in range(pages - 1 - sections)
    ]
    section_paths = [f"/section/{k}/" for k in range(sections)]
    site = {"/": _home(name, section_paths, articles[:5])}
    for k, path in enumerate(section_paths):
        site[path] = _section(name, section_paths, k, articles[k::sections])
    for n, article in enumerate(articles):
        related = [articles[(n + step) % len(articles)] for step in (1, 7, rng.randrange(1, 99))]
        site[article.path] = _article_page(
            name, section_paths, section_paths[n % sections], article, related, partner, outside
        )
    return site


def _article(n: int, paragraphs: list[str], rng: random.Random) -> Article:
    title = " ".join(paragraphs[0].split()[:7]).rstrip(",;:.!?-")
    published = date(2024, 1, 1) + timedelta(days=rng.randrange(365))
    return Article(f"/articles/{n}/", title, rng.choice(AUTHORS), published, paragraphs)


def _layout(name: str, title: str, sections: list[str], main: str, footer: str = "") -> bytes:
    nav = " ".join(f'<a href="{p}">Section {k + 1}</a>' for k, p in enumerate(sections))
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)} | {name}</title></head>\n<body>"
        f'<header><a href="/">{name}</a><nav>{nav}</nav></header>\n<main>{main}</main>\n'
        f"<footer>{footer} <p>&copy; 2024 {name}. All rights reserved.</p></footer>"
        "</body></html>\n"
    ).encode()


def _teaser(article: Article) -> str:
    teaser = shorten(article.paragraphs[0], 200, placeholder=" ...")
    return f'<li><a href="{article.path}">{escape(article.title)}</a> <p>{escape(teaser)}</p></li>'


def _home(name: str, sections: list[str], latest: list[Article]) -> bytes:
    items = "".join(_teaser(a) for a in latest)
    return _layout(name, "Home", sections, f"<h1>{name}</h1><h2>Latest</h2><ul>{items}</ul>")


def _section(name: str, sections: list[str], k: int, articles: list[Article]) -> bytes:
    items = "".join(_teaser(a) for a in articles)
    return _layout(name, f"Section {k + 1}", sections, f"<h1>Section {k + 1}</h1><ul>{items}</ul>")


def _article_page(
    name: str,
    sections: list[str],
    section: str,
    article: Article,
    related: list[Article],
    partner: str,
    outside: str,
) -> bytes:
    body = "".join(f"<p>{escape(p)}</p>" for p in article.paragraphs)
    links = "".join(f'<li><a href="{r.path}">{escape(r.title)}</a></li>' for r in related)
    main = (
        f"<article><h1>{escape(article.title)}</h1>"
        f'<p class="byline">By {article.author}, <time>{article.published}</time> in '
        f'<a href="{section}">this section</a></p>\n{body}</article>\n'
        f"<aside><h2>Related</h2><ul>{links}</ul></aside>"
    )
    private = article.path.replace("/articles/", "/private/")
    footer = (
        f'<a href="{partner}">From our partner site</a> | <a href="{outside}">Elsewhere</a> | '
        f'<a href="{private}">Members\' edition</a>'
    )
    return _layout(name, article.title, sections, main, footer)


# ----- the servers -----


@dataclass(frozen=True)
class Site:
    server: CrawlServer
    pages: list[str]  # the HTML pages it serves, its /private/ ones left out


def build_sites(
    paragraphs: list[str],
    hosts: int,
    pages: int,
    latency_s: float,
    jitter_s: float,
    seed: int,
) -> tuple[list[Site], Site]:
    """`hosts` sites on 127.0.0.2 ... and the outside site on the next address, bound to their
    ports; `serving` starts them."""
    servers = [
        CrawlServer(
            f"127.0.0.{FIRST_HOST + i}", delay_s=latency_s, jitter_s=jitter_s, seed=seed + i
        )
        for i in range(hosts + 1)
    ]
    outside = servers[-1]
    sites = []
    for i, server in enumerate(servers[:hosts]):
        partner = servers[(i + 1) % hosts].url("/articles/0/")
        name = f"Site {i + 1}"
        rng = random.Random(f"{seed}:{i}")
        site = site_pages(name, paragraphs, pages, partner, outside.url("/"), rng)
        for path, body in site.items():
            server.set(path, Page(body))
            if path.startswith("/articles/"):
                private = path.replace("/articles/", "/private/")
                server.set(private, Page(_layout(name, "Members only", [], "<p>Members.</p>")))
        server.set("/robots.txt", Page(ROBOTS_TXT, content_type="text/plain"))
        sites.append(Site(server, sorted(site)))
    elsewhere = site_pages("Elsewhere", paragraphs, 3, "/", "/", random.Random(seed))
    for path, body in elsewhere.items():
        outside.set(path, Page(body))
    return sites, Site(outside, sorted(elsewhere))


@contextmanager
def serving(servers: list[CrawlServer]) -> Iterator[None]:
    """Every server serving until the block ends; then all stop at once (each takes up to its
    0.5 s poll interval to notice: one after the other, 33 servers would take 16 s)."""
    for server in servers:
        server.__enter__()
    try:
        yield
    finally:
        stops = [threading.Thread(target=s.__exit__, args=(None, None, None)) for s in servers]
        for stop in stops:
            stop.start()
        for stop in stops:
            stop.join()


def request_log(
    sites: list[Site], outside: Site, latency_s: float, jitter_s: float
) -> dict[str, Any]:
    """What bench/crawl.py judges: per site its pages and every request it saw.

    `t` is time.monotonic() at the request's arrival (CLOCK_MONOTONIC, one clock for every
    process on the machine); `conditional` says it carried If-None-Match or If-Modified-Since
    (CrawlServer answers those with 304 when nothing changed, every other page GET with 200)."""

    def entry(site: Site, in_scope: bool) -> dict[str, Any]:
        return {
            "origin": site.server.origin,
            "in_scope": in_scope,
            "pages": site.pages,
            "disallowed": list(DISALLOWED),
            "requests": [
                {
                    "t": r.monotonic,
                    "method": r.method,
                    "path": r.path,
                    "conditional": any(
                        h.lower() in ("if-none-match", "if-modified-since") for h in r.headers
                    ),
                }
                for r in site.server.requests
            ],
        }

    return {
        "latency_s": latency_s,
        "jitter_s": jitter_s,
        "hosts": [entry(s, True) for s in sites] + [entry(outside, False)],
    }


def write_log(log: dict[str, Any], path: Path) -> None:
    """Atomically: a reader never sees half a log."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(log), encoding="utf-8")
    partial.replace(path)


def _stop(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Serve the fixture web of bench/crawl.py until stdin closes.",
        epilog="Prints the origins as one JSON line once listening; writes the request log "
        "when stopped.",
    )
    parser.add_argument("--books", type=Path, required=True, help="folder of Gutenberg *.txt")
    parser.add_argument("--log", type=Path, required=True, help="the request log to write")
    parser.add_argument("--hosts", type=int, default=32, help="sites (default 32)")
    parser.add_argument("--pages", type=int, default=60, help="HTML pages a site (default 60)")
    parser.add_argument("--latency", type=float, default=0.05, help="response delay, s")
    parser.add_argument("--jitter", type=float, default=0.02, help="± this, uniform, s")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not 1 <= args.hosts <= 252:
        parser.error("--hosts must be 1-252 (127.0.0.2 ... 127.0.0.253, one left for outside)")
    if args.pages < 3:
        parser.error("--pages must be at least 3 (home, a section, an article)")
    if not 0 <= args.jitter <= args.latency:
        parser.error("--jitter must be between 0 and --latency")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    paragraphs = book_paragraphs(args.books)
    signal.signal(signal.SIGTERM, _stop)
    sites, outside = build_sites(
        paragraphs, args.hosts, args.pages, args.latency, args.jitter, args.seed
    )
    with serving([site.server for site in [*sites, outside]]):
        origins = {"origins": [s.server.origin for s in sites], "outside": outside.server.origin}
        print(json.dumps(origins), flush=True)
        with suppress(KeyboardInterrupt):
            sys.stdin.buffer.read()  # until the benchmark closes it
        # a second signal must not cut the log short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    write_log(request_log(sites, outside, args.latency, args.jitter), args.log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
