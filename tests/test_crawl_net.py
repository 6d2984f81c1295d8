"""The crawler's network side against the local fixture server: fetching under caps and
timeouts, every bad response a recorded outcome, redirects, conditional GET, retry delays,
robots.txt, opt-out signals, licenses and the address safety check."""

from __future__ import annotations

import csv
import gzip
import io
import random
import threading
import time

import pytest

from pipeline.config import CrawlConfig
from pipeline.crawl import consent
from pipeline.crawl.fetch import Fetcher, Outcome, parse_retry_after, retry_delay
from pipeline.crawl.robots import RobotsCache, RobotsState, robots_url
from pipeline.crawl.safety import AddressPolicy, UnsafeTarget, check_url
from tests.conftest import SHARED_DATA, needs_shared_data
from tests.crawl_server import CATALOG_COLUMNS, CC_BY, CrawlServer, Page, html_page

# small caps so that every fault ends within a couple of seconds
CFG = CrawlConfig(
    allow_networks=["127.0.0.0/8"],
    connect_timeout_s=1,
    read_timeout_s=1,
    total_timeout_s=1.5,
    max_bytes=256 * 1024,
    max_decompressed_bytes=2**20,
    retry_base_s=1,
    retry_max_s=60,
)
ROBOTS = b"""User-agent: *
Disallow: /private/
Crawl-delay: 2

User-agent: CCBot
Disallow: /

Sitemap: http://example.org/sitemap_index.xml
"""


@pytest.fixture(scope="module")
def server():
    with CrawlServer("127.0.0.2") as srv:
        yield srv


@pytest.fixture(scope="module")
def fetcher():
    fetcher = Fetcher(CFG)
    yield fetcher
    fetcher.close()


# ----- fetching -----


def test_a_fetch_records_the_request_as_sent_and_the_response_as_received(server, fetcher):
    server.set("/hello", Page(html_page("Hello"), headers={"X-Extra": "1"}))
    result = fetcher.fetch(server.url("/hello"))

    assert result.outcome is Outcome.FETCHED and result.reason is None
    assert result.body == html_page("Hello")
    [exchange] = result.exchanges
    sent = dict(exchange.request_headers)
    seen = server.requests[-1]
    assert exchange.request_line == "GET /hello HTTP/1.1"
    assert sent["User-Agent"] == CFG.user_agent == seen.headers["User-Agent"]
    assert sent["Host"] == server.origin.removeprefix("http://") == seen.headers["Host"]
    assert exchange.status_line == "HTTP/1.1 200 OK"
    assert ("X-Extra", "1") in exchange.response_headers
    assert exchange.payload == result.body and exchange.truncated is None
    assert exchange.ip_address == "127.0.0.2"
    assert result.content_type == "text/html" and result.charset == "utf-8"


def test_the_send_time_is_taken_after_connecting_just_before_the_server_sees_it(
    server, monkeypatch
):
    from pipeline.crawl import safety

    new_conn = safety._CheckedConnection._new_conn
    # a slow connect (a loaded machine, a far server) must not count as part of the gap
    monkeypatch.setattr(
        safety._CheckedConnection, "_new_conn", lambda conn: time.sleep(0.2) or new_conn(conn)
    )
    fresh = Fetcher(CFG)
    before = time.time()
    [exchange] = fresh.fetch(server.url("/fault/no-charset")).exchanges
    arrived = server.requests[-1].wall
    fresh.close()
    assert before + 0.2 <= exchange.sent_at <= arrived < exchange.sent_at + 0.05


def test_a_larger_cap_for_one_call_raises_the_decompressed_cap_with_it(server, fetcher):
    big = html_page("Big", "words " * 300_000)  # 1.8 MB: over max_bytes and max_decompressed
    server.set("/big", Page(big, gzip=True))
    capped = fetcher.fetch(server.url("/big"), max_bytes=64 * 1024)
    allowed = fetcher.fetch(server.url("/big"), max_bytes=4 * 2**20)

    assert (capped.outcome, capped.reason) == (Outcome.FAILED, "decompressed_too_large")
    assert allowed.outcome is Outcome.FETCHED and allowed.body == big


def test_gzip_payload_is_kept_as_transferred_and_decoded_for_use(server, fetcher):
    server.set("/zipped", Page(html_page("Zipped", "words " * 500), gzip=True))
    result = fetcher.fetch(server.url("/zipped"))

    assert result.outcome is Outcome.FETCHED
    assert result.final.payload.startswith(b"\x1f\x8b")  # as on the wire
    assert gzip.decompress(result.final.payload) == result.body
    assert result.body == html_page("Zipped", "words " * 500)


FAULTS = [
    # path, outcome, reason
    ("/fault/binary", Outcome.FAILED, "binary_body"),
    ("/fault/endless", Outcome.FAILED, "too_large"),
    ("/fault/gzip-bomb", Outcome.FAILED, "decompressed_too_large"),
    ("/fault/redirect-loop", Outcome.FAILED, "redirect_loop"),
    ("/fault/redirect-chain/9", Outcome.FAILED, "too_many_redirects"),
    ("/fault/reset", Outcome.RETRY, "connection_reset"),
    ("/fault/drip", Outcome.RETRY, "too_slow"),
    ("/fault/429", Outcome.RETRY, "http_429"),
    ("/fault/503", Outcome.RETRY, "http_503"),
    ("/fault/redirect-private", Outcome.FAILED, "unsafe_address"),
    ("/fault/redirect-metadata", Outcome.FAILED, "unsafe_address"),
    ("/fault/redirect-file", Outcome.FAILED, "unsupported_scheme"),
    ("/no/such/page", Outcome.FAILED, "http_404"),
]


@pytest.mark.parametrize(("path", "outcome", "reason"), FAULTS)
def test_every_bad_response_ends_as_a_recorded_outcome_in_bounded_time(
    server, fetcher, path, outcome, reason
):
    started = time.monotonic()
    result = fetcher.fetch(server.url(path))

    assert (result.outcome, result.reason) == (outcome, reason), result.detail
    assert result.detail  # says what happened, for the frontier's record
    assert result.body == b""
    assert time.monotonic() - started < 4


def test_redirects_are_followed_and_every_hop_recorded(server, fetcher):
    result = fetcher.fetch(server.url("/fault/redirect-chain/3"))

    assert result.outcome is Outcome.FETCHED
    assert [e.status for e in result.exchanges] == [302, 302, 302, 200]
    assert [e.request_target for e in result.exchanges] == [
        f"/fault/redirect-chain/{n}" for n in (3, 2, 1, 0)
    ]
    assert result.final_url == server.url("/fault/redirect-chain/0")
    assert result.exchanges[0].header("Location") == "/fault/redirect-chain/2"


def test_the_redirect_to_a_private_address_is_recorded_and_never_followed(server, fetcher):
    result = fetcher.fetch(server.url("/fault/redirect-metadata"))

    assert [e.status for e in result.exchanges] == [302]
    assert "169.254.169.254" in result.detail


def test_charset_trouble_and_malformed_html_are_fetched_with_warnings(server, fetcher):
    wrong = fetcher.fetch(server.url("/fault/wrong-charset"))
    missing = fetcher.fetch(server.url("/fault/no-charset"))
    malformed = fetcher.fetch(server.url("/fault/malformed"))

    assert wrong.outcome is Outcome.FETCHED and wrong.warnings == ["charset_mismatch"]
    assert "Café".encode("iso-8859-1") in wrong.body  # kept raw: extract sniffs the encoding
    assert missing.outcome is Outcome.FETCHED and missing.warnings == ["charset_missing"]
    assert malformed.outcome is Outcome.FETCHED and malformed.warnings == []
    tree = consent.html_tree(malformed.body)
    assert consent.opt_out(malformed, tree, CFG) is None
    assert consent.page_license(malformed, tree) is None


def test_a_content_type_not_allowed_is_refused_before_its_body_is_read(server, fetcher):
    server.set("/photo.jpg", Page(b"\xff\xd8\xff" * 1000, content_type="image/jpeg"))
    result = fetcher.fetch(server.url("/photo.jpg"))

    assert (result.outcome, result.reason) == (Outcome.FAILED, "content_type")
    assert "image/jpeg" in result.detail


def test_conditional_get_answers_304_until_the_page_changes(server, fetcher):
    server.set("/news", Page(html_page("News", "first")))
    first = fetcher.fetch(server.url("/news"))
    again = fetcher.fetch(server.url("/news"), etag=first.etag, last_modified=first.last_modified)
    by_date = fetcher.fetch(server.url("/news"), last_modified=first.last_modified)
    server.set("/news", Page(html_page("News", "second")))
    changed = fetcher.fetch(server.url("/news"), etag=first.etag)

    assert first.outcome is Outcome.FETCHED and first.etag and first.last_modified
    assert again.outcome is Outcome.NOT_MODIFIED and again.status == 304 and again.body == b""
    assert server.requests[-3].headers["If-None-Match"] == first.etag
    assert by_date.outcome is Outcome.NOT_MODIFIED
    assert changed.outcome is Outcome.FETCHED and b"second" in changed.body


def test_threads_share_one_kept_alive_connection_per_host(server, monkeypatch):
    from pipeline.crawl import safety

    connects = []
    new_conn = safety._CheckedConnection._new_conn
    monkeypatch.setattr(
        safety._CheckedConnection, "_new_conn", lambda conn: connects.append(1) or new_conn(conn)
    )
    fetcher = Fetcher(CFG)
    results = []

    def work() -> None:
        results.append(fetcher.fetch(server.url("/fault/redirect-chain/0")).outcome)

    for _ in range(4):  # one after another, each in a thread of its own
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
    fetcher.close()
    assert results == [Outcome.FETCHED] * 4 and len(connects) == 1


def test_the_server_delays_responses_as_asked():
    with CrawlServer("127.0.0.4", delay_s=0.2, jitter_s=0.05) as slow:
        result = Fetcher(CFG).fetch(slow.url("/fault/no-charset"))
    assert result.outcome is Outcome.FETCHED and result.elapsed_s >= 0.15


# ----- retries -----


def test_retry_delay_honours_retry_after_and_grows_with_attempts(server, fetcher):
    too_many = fetcher.fetch(server.url("/fault/429"))
    unavailable = fetcher.fetch(server.url("/fault/503"))
    assert too_many.retry_after_s == 7
    assert 25 <= unavailable.retry_after_s <= 31  # an HTTP date 30 s ahead
    assert retry_delay(1, too_many.retry_after_s, CFG) >= 7

    cfg = CFG.model_copy(update={"max_attempts": 8})
    for seed in range(20):
        rng = random.Random(seed)
        delays = [retry_delay(attempt, None, cfg, rng) for attempt in range(1, 8)]
        assert delays == sorted(delays)  # never shorter than the attempt before
        for attempt, delay in enumerate(delays, 1):
            backoff = min(cfg.retry_max_s, cfg.retry_base_s * 2 ** (attempt - 1))
            assert backoff / 2 <= delay <= backoff
    assert retry_delay(cfg.max_attempts, None, cfg) is None  # out of attempts
    assert retry_delay(1, cfg.retry_after_max_s + 1, cfg) is None  # asks too much: next crawl


def test_retry_after_is_read_as_seconds_or_a_date():
    assert parse_retry_after("120") == 120
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480 - 60) == 60
    assert parse_retry_after("soon") is None


# ----- robots.txt -----


def test_robots_rules_are_obeyed_with_crawl_delay_and_sitemaps(server, fetcher):
    server.set("/robots.txt", Page(ROBOTS, content_type="text/plain"))
    cache = RobotsCache(CFG)
    rules = cache.fetch(fetcher, server.url("/any/page"))
    requests_after_first = len(server.requests)
    again = cache.fetch(fetcher, server.url("/other"))

    assert rules.state is RobotsState.PARSED
    assert rules.allowed(server.url("/blog/post"), CFG.agents)
    assert not rules.allowed(server.url("/private/report"), CFG.agents)
    assert rules.crawl_delay(CFG.agents) == 2
    assert rules.sitemaps == ["http://example.org/sitemap_index.xml"]
    assert again is rules and len(server.requests) == requests_after_first  # cached
    assert server.requests[requests_after_first - 1].path == "/robots.txt"


def test_robots_groups_of_ai_crawlers_bind_only_when_claimed(server, fetcher):
    server.set("/robots.txt", Page(ROBOTS, content_type="text/plain"))
    claims_ccbot = CFG.model_copy(update={"robots_agents": ["textmill", "CCBot"]})
    rules = RobotsCache(claims_ccbot).fetch(fetcher, server.url("/"))

    assert CFG.agents == ["textmill"]
    assert rules.allowed(server.url("/blog/post"), CFG.agents)
    assert not rules.allowed(server.url("/blog/post"), claims_ccbot.agents)


def test_robots_404_allows_all_and_500_allows_nothing_until_retried():
    with CrawlServer("127.0.0.3") as missing, CrawlServer("127.0.0.5") as broken:
        broken.set("/robots.txt", Page(b"oops", status=500, content_type="text/plain"))
        fetcher, cache = Fetcher(CFG), RobotsCache(CFG)
        allow_all = cache.fetch(fetcher, missing.url("/page"))
        first = cache.fetch(fetcher, broken.url("/page"))
        start = time.monotonic()
        cached = cache.lookup(broken.url("/page"), now=start)
        expired = cache.lookup(broken.url("/page"), now=start + first.retry_in_s + 1)
        second = cache.record(broken.url("/page"), fetcher.fetch(robots_url(broken.url("/"))))

    assert allow_all.state is RobotsState.ALLOW_ALL
    assert allow_all.allowed(missing.url("/anything"), CFG.agents)
    assert first.state is RobotsState.UNREACHABLE and first.reason == "http_500"
    assert not first.allowed(broken.url("/page"), CFG.agents)
    assert first.retry_in_s > 0 and cached is first and expired is None
    assert second.retry_in_s >= first.retry_in_s / 2  # backoff grows (with jitter)
    assert second.retry_in_s >= CFG.retry_base_s  # the second failure waits >= base


def test_a_robots_txt_over_the_size_cap_is_read_up_to_the_cap(server, fetcher):
    rules = b"User-agent: *\nDisallow: /private/\n"
    padding = b"# " + b"x" * 97 + b"\n"
    big = rules + padding * (600 * 1024 // len(padding)) + b"Disallow: /late/\n"  # > 512 KiB
    with CrawlServer("127.0.0.60") as plain, CrawlServer("127.0.0.61") as gzipped:
        plain.set("/robots.txt", Page(big, content_type="text/plain"))
        gzipped.set("/robots.txt", Page(big, content_type="text/plain", gzip=True))
        found = [RobotsCache(CFG).fetch(fetcher, host.url("/")) for host in (plain, gzipped)]

    assert CFG.robots_max_bytes == 512 * 1024 < len(big)
    for robots, host in zip(found, (plain, gzipped), strict=True):
        assert (robots.state, robots.reason) == (RobotsState.PARSED, "200")
        assert not robots.allowed(host.url("/private/report"), CFG.agents)
        assert robots.allowed(host.url("/late/page"), CFG.agents)  # past the first 512 KiB


def test_a_robots_txt_cut_by_the_cap_loses_its_partial_last_line(server, fetcher):
    text = b"User-agent: *\nDisallow: /a/\nDisallow: /bbbb/\n"
    cap = len(b"User-agent: *\nDisallow: /a/\nDisallow: /b")  # "/b" would disallow /bx too
    with CrawlServer("127.0.0.62") as host:
        host.set("/robots.txt", Page(text, content_type="text/plain"))
        robots = RobotsCache(CFG.model_copy(update={"robots_max_bytes": cap})).fetch(
            fetcher, host.url("/")
        )

    assert robots.state is RobotsState.PARSED
    assert not robots.allowed(host.url("/a/1"), CFG.agents)
    assert robots.allowed(host.url("/bx"), CFG.agents)


# ----- consent and license -----


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/fault/noai-header", "x_robots_tag:noai"),
        ("/fault/noai-meta", "meta_robots:noai"),
        ("/fault/tdm-header", "tdm_reservation:header"),
        ("/fault/tdm-meta", "tdm_reservation:meta"),
        ("/fault/license", None),
    ],
)
def test_opt_out_signals_give_the_skip_reason(server, fetcher, path, reason):
    result = fetcher.fetch(server.url(path))
    assert result.outcome is Outcome.FETCHED
    assert consent.opt_out(result, consent.html_tree(result.body), CFG) == reason


def test_agent_scoped_x_robots_tag_binds_only_when_claimed(server, fetcher):
    result = fetcher.fetch(server.url("/fault/agent-noai-header"))
    claims_ccbot = CFG.model_copy(update={"robots_agents": ["textmill", "CCBot"]})

    assert consent.opt_out(result, None, CFG) is None
    assert consent.opt_out(result, None, claims_ccbot) == "x_robots_tag:noai"
    assert consent.directives("googlebot: noindex, CCBot: noai, nofollow", ["ccbot"]) == {
        "noai",
        "nofollow",
    }
    # a valued directive is not an agent scope: what follows still applies to everyone
    assert "noai" in consent.directives("max-snippet: 20, noai", ["textmill"])


def test_tdmrep_json_reserves_the_paths_it_names(server, fetcher):
    cache = consent.TdmRepCache(CFG)
    assert cache.lookup(server.url("/")) is None
    rules = cache.record(server.url("/"), fetcher.fetch(consent.tdmrep_url(server.url("/x"))))

    assert cache.lookup(server.url("/other")) is rules
    assert rules.opt_out(server.url("/fault/tdm-reserved/page")) == "tdm_reservation:tdmrep.json"
    assert rules.opt_out(server.url("/fault/license")) is None
    assert consent.parse_tdmrep("not json").opt_out(server.url("/a")) is None


def test_the_stated_license_is_found(server, fetcher):
    page = fetcher.fetch(server.url("/fault/license"))
    server.set("/by-header", Page(html_page("H"), headers={"Link": f'<{CC_BY}>; rel="license"'}))
    by_header = fetcher.fetch(server.url("/by-header"))
    rdfa = consent.html_tree(
        b'<html><body><a rel="cc:license" href="http://creativecommons.org/licenses/by-sa/3.0/">'
        b"CC BY-SA</a></body></html>"
    )

    assert consent.page_license(page, consent.html_tree(page.body)) == CC_BY
    assert consent.page_license(by_header, None) == CC_BY
    assert consent.page_license(page, rdfa).endswith("/by-sa/3.0/")


# ----- safety -----


def test_only_http_and_https_are_fetched(fetcher):
    for url in ("ftp://example.org/file", "file:///etc/passwd", "javascript:alert(1)"):
        with pytest.raises(UnsafeTarget) as err:
            check_url(url)
        assert err.value.reason == "unsupported_scheme"
        assert fetcher.fetch(url).reason == "unsupported_scheme"


def test_private_addresses_are_refused_unless_allowed():
    default = AddressPolicy()
    for address in (
        "127.0.0.1",
        "10.0.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "224.0.0.1",
        "0.0.0.0",
        "::1",
        "fe80::1",
        "::ffff:10.0.0.1",
    ):
        assert not default.allows(address), address
    assert default.allows("93.184.216.34") and default.allows("2606:2800:220:1::1")
    assert AddressPolicy(["127.0.0.0/8"]).allows("127.0.0.9")
    with pytest.raises(ValueError, match="allow_networks"):
        AddressPolicy(["not-a-network"])


def test_a_server_on_a_private_address_is_never_contacted_unless_allowed(server):
    before = len(server.requests)
    refused = Fetcher(CrawlConfig()).fetch(server.url("/fault/no-charset"))
    other_host_only = Fetcher(CFG.model_copy(update={"allow_networks": ["127.0.0.3/32"]}))

    assert (refused.outcome, refused.reason) == (Outcome.FAILED, "unsafe_address")
    assert other_host_only.fetch(server.url("/")).reason == "unsafe_address"
    assert len(server.requests) == before


def test_the_connected_address_is_checked_even_when_resolution_looked_safe(server, monkeypatch):
    # DNS rebinding: the name looked public when checked, the socket reaches a private address
    monkeypatch.setattr(AddressPolicy, "check_host", lambda self, host, port: None)
    before = len(server.requests)
    result = Fetcher(CrawlConfig()).fetch(server.url("/fault/no-charset"))

    assert (result.outcome, result.reason) == (Outcome.FAILED, "unsafe_address")
    assert len(server.requests) == before


# ----- the fixture server's real-data content -----


@pytest.fixture(scope="module")
def full_size_fetcher():
    fetcher = Fetcher(CFG.model_copy(update={"max_bytes": 2**23, "max_decompressed_bytes": 2**23}))
    yield fetcher
    fetcher.close()


@needs_shared_data
def test_the_site_mirror_is_served_with_links_to_the_server_itself(full_size_fetcher):
    fetcher = full_size_fetcher
    site = SHARED_DATA / "feeds-sitemaps" / "site-10beasts"
    with CrawlServer("127.0.0.6", site=site) as mirror:
        home = fetcher.fetch(mirror.url("/"))
        index = fetcher.fetch(mirror.url("/sitemap_index.xml"))
        feed = fetcher.fetch(mirror.url("/feed/"))
        moved = fetcher.fetch(mirror.url("/best-3d-pens"))

    assert home.outcome is Outcome.FETCHED and mirror.url("/feed/").encode() in home.body
    assert b"www.10beasts.cn" not in home.body
    assert mirror.url("/post-sitemap.xml").encode() in index.body
    assert feed.outcome is Outcome.FETCHED and b"<rss" in feed.body
    assert [e.status for e in moved.exchanges] == [301, 200]


@needs_shared_data
def test_the_gutenberg_mirror_serves_the_catalog_and_the_books(full_size_fetcher):
    fetcher = full_size_fetcher
    with CrawlServer("127.0.0.7", gutenberg=SHARED_DATA / "gutenberg") as mirror:
        catalog = fetcher.fetch(mirror.url("/cache/epub/feeds/pg_catalog.csv"))
        book = fetcher.fetch(mirror.url("/cache/epub/1342/pg1342.txt"))
        dutch = fetcher.fetch(mirror.url("/cache/epub/24675/pg24675.txt"))

    rows = list(csv.DictReader(io.StringIO(catalog.body.decode())))
    assert list(rows[0]) == CATALOG_COLUMNS and len(rows) == 10
    austen = next(row for row in rows if row["Text#"] == "1342")
    assert austen["Title"] == "Pride and Prejudice" and austen["Language"] == "en"
    assert austen["Authors"] == "Austen, Jane, 1775-1817" and "Love stories" in austen["Subjects"]
    assert book.body == (SHARED_DATA / "gutenberg" / "books" / "1342.txt").read_bytes()
    assert dutch.charset == "iso-8859-1" and dutch.warnings == []


def test_a_redirect_the_crawler_refuses_is_not_followed(server, fetcher):
    """The crawler asks before each hop (robots.txt, scope): a refused target is not requested,
    and the fetch says where it pointed, for the crawler to queue it as a URL of its own."""
    server.set("/moved", Page(b"", status=301, headers={"Location": "/private/page"}))
    before = len(server.requests)
    asked = []

    def may_follow(target: str) -> str | None:
        asked.append(target)
        return "robots" if "/private/" in target else None

    result = fetcher.fetch(server.url("/moved"), may_follow=may_follow)

    assert (result.outcome, result.reason) == (Outcome.FAILED, "redirect_not_followed")
    assert result.redirect_target == asked[0] == server.url("/private/page")
    assert [r.path for r in server.requests[before:]] == ["/moved"]
