"""The crawl's state and discovery: URL normalization and rules, the SQLite frontier, the WARC
writer (with kills in the middle of a record and of a frontier update), feeds, sitemaps and
the Gutenberg catalog (real files from ../shared/data where they exist)."""

from __future__ import annotations

import base64
import codecs
import gzip
import hashlib
import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator

from pipeline.crash import CRASH_ENV, CRASH_EXIT_CODE
from pipeline.crawl.frontier import Frontier, FrontierError, NewUrl
from pipeline.crawl.sources import (
    SourceError,
    find_feed_links,
    gutenberg_text_url,
    is_article_url,
    parse_feed,
    parse_sitemap,
    select_books,
)
from pipeline.crawl.urls import (
    CrawlRules,
    Limits,
    Scope,
    TrapGuard,
    extract_links,
    normalize_url,
)
from pipeline.crawl.warcwriter import (
    Exchange,
    GenerationWriter,
    PreviousCapture,
    WarcCheckError,
    check_warc,
)
from tests.conftest import REPO, SHARED_DATA, needs_shared_data

FEEDS = SHARED_DATA / "feeds-sitemaps"
BEASTS = FEEDS / "site-10beasts"

# ----- URLs -----


@pytest.mark.parametrize(
    ("url", "same_as"),
    [
        ("http://Ex.com:80/a?b=1&a=2#x", "http://ex.com/a?a=2&b=1"),
        ("HTTPS://EX.com:443", "https://ex.com/"),
        ("http://ex.com/a/./b/../c", "http://ex.com/a/c"),
        ("http://ex.com/%7euser/%e2%82%ac", "http://ex.com/~user/%E2%82%AC"),
        ("http://ex.com/a b", "http://ex.com/a%20b"),
        ("http://ex.com/p?utm_source=news&id=3&fbclid=X", "http://ex.com/p?id=3"),
        ("http://ex.com/p?PHPSESSID=abc&sid=9&q=x", "http://ex.com/p?q=x"),
        ("http://ex.com/shop;jsessionid=0A1B?item=2", "http://ex.com/shop?item=2"),
        ("http://bücher.example./", "http://xn--bcher-kva.example/"),
        ("http://ex.com:8080/", "http://ex.com:8080/"),
    ],
)
def test_one_page_has_one_normalized_url(url, same_as):
    assert normalize_url(url) == same_as
    assert normalize_url(same_as) == same_as  # idempotent


@pytest.mark.parametrize("url", ["mailto:a@b.c", "ftp://ex.com/f", "/relative", "http://:80/"])
def test_what_cannot_be_crawled_is_refused_by_name(url):
    with pytest.raises(ValueError, match="URL"):
        normalize_url(url)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://ex.com/calendar/2999/01/", "trap_calendar"),
        ("http://ex.com/events?date=1066-10-14", "trap_calendar"),
        ("http://ex.com/cal?year=2999&month=1", "trap_calendar"),
        ("http://ex.com/a/b/a/b/a/b/", "trap_repeating_path"),
        ("http://ex.com/" + "x/" * 25 + "y", "trap_deep_path"),
        ("http://ex.com/s?" + "&".join(f"f{i}=1" for i in range(12)), "trap_query_params"),
        ("http://ex.com/s?q=" + "z" * 600, "trap_long_query"),
        ("http://ex.com/2016/05/a-post/", None),  # a blog archive, not a calendar
        ("http://ex.com/products/1500", None),  # a number is not a year
        ("http://ex.com/docs/v1/api/v1/", None),  # a segment twice is fine
    ],
)
def test_trap_guard(url, reason):
    assert TrapGuard().refuse(normalize_url(url)) == reason


def test_scope_and_limits_give_reasons():
    rules = CrawlRules(
        scope=Scope.same_host(
            ["http://Site.example/blog/"], prefixes=("http://site.example/blog/",), deny=(r"\?",)
        ),
        limits=Limits(max_depth=2, max_url_length=60),
    )
    assert rules.refuse("http://site.example/blog/post", 2) is None
    assert rules.refuse("http://other.example/blog/post", 1) == "off_host"
    assert rules.refuse("http://site.example/shop/", 1) == "off_prefix"
    assert rules.refuse("http://site.example/blog/?p=1", 1) == "denied"
    assert rules.refuse("http://site.example/blog/post", 3) == "too_deep"
    assert rules.refuse("http://site.example/blog/" + "x" * 50, 1) == "url_too_long"
    assert Scope(allow=(r"/blog/",)).refuse("http://a.example/news/") == "not_allowed"
    with pytest.raises(ValueError, match=r"deny regex '\('"):
        Scope(deny=("(",))


def test_links_honour_base_nofollow_and_skip_non_pages():
    html = b"""<html><head><base href="http://cdn.example/docs/"></head><body>
    <a href="intro.html#top">Intro</a> <a href="intro.html">again</a>
    <a href="/about?utm_source=x">About</a> <a rel="external nofollow" href="ads.html">ad</a>
    <a href="mailto:me@example.com">mail</a> <a href="javascript:void(0)">js</a>
    <a href="#section">here</a> <map><area href="http://other.example/map"></map></body></html>"""
    assert extract_links(html, "http://site.example/page") == [
        "http://cdn.example/docs/intro.html",
        "http://cdn.example/about",
        "http://other.example/map",
    ]
    meta_nofollow = b'<html><head><meta name="robots" content="noindex, nofollow"></head>'
    assert extract_links(meta_nofollow + b'<a href="/x">x</a></html>', "http://a.example/") == []
    assert extract_links(b"\x00\xff<<<", "http://a.example/") == []
    assert extract_links("", "http://a.example/") == []


EURO = "http://a.example/u/%E2%82%ACuro"
A_DAY = 86400.0  # the longest a host waits, whatever its robots.txt asks (RFC 9309: 24 h)


@pytest.mark.parametrize(
    ("body", "header", "link"),
    [
        ('<a href="/u/€uro">'.encode(), "utf-8", EURO),  # the header's charset, no meta
        ('<a href="http://bücher.example/">'.encode(), "utf-8", "http://xn--bcher-kva.example/"),
        ('<meta charset="iso-8859-1"><a href="/u/€uro">'.encode(), "utf-8", EURO),  # over meta
        ('<meta charset="windows-1252"><a href="/u/€uro">'.encode("cp1252"), None, EURO),
        (codecs.BOM_UTF8 + '<a href="/u/€uro">'.encode(), "iso-8859-1", EURO),  # BOM first
        ('<a href="/u/€uro">'.encode(), None, EURO),  # nothing declared: detected as UTF-8
        ('<a href="/u/€uro">'.encode("cp1252"), "iso-8859-1", EURO),  # latin-1 read as 1252
    ],
)
def test_links_are_decoded_as_the_html_standard_orders_it(body, header, link):
    assert extract_links(body, "http://a.example/", charset=header) == [link]


def test_feed_links_are_decoded_with_the_header_charset():
    page = '<link rel="alternate" type="application/rss+xml" href="/flux/actualités.xml">'
    found = find_feed_links(page.encode(), "http://a.example/", charset="utf-8")
    assert found == ["http://a.example/flux/actualit%C3%A9s.xml"]


# ----- frontier -----


def _frontier(tmp_path: Path, **options) -> Frontier:
    frontier = Frontier(tmp_path / "frontier.sqlite", delay_s=0.0, **options)
    if frontier.generation is None:
        frontier.start_generation("g1")
    return frontier


def _urls(*urls: str, depth: int = 0) -> list[NewUrl]:
    return [NewUrl(normalize_url(u), depth=depth, source="web") for u in urls]


def test_a_url_is_added_once_ever(tmp_path):
    with _frontier(tmp_path) as frontier:
        assert frontier.add(_urls("http://a.example/1", "http://A.example:80/1#x")) == 1
        claim = frontier.claim()
        frontier.mark_fetched(claim.url, 200, None)
        assert frontier.add(_urls("http://a.example/1")) == 0
        assert frontier.counts() == {"fetched": 1}
        assert frontier.claim() is None


def test_claims_respect_hosts_politeness_and_outcomes(tmp_path):
    with _frontier(tmp_path, max_attempts=2) as frontier:
        frontier.set_host_delay("a.example", 10.0)
        frontier.add(_urls("http://a.example/1", "http://a.example/2", "http://b.example/1"))
        first, second = frontier.claim(now=100.0), frontier.claim(now=100.0)
        assert {first.host, second.host} == {"a.example", "b.example"}
        assert frontier.claim(now=100.0) is None  # one request per host at a time
        a = first if first.host == "a.example" else second
        frontier.mark_fetched(a.url, 200, None, etag='"v1"')
        assert frontier.claim(now=105.0) is None  # a.example: 10 s between request starts
        assert frontier.next_ready_at() == pytest.approx(110.0)
        again = frontier.claim(now=110.0)
        assert again.url == "http://a.example/2"
        assert frontier.mark_failed(again.url, "http_503", retry_in=30, now=110.0) == "queued"
        assert frontier.claim(now=130.0) is None  # waits for retry_at
        retry = frontier.claim(now=141.0)
        assert (retry.url, retry.attempts) == ("http://a.example/2", 1)
        assert frontier.mark_failed(retry.url, "http_503", retry_in=30) == "failed"  # 2nd try
        b = second if a is first else first
        frontier.mark_skipped(b.url, "robots")
        assert frontier.counts() == {"fetched": 1, "failed": 1, "skipped": 1}
        assert frontier.reasons() == {("failed", "http_503"): 1, ("skipped", "robots"): 1}
        assert frontier.pending() == 0
        with pytest.raises(FrontierError, match="not in flight"):
            frontier.mark_fetched(a.url, 200, None)


def test_a_reopened_frontier_keeps_each_hosts_next_start_and_budget(tmp_path):
    with _frontier(tmp_path, max_pages_per_host=2) as frontier:
        frontier.add(_urls("http://a.example/1", "http://a.example/2"))
        claim = frontier.claim(now=100.0)
        frontier.defer_host(claim.host, 50.0, now=100.0)  # e.g. a Crawl-delay
        frontier.mark_fetched(claim.url, 200, None)
    with Frontier(tmp_path / "frontier.sqlite", delay_s=0.0, max_pages_per_host=2) as frontier:
        assert frontier.claim(now=120.0) is None and frontier.next_ready_at() == 150.0
        assert frontier.add(_urls("http://a.example/3")) == 0  # the budget is spent
        assert frontier.claim(now=150.0).url == "http://a.example/2"
        assert frontier.pending() == 1


def test_a_host_slower_than_max_delay_waits_for_the_next_generation(tmp_path):
    with _frontier(tmp_path, max_delay_s=10.0) as frontier:
        frontier.set_host_delay("slow.example", 100.0)  # e.g. Crawl-delay: 100
        frontier.add(_urls("http://slow.example/1", "http://slow.example/2", "http://b.example/1"))
        for claim in [frontier.claim(now=1000.0), frontier.claim(now=1000.0)]:
            frontier.mark_fetched(claim.url, 200, None)
        assert frontier.claim(now=1000.0) is None and frontier.pending() == 0  # not waited for
        assert frontier.reasons("g1") == {("skipped", "crawl_delay"): 1}
        frontier.finish_generation()

        frontier.start_generation("g2")  # slow.example keeps its next start, 1100
        claim = frontier.claim(now=1050.0)
        assert claim.url == "http://b.example/1"
        assert frontier.reasons("g2") == {("skipped", "crawl_delay"): 2}
        frontier.mark_fetched(claim.url, 200, None)
        frontier.finish_generation()

        frontier.start_generation("g3")  # within max_delay_s of its next start: waited for
        frontier.mark_fetched(frontier.claim(now=1095.0).url, 200, None)
        assert frontier.claim(now=1095.0) is None and frontier.next_ready_at() >= 1100.0
        assert frontier.claim(now=1100.0).url == "http://slow.example/1"


def test_no_host_waits_longer_than_a_day_whatever_it_asks(tmp_path):
    with _frontier(tmp_path) as frontier:
        frontier.set_host_delay("a.example", 1e12)
        frontier.defer_host("a.example", 1e12)
        frontier.add(_urls("http://a.example/1"))
        assert frontier.next_ready_at() <= time.time() + A_DAY
    with sqlite3.connect(tmp_path / "frontier.sqlite") as db:  # as an older frontier left it
        db.execute("UPDATE hosts SET next_at = ?, delay_s = 1e12", (time.time() + 1e12,))
    db.close()
    with Frontier(tmp_path / "frontier.sqlite") as frontier:
        assert frontier.next_ready_at() <= time.time() + A_DAY
        assert frontier.delay("a.example") == A_DAY


def test_a_redirect_target_is_recorded_as_fetched_so_it_is_not_fetched_again(tmp_path):
    with _frontier(tmp_path) as frontier:
        frontier.add(_urls("http://a.example/old", "http://a.example/new", "http://a.example/x"))
        old = frontier.claim()
        frontier.mark_fetched(old.url, 200, None, etag='"n"', redirected_to="http://a.example/new")
        frontier.mark_fetched(frontier.claim().url, 200, None, redirected_to="http://b.example/")
        assert frontier.claim() is None and frontier.pending() == 0
        new, elsewhere = frontier.get("http://a.example/new"), frontier.get("http://b.example/")
        assert (new["state"], new["reason"], new["etag"]) == ("fetched", "redirect", '"n"')
        assert (elsewhere["state"], elsewhere["discovered_from"]) == (
            "fetched",
            "http://a.example/x",
        )
        assert frontier.counts() == {"fetched": 4}


def test_page_budgets_skip_with_reason_and_reset_next_generation(tmp_path):
    with _frontier(tmp_path, max_pages=3, max_pages_per_host=2) as frontier:
        added = frontier.add(_urls(*[f"http://a.example/{i}" for i in range(3)]))
        added += frontier.add(_urls("http://b.example/1", "http://b.example/2"))
        assert added == 3
        assert frontier.reasons() == {
            ("skipped", "max_pages_per_host"): 1,
            ("skipped", "max_pages"): 1,
        }
        frontier.max_pages = None
        frontier.start_generation("g2")
        assert frontier.counts() == {"queued": 4, "skipped": 1}  # a.example keeps its limit


def test_claims_from_many_threads_hand_out_each_url_once(tmp_path):
    with _frontier(tmp_path, per_host=4) as frontier:
        frontier.add(_urls(*[f"http://h{i % 8}.example/{i}" for i in range(200)]))
        claimed: list[str] = []

        def worker() -> None:
            while (claim := frontier.claim()) is not None:
                claimed.append(claim.url)
                frontier.mark_fetched(claim.url, 200, None)

        threads = [threading.Thread(target=worker) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(claimed) == len(set(claimed)) == 200
        assert frontier.counts() == {"fetched": 200}


def _run_child(code: str, crash: str | None = None) -> subprocess.CompletedProcess:
    env = {CRASH_ENV: crash} if crash else {}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env={**_base_env(), **env}, capture_output=True
    )


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != CRASH_ENV}


def test_killed_crawl_requeues_only_what_was_in_flight(tmp_path):
    path = tmp_path / "frontier.sqlite"
    with _frontier(tmp_path) as frontier:
        frontier.add(_urls("http://a.example/1", "http://b.example/1", "http://c.example/1"))
    child = f"""
import os
from pipeline.crawl.frontier import Frontier
f = Frontier({str(path)!r}, delay_s=0)
done = f.claim()
f.mark_fetched(done.url, 200, None)
print(f.claim().url, flush=True)  # in flight when killed
os.kill(os.getpid(), 9)
"""
    result = _run_child(child)
    assert result.returncode == -9
    in_flight = result.stdout.decode().strip()
    with Frontier(path, delay_s=0) as frontier:
        assert frontier.requeued_in_flight == 1
        assert frontier.get(in_flight)["state"] == "queued"
        assert frontier.counts() == {"fetched": 1, "queued": 2}


def test_kill_inside_a_frontier_update_rolls_it_back(tmp_path):
    path = tmp_path / "frontier.sqlite"
    with _frontier(tmp_path) as frontier:
        frontier.add(_urls("http://a.example/1"))
    # transactions in the child: 1 requeue on open, 2 claim, 3 mark_fetched (killed)
    child = f"""
from pipeline.crawl.frontier import Frontier
f = Frontier({str(path)!r}, delay_s=0)
f.mark_fetched(f.claim().url, 200, None)
"""
    assert _run_child(child, crash="frontier.commit:3").returncode == CRASH_EXIT_CODE
    with Frontier(path, delay_s=0) as frontier:
        assert frontier.counts() == {"queued": 1}
        assert frontier.get("http://a.example/1")["status"] is None


def test_new_generation_recrawls_fetched_urls_with_their_validators(tmp_path):
    with _frontier(tmp_path) as frontier:
        frontier.add(_urls("http://a.example/1", "http://a.example/gone"))
        frontier.mark_fetched(
            frontier.claim().url, 200, None, etag='"abc"', last_modified="Mon, 01 Jan 2024"
        )
        frontier.mark_failed(frontier.claim().url, "http_404", status=404)
        frontier.finish_generation()
        assert frontier.start_generation("g2") == 1  # the 404 stays failed
        assert frontier.start_generation("g2") == 0  # resuming the same generation
        claim = frontier.claim()
        assert (claim.url, claim.etag, claim.last_modified) == (
            "http://a.example/1",
            '"abc"',
            "Mon, 01 Jan 2024",
        )
        frontier.mark_fetched(claim.url, 304, None)
        row = frontier.get(claim.url)
        assert (row["state"], row["etag"], row["generation"]) == ("not_modified", '"abc"', "g2")
        with pytest.raises(FrontierError, match="already exists"):
            frontier.start_generation("g1")


def test_metadata_travels_with_the_url(tmp_path):
    with _frontier(tmp_path) as frontier:
        meta = {"title": "Ünïcode", "author": "A. Writer"}
        frontier.add([NewUrl("http://a.example/p", source="articles", metadata=meta)])
        assert frontier.claim().metadata == meta
        with pytest.raises(ValueError, match=r"http://a\.example/q"):
            frontier.add([NewUrl("http://a.example/q", metadata={"when": object()})])


def test_an_unreadable_frontier_file_is_named(tmp_path):
    bad = tmp_path / "frontier.sqlite"
    bad.write_bytes(b"not a database at all" * 100)
    with pytest.raises(FrontierError, match=r"frontier\.sqlite"):
        Frontier(bad)


# ----- WARC -----


def _page(url: str, body: bytes, **fields) -> Exchange:
    return Exchange(
        url=url,
        status=200,
        reason="OK",
        response_headers=[("Content-Type", "text/html; charset=utf-8"), *fields.pop("extra", [])],
        payload=body,
        request_headers=[("User-Agent", "textmill-test"), ("Host", "a.example")],
        **fields,
    )


def _records(path: Path) -> list:
    out = []
    with open(path, "rb") as fh:
        for record in ArchiveIterator(fh):
            out.append((record.rec_type, record.rec_headers, record.content_stream().read()))
    return out


def _sha1_b32(data: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode()


def test_exchange_records_read_back_with_digests_and_links(tmp_path):
    body = b"<html><body><p>Hello there, reader.</p></body></html>"
    redirect = Exchange("http://a.example/old", 301, "Moved", [("Location", "/new")])
    final = _page(
        "http://a.example/new",
        body,
        ip_address="127.0.0.2",
        extra=[("Transfer-Encoding", "chunked")],
    )
    with GenerationWriter(tmp_path, "crawl") as writer:
        where = writer.write_exchange(final, redirects=[redirect], metadata={"title": "Hello"})
    path = tmp_path / where.file
    assert where.end == path.stat().st_size
    records = _records(path)
    assert [r[0] for r in records] == [
        "warcinfo",
        "request",
        "response",
        "request",
        "response",
        "metadata",
    ]
    request, response, metadata = records[3], records[4], records[5]
    assert response[1].get_header("WARC-Target-URI") == "http://a.example/new"
    assert response[1].get_header("WARC-Payload-Digest") == _sha1_b32(body)
    assert response[2] == body
    assert response[1].get_header("WARC-IP-Address") == "127.0.0.2"
    assert request[1].get_header("WARC-Concurrent-To") == response[1].get_header("WARC-Record-ID")
    assert metadata[1].get_header("WARC-Refers-To") == response[1].get_header("WARC-Record-ID")
    assert metadata[1].get_header("Content-Type") == "application/json"
    assert json.loads(metadata[2]) == {"title": "Hello"}
    assert records[1][1].get_header("WARC-Target-URI") == "http://a.example/old"
    assert check_warc(path) == 6


def test_not_modified_is_a_revisit_that_extract_skips(tmp_path):
    from pipeline.config import ExtractConfig
    from pipeline.extract import InputFile, record_to_document
    from pipeline.warc import iter_records

    previous = PreviousCapture("http://a.example/", "2024-05-01T10:00:00+00:00", "sha1:ABC")
    with GenerationWriter(tmp_path) as writer:
        where = writer.write_exchange(
            Exchange("http://a.example/", 304, "Not Modified", [("ETag", '"v1"')]),
            previous=previous,
        )
    file = InputFile(str(tmp_path / where.file), where.file, "web", "web", "g1", "0", 0)
    with open(tmp_path / where.file, "rb") as fh:
        docs = [
            record_to_document(item.record, item.offset, file, ExtractConfig())
            for item in iter_records(fh)
        ]
    revisit = [d for d in docs if d is not None]
    assert [d["reason"] for d in revisit] == ["revisit"]
    with GenerationWriter(tmp_path) as writer, pytest.raises(ValueError, match="304"):
        writer.write_exchange(Exchange("http://a.example/", 304, "Not Modified", []))


def test_files_rotate_by_size_and_each_starts_with_warcinfo(tmp_path):
    with GenerationWriter(tmp_path, "pages", max_bytes=1500) as writer:
        for i in range(6):
            writer.write_exchange(_page(f"http://a.example/{i}", b"x" * 2000))
        files = writer.files
    assert files == [f"pages-{i:05d}.warc.gz" for i in range(len(files))] and len(files) >= 3
    responses = 0
    for name in files:
        records = _records(tmp_path / name)
        assert records[0][0] == "warcinfo"
        responses += sum(1 for r in records if r[0] == "response")
        check_warc(tmp_path / name)
    assert responses == 6


def test_reopen_cuts_a_torn_record_back_to_the_committed_end(tmp_path):
    committed: dict[str, int] = {}
    with GenerationWriter(tmp_path) as writer:
        for i in range(2):
            where = writer.write_exchange(_page(f"http://a.example/{i}", b"page %d" % i))
            committed[where.file] = where.end
        torn = writer._records(_page("http://a.example/torn", b"y" * 5000), (), None, None)
    path = tmp_path / "crawl-00000.warc.gz"
    with open(path, "ab") as fh:  # a kill half-way through the third record
        fh.write(torn[: len(torn) // 2])
    with pytest.raises(WarcCheckError, match="crawl-00000"):
        check_warc(path)
    with GenerationWriter(tmp_path, committed=committed) as writer:
        assert path.stat().st_size == committed["crawl-00000.warc.gz"]
        writer.write_exchange(_page("http://a.example/2", b"page 2"))
    urls = [h.get_header("WARC-Target-URI") for t, h, _ in _records(path) if t == "response"]
    assert urls == ["http://a.example/0", "http://a.example/1", "http://a.example/2"]
    assert check_warc(path) == 7


def test_missing_committed_data_is_an_error_not_a_silent_loss(tmp_path):
    with GenerationWriter(tmp_path) as writer:
        where = writer.write_exchange(_page("http://a.example/", b"page"))
    with pytest.raises(RuntimeError, match="less than the"):
        GenerationWriter(tmp_path, committed={where.file: where.end + 100})


def test_writes_from_many_threads_commit_in_the_order_written(tmp_path):
    committed: list = []

    def worker(n: int) -> None:
        for i in range(25):
            page = _page(f"http://a.example/{n}/{i}", b"page %d %d" % (n, i))
            writer.write_exchange(page, on_written=committed.append)

    with GenerationWriter(tmp_path, fsync=False) as writer:
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert not any(thread.is_alive() for thread in threads)
    assert [where.offset for where in committed] == sorted(where.offset for where in committed)
    assert (
        len(committed) == 200
        and committed[-1].end == (tmp_path / committed[-1].file).stat().st_size
    )
    assert check_warc(tmp_path / committed[-1].file) == 401  # warcinfo, 200 request + response


def test_kill_during_a_record_write_then_resume(tmp_path):
    """The crawl loop's order (write, then commit in `on_written`) killed in the middle of the
    third record: the frontier and the WARC file agree after reopening."""
    child = f"""
from pipeline.crawl.frontier import Frontier
from pipeline.crawl.warcwriter import Exchange, GenerationWriter
frontier = Frontier({str(tmp_path / "f.sqlite")!r}, delay_s=0)
if frontier.generation is None:
    frontier.start_generation("g1")
from pipeline.crawl.frontier import NewUrl
frontier.add([NewUrl(f"http://h{{i}}.example/") for i in range(5)])
writer = GenerationWriter({str(tmp_path / "g1")!r}, committed=frontier.warc_ends())
while (claim := frontier.claim()) is not None:
    page = Exchange(claim.url, 200, "OK", [("Content-Type", "text/plain")], b"x" * 3000)
    writer.write_exchange(
        page, on_written=lambda at: frontier.mark_fetched(claim.url, 200, at)
    )
"""
    assert _run_child(child, crash="warc.record:3").returncode == CRASH_EXIT_CODE
    assert _run_child(child).returncode == 0  # resumes and finishes
    with Frontier(tmp_path / "f.sqlite") as frontier:
        assert frontier.counts() == {"fetched": 5}
        ends = frontier.warc_ends()
    (name,) = ends
    path = tmp_path / "g1" / name
    assert ends[name] == path.stat().st_size
    responses = [h.get_header("WARC-Target-URI") for t, h, _ in _records(path) if t == "response"]
    assert sorted(responses) == [f"http://h{i}.example/" for i in range(5)]  # each once
    check_warc(path)


# ----- feeds, sitemaps, articles -----


def _rss_parser_cases() -> list[str]:
    folder = FEEDS / "rss-parser" / "expected_output"
    return sorted(p.stem for p in folder.glob("*.json")) if folder.exists() else []


@needs_shared_data
@pytest.mark.parametrize("name", _rss_parser_cases())
def test_real_feeds_match_reference_parses(name):
    """rss-parser's own parse of each feed: the same item links, in order, and the same
    publication dates (to the second)."""
    from datetime import datetime
    from urllib.parse import urljoin

    base = "http://feeds.example/feed"
    (source,) = (FEEDS / "rss-parser" / "input").glob(f"{name}.*")
    reference = FEEDS / "rss-parser/expected_output" / f"{name}.json"
    expected = json.loads(reference.read_bytes().decode("utf-8", errors="replace"))
    expected = [item for item in expected["feed"]["items"] if item.get("link")]
    items = parse_feed(source.read_bytes(), base)
    assert [i.url for i in items] == list(
        dict.fromkeys(normalize_url(urljoin(base, e["link"])) for e in expected)
    )
    for item, reference in zip(items, expected, strict=False):
        if reference.get("isoDate"):
            want = datetime.fromisoformat(reference["isoDate"].replace("Z", "+00:00"))
            assert datetime.fromisoformat(item.published) == want.replace(microsecond=0)


@needs_shared_data
def test_site_feeds_and_json_feed():
    rss = parse_feed((BEASTS / "feed/index.xml").read_bytes(), "http://www.10beasts.cn/feed/")
    atom = parse_feed((BEASTS / "feed/atom/index.xml").read_bytes(), "http://www.10beasts.cn/")
    assert [i.url for i in rss] == [i.url for i in atom] and len(rss) == 10
    first = rss[0]
    assert first.url == "http://www.10beasts.cn/best-wireless-routers/"
    assert first.title == atom[0].title == "Best Wireless Routers 2017 – Buyer’s Guide"
    assert (first.author, first.published) == ("Edward Eugen", "2017-04-10T02:50:58+00:00")
    assert first.metadata()["title"] == first.title
    npr = parse_feed((FEEDS / "trafilatura/feed.json").read_bytes(), "https://feeds.npr.org/")
    assert len(npr) == 25
    assert npr[0].url == (
        "https://www.npr.org/2021/10/29/1050315385/keller-rinaudo-how-can-delivery-drones-save-lives"
    )  # utm_* tracking stripped
    assert (npr[0].author, npr[0].published) == ("Manoush Zomorodi", "2021-10-29T14:26:00+00:00")
    with pytest.raises(SourceError, match="not an RSS"):
        parse_feed((BEASTS / "index.html").read_bytes(), "http://www.10beasts.cn/")


@needs_shared_data
def test_site_sitemaps_from_index_to_pages():
    data = (BEASTS / "sitemap_index.xml").read_bytes()
    # a blank line before the XML declaration, as the site served it: strict parsers refuse it
    index = parse_sitemap(b"\n" + data, "http://www.10beasts.cn/")
    assert index == parse_sitemap(data, "http://www.10beasts.cn/")
    assert index.pages == [] and [s.url for s in index.sitemaps] == [
        "http://www.10beasts.cn/post-sitemap.xml",
        "http://www.10beasts.cn/page-sitemap.xml",
        "http://www.10beasts.cn/affiliate-links-sitemap.xml",
    ]
    posts = parse_sitemap((BEASTS / "post-sitemap.xml").read_bytes(), "http://www.10beasts.cn/")
    assert len(posts.pages) == 14 and posts.sitemaps == []
    assert posts.pages[1].lastmod == "2016-08-06T04:14:35+00:00"
    articles = [p.url for p in posts.pages if is_article_url(p.url)]
    assert len(articles) == 13 and "http://www.10beasts.cn/" not in articles  # the home page
    pages = parse_sitemap((BEASTS / "page-sitemap.xml").read_bytes(), "http://www.10beasts.cn/")
    assert [p.url for p in pages.pages if is_article_url(p.url)] == [
        "http://www.10beasts.cn/scholarship/"
    ]


@needs_shared_data
def test_gzipped_and_plain_text_sitemaps():
    plain = parse_sitemap((FEEDS / "trafilatura/sitemap.xml").read_bytes(), "https://x.org/")
    packed = parse_sitemap((FEEDS / "trafilatura/sitemap.xml.gz").read_bytes(), "https://x.org/")
    assert len(plain.pages) == 84 and packed == plain
    text = b"https://a.example/one\n\nhttps://a.example/two?utm_medium=x\nnot a url\n"
    assert [p.url for p in parse_sitemap(text, "https://a.example/s.txt").pages] == [
        "https://a.example/one",
        "https://a.example/two",
    ]
    bomb = gzip.compress(b"<urlset>" + b" " * (60 * 1024 * 1024))
    with pytest.raises(SourceError, match="inflates beyond"):
        parse_sitemap(bomb, "https://a.example/bomb.xml.gz")
    with pytest.raises(SourceError, match="root element is <html>"):
        parse_sitemap(b"<html><body>hi</body></html>", "https://a.example/s.xml")


@needs_shared_data
def test_feed_links_of_a_page():
    html = (BEASTS / "index.html").read_bytes()
    assert find_feed_links(html, "http://www.10beasts.cn/") == [
        "http://www.10beasts.cn/feed/",
        "http://www.10beasts.cn/comments/feed/",
    ]


@pytest.mark.parametrize(
    ("url", "is_article"),
    [
        ("https://news.example/2024/05/17/city-council-votes/", True),
        ("https://blog.example/how-to-brew-tea", True),
        ("https://blog.example/", False),
        ("https://blog.example/index.html", False),
        ("https://blog.example/tag/tea/", False),
        ("https://blog.example/category/recipes/", False),
        ("https://blog.example/author/jane/", False),
        ("https://blog.example/page/3/", False),
        ("https://blog.example/feed/", False),
        ("https://blog.example/?s=tea", False),
        ("https://blog.example/2024/05/", False),
        ("https://blog.example/wp-content/uploads/tea.jpg", False),
        ("https://blog.example/contact/", False),
        ("https://blog.example/privacy-policy/", False),
    ],
)
def test_article_urls(url, is_article):
    assert is_article_url(url) is is_article


# ----- Gutenberg -----

CATALOG = """Text#,Type,Issued,Title,Language,Authors,Subjects,LoCC,Bookshelves
11,Text,2008-06-27,Alice's Adventures in Wonderland,en,"Carroll, Lewis, 1832-1898",Fantasy literature,PR; PZ,Children's Literature
84,Text,1993-10-01,"Frankenstein; Or, The Modern Prometheus",en,"Shelley, Mary Wollstonecraft, 1797-1851",Gothic fiction; Science fiction,PR,Gothic Fiction
100,Sound,2003-01-01,Frankenstein (audio),en,"Shelley, Mary",Science fiction,,
200,Text,2004-01-01,"Bilingual
Reader",en; fr,"Doe, Jane; Roe, Richard",French language -- Readers,PC,
300,Text,2005-01-01,Le Tour du monde,fr,"Verne, Jules",Voyages -- Fiction; Science fiction,PQ,
"""  # noqa: E501 - catalog lines are as long as they are


def test_catalog_selection(tmp_path):
    catalog = tmp_path / "pg_catalog.csv"
    catalog.write_text(CATALOG, encoding="utf-8")
    assert [b.id for b in select_books(catalog)] == [11, 84, 200, 300]  # Sound is not a text
    assert [b.id for b in select_books(catalog, languages=["fr"])] == [200, 300]
    assert [b.id for b in select_books(catalog, subjects=["science FICTION"])] == [84, 300]
    assert [b.id for b in select_books(catalog, ids=[300, 84, 100])] == [84, 300]
    assert [b.id for b in select_books(catalog, languages=["en"], max_books=2)] == [11, 84]
    bilingual = select_books(catalog, ids=[200])[0].metadata
    assert bilingual["title"] == "Bilingual Reader"
    assert bilingual["languages"] == ["en", "fr"]
    assert bilingual["authors"] == ["Doe, Jane", "Roe, Richard"]
    assert bilingual["subjects"] == ["French language -- Readers"]
    assert gutenberg_text_url("http://127.0.0.2:8000/", 84) == (
        "http://127.0.0.2:8000/cache/epub/84/pg84.txt"
    )


def test_a_malformed_catalog_is_named(tmp_path):
    catalog = tmp_path / "pg_catalog.csv"
    catalog.write_text("Text#,Title\n1,A\n", encoding="utf-8")
    with pytest.raises(SourceError, match=r"pg_catalog\.csv: .*no column Type"):
        select_books(catalog)
    catalog.write_text(CATALOG.replace("\n84,", "\nabc,"), encoding="utf-8")
    with pytest.raises(SourceError, match="line 3: Text# 'abc'"):
        select_books(catalog)


@needs_shared_data
def test_catalog_built_from_the_real_rdf_records(tmp_path):
    crawl_server = pytest.importorskip("tests.crawl_server")
    catalog = tmp_path / "pg_catalog.csv"
    catalog.write_text(crawl_server.build_pg_catalog(SHARED_DATA / "gutenberg" / "metadata"))
    books = {b.id: b.metadata for b in select_books(catalog)}
    assert len(books) == 10
    assert books[1342]["title"] == "Pride and Prejudice"
    assert books[1342]["authors"] == ["Austen, Jane, 1775-1817"]
    assert [b.id for b in select_books(catalog, subjects=["Science fiction"])] == [84]
