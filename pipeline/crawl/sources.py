"""Discovery: what the `articles` and `books` sources fetch, found before fetching it.

- Feeds (RSS 0.9x/1.0/2.0, Atom, JSON Feed; feedparser): `parse_feed` gives each item's link
  with what the feed says about it (title, author, published date, summary), which travels
  to the document as the WARC metadata record. `find_feed_links` finds a page's feeds.
- Sitemaps (sitemaps.org: urlset, sitemapindex, gzipped, plain text; lxml in recover mode, as
  real sitemaps are often slightly broken): `parse_sitemap` gives page URLs with their lastmod,
  and child sitemaps to fetch in turn.
- `is_article_url`: the articles source fetches only URLs that look like single articles.
- Project Gutenberg through its offline catalog (`pg_catalog.csv`), never its HTML pages:
  `select_books` filters the catalog, `gutenberg_text_url` names a book's plain text on a
  mirror.

Parsing functions take bytes and the URL they came from (for relative links and for error
messages); they fetch nothing. URLs they return are normalized (pipeline/crawl/urls.py).
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
import zlib
from calendar import timegm
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import feedparser
import lxml.html
from courlan import is_navigation_page, is_not_crawlable
from lxml import etree

from pipeline.crawl.urls import normalize_url, parse_html

# The sitemaps.org protocol caps a sitemap at 50 MB uncompressed; a gzipped one that inflates
# beyond that is refused (a gzip bomb costs no more than this much memory).
MAX_SITEMAP_BYTES = 50 * 1024 * 1024
FEED_TYPES = frozenset(
    {
        "application/rss+xml",
        "application/atom+xml",
        "application/rdf+xml",
        "application/feed+json",
        "application/json",
        "text/xml",
        "application/xml",
    }
)
CATALOG_COLUMNS = ("Text#", "Type", "Issued", "Title", "Language", "Authors", "Subjects")


class SourceError(ValueError):
    """A feed, sitemap or catalog that cannot be read; the message names it."""


# ----- feeds -----


@dataclass(frozen=True)
class FeedItem:
    url: str
    title: str | None = None
    author: str | None = None
    published: str | None = None  # ISO 8601, UTC
    summary: str | None = None

    def metadata(self) -> dict[str, Any]:
        """What the feed knew, for the WARC metadata record: the fields it gave."""
        fields = {
            "title": self.title,
            "author": self.author,
            "published": self.published,
            "summary": self.summary,
        }
        return {"kind": "feed_item", **{k: v for k, v in fields.items() if v}}


def parse_feed(data: bytes, url: str) -> list[FeedItem]:
    """The items of a feed fetched from `url`, in feed order, each link once. Items without
    an http(s) link are left out. Raises SourceError if `data` is not a feed at all."""
    if data.lstrip()[:1] == b"{":
        return _parse_json_feed(data, url)
    parsed = feedparser.parse(data, response_headers={"content-location": url})
    if not parsed.version and not parsed.entries:
        cause = parsed.get("bozo_exception") or "no feed elements"
        raise SourceError(f"{url}: not an RSS, Atom or JSON feed ({cause})")
    items: dict[str, FeedItem] = {}
    for entry in parsed.entries:
        link = _entry_link(entry, url)
        if link is None or link in items:
            continue
        # dict.get: feedparser's own get() maps updated to published with a warning
        when = dict.get(entry, "published_parsed") or dict.get(entry, "updated_parsed")
        items[link] = FeedItem(
            url=link,
            title=_text(entry, "title"),
            author=_clean(entry.get("author")),
            published=datetime.fromtimestamp(timegm(when), UTC).isoformat() if when else None,
            summary=_text(entry, "summary"),
        )
    return list(items.values())


def _parse_json_feed(data: bytes, url: str) -> list[FeedItem]:
    """JSON Feed 1.0 / 1.1 (jsonfeed.org), which feedparser 6.0 does not read."""
    try:
        feed = json.loads(data)
    except ValueError as exc:
        raise SourceError(f"{url}: not a JSON feed: {exc}") from exc
    if not isinstance(feed, dict) or "jsonfeed.org/version" not in str(feed.get("version")):
        raise SourceError(f"{url}: not a JSON feed: no jsonfeed.org version")
    items: dict[str, FeedItem] = {}
    for entry in feed.get("items") or []:
        link = None
        for candidate in (entry.get("url"), entry.get("external_url"), entry.get("id")):
            try:
                link = normalize_url(urljoin(url, str(candidate).strip())) if candidate else None
            except ValueError:
                continue
            if link:
                break
        if link is None or link in items:
            continue
        authors = entry.get("authors") or ([entry["author"]] if entry.get("author") else [])
        names = [a.get("name") for a in authors if isinstance(a, dict) and a.get("name")]
        items[link] = FeedItem(
            url=link,
            title=_clean(entry.get("title")),
            author=", ".join(names) or None,
            published=_iso_utc(entry.get("date_published") or entry.get("date_modified")),
            summary=_clean(entry.get("summary")),
        )
    return list(items.values())


def _iso_utc(value: str | None) -> str | None:
    try:
        moment = datetime.fromisoformat(value) if value else None
    except ValueError:
        return None
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def _entry_link(entry: Any, feed_url: str) -> str | None:
    """The item's page: its alternate link, else a permalink-style id (RSS guid)."""
    candidates = [entry.get("link")]
    candidates += [
        link.get("href") for link in entry.get("links", []) if link.get("rel") == "alternate"
    ]
    if entry.get("guidislink") or str(entry.get("id", "")).startswith(("http://", "https://")):
        candidates.append(entry.get("id"))
    for candidate in filter(None, candidates):
        try:
            return normalize_url(urljoin(feed_url, candidate.strip()))
        except ValueError:
            continue
    return None


def _text(entry: Any, name: str) -> str | None:
    """A feed field as plain text: feeds put HTML (escaped or not) in titles and summaries."""
    value = entry.get(name)
    detail = entry.get(f"{name}_detail") or {}
    if value and "html" in (detail.get("type") or ""):
        value = html.unescape(_TAG.sub("", value))
    return _clean(value)


_TAG = re.compile(r"<[^>]*>")


def _clean(value: str | None) -> str | None:
    return value.strip() or None if value else None


def find_feed_links(
    html: bytes | str | lxml.html.HtmlElement, base_url: str, charset: str | None = None
) -> list[str]:
    """The feeds a page announces: `<link rel="alternate" type="application/rss+xml"
    href="...">` and the Atom, RDF and JSON Feed types, absolute and normalized. `html` may be
    the page parsed already; bytes are decoded as urls.parse_html does (`charset`: what the
    Content-Type header declares)."""
    tree = html if isinstance(html, lxml.html.HtmlElement) else parse_html(html, charset)
    if tree is None:
        return []
    base_tag = tree.find(".//base[@href]")
    base = urljoin(base_url, base_tag.get("href", "")) if base_tag is not None else base_url
    found: dict[str, None] = {}
    for link in tree.iter("link"):
        rel = (link.get("rel") or "").lower().split()
        media_type = (link.get("type") or "").split(";")[0].strip().lower()
        if "alternate" in rel and media_type in FEED_TYPES and link.get("href"):
            try:
                found[normalize_url(urljoin(base, link.get("href").strip()))] = None
            except ValueError:
                continue
    return list(found)


# ----- sitemaps -----


@dataclass(frozen=True)
class SitemapEntry:
    url: str
    lastmod: str | None = None


@dataclass(frozen=True)
class Sitemap:
    pages: list[SitemapEntry]
    sitemaps: list[SitemapEntry]  # children of a sitemap index, to fetch in turn


def parse_sitemap(data: bytes, url: str) -> Sitemap:
    """A sitemap fetched from `url`: XML `urlset` or `sitemapindex` (gzipped or not, any
    namespace, leading blank lines and minor breakage tolerated), or a plain-text list of URLs,
    one per line. Entries that are not http(s) URLs are left out. Raises SourceError naming
    `url` when the data is neither."""
    if data[:2] == b"\x1f\x8b":
        data = _gunzip(data, url)
    text = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not text.startswith(b"<"):
        return Sitemap(pages=_plain_text_urls(text, url), sitemaps=[])
    parser = etree.XMLParser(recover=True, resolve_entities=False, no_network=True)
    try:
        root = etree.fromstring(text, parser)
    except etree.XMLSyntaxError as exc:
        raise SourceError(f"{url}: not a sitemap: {exc}") from exc
    if root is None:
        raise SourceError(f"{url}: not a sitemap: no XML element could be read")
    kind = etree.QName(root).localname
    if kind not in ("urlset", "sitemapindex"):
        raise SourceError(f"{url}: not a sitemap: the root element is <{kind}>")
    child = "url" if kind == "urlset" else "sitemap"
    entries = []
    for element in root.iterfind(f"{{*}}{child}"):
        loc = element.findtext("{*}loc")
        try:
            entries.append(
                SitemapEntry(normalize_url(urljoin(url, (loc or "").strip())), _lastmod(element))
            )
        except ValueError:
            continue
    return Sitemap(pages=entries, sitemaps=[]) if kind == "urlset" else Sitemap([], entries)


def _lastmod(element: Any) -> str | None:
    value = element.findtext("{*}lastmod")
    return value.strip() or None if value else None


def _gunzip(data: bytes, url: str) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, MAX_SITEMAP_BYTES + 1)
    except zlib.error as exc:
        raise SourceError(f"{url}: broken gzip data: {exc}") from exc
    if len(out) > MAX_SITEMAP_BYTES:
        raise SourceError(f"{url}: gzipped sitemap inflates beyond {MAX_SITEMAP_BYTES} bytes")
    return out


def _plain_text_urls(text: bytes, url: str) -> list[SitemapEntry]:
    entries = []
    for line in text.decode("utf-8", errors="replace").splitlines():
        line = line.strip()
        if line.startswith(("http://", "https://")):
            try:
                entries.append(SitemapEntry(normalize_url(line)))
            except ValueError:
                continue
    if text.strip() and not entries:
        raise SourceError(f"{url}: not a sitemap: neither XML nor a list of URLs")
    return entries


# ----- which discovered URLs are articles -----

# Pages every site has that are not articles: about, legal, contact, account, shop pages, and
# section fronts (/blog/, /news/).
_SITE_PAGES = re.compile(
    r"^/(?:blog|news|articles|posts|archives?|about(?:-us)?|contact(?:-us)?|privacy(?:-policy)?|terms(?:-of-(?:use|service))?|tos"
    r"|disclaimer|disclosure|imprint|impressum|legal|cookies?(?:-policy)?|faq|sitemap"
    r"|login|register|signup|cart|checkout|account|my-account|subscribe|advertise)"
    r"(?:\.[a-z]{2,5})?/?$",
    re.IGNORECASE,
)
# Feeds, search results, attachments, affiliate redirects (/go/, /recommends/: WordPress link
# cloakers) and archive listings.
_NOT_ARTICLE = re.compile(
    r"/(?:feed|rss|atom|comments/feed|search|attachment|wp-content|wp-includes|wp-json"
    r"|go|recommends"
    r"|tag|tags|category|categories|author|page/\d+)(?:/|$)"
    r"|\.(?:xml|rss|atom|json|jpe?g|png|gif|svg|webp|pdf|zip|gz|mp3|mp4|css|js|ico)$"
    r"|^/\d{4}(?:/\d{1,2}){0,2}/?$",  # /2017/, /2017/05/: date archives
    re.IGNORECASE,
)
_NOT_ARTICLE_QUERY = re.compile(r"(?:^|&)(?:s|q|search|attachment_id|paged?|replytocom)=", re.I)


def is_article_url(url: str) -> bool:
    """Does `url` look like one article rather than a listing or a utility page? Refused: the
    home page (`/`, /index.html, /home), date archives (/2017/05/), tag, category, author and
    page-N listings (courlan's `is_navigation_page` plus WordPress paths), feeds, search
    results, attachments and files, affiliate redirects, section fronts (/blog/) and the pages
    every site has (about, contact, privacy, terms, login; courlan's `is_not_crawlable` plus a
    list). A heuristic: it keeps articles of blogs,
    news and review sites, where a page's path names the article."""
    parts = urlsplit(url)
    path = parts.path or "/"
    if re.fullmatch(r"/(?:(?:index|default|home)(?:\.[a-z]{2,5})?/?)?", path, re.IGNORECASE):
        return False
    return not (
        is_navigation_page(url)
        or is_not_crawlable(url)
        or _SITE_PAGES.match(path)
        or _NOT_ARTICLE.search(path)
        or _NOT_ARTICLE_QUERY.search(parts.query)
    )


# ----- Project Gutenberg -----


@dataclass(frozen=True)
class Book:
    id: int
    metadata: dict[str, Any]  # title, authors, languages, subjects, ...: to the metadata record


def select_books(
    catalog: str | Path | bytes,
    *,
    languages: Iterable[str] = (),
    subjects: Iterable[str] = (),
    ids: Iterable[int] = (),
    max_books: int | None = None,
    name: str | None = None,
) -> list[Book]:
    """Books of Project Gutenberg's offline catalog (`pg_catalog.csv`, columns `Text#, Type,
    Issued, Title, Language, Authors, Subjects, LoCC, Bookshelves`) in catalog order: only
    `Type == "Text"` (not audio books), and, for each filter given, a book with one of the
    `languages` (ISO codes; the column may list several, "en; fr"), a subject containing one of
    the `subjects` substrings (case-insensitive), one of the `ids`; at most `max_books`.
    `catalog` is the file's path, or its content as fetched (`name`, e.g. its URL, then names
    it in errors). Raises SourceError naming the file and line of a malformed catalog."""
    if isinstance(catalog, bytes):
        text = catalog.decode("utf-8-sig", errors="replace")
        opened, catalog = nullcontext(io.StringIO(text, newline="")), name or "catalog"
    else:
        opened = open(catalog, encoding="utf-8-sig", newline="")  # noqa: SIM115 - with below
    wanted_languages = {lang.strip().lower() for lang in languages}
    wanted_subjects = [s.lower() for s in subjects]
    wanted_ids = set(ids)
    books: list[Book] = []
    with opened as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in CATALOG_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise SourceError(f"{catalog}: not a pg_catalog.csv: no column {', '.join(missing)}")
        for row in reader:
            if max_books is not None and len(books) >= max_books:
                break
            if row["Type"] != "Text":
                continue
            book = _book(row, catalog, reader.line_num)
            meta = book.metadata
            if wanted_ids and book.id not in wanted_ids:
                continue
            if wanted_languages and not wanted_languages & set(meta["languages"]):
                continue
            if wanted_subjects and not any(
                w in s.lower() for w in wanted_subjects for s in meta["subjects"]
            ):
                continue
            books.append(book)
    return books


def _book(row: dict[str, str], catalog: str | Path, line: int) -> Book:
    try:
        book_id = int(row["Text#"])
    except (TypeError, ValueError):
        problem = f"Text# {row['Text#']!r} is not a number"
        raise SourceError(f"{catalog}, line {line}: {problem}") from None
    metadata = {
        "kind": "gutenberg_catalog",
        "gutenberg_id": book_id,
        "title": " ".join((row["Title"] or "").split()) or None,
        "authors": _split(row["Authors"]),
        "languages": [lang.lower() for lang in _split(row["Language"])],
        "subjects": _split(row["Subjects"]),
        "bookshelves": _split(row.get("Bookshelves")),
        "locc": _split(row.get("LoCC")),
        "issued": row["Issued"] or None,
    }
    return Book(book_id, metadata)


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(";") if part.strip()]


def gutenberg_text_url(
    mirror_base: str, book_id: int, template: str = "{base}/cache/epub/{id}/pg{id}.txt"
) -> str:
    """The plain-text (UTF-8) edition of a book on a mirror. The default template is the layout
    of gutenberg.org's generated files, which its mirrors copy."""
    return template.format(base=mirror_base.rstrip("/"), id=book_id)
