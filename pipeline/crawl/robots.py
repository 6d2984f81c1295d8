"""robots.txt per origin (RFC 9309), parsed by protego, cached and obeyed.

What a robots.txt fetch means (RFC 9309 section 2.3.1):
- 2xx: its rules apply (PARSED). Crawl-delay and Request-rate give the host's least delay
  between two requests; Sitemap lines are listed for the article source. A file longer than
  `robots_max_bytes` is read up to there, cut back to the last whole line (RFC 9309 2.5: parse
  at least the first 500 KiB).
- 4xx, or more redirects than `max_redirects`: there are no rules, everything is allowed
  (ALLOW_ALL).
- 5xx, 429, timeouts, network errors and anything else that stops the fetch: UNREACHABLE. No
  URL of that origin is allowed; the crawler puts the host aside and asks again after
  `retry_in_s` (growing with each failure, never sooner than Retry-After). After
  `max_attempts` failures `retry_in_s` is None: give the host up for this crawl.
- the host itself may not be reached (safety.py: an address that is private, loopback, ... and
  not in `allow_networks`): REFUSED, with the fetcher's reason (`unsafe_address`). Nothing was
  sent and no retry changes it; the crawler fails the host's URLs with that reason.

Agents: a URL is allowed only if it is allowed for every token in `CrawlConfig.agents` (the
user agent's own token, plus e.g. CCBot or GPTBot when the config claims them), so a group
written for an AI crawler we claim to be is honoured; groups for agents we do not claim are
not. Each token falls back to the `*` group, as protego does.

`RobotsCache` is shared by the crawl's threads. It fetches nothing itself: the crawler asks
`lookup(url)`, and on None fetches `robots_url(url)` (with `fetch_options`) as a request to
that host (it counts for politeness) and hands the result to `record`, or `restore`s a file an
earlier generation kept. Rules expire after `robots_ttl_s` (RFC 9309: at most 24 h).
`OriginCache` is the thread-safe store with expiry it uses (consent.py keeps tdmrep.json files
in one too).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from protego import Protego

from pipeline.config import CrawlConfig
from pipeline.crawl.fetch import TRUNCATED, Fetcher, FetchResult, Outcome, retry_delay
from pipeline.crawl.safety import REFUSED_REASONS

T = TypeVar("T")

_ALLOW_ALL_FAILURES = {"too_many_redirects", "redirect_loop"}  # RFC 9309 2.3.1.2


def origin(url: str) -> str:
    """scheme://host[:port] of a URL, lower case (the unit robots.txt applies to)."""
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower().rsplit('@', 1)[-1]}"


def robots_url(url: str) -> str:
    return origin(url) + "/robots.txt"


def fetch_options(cfg: CrawlConfig) -> dict[str, Any]:
    """How robots.txt is fetched: any content type, at most `robots_max_bytes`, a longer file
    cut there rather than refused."""
    return {"content_types": [], "max_bytes": cfg.robots_max_bytes, "truncate": True}


class RobotsState(StrEnum):
    PARSED = "parsed"
    ALLOW_ALL = "allow_all"
    UNREACHABLE = "unreachable"
    REFUSED = "refused"  # the host's address may not be reached: nothing was sent


@dataclass(frozen=True)
class Robots:
    """One origin's robots.txt, as fetched at one time."""

    origin: str
    state: RobotsState
    reason: str = ""  # how it was answered: "200", "http_404", "http_503", "timeout", ...
    parser: Protego | None = None
    retry_in_s: float | None = None  # UNREACHABLE: when to ask again; None: give the host up
    text: str = field(default="", repr=False)  # PARSED: the rules as read (for keeping them)

    def allowed(self, url: str, agents: list[str]) -> bool:
        """True if every agent may fetch `url`; never True while the file is unreachable or
        the host refused."""
        if self.state in (RobotsState.UNREACHABLE, RobotsState.REFUSED):
            return False
        if self.parser is None:
            return True
        return all(self.parser.can_fetch(url, agent) for agent in agents)

    def crawl_delay(self, agents: list[str]) -> float | None:
        """The longest delay any agent's group asks for (Crawl-delay or Request-rate)."""
        if self.parser is None:
            return None
        delays = []
        for agent in agents:
            delays.append(self.parser.crawl_delay(agent))
            rate = self.parser.request_rate(agent)
            if rate and rate.requests:
                delays.append(rate.seconds / rate.requests)
        found = [d for d in delays if d is not None]
        return max(found) if found else None

    @property
    def sitemaps(self) -> list[str]:
        return list(self.parser.sitemaps) if self.parser else []


def robots_state(result: FetchResult) -> RobotsState:
    """What a robots.txt fetch means. NOT_MODIFIED cannot happen (no validators are sent);
    like any other answer that is neither rules nor a 4xx, it allows nothing. A redirect to a
    refused target is UNREACHABLE: the host itself answered."""
    if result.outcome is Outcome.FETCHED:
        return RobotsState.PARSED
    if result.reason in REFUSED_REASONS and not result.exchanges:
        return RobotsState.REFUSED
    if result.outcome is Outcome.FAILED and (
        400 <= (result.status or 0) < 500 or result.reason in _ALLOW_ALL_FAILURES
    ):
        return RobotsState.ALLOW_ALL
    return RobotsState.UNREACHABLE


def parse_robots(url: str, result: FetchResult, attempt: int, cfg: CrawlConfig) -> Robots:
    """The Robots a fetch of `robots_url(url)` stands for; `attempt` counts the fetches of
    this origin's robots.txt that failed in a row, this one included."""
    home, state = origin(url), robots_state(result)
    if state is RobotsState.PARSED:
        return rules(url, _text(result), str(result.status))
    if state in (RobotsState.ALLOW_ALL, RobotsState.REFUSED):
        return Robots(home, state, result.reason or "")
    delay = retry_delay(attempt, result.retry_after_s, cfg)
    return Robots(home, state, result.reason or result.outcome, None, delay)


def rules(url: str, text: str, reason: str = "200") -> Robots:
    """The PARSED Robots of `url`'s origin whose robots.txt reads `text`."""
    return Robots(origin(url), RobotsState.PARSED, reason, Protego.parse(text), text=text)


def _text(result: FetchResult) -> str:
    """The file as text (UTF-8, RFC 9309 2.3); one cut at the size cap loses its last, partial
    line, which could say less than the whole line did (a shorter Allow path allows more)."""
    body = result.body
    if TRUNCATED in result.warnings:
        body = body[: max(body.rfind(b"\n"), body.rfind(b"\r")) + 1]
    return body.decode("utf-8", errors="replace").lstrip("\ufeff")


class OriginCache(Generic[T]):
    """Values per origin that expire; safe to share between threads."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, T]] = {}
        self._lock = threading.Lock()

    def get(self, key: str, now: float | None = None) -> T | None:
        now = time.monotonic() if now is None else now
        with self._lock:
            entry = self._entries.get(key)
        return entry[1] if entry and entry[0] > now else None

    def put(self, key: str, value: T, ttl_s: float, now: float | None = None) -> T:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._entries[key] = (now + ttl_s, value)
        return value


class RobotsCache:
    """robots.txt rules per origin for one crawl; see the module docstring for the protocol."""

    def __init__(self, cfg: CrawlConfig):
        self.cfg = cfg
        self._rules: OriginCache[Robots] = OriginCache()
        self._failures: dict[str, int] = {}
        self._lock = threading.Lock()

    def lookup(self, url: str, now: float | None = None) -> Robots | None:
        """The cached rules for `url`'s origin, or None when robots.txt must be fetched."""
        return self._rules.get(origin(url), now)

    def record(self, url: str, result: FetchResult, now: float | None = None) -> Robots:
        """Store what a fetch of `robots_url(url)` answered, and return it."""
        home = origin(url)
        failed = robots_state(result) is RobotsState.UNREACHABLE
        with self._lock:
            attempt = self._failures.get(home, 0) + 1 if failed else 0
            self._failures[home] = attempt
        robots = parse_robots(url, result, attempt, self.cfg)
        if robots.state is not RobotsState.UNREACHABLE or robots.retry_in_s is None:
            ttl = self.cfg.robots_ttl_s  # rules, or a host given up for this crawl
        else:
            ttl = robots.retry_in_s
        return self._rules.put(home, robots, ttl, now)

    def restore(self, url: str, text: str, age_s: float, now: float | None = None) -> Robots:
        """Rules an earlier crawl run read `age_s` seconds ago (`Robots.text`), cached for what
        is left of their `robots_ttl_s`."""
        ttl = max(self.cfg.robots_ttl_s - age_s, 0.001)
        return self._rules.put(origin(url), rules(url, text), ttl, now)

    def fetch(self, fetcher: Fetcher, url: str) -> Robots:
        """The rules for `url`'s origin, fetching robots.txt if they are not cached. The
        caller keeps to one request in flight per host, so two threads never race here."""
        cached = self.lookup(url)
        if cached is not None:
            return cached
        return self.record(url, fetcher.fetch(robots_url(url), **fetch_options(self.cfg)))
