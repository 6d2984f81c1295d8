"""WARC 1.1 output of one crawl generation: `<folder>/<prefix>-00000.warc.gz`, `-00001`, ...

Each file starts with a `warcinfo` record and a new file is begun once one reaches `max_bytes`
(1 GB by default, the size the WARC 1.1 standard recommends, annex C). `write_exchange` writes
everything about one fetched URL as one unit, each record its own gzip member:

- each redirect hop (a 3xx), then the final exchange, as a `request` record and a `response`
  record linked both ways by `WARC-Concurrent-To`; every hop is a record of its own, so a
  reader sees the chain as it happened. A response carries `WARC-Payload-Digest` and
  `WARC-Block-Digest` (sha1, base32), `WARC-IP-Address` when known and `WARC-Truncated` when the
  body was cut at the size cap. The payload is the body as transferred: still compressed if
  the server used Content-Encoding (readers undo it), but without chunked transfer coding, so
  `Transfer-Encoding` is left out of the recorded headers.
- a 304 answer to a conditional request is a `revisit` record with the WARC 1.1
  `server-not-modified` profile, referring to the earlier capture (extract skips revisits).
- when the source knew something about the URL before fetching it (a feed item's title and
  date, a catalog record), a `metadata` record (application/json) follows the final response,
  with `WARC-Refers-To` naming it.

Crash safety, with the frontier (pipeline/crawl/frontier.py): the records are written and
flushed, then fsynced, then `on_written` runs (the caller commits the URL and the file's new end
there). Group commit: one fsync covers every record written while the previous one ran (an
fsync costs milliseconds, too slow for one per page at a hundred pages a second), and the
`on_written` callbacks run one at a time in the order the records were written, so committed
ends only grow, file by file, and a committed end never covers records whose URL was not
committed. A writer opened on an existing folder cuts every file back to the end the frontier
committed (and removes files with nothing committed), so a kill at any moment leaves no torn
record behind and loses nothing committed. `check_warc` reads a file end to end with warcio,
digests included.

Thread-safe: workers share one writer; writes are serialized by its lock, fsyncs by another.
"""

from __future__ import annotations

import io
import json
import os
import re
import threading
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders, StatusAndHeadersParser
from warcio.warcwriter import WARCWriter

from pipeline.crash import crash_point
from pipeline.warc import is_truncated

WARC_VERSION = "WARC/1.1"
NOT_MODIFIED_PROFILE = "http://netpreserve.org/warc/1.1/revisit/server-not-modified"
DEFAULT_MAX_BYTES = 1_000_000_000
_HOP_BY_HOP = {"transfer-encoding"}  # describes the wire framing, which is not what is stored


@dataclass(frozen=True)
class WarcLocation:
    """Where one URL's records are: `file` (a name in the generation folder), the byte offset
    of its first record and the length of all of them."""

    file: str
    offset: int
    length: int

    @property
    def end(self) -> int:
        return self.offset + self.length


@dataclass(frozen=True)
class Exchange:
    """One HTTP request as sent and the response as received: one WARC request/response pair.
    The fetcher (pipeline/crawl/fetch.py) makes them; `write_exchange` stores them."""

    url: str
    status: int
    reason: str
    response_headers: list[tuple[str, str]]
    payload: bytes = b""  # the body as transferred (Content-Encoding kept, chunking removed)
    request_headers: list[tuple[str, str]] = field(default_factory=list)
    method: str = "GET"
    request_target: str | None = None  # "/path?query" as sent; None: taken from `url`
    http_version: str = "HTTP/1.1"
    ip_address: str | None = None  # the address connected to
    sent_at: float | None = None  # unix time the request was sent (WARC-Date); None: now
    truncated: str | None = None  # WARC-Truncated reason: "length", "time", "disconnect"

    @property
    def request_line(self) -> str:
        return (
            f"{self.method} {self.request_target or _request_target(self.url)} {self.http_version}"
        )

    @property
    def status_line(self) -> str:
        return f"{self.http_version} {self.status} {self.reason}"

    def header(self, name: str) -> str | None:
        """The response header's values joined with ", " (RFC 9110), or None."""
        name = name.lower()
        values = [v for k, v in self.response_headers if k.lower() == name]
        return ", ".join(values) if values else None


@dataclass(frozen=True)
class PreviousCapture:
    """The earlier capture a 304 confirms (from the frontier: URL, fetch time, digest)."""

    url: str
    date: str | datetime | None
    payload_digest: str | None


class GenerationWriter:
    def __init__(
        self,
        folder: str | Path,
        prefix: str = "crawl",
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        committed: Mapping[str, int] | None = None,
        info: Mapping[str, str] | None = None,
        fsync: bool = True,
    ):
        """Write WARC files into `folder`. `committed` maps each file already in the folder to
        the end of its last committed record (`Frontier.warc_ends()`); files are cut back to
        it, and files it does not name are removed (nothing in them was committed). `info`
        adds fields to each file's warcinfo record (e.g. the crawl's user agent). `fsync=False`
        survives a killed process but not a power cut, for file systems where fsync is slow."""
        self.folder = Path(folder)
        self.prefix = prefix
        self.max_bytes = max_bytes
        self.info = {
            "software": f"textmill (warcio {version('warcio')})",
            "format": "WARC File Format 1.1",
            "conformsTo": "https://iipc.github.io/warc-specifications/specifications/"
            "warc-format/warc-1.1/",
            **(info or {}),
        }
        self.fsync = fsync
        self._lock = threading.Lock()  # appends to the files
        self._sync_lock = threading.Lock()  # one fsync at a time; waiters share its result
        # on_written callbacks run in write order: each batch waits for its turn on an event of
        # its own, set by the batch before it (one wake-up per batch, not one per waiter)
        self._turn_lock = threading.Lock()
        self._turns: dict[int, threading.Event] = {}
        self._written = self._synced = self._committed = 0  # record batches, numbered
        self._failure: BaseException | None = None  # an on_written that raised
        self._retired: list[IO[bytes]] = []  # full files, closed once fsynced
        self._fh: IO[bytes] | None = None
        self._name = ""
        self._local = threading.local()  # a warcio writer per thread
        self.folder.mkdir(parents=True, exist_ok=True)
        self._seq = self._recover(dict(committed or {}))

    def _recover(self, committed: dict[str, int]) -> int:
        """Cut files back to their committed ends; return the sequence number to write to."""
        pattern = re.compile(rf"^{re.escape(self.prefix)}-(\d{{5}})\.warc\.gz$")
        existing = sorted(p for p in os.listdir(self.folder) if pattern.match(p))
        missing = sorted(set(committed) - set(existing))
        if missing:
            raise RuntimeError(
                f"WARC folder {self.folder}: committed files are missing: {', '.join(missing)}"
            )
        kept = []
        for name in existing:
            path = self.folder / name
            size, end = path.stat().st_size, committed.get(name, 0)
            if size < end:
                raise RuntimeError(
                    f"WARC file {path} has {size} bytes, less than the {end} bytes committed:"
                    " records were lost outside the crawler"
                )
            if end == 0:
                path.unlink()
                continue
            if size > end:
                with open(path, "r+b") as fh:
                    fh.truncate(end)
                    os.fsync(fh.fileno())
            kept.append(int(pattern.match(name).group(1)))
        return max(kept, default=0)

    @property
    def files(self) -> list[str]:
        return sorted(p.name for p in self.folder.glob(f"{self.prefix}-*.warc.gz"))

    def close(self) -> None:
        self._sync_through(self._written)
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None

    def __enter__(self) -> GenerationWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write_exchange(
        self,
        exchange: Exchange,
        *,
        redirects: list[Exchange] | tuple[Exchange, ...] = (),
        metadata: dict[str, Any] | None = None,
        previous: PreviousCapture | None = None,
        on_written: Callable[[WarcLocation], None] | None = None,
    ) -> WarcLocation:
        """Write one URL's records (the redirect hops, then `exchange`, then `metadata`) and
        return where they are. `previous` is needed for a 304. `on_written` runs once they are
        on disk, after the callbacks of every record written before them. If a write fails, its
        records are cut off again; if an `on_written` raises, the writer refuses further writes
        (later records may follow the uncommitted ones: reopening cuts them all back)."""
        data = self._records(exchange, redirects, metadata, previous)
        with self._lock:
            self._check_not_failed()
            fh, name = self._file()
            offset = fh.tell()
            try:
                half = len(data) // 2
                fh.write(data[:half])
                fh.flush()
                crash_point("warc.record")  # a kill here leaves half a record on disk
                fh.write(data[half:])
                fh.flush()  # in the OS now: a killed process loses nothing from here
            except BaseException:
                fh.seek(offset)
                fh.truncate()
                fh.flush()
                raise
            self._written += 1
            ticket = self._written
        location = WarcLocation(name, offset, len(data))
        self._sync_through(ticket)
        self._wait_turn(ticket)
        try:
            self._check_not_failed()
            if on_written is not None:
                on_written(location)
        except BaseException as exc:
            self._failure = self._failure or exc
            raise
        finally:
            self._pass_turn(ticket)
        return location

    def _wait_turn(self, ticket: int) -> None:
        with self._turn_lock:
            if self._committed == ticket - 1:
                return
            turn = self._turns.setdefault(ticket, threading.Event())
        turn.wait()

    def _pass_turn(self, ticket: int) -> None:
        with self._turn_lock:
            self._committed = ticket
            self._turns.pop(ticket, None)
            turn = self._turns.get(ticket + 1)  # None: the next batch is not waiting yet
        if turn is not None:
            turn.set()

    def _check_not_failed(self) -> None:
        if self._failure is not None:
            problem = f"WARC writer {self.folder}: stopped after an error: {self._failure!r}"
            raise RuntimeError(problem) from self._failure

    def _sync_through(self, ticket: int) -> None:
        """Make record batch `ticket` (and all before it) durable: one fsync for every batch
        written so far, unless an fsync that started after it was written covered it."""
        with self._sync_lock:
            if self._synced >= ticket:
                return
            with self._lock:
                target = self._written
                handles = [*self._retired, *([self._fh] if self._fh else [])]
                retired, self._retired = self._retired, []
            if self.fsync:
                for fh in handles:
                    os.fsync(fh.fileno())
            for fh in retired:
                fh.close()
            self._synced = target

    def _file(self) -> tuple[IO[bytes], str]:
        """The open file to append to: the current one, or the next once it is full."""
        if self._fh is not None and self._fh.tell() >= self.max_bytes:
            self._retired.append(self._fh)  # closed by the fsync that covers its last records
            self._fh = None
            self._seq += 1
        while self._fh is None:
            name = f"{self.prefix}-{self._seq:05d}.warc.gz"
            fh = open(self.folder / name, "ab")  # noqa: SIM115 - open across writes until close()
            if fh.tell() >= self.max_bytes:  # a full file left by an earlier run
                fh.close()
                self._seq += 1
                continue
            if fh.tell() == 0:
                buffer = io.BytesIO()
                writer = WARCWriter(buffer, gzip=True, warc_version=WARC_VERSION)
                writer.write_record(writer.create_warcinfo_record(name, self.info))
                fh.write(buffer.getvalue())
                self._sync(fh)
            self._fh, self._name = fh, name
        return self._fh, self._name

    def _sync(self, fh: IO[bytes]) -> None:
        fh.flush()
        if self.fsync:
            os.fsync(fh.fileno())

    def _record_writer(self, buffer: io.BytesIO) -> WARCWriter:
        """This thread's warcio writer, writing to `buffer` (made once per thread: making one
        looks the host name up)."""
        writer = getattr(self._local, "writer", None)
        if writer is None:
            writer = self._local.writer = WARCWriter(buffer, gzip=True, warc_version=WARC_VERSION)
        writer.out = buffer
        return writer

    def _records(
        self,
        exchange: Exchange,
        redirects: list[Exchange] | tuple[Exchange, ...],
        metadata: dict[str, Any] | None,
        previous: PreviousCapture | None,
    ) -> bytes:
        """The records of one URL, serialized (gzip members), before any byte hits the file."""
        buffer = io.BytesIO()
        writer = self._record_writer(buffer)
        for hop in redirects:
            _write_pair(writer, hop, None)
        response_id = _write_pair(writer, exchange, previous)
        if metadata is not None:
            body = json.dumps(metadata, ensure_ascii=False, sort_keys=True).encode("utf-8")
            record = writer.create_warc_record(
                exchange.url,
                "metadata",
                payload=io.BytesIO(body),
                length=len(body),
                warc_content_type="application/json",
                warc_headers_dict={
                    "WARC-Refers-To": response_id,
                    "WARC-Date": _sent_date(exchange),
                },
            )
            writer.write_record(record)
        return buffer.getvalue()


def _write_pair(writer: WARCWriter, exchange: Exchange, previous: PreviousCapture | None) -> str:
    """Request and response (or revisit, for a 304) records; returns the response's id."""
    date = _sent_date(exchange)
    request_id = StatusAndHeadersParser.make_warc_id()
    response_id = StatusAndHeadersParser.make_warc_id()
    response_warc = {
        "WARC-Record-ID": response_id,
        "WARC-Date": date,
        "WARC-Concurrent-To": request_id,
    }
    if exchange.ip_address:
        response_warc["WARC-IP-Address"] = exchange.ip_address
    if exchange.truncated:
        response_warc["WARC-Truncated"] = exchange.truncated
    headers = [(k, v) for k, v in exchange.response_headers if k.lower() not in _HOP_BY_HOP]
    http = StatusAndHeaders(
        f"{exchange.status} {exchange.reason}".strip(), headers, protocol=exchange.http_version
    )
    if exchange.status == 304:
        if previous is None:
            raise ValueError(f"{exchange.url}: a 304 needs the previous capture it confirms")
        response_warc["WARC-Profile"] = NOT_MODIFIED_PROFILE
        response_warc["WARC-Refers-To-Target-URI"] = previous.url
        if previous.date:
            response_warc["WARC-Refers-To-Date"] = _warc_date(previous.date)
        if previous.payload_digest:
            response_warc["WARC-Payload-Digest"] = previous.payload_digest
        response = writer.create_warc_record(
            exchange.url, "revisit", http_headers=http, warc_headers_dict=response_warc
        )
    else:
        response = writer.create_warc_record(
            exchange.url,
            "response",
            payload=io.BytesIO(exchange.payload),
            length=len(exchange.payload),
            http_headers=http,
            warc_headers_dict=response_warc,
        )
    request = writer.create_warc_record(
        exchange.url,
        "request",
        payload=io.BytesIO(b""),
        length=0,
        http_headers=StatusAndHeaders(
            exchange.request_line,
            exchange.request_headers,
            protocol=exchange.http_version,
            is_http_request=True,
        ),
        warc_headers_dict={
            "WARC-Record-ID": request_id,
            "WARC-Date": date,
            "WARC-Concurrent-To": response_id,
        },
    )
    writer.write_record(request)
    writer.write_record(response)
    return response_id


def _request_target(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _sent_date(exchange: Exchange) -> str:
    sent = exchange.sent_at
    return _warc_date(None if sent is None else datetime.fromtimestamp(sent, UTC))


def _warc_date(value: str | datetime | None) -> str:
    """WARC 1.1 dates: UTC, ISO 8601, microseconds (section 5.4)."""
    if value is None:
        moment = datetime.now(UTC)
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    else:
        moment = value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class WarcCheckError(Exception):
    """A WARC file does not read cleanly end to end."""


def check_warc(path: str | Path) -> int:
    """Read every record of a WARC file with warcio, payloads and digests included; return the
    number of records. Raises WarcCheckError naming the file and offset of the first problem
    (a torn gzip member or record, a wrong length, a digest mismatch)."""
    _check_gzip_members(path)
    count = 0
    offset = 0
    with open(path, "rb") as fh:
        iterator = ArchiveIterator(fh, check_digests="raise")
        try:
            for record in iterator:
                offset = iterator.offset
                record.content_stream().read()
                if is_truncated(record) or iterator.err_count:
                    raise WarcCheckError(f"{path}: record at byte {offset} is truncated")
                count += 1
        except WarcCheckError:
            raise
        except Exception as exc:  # warcio raises many types for broken files
            raise WarcCheckError(f"{path}: unreadable after byte {offset}: {exc}") from exc
        if iterator.err_count:
            raise WarcCheckError(f"{path}: record at byte {offset} is not followed by its end")
    return count


def _check_gzip_members(path: str | Path) -> None:
    """Every gzip member is complete: warcio stops quietly at a torn last member. Output is
    inflated 1 MiB at a time and dropped, so memory stays bounded."""
    member_start = position = 0  # file offsets: the current member's start, bytes inflated
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            while chunk:
                try:
                    inflater.decompress(chunk, 1 << 20)
                except zlib.error as exc:
                    problem = f"broken gzip member at byte {member_start}: {exc}"
                    raise WarcCheckError(f"{path}: {problem}") from None
                rest = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
                position += len(chunk) - len(rest)
                if inflater.eof:
                    member_start = position
                    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
                chunk = rest
    if position > member_start:
        raise WarcCheckError(f"{path}: the gzip member at byte {member_start} is truncated")
