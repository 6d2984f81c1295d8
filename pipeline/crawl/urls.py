"""URLs: one normalized form per page, the rules that decide which URLs a crawl follows, and
the links of an HTML page.

`normalize_url` gives the frontier its key, so one page is fetched once. `CrawlRules` combines a
`Scope` (where the crawl may go), `Limits` (depth, URL length) and `TrapGuard` (endless calendars,
repeating paths, faceted-search query strings); each `refuse(...)` returns a short reason string
when it refuses a URL and None when it lets it through. Page budgets (per host, per crawl) need
counts, so the frontier enforces them (pipeline/crawl/frontier.py). Everything here is pure and
thread-safe.
"""

from __future__ import annotations

import functools
import re
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote, unquote_plus, urljoin, urlsplit, urlunsplit

import lxml.html
from lxml import etree

from pipeline.charset import decode_html

# Query parameters that name a session or a click, not a page: stripped so that one page has one
# URL. Session ids: the usual server frameworks (Java, PHP, ASP, ColdFusion). Trackers: the
# campaign and click ids of the big ad platforms, as in Firefox's query-stripping list.
SESSION_PARAMS = frozenset(
    {"jsessionid", "phpsessid", "sid", "sessionid", "session_id", "sessid", "cfid", "cftoken"}
)
TRACKING_PARAMS = frozenset(
    {"fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "igshid", "mc_cid"}
    | {"mc_eid", "_ga", "_gl", "_hsenc", "_hsmi", "mkt_tok", "oly_anon_id", "oly_enc_id"}
)
TRACKING_PREFIXES = ("utm_", "aspsessionid")
# `;jsessionid=...` path parameters (Java servlets put the session in the path).
_PATH_SESSION = re.compile(r";(?:jsessionid|phpsessid|sid|sessionid)=[^/?#;]*", re.IGNORECASE)
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
_BARE_PERCENT = re.compile(r"%(?![0-9A-F]{2})")
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_PATH_SAFE = "/:@!$&'()*+,;=%"
_QUERY_SAFE = "/:@!$'()*+,;=?%"
_SKIPPED_SCHEMES = ("mailto:", "javascript:", "tel:", "data:", "sms:", "ftp:", "file:")


# Pages link to the same URLs over and over (menus, sections): a crawl normalizes each once.
@functools.lru_cache(maxsize=65536)
def normalize_url(url: str) -> str:
    """The canonical form of an absolute http(s) URL (RFC 3986 section 6 plus crawler practice):
    lowercase scheme and host (IDNA hosts as punycode, no trailing dot), default port dropped,
    `.`/`..` segments resolved, empty path as `/`, percent-encoding normalized (unreserved
    characters decoded, other escapes uppercase, unsafe characters encoded), fragment dropped,
    session-id and tracking parameters (`SESSION_PARAMS`, `TRACKING_PARAMS`, `utm_*`) dropped
    from the query and the path, the remaining query parameters sorted.

    Raises ValueError naming the URL if it is not an absolute http(s) URL with a host."""
    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"bad URL {url!r}: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) URL: {url!r}")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise ValueError(f"URL without a host: {url!r}")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ValueError(f"bad host name in {url!r}: {exc}") from exc
    netloc = f"[{host}]" if ":" in host else host  # IPv6 literal
    if port is not None and port != {"http": 80, "https": 443}[scheme]:
        netloc = f"{netloc}:{port}"
    if parts.username is not None:
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@{netloc}"
    path = _remove_dot_segments(_PATH_SESSION.sub("", parts.path)) or "/"
    return urlunsplit(
        (scheme, netloc, _normalize_escapes(path, _PATH_SAFE), _normalize_query(parts.query), "")
    )


def host_key(url: str) -> str:
    """The host a URL belongs to for politeness and scope: `host[:port]` of its normalized form
    (different ports of one address are different servers, e.g. test fixtures)."""
    return urlsplit(url).netloc.rpartition("@")[2].lower()


def _normalize_query(query: str) -> str:
    pairs = []
    for pair in query.split("&"):
        if not pair:
            continue
        name = unquote_plus(pair.partition("=")[0]).strip().lower()
        if name in SESSION_PARAMS or name in TRACKING_PARAMS or name.startswith(TRACKING_PREFIXES):
            continue
        pairs.append(_normalize_escapes(pair, _QUERY_SAFE))
    return "&".join(sorted(pairs, key=lambda pair: pair.partition("=")[::2]))


def _normalize_escapes(part: str, safe: str) -> str:
    def one(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else "%" + match.group(1).upper()

    decoded = _BARE_PERCENT.sub("%25", _PERCENT.sub(one, part))
    return quote(decoded, safe=safe)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4, on whole segments."""
    output: list[str] = []
    segments = path.split("/")
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == ".":
            if last:
                output.append("")
        elif segment == "..":
            if len(output) > 1:
                output.pop()
            if last:
                output.append("")
        else:
            output.append(segment)
    result = "/".join(output)
    return result if not path.startswith("/") or result.startswith("/") else "/" + result


# ----- which URLs a crawl follows -----


@dataclass
class Scope:
    """Where a crawl may go. A URL is in scope when its host (`host_key`) is one of `hosts`, it
    starts with one of `prefixes`, it matches one of the `allow` regexes and none of the `deny`
    ones (`re.search` on the normalized URL). An empty `hosts`, `prefixes` or `allow` puts no
    restriction; the default Scope lets everything through. `Scope.same_host(seeds)` is the
    usual web crawl: the seeds' hosts only.

    Reasons: `off_host`, `off_prefix`, `not_allowed`, `denied`."""

    hosts: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    _allow: list[re.Pattern[str]] = field(init=False, repr=False)
    _deny: list[re.Pattern[str]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.hosts = frozenset(h.lower() for h in self.hosts)
        self.prefixes = tuple(normalize_url(p) for p in self.prefixes)
        self._allow = [_compile(p, "allow") for p in self.allow]
        self._deny = [_compile(p, "deny") for p in self.deny]

    @classmethod
    def same_host(cls, seeds: list[str], **rules: tuple[str, ...]) -> Scope:
        return cls(hosts=frozenset(host_key(normalize_url(s)) for s in seeds), **rules)

    def refuse(self, url: str) -> str | None:
        if self.hosts and host_key(url) not in self.hosts:
            return "off_host"
        if self.prefixes and not url.startswith(self.prefixes):
            return "off_prefix"
        if self._allow and not any(p.search(url) for p in self._allow):
            return "not_allowed"
        if any(p.search(url) for p in self._deny):
            return "denied"
        return None


def _compile(pattern: str, which: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"scope {which} regex {pattern!r}: {exc}") from exc


@dataclass(frozen=True)
class Limits:
    """Per-URL limits. Defaults: no depth limit (seeds are depth 0, their links depth 1, ...);
    URLs up to 2,048 characters, the limit of the sitemaps.org protocol and of common browsers.

    Reasons: `too_deep`, `url_too_long`."""

    max_depth: int | None = None
    max_url_length: int = 2048

    def refuse(self, url: str, depth: int) -> str | None:
        if self.max_depth is not None and depth > self.max_depth:
            return "too_deep"
        if len(url) > self.max_url_length:
            return "url_too_long"
        return None


# A year followed by a month, as calendars and archives write them: /2031/05, 2031-05-17.
_YEAR_MONTH = re.compile(r"(?<![0-9])([12][0-9]{3})[-/_](?:0?[1-9]|1[0-2])(?![0-9])")
_DATE_PARAMS = frozenset({"year", "yr", "y", "date", "month", "day", "cal", "calendar", "from"})


@dataclass(frozen=True)
class TrapGuard:
    """Refuses URLs that look like crawler traps: pages generated without end.

    - `trap_calendar`: a year-month (`/2031/05/`, `date=2031-05-17`, `year=2031`) more than
      `years_ahead` (2) years after or `years_behind` (50) years before the current year: a
      calendar's "next month" link never runs out, while blog and news archives stay within a
      few decades.
    - `trap_repeating_path`: one path segment more than `max_segment_repeats` (2) times, and
      `trap_deep_path`: more than `max_path_segments` (20) segments; both are Heritrix's
      defaults (PathologicalPathDecideRule, TooManyPathSegmentsDecideRule). They catch relative
      links that resolve to /a/b/a/b/a/b/...
    - `trap_query_params`: more than `max_query_params` (10) parameters, and `trap_long_query`:
      a query string over `max_query_length` (512) characters: faceted search and filter
      combinations, which multiply without end."""

    years_ahead: int = 2
    years_behind: int = 50
    max_segment_repeats: int = 2
    max_path_segments: int = 20
    max_query_params: int = 10
    max_query_length: int = 512

    def refuse(self, url: str) -> str | None:
        parts = urlsplit(url)
        segments = [s for s in parts.path.split("/") if s]
        if len(segments) > self.max_path_segments:
            return "trap_deep_path"
        if segments and max(segments.count(s) for s in set(segments)) > self.max_segment_repeats:
            return "trap_repeating_path"
        if len(parts.query) > self.max_query_length:
            return "trap_long_query"
        params = [p for p in parts.query.split("&") if p]
        if len(params) > self.max_query_params:
            return "trap_query_params"
        if any(not self._plausible(year) for year in _years(parts.path, params)):
            return "trap_calendar"
        return None

    def _plausible(self, year: int) -> bool:
        now = datetime.now(UTC).year
        return now - self.years_behind <= year <= now + self.years_ahead


def _years(path: str, params: list[str]) -> list[int]:
    years = [int(m.group(1)) for m in _YEAR_MONTH.finditer(unquote_plus(path))]
    for param in params:
        name, _, value = unquote_plus(param).partition("=")
        years += [int(m.group(1)) for m in _YEAR_MONTH.finditer(value)]
        if name.lower() in _DATE_PARAMS and re.match(r"[12][0-9]{3}(?![0-9])", value):
            years.append(int(value[:4]))
    return years


@dataclass(frozen=True)
class CrawlRules:
    """Scope, limits and trap guards together: the first reason any of them gives, or None."""

    scope: Scope = field(default_factory=Scope)
    limits: Limits = field(default_factory=Limits)
    traps: TrapGuard = field(default_factory=TrapGuard)

    def refuse(self, url: str, depth: int) -> str | None:
        return self.limits.refuse(url, depth) or self.scope.refuse(url) or self.traps.refuse(url)


# ----- links -----


def parse_html(html: bytes | str, charset: str | None = None) -> lxml.html.HtmlElement | None:
    """The page parsed leniently (lxml recovers from malformed markup), bytes decoded as the
    HTML standard orders it (charset.py; `charset`: the Content-Type header's); None for a page
    with no document in it. lxml is never handed the bytes: it would read them as its meta
    prescan says, or as latin-1, whatever the header declared."""
    text = decode_html(html, charset) if isinstance(html, bytes) else html
    if not text.strip():
        return None
    try:
        return lxml.html.document_fromstring(text)
    except (etree.ParserError, ValueError):
        return None


def extract_links(
    html: bytes | str | lxml.html.HtmlElement, base_url: str, charset: str | None = None
) -> list[str]:
    """The http(s) links of a page (`<a href>`, `<area href>`), absolute and normalized, each
    once, in page order. Relative links resolve against `<base href>` when the page has one.
    Links with rel="nofollow" are skipped, and so is every link of a page whose
    `<meta name="robots">` says nofollow or none; so are mailto:, javascript:, tel: and
    fragment-only links. Unparsable HTML gives no links rather than an error. `html` may be
    the page already parsed by lxml.html; bytes are decoded as charset.py decides, `charset`
    being what the Content-Type header declares."""
    tree = html if isinstance(html, lxml.html.HtmlElement) else parse_html(html, charset)
    if tree is None:
        return []
    for meta in tree.iterfind(".//meta[@name]"):
        if meta.get("name", "").strip().lower() == "robots":
            values = {v.strip().lower() for v in meta.get("content", "").split(",")}
            if values & {"nofollow", "none"}:
                return []
    base = base_url
    base_tag = tree.find(".//base[@href]")
    if base_tag is not None:
        base = urljoin(base_url, base_tag.get("href", "").strip())
    links: dict[str, None] = {}
    for element in tree.iter("a", "area"):
        href = (element.get("href") or "").strip()
        if not href or href.startswith("#") or href.lower().startswith(_SKIPPED_SCHEMES):
            continue
        if "nofollow" in (element.get("rel") or "").lower().split():
            continue
        try:
            links[normalize_url(urljoin(base, href))] = None
        except ValueError:  # another scheme, or a malformed href: not a link we can follow
            continue
    return list(links)
