"""The frontier: a crawl's state in SQLite, kept across crawl runs (generations).

One row per URL, keyed by its normalized form (pipeline/crawl/urls.py), so a page is fetched
once. A URL's life:

    add -> queued --claim--> in_flight --mark_fetched--> fetched | not_modified (a 304)
                                       --mark_failed---> queued again after `retry_in` (a
                                                         transient failure, until `max_attempts`)
                                                         | failed (permanent)
                                       --mark_skipped--> skipped (robots, consent, ...)
                                       --release-------> queued (host unavailable: no attempt)

A fetch that was redirected records its target too, as `fetched` with reason `redirect` (when
the target was not known, or only queued), so the page it reached is not fetched again.

Hosts (`host[:port]`) are scheduled in memory: when the next request may start (`delay_s`
after the last start, or later when deferred) and how many requests are in flight (at most
`per_host`). `claim` picks a ready URL of a ready host, so the crawl loop only has to call it.
The hosts table is the durable record of each host's next start, delay and page budget; it is
written in the transactions that add URLs and finish them, not on every change. Page budgets
(`max_pages`, `max_pages_per_host`) count the URLs admitted to the queue in the current
generation; URLs beyond them are recorded as skipped (`max_pages`, `max_pages_per_host`) and
queued again by the next generation.

A host whose delay is longer than `max_delay_s` (a robots.txt Crawl-delay beyond
`crawl.max_crawl_delay_s`) is not waited for: once its next start is further off than that, its
queued URLs are recorded as skipped (`crawl_delay`) and queued again by the next generation,
which keeps that host's next start. So such a host gets one request per `delay_s`, across
generations, and a crawl run never waits longer than `max_delay_s` for it. The robots.txt and
tdmrep.json such a host answered are kept (`keep_file`), so that its next request can go to a
page. No host waits longer than `LONGEST_DELAY_S` (a day), however long it asks for: that keeps
every time finite, and a frontier written with a farther one is brought back within it on
opening.

A generation is one crawl run. `start_generation` makes every URL fetched before due again,
keeping its ETag / Last-Modified for a conditional request; URLs known in any state are never
queued twice by `add`. Each fetch records where its WARC records are, and the end of the last
committed record of each WARC file, in the same transaction as its state: after a kill, the
WARC writer cuts each file back to that end (pipeline/crawl/warcwriter.py), and opening the
frontier puts the URLs that were in flight back in the queue.

Thread-safe: one connection and the in-memory state behind one lock; every state change is one
transaction (claim, add and each outcome: one each), and the memory follows only once it has
committed. One process writes a frontier at a time (the workspace lock), so the memory is
loaded once, on opening. WAL journal with synchronous=NORMAL: a killed process loses nothing
committed; a power cut may lose the last commits, which only makes the WARC writer cut a little
more and the crawl refetch those URLs. Claiming scans the hosts that have queued URLs, which is
cheap for the thousands of hosts one crawl run usually has waiting.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.crash import crash_point
from pipeline.crawl.urls import host_key
from pipeline.crawl.warcwriter import WarcLocation

STATES = ("queued", "in_flight", "fetched", "failed", "skipped", "not_modified")
BUDGET_REASONS = ("max_pages", "max_pages_per_host")
CRAWL_DELAY = "crawl_delay"  # skipped: the host's delay is longer than max_delay_s
REQUEUED_REASONS = (*BUDGET_REASONS, CRAWL_DELAY)  # skipped, queued again by the next generation
# The longest a host waits between two requests, whatever it asks for: a robots.txt, and the
# Crawl-delay in it, is read again after 24 h at most (RFC 9309 2.4), and a time much farther
# off (Crawl-delay: 1e12) overflows the waits of the crawl loop (threading's TIMEOUT_MAX).
LONGEST_DELAY_S = 86400.0
REDIRECT = "redirect"  # the reason of a URL fetched as the target of another one's redirect

_SCHEMA = """
CREATE TABLE IF NOT EXISTS urls (
    url TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    depth INTEGER NOT NULL,
    source TEXT NOT NULL,
    discovered_at TEXT NOT NULL,
    discovered_from TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    retry_at REAL NOT NULL DEFAULT 0,       -- unix time; queued URLs wait until then
    status INTEGER,
    warc_file TEXT,
    warc_offset INTEGER,
    warc_length INTEGER,
    payload_digest TEXT,
    etag TEXT,
    last_modified TEXT,
    fetched_at TEXT,
    generation TEXT,                        -- the generation its current state belongs to
    metadata TEXT                           -- JSON: what a source knew before fetching
);
CREATE INDEX IF NOT EXISTS urls_by_host ON urls (host, state, retry_at);
CREATE INDEX IF NOT EXISTS urls_by_state ON urls (state, reason);
CREATE TABLE IF NOT EXISTS hosts (
    host TEXT PRIMARY KEY,
    next_at REAL NOT NULL DEFAULT 0,        -- unix time the next request may start
    delay_s REAL NOT NULL,                  -- between the starts of two requests
    admitted INTEGER NOT NULL DEFAULT 0     -- URLs queued in the current generation
);
CREATE TABLE IF NOT EXISTS generations (
    name TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    finished_at TEXT
);
CREATE TABLE IF NOT EXISTS kept_files (
    url TEXT PRIMARY KEY,                   -- a robots.txt or tdmrep.json (see keep_file)
    fetched_at REAL NOT NULL,               -- unix time
    text TEXT                               -- NULL: the host has none
);
CREATE TABLE IF NOT EXISTS warc_files (
    generation TEXT NOT NULL,
    file TEXT NOT NULL,
    committed_end INTEGER NOT NULL,         -- bytes: the end of the last committed record
    PRIMARY KEY (generation, file)
);
PRAGMA user_version = 1;
"""

# The first queued URL of a host, shallow ones first, then in the order found: now in flight.
_CLAIM = (
    "UPDATE urls SET state = 'in_flight' WHERE url = ("
    " SELECT url FROM urls WHERE host = ? AND state = 'queued' AND retry_at <= ?"
    " ORDER BY depth, rowid LIMIT 1) RETURNING *"
)
_SAVE_HOST = (
    "INSERT INTO hosts (host, next_at, delay_s, admitted) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (host) DO UPDATE SET next_at = excluded.next_at,"
    " delay_s = excluded.delay_s, admitted = excluded.admitted"
)


@dataclass(frozen=True)
class NewUrl:
    """A URL found by a source or in a page. `url` must be normalized. With `skip` (a reason),
    it is recorded as skipped without being fetched (e.g. out of scope, a crawler trap)."""

    url: str
    depth: int = 0
    source: str = ""
    discovered_from: str | None = None
    metadata: dict[str, Any] | None = None
    skip: str | None = None


@dataclass(frozen=True)
class Claim:
    """A URL handed to a worker: fetch it, then mark it. Validators and digest come from an
    earlier generation's fetch (for a conditional request and a revisit record)."""

    url: str
    host: str
    depth: int
    source: str
    attempts: int
    discovered_from: str | None
    metadata: dict[str, Any] | None
    etag: str | None
    last_modified: str | None
    payload_digest: str | None
    fetched_at: str | None


@dataclass
class _Host:
    """A host's scheduling state in memory (next_at, delay_s and admitted are also stored)."""

    delay_s: float
    next_at: float = 0.0  # unix time the next request may start
    admitted: int = 0  # URLs queued in the current generation (the page budget)
    queued: int = 0  # URLs queued now
    ready_at: float = 0.0  # no queued URL may be retried before: a lower bound
    in_flight: int = 0


class FrontierError(RuntimeError):
    """The frontier file cannot be used, or an operation does not fit a URL's state."""


class Frontier:
    def __init__(
        self,
        path: str | Path,
        *,
        delay_s: float = 1.0,
        per_host: int = 1,
        max_attempts: int = 3,
        max_pages: int | None = None,
        max_pages_per_host: int | None = None,
        max_delay_s: float | None = None,
    ):
        """Open (or create) the frontier at `path` and queue again what was in flight.
        Defaults: 1 s between two requests to a host and one request at a time per host (the
        conventions polite crawlers follow when robots.txt gives no Crawl-delay); 3 attempts
        per URL; no page budgets; every host waited for, whatever its delay (`max_delay_s`:
        see the module docstring)."""
        self.path = Path(path)
        self.max_delay_s = max_delay_s
        self.delay_s = delay_s
        self.per_host = per_host
        self.max_attempts = max_attempts
        self.max_pages = max_pages
        self.max_pages_per_host = max_pages_per_host
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise FrontierError(
                f"frontier {self.path}: not a usable SQLite database: {exc}"
            ) from exc
        self._hosts: dict[str, _Host] = {}
        self._in_flight: dict[str, str] = {}  # URL -> host
        self._queued = 0  # URLs queued, all hosts together
        self._waiting: set[str] = set()  # the hosts with queued URLs: those claim looks at
        self._generation: str | None = None
        with self._lock:
            with self._transaction() as db:
                self.requeued_in_flight = db.execute(
                    "UPDATE urls SET state = 'queued', retry_at = 0 WHERE state = 'in_flight'"
                ).rowcount
                # a frontier written before there was a longest delay
                db.execute(
                    "UPDATE hosts SET delay_s = MIN(delay_s, ?), next_at = MIN(next_at, ?)",
                    (LONGEST_DELAY_S, time.time() + LONGEST_DELAY_S),
                )
            self._load()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Frontier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One transaction; the caller holds the lock."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
            crash_point("frontier.commit")  # a kill here must roll the whole change back
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, tuple(params)).fetchall()

    def _load(self) -> None:
        """The in-memory state from the tables (nothing is in flight)."""
        db = self._db
        row = db.execute("SELECT name FROM generations ORDER BY rowid DESC LIMIT 1").fetchone()
        self._generation = row[0] if row else None
        self._hosts = {
            host: _Host(delay_s, next_at, admitted)
            for host, next_at, delay_s, admitted in db.execute(
                "SELECT host, next_at, delay_s, admitted FROM hosts"
            )
        }
        self._queued, self._waiting = 0, set()
        for host, queued, ready_at in db.execute(
            "SELECT host, COUNT(*), MIN(retry_at) FROM urls WHERE state = 'queued' GROUP BY host"
        ):
            self._host(host).ready_at = ready_at
            self._count_queued(host, queued)

    def _host(self, host: str) -> _Host:
        state = self._hosts.get(host)
        if state is None:
            state = self._hosts[host] = _Host(self.delay_s)
        return state

    def _save_host(self, db: sqlite3.Connection, host: str, state: _Host) -> None:
        db.execute(_SAVE_HOST, (host, state.next_at, state.delay_s, state.admitted))

    # ----- generations -----

    @property
    def generation(self) -> str | None:
        """The current (latest started) generation."""
        return self._generation

    def generation_finished(self, name: str) -> bool:
        rows = self._query("SELECT finished_at FROM generations WHERE name = ?", (name,))
        return bool(rows and rows[0]["finished_at"])

    def start_generation(self, name: str) -> int:
        """Make `name` the current generation and return how many URLs it re-queued. Starting
        the current unfinished generation again (a resumed crawl) changes nothing. Otherwise
        every URL fetched (or found not modified) before is queued again with its validators,
        so it is fetched with a conditional request; URLs skipped for a page budget are queued
        again as far as the budgets allow, and so are those set aside for a host's delay
        (`crawl_delay`); URLs still queued move to the new generation. Hosts may be asked at
        once, except those whose delay is longer than `max_delay_s`: they keep their next
        start."""
        if self.generation == name and not self.generation_finished(name):
            return 0
        with self._lock:
            with self._transaction() as db:
                if db.execute("SELECT 1 FROM generations WHERE name = ?", (name,)).fetchone():
                    raise FrontierError(f"frontier {self.path}: generation {name!r} already exists")
                db.execute(
                    "INSERT INTO generations (name, started_at) VALUES (?, ?)", (name, _now())
                )
                due = db.execute(
                    "UPDATE urls SET state = 'queued', reason = NULL, attempts = 0, retry_at = 0,"
                    " generation = ? WHERE state IN ('fetched', 'not_modified')",
                    (name,),
                ).rowcount
                db.execute("UPDATE urls SET generation = ? WHERE state = 'queued'", (name,))
                db.execute(
                    "UPDATE hosts SET next_at = CASE WHEN delay_s > ? THEN next_at ELSE 0 END,"
                    " admitted = (SELECT COUNT(*) FROM urls"
                    " WHERE urls.host = hosts.host AND urls.state = 'queued')",
                    (LONGEST_DELAY_S if self.max_delay_s is None else self.max_delay_s,),
                )
                due += self._readmit(db, name)
            self._load()
        return due

    def _readmit(self, db: sqlite3.Connection, generation: str) -> int:
        """Queue URLs skipped for a page budget or a host's delay again, in the order found,
        within the budgets."""
        admitted = dict(db.execute("SELECT host, admitted FROM hosts").fetchall())
        total = sum(admitted.values())
        readmitted = 0
        waiting = db.execute(
            "SELECT url, host FROM urls WHERE state = 'skipped' AND reason IN"
            f" ({', '.join('?' * len(REQUEUED_REASONS))}) ORDER BY rowid",
            REQUEUED_REASONS,
        ).fetchall()
        for url, host in waiting:
            reason = self._over_budget(admitted.get(host, 0), total)
            db.execute(
                "UPDATE urls SET state = ?, reason = ?, generation = ? WHERE url = ?",
                ("skipped" if reason else "queued", reason, generation, url),
            )
            if not reason:
                db.execute("UPDATE hosts SET admitted = admitted + 1 WHERE host = ?", (host,))
                admitted[host] = admitted.get(host, 0) + 1
                total += 1
                readmitted += 1
        return readmitted

    def finish_generation(self) -> None:
        name = self._require_generation("finish_generation")
        with self._lock, self._transaction() as db:
            db.execute("UPDATE generations SET finished_at = ? WHERE name = ?", (_now(), name))

    def _require_generation(self, operation: str) -> str:
        name = self.generation
        if name is None:
            raise FrontierError(
                f"frontier {self.path}: {operation} needs a generation: call start_generation"
            )
        return name

    # ----- adding URLs -----

    def add(self, items: Iterable[NewUrl]) -> int:
        """Record URLs not seen before (in any state, in any generation); return how many were
        queued. Known URLs are left as they are."""
        generation = self._require_generation("add")
        with self._lock:
            # newly queued per host, applied to memory once committed: a failed add changes nothing
            queued: dict[str, int] = {}
            total = (
                sum(s.admitted for s in self._hosts.values()) if self.max_pages is not None else 0
            )
            with self._transaction() as db:
                for item in items:
                    host = host_key(item.url)
                    admitted = self._admitted(host) + queued.get(host, 0)
                    reason = item.skip or self._over_budget(admitted, total)
                    inserted = db.execute(
                        "INSERT INTO urls (url, host, state, reason, depth, source,"
                        " discovered_at, discovered_from, generation, metadata)"
                        " VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (url) DO NOTHING",
                        (
                            item.url,
                            host,
                            "skipped" if reason else "queued",
                            reason,
                            item.depth,
                            item.source,
                            _now(),
                            item.discovered_from,
                            generation,
                            _metadata_json(item),
                        ),
                    ).rowcount
                    if inserted and not reason:
                        queued[host] = queued.get(host, 0) + 1
                        total += 1
                for host, count in queued.items():
                    state = self._hosts.get(host) or _Host(self.delay_s)
                    db.execute(
                        _SAVE_HOST, (host, state.next_at, state.delay_s, state.admitted + count)
                    )
            for host, count in queued.items():
                state = self._host(host)
                state.admitted += count
                state.ready_at = 0.0  # the new URLs are ready now
                self._count_queued(host, count)
        return sum(queued.values())

    def _admitted(self, host: str) -> int:
        state = self._hosts.get(host)
        return state.admitted if state else 0

    def _over_budget(self, admitted: int, total: int) -> str | None:
        """Why one more URL of a host with `admitted` URLs may not be queued, if it may not."""
        if self.max_pages is not None and total >= self.max_pages:
            return "max_pages"
        if self.max_pages_per_host is not None and admitted >= self.max_pages_per_host:
            return "max_pages_per_host"
        return None

    # ----- handing out work -----

    def claim(self, now: float | None = None) -> Claim | None:
        """The next URL to fetch, now in flight, or None if no host is ready. Hosts whose next
        start time came first go first; within a host, shallow URLs first, then in the order
        found. The host's next start moves `delay_s` ahead. Hosts beyond `max_delay_s` are set
        aside first (module docstring)."""
        now = time.time() if now is None else now
        with self._lock:
            self._set_aside_slow_hosts(now)
            while (host := self._ready_host(now)) is not None:
                state = self._hosts[host]
                with self._transaction() as db:
                    rows = db.execute(_CLAIM, (host, now)).fetchall()
                if rows:
                    break
                # every queued URL of the host waits for a retry: learn until when (> now)
                state.ready_at = self._db.execute(
                    "SELECT MIN(retry_at) FROM urls WHERE host = ? AND state = 'queued'", (host,)
                ).fetchone()[0]
            else:
                return None
            row = rows[0]
            self._count_queued(host, -1)
            state.in_flight += 1
            state.next_at = now + state.delay_s
            self._in_flight[row["url"]] = host
        return Claim(
            url=row["url"],
            host=row["host"],
            depth=row["depth"],
            source=row["source"],
            attempts=row["attempts"],
            discovered_from=row["discovered_from"],
            metadata=json.loads(row["metadata"]) if row["metadata"] else None,
            etag=row["etag"],
            last_modified=row["last_modified"],
            payload_digest=row["payload_digest"],
            fetched_at=row["fetched_at"],
        )

    def _set_aside_slow_hosts(self, now: float) -> None:
        """Skip (`crawl_delay`) the queued URLs of hosts whose delay is longer than
        `max_delay_s` and whose next start is further off than that: the next generation
        queues them again. The caller holds the lock."""
        limit = self.max_delay_s
        if limit is None:
            return
        slow = [
            host
            for host in self._waiting
            if self._hosts[host].delay_s > limit and self._hosts[host].next_at - now > limit
        ]
        if not slow:
            return
        with self._transaction() as db:
            set_aside = {
                host: db.execute(
                    "UPDATE urls SET state = 'skipped', reason = ?, generation = ?"
                    " WHERE host = ? AND state = 'queued'",
                    (CRAWL_DELAY, self._generation, host),
                ).rowcount
                for host in slow
            }
        for host, count in set_aside.items():
            self._count_queued(host, -count)

    def _ready_host(self, now: float) -> str | None:
        """The ready host whose next start came first."""
        best, best_at = None, now
        for host in self._waiting:
            state = self._hosts[host]
            ready = state.in_flight < self.per_host and state.ready_at <= now
            if ready and state.next_at <= best_at:
                best, best_at = host, state.next_at
        return best

    def next_ready_at(self) -> float | None:
        """The earliest time `claim` could return a URL if nothing else changes; None when no
        URL is queued for a host with a free slot (the crawl is done once nothing is in flight
        either)."""
        with self._lock:
            return min(
                (
                    max(state.next_at, state.ready_at)
                    for state in map(self._hosts.__getitem__, self._waiting)
                    if state.in_flight < self.per_host
                ),
                default=None,
            )

    def set_host_delay(self, host: str, delay_s: float) -> None:
        """The gap between two request starts to `host` (e.g. robots.txt's Crawl-delay), at
        most `LONGEST_DELAY_S`."""
        with self._lock:
            self._host(host).delay_s = min(delay_s, LONGEST_DELAY_S)

    def delay(self, host: str) -> float:
        """The gap between two request starts to `host`."""
        with self._lock:
            return self._host(host).delay_s

    def defer_host(self, host: str, seconds: float, now: float | None = None) -> None:
        """No request to `host` before `seconds` from now (backoff, or a request made outside
        the frontier such as robots.txt), `LONGEST_DELAY_S` at most."""
        until = (time.time() if now is None else now) + min(seconds, LONGEST_DELAY_S)
        with self._lock:
            state = self._host(host)
            state.next_at = max(state.next_at, until)

    # ----- outcomes -----

    def mark_fetched(
        self,
        url: str,
        status: int,
        stored: WarcLocation | None,
        *,
        payload_digest: str | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
        redirected_to: str | None = None,
    ) -> None:
        """A response was recorded (at `stored`): state `fetched`, or `not_modified` for a 304,
        which keeps the earlier validators and digest unless it sent new ones. A fetch that was
        redirected names the (normalized) URL it reached in `redirected_to`: that URL is
        recorded as fetched (reason `redirect`) unless it is known in another state than
        queued."""
        not_modified = status == 304
        with self._lock:
            host = self._require_in_flight(url)
            with self._transaction() as db:
                self._finish(db, url, host, stored)
                db.execute(
                    "UPDATE urls SET state = ?, reason = NULL, status = ?, retry_at = 0,"
                    " fetched_at = ?, generation = ?,"
                    " payload_digest = CASE WHEN ? THEN COALESCE(?, payload_digest) ELSE ? END,"
                    " etag = CASE WHEN ? THEN COALESCE(?, etag) ELSE ? END,"
                    " last_modified = CASE WHEN ? THEN COALESCE(?, last_modified) ELSE ? END"
                    " WHERE url = ?",
                    (
                        "not_modified" if not_modified else "fetched",
                        status,
                        _now(),
                        self._generation,
                        not_modified,
                        payload_digest,
                        payload_digest,
                        not_modified,
                        etag,
                        etag,
                        not_modified,
                        last_modified,
                        last_modified,
                        url,
                    ),
                )
                target_was_queued = redirected_to is not None and self._record_redirect(
                    db, url, redirected_to
                )
            self._finished(url, host)
            if target_was_queued:
                self._count_queued(host_key(redirected_to), -1)

    def _record_redirect(self, db: sqlite3.Connection, source: str, target: str) -> bool:
        """Record `target`, reached by redirect from `source` (whose row is up to date), as
        fetched; return whether it was queued."""
        if target == source or target in self._in_flight:
            return False
        row = db.execute("SELECT state FROM urls WHERE url = ?", (target,)).fetchone()
        if row is not None and row["state"] != "queued":
            return False
        db.execute(
            "INSERT INTO urls (url, host, state, reason, depth, source, discovered_at,"
            " discovered_from, status, warc_file, warc_offset, warc_length, payload_digest,"
            " etag, last_modified, fetched_at, generation)"
            " SELECT ?, ?, 'fetched', ?, depth, source, ?, url, status, warc_file,"
            " warc_offset, warc_length, payload_digest, etag, last_modified, fetched_at,"
            " generation FROM urls WHERE url = ?"
            " ON CONFLICT (url) DO UPDATE SET state = 'fetched', reason = excluded.reason,"
            " status = excluded.status, warc_file = excluded.warc_file,"
            " warc_offset = excluded.warc_offset, warc_length = excluded.warc_length,"
            " payload_digest = excluded.payload_digest, etag = excluded.etag,"
            " last_modified = excluded.last_modified, fetched_at = excluded.fetched_at,"
            " generation = excluded.generation",
            (target, host_key(target), REDIRECT, _now(), source),
        )
        return row is not None

    def mark_failed(
        self,
        url: str,
        reason: str,
        *,
        retry_in: float | None = None,
        status: int | None = None,
        stored: WarcLocation | None = None,
        now: float | None = None,
    ) -> str:
        """A failed attempt. With `retry_in` (seconds: a transient failure) the URL is queued
        again for then, unless this was attempt `max_attempts`; without it, or after the last
        attempt, it is `failed` with `reason`. A response that was recorded (e.g. a 404) gives
        its `stored` location. Returns the new state."""
        retry_at = (time.time() if now is None else now) + (retry_in or 0)
        with self._lock:
            host = self._require_in_flight(url)
            with self._transaction() as db:
                self._finish(db, url, host, stored)
                # SET expressions read the old row: `attempts + 1` is this attempt's number
                (state,) = db.execute(
                    "UPDATE urls SET attempts = attempts + 1,"
                    " state = CASE WHEN ? AND attempts + 1 < ? THEN 'queued' ELSE 'failed' END,"
                    " reason = ?, retry_at = ?, status = ?, generation = ? WHERE url = ?"
                    " RETURNING state",
                    (
                        retry_in is not None,
                        self.max_attempts,
                        reason,
                        retry_at,
                        status,
                        self._generation,
                        url,
                    ),
                ).fetchone()
            self._finished(url, host)
            if state == "queued":
                self._requeued(host, retry_at)
        return state

    def mark_skipped(self, url: str, reason: str) -> None:
        """Not to be fetched (robots.txt, an opt-out, a budget): `skipped` with `reason`. The
        URL is in flight, or still queued."""
        with self._lock:
            host = self._in_flight.get(url)
            with self._transaction() as db:
                changed = db.execute(
                    "UPDATE urls SET state = 'skipped', reason = ?, generation = ?"
                    " WHERE url = ? AND state = ?",
                    (reason, self._generation, url, "queued" if host is None else "in_flight"),
                ).rowcount
                if not changed:
                    raise self._not_in_flight(url)
                if host is not None:
                    self._save_host(db, host, self._hosts[host])
            if host is not None:
                self._finished(url, host)
            else:
                self._count_queued(host_key(url), -1)

    def release(self, url: str, retry_at: float = 0.0) -> None:
        """Back to the queue without counting an attempt (its host could not be tried now,
        e.g. robots.txt answered 5xx)."""
        with self._lock:
            host = self._require_in_flight(url)
            with self._transaction() as db:
                self._finish(db, url, host, None)
                db.execute(
                    "UPDATE urls SET state = 'queued', retry_at = ? WHERE url = ?", (retry_at, url)
                )
            self._finished(url, host)
            self._requeued(host, retry_at)

    def _require_in_flight(self, url: str) -> str:
        """The host of `url`, which must be in flight."""
        host = self._in_flight.get(url)
        if host is None:
            raise self._not_in_flight(url)
        return host

    def _not_in_flight(self, url: str) -> FrontierError:
        row = self._db.execute("SELECT state FROM urls WHERE url = ?", (url,)).fetchone()
        state = row["state"] if row else "unknown"
        return FrontierError(f"frontier {self.path}: {url} is {state}, not in flight")

    def _finish(
        self, db: sqlite3.Connection, url: str, host: str, stored: WarcLocation | None
    ) -> None:
        """What every outcome of a fetch stores besides the URL's state: the host's schedule
        (its next start, as the fetch left it) and where the records are (with the WARC file's
        new committed end)."""
        self._save_host(db, host, self._hosts[host])
        if stored is None:
            return
        db.execute(
            "UPDATE urls SET warc_file = ?, warc_offset = ?, warc_length = ? WHERE url = ?",
            (stored.file, stored.offset, stored.length, url),
        )
        db.execute(
            "INSERT INTO warc_files (generation, file, committed_end) VALUES (?, ?, ?)"
            " ON CONFLICT DO UPDATE SET committed_end = MAX(committed_end, excluded.committed_end)",
            (self._generation, stored.file, stored.end),
        )

    def _finished(self, url: str, host: str) -> None:
        """Memory, once committed: the URL is no longer in flight, its host has a free slot."""
        del self._in_flight[url]
        self._hosts[host].in_flight -= 1

    def _count_queued(self, host: str, change: int) -> None:
        state = self._hosts[host]
        state.queued += change
        self._queued += change
        if state.queued:
            self._waiting.add(host)
        else:
            self._waiting.discard(host)

    def _requeued(self, host: str, retry_at: float) -> None:
        state = self._hosts[host]
        state.ready_at = min(state.ready_at, retry_at)
        self._count_queued(host, 1)

    # ----- files kept for slow hosts -----

    def keep_file(self, url: str, text: str | None, fetched_at: float) -> None:
        """Keep the robots.txt or tdmrep.json at `url` as fetched at `fetched_at` (its text;
        None: there is none) for the next generations: a host beyond `max_delay_s` gets one
        request per generation, which must not go to those files every time."""
        with self._lock, self._transaction() as db:
            db.execute(
                "INSERT INTO kept_files (url, fetched_at, text) VALUES (?, ?, ?)"
                " ON CONFLICT (url) DO UPDATE SET fetched_at = excluded.fetched_at,"
                " text = excluded.text",
                (url, fetched_at, text),
            )

    def kept_file(self, url: str) -> tuple[str | None, float] | None:
        """(text, fetched_at) of a file `keep_file` kept, or None."""
        rows = self._query("SELECT text, fetched_at FROM kept_files WHERE url = ?", (url,))
        return (rows[0]["text"], rows[0]["fetched_at"]) if rows else None

    # ----- reading -----

    def warc_ends(self, generation: str | None = None) -> dict[str, int]:
        """File name -> end of its last committed record, for the WARC writer to cut back to."""
        generation = generation or self.generation
        rows = self._query(
            "SELECT file, committed_end FROM warc_files WHERE generation = ?", (generation,)
        )
        return {row["file"]: row["committed_end"] for row in rows}

    def get(self, url: str) -> dict[str, Any] | None:
        """The URL's row, with `metadata` parsed; None if unknown."""
        rows = self._query("SELECT * FROM urls WHERE url = ?", (url,))
        if not rows:
            return None
        row = dict(rows[0])
        row["metadata"] = json.loads(row["metadata"]) if row["metadata"] else None
        return row

    def urls(self, state: str | None = None) -> list[str]:
        if state is not None and state not in STATES:
            raise ValueError(f"unknown state {state!r}; states are {', '.join(STATES)}")
        if state is None:
            return [r[0] for r in self._query("SELECT url FROM urls ORDER BY rowid")]
        return [r[0] for r in self._query("SELECT url FROM urls WHERE state = ?", (state,))]

    def counts(self, generation: str | None = None) -> dict[str, int]:
        """URLs per state; with `generation`, only those whose state that generation set."""
        where, params = _in_generation(generation)
        return dict(self._query(f"SELECT state, COUNT(*) FROM urls {where} GROUP BY state", params))

    def reasons(self, generation: str | None = None) -> dict[tuple[str, str], int]:
        """URLs per (state, reason), for the states that have reasons (`generation` as in
        `counts`)."""
        where, params = _in_generation(generation)
        rows = self._query(
            f"SELECT state, reason, COUNT(*) FROM urls {where}"
            f" {'AND' if where else 'WHERE'} reason IS NOT NULL GROUP BY state, reason",
            params,
        )
        return {(state, reason): n for state, reason, n in rows}

    def pending(self) -> int:
        """URLs queued or in flight: the crawl is over when this is 0."""
        with self._lock:
            return self._queued + len(self._in_flight)


def _in_generation(generation: str | None) -> tuple[str, tuple[str, ...]]:
    return ("WHERE generation = ?", (generation,)) if generation else ("", ())


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _metadata_json(item: NewUrl) -> str | None:
    if item.metadata is None:
        return None
    try:
        return json.dumps(item.metadata, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metadata of {item.url} is not JSON-serializable: {exc}") from exc
