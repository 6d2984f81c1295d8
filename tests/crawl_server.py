"""A local HTTP server for crawl tests and bench/crawl.py: one instance per 127.0.0.x host.

    with CrawlServer("127.0.0.2", site=SITE_10BEASTS, gutenberg=GUTENBERG) as server:
        fetch(server.url("/best-3d-pens/"))
        server.requests  # every request: arrival times, method, path, headers

It serves, in this order:
1. pages set in memory with `server.set(path, Page(...))` (a robots.txt with a Disallow, a
   page whose content changes between two crawls, a robots.txt that answers 500 ...);
2. fault endpoints under /fault/ (FAULTS lists them), one per bad response the crawler must
   survive, plus the opt-out and license pages;
3. `/.well-known/tdmrep.json`, which reserves /fault/tdm-reserved/ only;
4. a Project Gutenberg mirror, if `gutenberg` names a folder laid out like
   ../shared/data/gutenberg: `/cache/epub/feeds/pg_catalog.csv` (built from metadata/*.rdf in
   Gutenberg's own format) and the books at `/cache/epub/<id>/pg<id>.txt`;
5. a site folder in directory/index.html layout (`site`), absolute links to `rewrite_host`
   (www.10beasts.cn for ../shared/data/feeds-sitemaps/site-10beasts) rewritten to this server.

Every 200 answer carries an ETag and Last-Modified and answers a matching conditional request
with 304. Each response can be delayed by `delay_s` ± `jitter_s` (seeded). Handler threads are
daemons and the endless fault endpoints stop when the server does, so a test never hangs on it.
"""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import io
import random
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lxml import etree

HTML = "text/html; charset=utf-8"
SITE_HOST = "www.10beasts.cn"
FAULTS = (
    "binary",  # PNG bytes labelled text/html
    "wrong-charset",  # ISO-8859-1 bytes labelled utf-8
    "no-charset",  # text/html without a charset
    "endless",  # a body that never ends
    "gzip-bomb",  # 30 KiB of gzip that inflates to 32 MiB
    "malformed",  # broken HTML
    "redirect-loop",  # -> redirect-loop-2 -> redirect-loop
    "redirect-chain",  # /fault/redirect-chain/<n>: n redirects, then a page
    "reset",  # connection reset in the middle of the body
    "drip",  # a byte every 0.25 s
    "429",  # Too Many Requests, Retry-After: 7
    "503",  # Service Unavailable, Retry-After as an HTTP date 30 s ahead
    "noai-header",  # X-Robots-Tag: noai
    "noai-meta",  # <meta name="robots" content="noai">
    "agent-noai-header",  # X-Robots-Tag: CCBot: noai (only for crawlers that claim CCBot)
    "tdm-header",  # tdm-reservation: 1
    "tdm-meta",  # <meta name="tdm-reservation" content="1">
    "tdm-reserved/page",  # reserved by /.well-known/tdmrep.json
    "license",  # <link rel="license" href="https://creativecommons.org/licenses/by/4.0/">
    "redirect-private",  # -> http://10.0.0.1/
    "redirect-metadata",  # -> http://169.254.169.254/latest/meta-data/
    "redirect-file",  # -> file:///etc/passwd
)
CATALOG_COLUMNS = [
    "Text#",
    "Type",
    "Issued",
    "Title",
    "Language",
    "Authors",
    "Subjects",
    "LoCC",
    "Bookshelves",
]
CC_BY = "https://creativecommons.org/licenses/by/4.0/"
TDMREP = b'[{"location": "/fault/tdm-reserved/*", "tdm-reservation": 1}]'


@dataclass
class Page:
    """A response served from memory."""

    body: bytes = b""
    status: int = 200
    content_type: str = HTML
    headers: dict[str, str] = field(default_factory=dict)
    gzip: bool = False  # send the body with Content-Encoding: gzip
    modified: float = field(default_factory=time.time)  # Last-Modified


@dataclass(frozen=True)
class Request:
    """One request as the server saw it."""

    monotonic: float  # time.monotonic() at arrival
    wall: float  # time.time() at arrival
    host: str  # the server's address
    method: str
    path: str
    headers: dict[str, str]


def html_page(title: str, body: str = "", head: str = "") -> bytes:
    return (
        f"<!DOCTYPE html><html><head><title>{title}</title>{head}</head>"
        f"<body><h1>{title}</h1><p>{body or title}</p></body></html>"
    ).encode()


def build_pg_catalog(metadata_dir: Path) -> str:
    """Gutenberg's offline catalog (pg_catalog.csv, as served at
    /cache/epub/feeds/pg_catalog.csv) for the pg<id>.rdf records in `metadata_dir`."""
    ns = {
        "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
        "dcterms": "http://purl.org/dc/terms/",
        "dcam": "http://purl.org/dc/dcam/",
        "pgterms": "http://www.gutenberg.org/2009/pgterms/",
    }

    def values(book: Any, path: str) -> list[str]:
        return [v.strip() for v in book.xpath(path, namespaces=ns) if v.strip()]

    def subjects(book: Any, scheme: str) -> list[str]:
        path = (
            "dcterms:subject/rdf:Description"
            f"[dcam:memberOf/@rdf:resource='http://purl.org/dc/terms/{scheme}']/rdf:value/text()"
        )
        return sorted(values(book, path))

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CATALOG_COLUMNS)
    rows = []
    for rdf in metadata_dir.glob("pg*.rdf"):
        book = etree.parse(str(rdf)).find("pgterms:ebook", ns)
        authors = []
        for agent in book.xpath("dcterms:creator/pgterms:agent", namespaces=ns):
            name = "".join(values(agent, "pgterms:name/text()"))
            born, died = (
                values(agent, "pgterms:birthdate/text()"),
                values(agent, "pgterms:deathdate/text()"),
            )
            dates = f"{''.join(born)}-{''.join(died)}" if born or died else ""
            authors.append(f"{name}, {dates}" if dates else name)
        rows.append(
            [
                int(book.get(f"{{{ns['rdf']}}}about").rsplit("/", 1)[-1]),
                "".join(values(book, "dcterms:type/rdf:Description/rdf:value/text()")),
                "".join(values(book, "dcterms:issued/text()")),
                "".join(values(book, "dcterms:title/text()")),
                "; ".join(values(book, "dcterms:language/rdf:Description/rdf:value/text()")),
                "; ".join(authors),
                "; ".join(subjects(book, "LCSH")),
                "; ".join(subjects(book, "LCC")),
                "; ".join(
                    sorted(values(book, "pgterms:bookshelf/rdf:Description/rdf:value/text()"))
                ),
            ]
        )
    writer.writerows(sorted(rows))
    return out.getvalue()


def _etag(body: bytes) -> str:
    return '"' + hashlib.sha1(body).hexdigest()[:16] + '"'


@functools.cache
def _gzip_bomb() -> bytes:
    return gzip.compress(b"<p>" + b"a" * (32 * 2**20) + b"</p>", compresslevel=9)


class CrawlServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        host: str = "127.0.0.2",
        port: int = 0,
        *,
        site: Path | None = None,
        rewrite_host: str = SITE_HOST,
        gutenberg: Path | None = None,
        delay_s: float = 0.0,
        jitter_s: float = 0.0,
        seed: int = 0,
    ):
        super().__init__((host, port), _Handler)
        self.site = site
        self.gutenberg = gutenberg
        self.delay_s, self.jitter_s = delay_s, jitter_s
        self._rng = random.Random(seed)
        self._pages: dict[str, Page] = {}
        self._requests: list[Request] = []
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self._rewrite = re.compile(rb"(?:https?:)?(\\?/\\?/)" + re.escape(rewrite_host.encode()))
        self._books = self._gutenberg_books() if gutenberg else {}
        self._catalog = build_pg_catalog(gutenberg / "metadata").encode() if gutenberg else b""
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    # ----- use from tests -----

    @property
    def origin(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.origin + path

    def set(self, path: str, page: Page) -> None:
        """Serve `page` at `path` from now on (replacing what was there)."""
        with self._lock:
            self._pages[path] = page

    @property
    def requests(self) -> list[Request]:
        """A copy of every request so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def __enter__(self) -> CrawlServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()

    # ----- used by the handler -----

    def arrived(self, handler: _Handler) -> None:
        """Record the request, then wait the response delay."""
        request = Request(
            time.monotonic(),
            time.time(),
            self.server_address[0],
            handler.command,
            handler.path,
            dict(handler.headers.items()),
        )
        with self._lock:
            self._requests.append(request)
            delay = self.delay_s + self._rng.uniform(-self.jitter_s, self.jitter_s)
        if delay > 0:
            time.sleep(delay)

    def page(self, path: str) -> Page | None:
        with self._lock:
            return self._pages.get(path)

    def rewrite(self, body: bytes) -> bytes:
        netloc = self.origin.split("://")[1].encode()

        def replace(match: re.Match[bytes]) -> bytes:
            scheme = b"http:" if match.group(0).startswith(b"http") else b""
            return scheme + match.group(1) + netloc

        return self._rewrite.sub(replace, body)

    def _gutenberg_books(self) -> dict[str, Path]:
        books = {}
        for path in sorted((self.gutenberg / "books").glob("*.txt")):
            book_id = path.stem.split("-")[0]
            books[f"/cache/epub/{book_id}/pg{book_id}.txt"] = path
        return books

    def static(self, path: str) -> Page | None:
        """A Gutenberg mirror file or a site file, or None."""
        if path == "/cache/epub/feeds/pg_catalog.csv" and self._catalog:
            return Page(self._catalog, content_type="text/csv; charset=utf-8", modified=0)
        if path in self._books:
            book = self._books[path]
            charset = {"8": "iso-8859-1", "0": "utf-8"}.get(book.stem.partition("-")[2], "us-ascii")
            return Page(
                book.read_bytes(), content_type=f"text/plain; charset={charset}", modified=0
            )
        if self.site is None:
            return None
        file = (self.site / path.lstrip("/")).resolve()
        if not file.is_relative_to(self.site.resolve()):
            return None
        if file.is_dir():
            if not path.endswith("/"):
                return Page(status=301, headers={"Location": path + "/"})
            file = next((f for f in (file / "index.html", file / "index.xml") if f.is_file()), file)
        if not file.is_file():
            return None
        kind = {".html": HTML, ".xml": "application/xml; charset=utf-8", ".txt": "text/plain"}
        content_type = kind.get(file.suffix, "application/octet-stream")
        return Page(
            self.rewrite(file.read_bytes()),
            content_type=content_type,
            modified=file.stat().st_mtime,
        )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: CrawlServer
    timeout = 10  # an idle keep-alive connection is closed after this

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests read server.requests instead

    def do_GET(self) -> None:
        self.server.arrived(self)
        path = urlsplit(self.path).path
        page = self.server.page(path)
        if page is None and path.startswith("/fault/"):
            page = self._fault(path.removeprefix("/fault/"))
            if page is None:
                return  # the fault answered on its own
        if page is None and path == "/.well-known/tdmrep.json":
            page = Page(TDMREP, content_type="application/json", modified=0)
        if page is None:
            page = self.server.static(path)
        if page is None:
            page = Page(html_page("Not found"), status=404)
        self._send(page)

    def _send(self, page: Page) -> None:
        headers = {"Content-Type": page.content_type, **page.headers}
        body = page.body
        if page.status == 200:
            headers["ETag"] = _etag(body)
            headers["Last-Modified"] = formatdate(page.modified, usegmt=True)
            if self._not_modified(headers["ETag"], page.modified):
                self.send_response(304)
                for name in ("ETag", "Last-Modified"):
                    self.send_header(name, headers[name])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        if page.gzip:
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        self.send_response(page.status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _not_modified(self, etag: str, modified: float) -> bool:
        """RFC 9110 13.2.2: If-None-Match decides when present, else If-Modified-Since."""
        if_none_match = self.headers.get("If-None-Match")
        if if_none_match is not None:
            return etag in [t.strip() for t in if_none_match.split(",")] or if_none_match == "*"
        since = self.headers.get("If-Modified-Since")
        if since:
            try:
                return int(modified) <= parsedate_to_datetime(since).timestamp()
            except (TypeError, ValueError):
                return False
        return False

    def _fault(self, name: str) -> Page | None:
        """The fault endpoint's page, or None when it wrote its own (broken) answer."""
        if name.startswith("redirect-chain/"):
            left = int(name.rsplit("/", 1)[1])
            if left <= 0:
                return Page(html_page("End of the chain"))
            return Page(status=302, headers={"Location": f"/fault/redirect-chain/{left - 1}"})
        match name:
            case "binary":
                png = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(256)) * 8
                return Page(png, content_type=HTML)
            case "wrong-charset":
                text = html_page("Café crème", "Größere Übungen für Anfänger")
                return Page(text.decode().encode("iso-8859-1"), content_type=HTML)
            case "no-charset":
                return Page(html_page("No charset"), content_type="text/html")
            case "malformed":
                return Page(
                    b"<html><head><title>Broken</title><body><div><p>Unclosed <b>bold"
                    b"<table><tr><td>cell</div></p></html></html>< p <<<>>> &bogus;"
                )
            case "redirect-loop":
                return Page(status=302, headers={"Location": "/fault/redirect-loop-2"})
            case "redirect-loop-2":
                return Page(status=302, headers={"Location": "/fault/redirect-loop"})
            case "429":
                return Page(html_page("Slow down"), status=429, headers={"Retry-After": "7"})
            case "503":
                later = formatdate(time.time() + 30, usegmt=True)
                return Page(html_page("Down"), status=503, headers={"Retry-After": later})
            case "noai-header":
                return Page(html_page("No AI"), headers={"X-Robots-Tag": "noai, noimageai"})
            case "agent-noai-header":
                return Page(html_page("No CCBot"), headers={"X-Robots-Tag": "CCBot: noai"})
            case "noai-meta":
                meta = '<meta name="robots" content="noai, noimageai">'
                return Page(html_page("No AI meta", head=meta))
            case "tdm-header":
                return Page(html_page("TDM reserved"), headers={"tdm-reservation": "1"})
            case "tdm-meta":
                meta = '<meta name="tdm-reservation" content="1">'
                return Page(html_page("TDM reserved meta", head=meta))
            case "tdm-reserved/page":
                return Page(html_page("Reserved by tdmrep.json"))
            case "license":
                link = f'<link rel="license" href="{CC_BY}">'
                return Page(html_page("Licensed", head=link))
            case "redirect-private":
                return Page(status=302, headers={"Location": "http://10.0.0.1/"})
            case "redirect-metadata":
                location = "http://169.254.169.254/latest/meta-data/"
                return Page(status=302, headers={"Location": location})
            case "redirect-file":
                return Page(status=302, headers={"Location": "file:///etc/passwd"})
            case "gzip-bomb":
                return Page(_gzip_bomb(), gzip=False, headers={"Content-Encoding": "gzip"})
            case "endless":
                self._endless()
            case "drip":
                self._drip()
            case "reset":
                self._reset()
            case _:
                return Page(html_page("No such fault"), status=404)
        return None

    def _start(self, content_type: str, length: int | None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        if length is None:
            self.send_header("Connection", "close")  # the body ends when the connection does
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def _endless(self) -> None:
        self._start(HTML, None)
        chunk = b"<p>" + b"more " * 2000 + b"</p>\n"
        try:
            while not self.server.stopping.is_set():
                self.wfile.write(chunk)
        except OSError:
            pass  # the client hung up: what a crawler should do

    def _drip(self) -> None:
        self._start(HTML, 1000)
        try:
            for _ in range(1000):  # each byte well within a read timeout; the whole too slow
                if self.server.stopping.wait(0.25):
                    break
                self.wfile.write(b"a")
                self.wfile.flush()
        except OSError:
            pass

    def _reset(self) -> None:
        self._start(HTML, 100_000)
        self.wfile.write(b"<html><body>" + b"x" * 5000)
        self.wfile.flush()
        # SO_LINGER with a zero timeout: close sends RST instead of FIN
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True
