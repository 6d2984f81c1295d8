"""The frontier: a crawl's state in SQLite, kept across crawl runs (generations).

One row per URL, keyed by its normalized form (pipeline/crawl/urls.py), so a page is fetched
once. A URL's life:

    add -> queued --claim--> in_flight --mark_fetched--> fetched | not_modified (a 304)
                                       --mark_failed---> queued again after `retry_in` (a
                                                         transient failure, until `max_attempts`)
                                                         | failed (permanent)
                                       --mark_skipped--> skipped (robots, consent, ...)
                                       --release-------> queued (host unavailable: no attempt)

Hosts (`host[:port]`) have a row too: when the next request may start (`delay_s` after the
last start, or later when deferred), and how many requests are in flight (at most `per_host`).
`claim` picks a ready URL of a ready host, so the crawl loop only has to call it from its
workers. Page budgets (`max_pages`, `max_pages_per_host`) count the URLs admitted to the queue
in the current generation; URLs beyond them are recorded as skipped (`max_pages`,
`max_pages_per_host`) and queued again by the next generation.

A generation is one crawl run. `start_generation` makes every URL fetched before due again,
keeping its ETag / Last-Modified for a conditional request; URLs known in any state are never
queued twice by `add`. Each fetch records where its WARC records are, and the end of the last
committed record of each WARC file, in the same transaction as its state: after a kill, the
WARC writer cuts each file back to that end (pipeline/crawl/warcwriter.py), and opening the
frontier puts the URLs that were in flight back in the queue.

Thread-safe: one connection behind a lock (SQLite writes one transaction at a time anyway);
every state change is one transaction. WAL journal with synchronous=NORMAL: a killed process
loses nothing committed; a power cut may lose the last commits, which only makes the WARC
writer cut a little more and the crawl refetch those URLs.
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
    in_flight INTEGER NOT NULL DEFAULT 0,
    admitted INTEGER NOT NULL DEFAULT 0     -- URLs queued in the current generation
);
CREATE TABLE IF NOT EXISTS generations (
    name TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    finished_at TEXT
);
CREATE TABLE IF NOT EXISTS warc_files (
    generation TEXT NOT NULL,
    file TEXT NOT NULL,
    committed_end INTEGER NOT NULL,         -- bytes: the end of the last committed record
    PRIMARY KEY (generation, file)
);
PRAGMA user_version = 1;
"""


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
    ):
        """Open (or create) the frontier at `path` and queue again what was in flight.
        Defaults: 1 s between two requests to a host and one request at a time per host (the
        conventions polite crawlers follow when robots.txt gives no Crawl-delay); 3 attempts
        per URL; no page budgets."""
        self.path = Path(path)
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
        self.requeued_in_flight = self._requeue_in_flight()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Frontier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
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

    def _requeue_in_flight(self) -> int:
        with self._transaction() as db:
            count = db.execute(
                "UPDATE urls SET state = 'queued', retry_at = 0 WHERE state = 'in_flight'"
            ).rowcount
            db.execute("UPDATE hosts SET in_flight = 0")
        return count

    # ----- generations -----

    @property
    def generation(self) -> str | None:
        """The current (latest started) generation."""
        rows = self._query("SELECT name FROM generations ORDER BY rowid DESC LIMIT 1")
        return rows[0]["name"] if rows else None

    def generation_finished(self, name: str) -> bool:
        rows = self._query("SELECT finished_at FROM generations WHERE name = ?", (name,))
        return bool(rows and rows[0]["finished_at"])

    def start_generation(self, name: str) -> int:
        """Make `name` the current generation and return how many URLs it re-queued. Starting
        the current unfinished generation again (a resumed crawl) changes nothing. Otherwise
        every URL fetched (or found not modified) before is queued again with its validators,
        so it is fetched with a conditional request; URLs skipped for a page budget are queued
        again as far as the budgets allow; URLs still queued move to the new generation."""
        if self.generation == name and not self.generation_finished(name):
            return 0
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM generations WHERE name = ?", (name,)).fetchone():
                raise FrontierError(f"frontier {self.path}: generation {name!r} already exists")
            db.execute("INSERT INTO generations (name, started_at) VALUES (?, ?)", (name, _now()))
            due = db.execute(
                "UPDATE urls SET state = 'queued', reason = NULL, attempts = 0, retry_at = 0,"
                " generation = ? WHERE state IN ('fetched', 'not_modified')",
                (name,),
            ).rowcount
            db.execute("UPDATE urls SET generation = ? WHERE state = 'queued'", (name,))
            db.execute(
                "UPDATE hosts SET next_at = 0, admitted = (SELECT COUNT(*) FROM urls"
                " WHERE urls.host = hosts.host AND urls.state = 'queued')"
            )
            due += self._readmit(db, name)
        return due

    def _readmit(self, db: sqlite3.Connection, generation: str) -> int:
        """Queue URLs skipped for a page budget again, in the order found, within the budgets."""
        total = db.execute("SELECT COALESCE(SUM(admitted), 0) FROM hosts").fetchone()[0]
        readmitted = 0
        waiting = db.execute(
            "SELECT url, host FROM urls WHERE state = 'skipped' AND reason IN (?, ?)"
            " ORDER BY rowid",
            BUDGET_REASONS,
        ).fetchall()
        for url, host in waiting:
            reason = self._over_budget(db, host, total)
            db.execute(
                "UPDATE urls SET state = ?, reason = ?, generation = ? WHERE url = ?",
                ("skipped" if reason else "queued", reason, generation, url),
            )
            if not reason:
                db.execute("UPDATE hosts SET admitted = admitted + 1 WHERE host = ?", (host,))
                total += 1
                readmitted += 1
        return readmitted

    def finish_generation(self) -> None:
        name = self._require_generation("finish_generation")
        with self._transaction() as db:
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
        queued = 0
        with self._transaction() as db:
            total = db.execute("SELECT COALESCE(SUM(admitted), 0) FROM hosts").fetchone()[0]
            for item in items:
                if db.execute("SELECT 1 FROM urls WHERE url = ?", (item.url,)).fetchone():
                    continue
                host = host_key(item.url)
                db.execute(
                    "INSERT OR IGNORE INTO hosts (host, delay_s) VALUES (?, ?)",
                    (host, self.delay_s),
                )
                reason = item.skip or self._over_budget(db, host, total)
                db.execute(
                    "INSERT INTO urls (url, host, state, reason, depth, source, discovered_at,"
                    " discovered_from, generation, metadata) VALUES (?,?,?,?,?,?,?,?,?,?)",
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
                )
                if not reason:
                    db.execute("UPDATE hosts SET admitted = admitted + 1 WHERE host = ?", (host,))
                    total += 1
                    queued += 1
        return queued

    def _over_budget(self, db: sqlite3.Connection, host: str, total: int) -> str | None:
        if self.max_pages is not None and total >= self.max_pages:
            return "max_pages"
        if self.max_pages_per_host is not None:
            admitted = db.execute("SELECT admitted FROM hosts WHERE host = ?", (host,)).fetchone()
            if admitted[0] >= self.max_pages_per_host:
                return "max_pages_per_host"
        return None

    # ----- handing out work -----

    def claim(self, now: float | None = None) -> Claim | None:
        """The next URL to fetch, now in flight, or None if no host is ready. Hosts whose next
        start time came first go first; within a host, shallow URLs first, then in the order
        found. The host's next start moves `delay_s` ahead."""
        now = time.time() if now is None else now
        with self._transaction() as db:
            host = db.execute(
                "SELECT host, delay_s FROM hosts WHERE next_at <= :now AND in_flight < :per_host"
                " AND EXISTS (SELECT 1 FROM urls WHERE urls.host = hosts.host"
                "   AND state = 'queued' AND retry_at <= :now)"
                " ORDER BY next_at LIMIT 1",
                {"now": now, "per_host": self.per_host},
            ).fetchone()
            if host is None:
                return None
            row = db.execute(
                "SELECT * FROM urls WHERE host = ? AND state = 'queued' AND retry_at <= ?"
                " ORDER BY depth, rowid LIMIT 1",
                (host["host"], now),
            ).fetchone()
            db.execute("UPDATE urls SET state = 'in_flight' WHERE url = ?", (row["url"],))
            db.execute(
                "UPDATE hosts SET in_flight = in_flight + 1, next_at = ? WHERE host = ?",
                (now + host["delay_s"], host["host"]),
            )
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

    def next_ready_at(self) -> float | None:
        """The earliest time `claim` could return a URL if nothing else changes; None when no
        URL is queued for a host with a free slot (the crawl is done once nothing is in flight
        either)."""
        rows = self._query(
            "SELECT MIN(MAX(hosts.next_at, urls.retry_at)) FROM urls JOIN hosts USING (host)"
            " WHERE urls.state = 'queued' AND hosts.in_flight < ?",
            (self.per_host,),
        )
        return rows[0][0]

    def set_host_delay(self, host: str, delay_s: float) -> None:
        """The gap between two request starts to `host` (e.g. robots.txt's Crawl-delay)."""
        with self._transaction() as db:
            db.execute("INSERT OR IGNORE INTO hosts (host, delay_s) VALUES (?, ?)", (host, delay_s))
            db.execute("UPDATE hosts SET delay_s = ? WHERE host = ?", (delay_s, host))

    def defer_host(self, host: str, seconds: float, now: float | None = None) -> None:
        """No request to `host` before `seconds` from now (backoff, or a request made outside
        the frontier such as robots.txt)."""
        until = (time.time() if now is None else now) + seconds
        with self._transaction() as db:
            db.execute("UPDATE hosts SET next_at = MAX(next_at, ?) WHERE host = ?", (until, host))

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
    ) -> None:
        """A response was recorded (at `stored`): state `fetched`, or `not_modified` for a 304,
        which keeps the earlier validators and digest unless it sent new ones."""
        not_modified = status == 304
        with self._transaction() as db:
            self._finish(db, url, stored)
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
                    self._generation_in(db),
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
        now = time.time() if now is None else now
        with self._transaction() as db:
            row = self._finish(db, url, stored)
            attempts = row["attempts"] + 1
            state = "queued" if retry_in is not None and attempts < self.max_attempts else "failed"
            db.execute(
                "UPDATE urls SET state = ?, reason = ?, attempts = ?, retry_at = ?, status = ?,"
                " generation = ? WHERE url = ?",
                (
                    state,
                    reason,
                    attempts,
                    now + (retry_in or 0),
                    status,
                    self._generation_in(db),
                    url,
                ),
            )
        return state

    def mark_skipped(self, url: str, reason: str) -> None:
        """Not to be fetched (robots.txt, an opt-out, a budget): `skipped` with `reason`."""
        with self._transaction() as db:
            self._finish(db, url, None, allow_queued=True)
            db.execute(
                "UPDATE urls SET state = 'skipped', reason = ?, generation = ? WHERE url = ?",
                (reason, self._generation_in(db), url),
            )

    def release(self, url: str, retry_at: float = 0.0) -> None:
        """Back to the queue without counting an attempt (its host could not be tried now,
        e.g. robots.txt answered 5xx)."""
        with self._transaction() as db:
            self._finish(db, url, None)
            db.execute(
                "UPDATE urls SET state = 'queued', retry_at = ? WHERE url = ?", (retry_at, url)
            )

    def _finish(
        self,
        db: sqlite3.Connection,
        url: str,
        stored: WarcLocation | None,
        allow_queued: bool = False,
    ) -> sqlite3.Row:
        """Checks and bookkeeping shared by every outcome: the URL must be in flight; its host
        gets its slot back; the WARC location and the file's committed end are recorded."""
        row = db.execute("SELECT * FROM urls WHERE url = ?", (url,)).fetchone()
        allowed = ("in_flight", "queued") if allow_queued else ("in_flight",)
        if row is None or row["state"] not in allowed:
            state = row["state"] if row else "unknown"
            raise FrontierError(f"frontier {self.path}: {url} is {state}, not in flight")
        if row["state"] == "in_flight":
            db.execute(
                "UPDATE hosts SET in_flight = MAX(in_flight - 1, 0) WHERE host = ?", (row["host"],)
            )
        if stored is not None:
            generation = self._generation_in(db)
            db.execute(
                "UPDATE urls SET warc_file = ?, warc_offset = ?, warc_length = ? WHERE url = ?",
                (stored.file, stored.offset, stored.length, url),
            )
            db.execute(
                "INSERT INTO warc_files (generation, file, committed_end) VALUES (?, ?, ?)"
                " ON CONFLICT DO UPDATE"
                " SET committed_end = MAX(committed_end, excluded.committed_end)",
                (generation, stored.file, stored.end),
            )
        return row

    @staticmethod
    def _generation_in(db: sqlite3.Connection) -> str | None:
        row = db.execute("SELECT name FROM generations ORDER BY rowid DESC LIMIT 1").fetchone()
        return row[0] if row else None

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
        rows = self._query("SELECT COUNT(*) FROM urls WHERE state IN ('queued', 'in_flight')")
        return rows[0][0]


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
