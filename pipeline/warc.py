"""Reading WARC (and legacy ARC) files with warcio: records with their byte offsets, byte ranges
of one file for parallel work, and tolerance for truncated or corrupt files."""

from __future__ import annotations

import zlib
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

import fsspec
from warcio.archiveiterator import ArchiveIterator
from warcio.recordloader import ArcWarcRecord

# A file may be cut only before these records, so a request, its response and the metadata
# written after them stay in one work unit.
_CUT_BEFORE = {"warcinfo", "request"}


@dataclass(frozen=True)
class WarcRecord:
    offset: int
    record: ArcWarcRecord


class WarcReadError(Exception):
    """The file could not be read past `offset`; what came before it was still yielded."""

    def __init__(self, offset: int, error: str):
        super().__init__(f"at byte {offset}: {error}")
        self.offset = offset


@contextmanager
def open_binary(url: str) -> Iterator[IO[bytes]]:
    with fsspec.open(url, "rb") as fh:
        yield fh


def looks_like_archive(fh: IO[bytes]) -> bool:
    """Whether a file begins as a WARC (`WARC/1.0`) or ARC (`filedesc://`) file does, gzipped
    or not: a file listed by mistake (a page, a JSONL file) is then named, not half-parsed."""
    fh.seek(0)
    head = fh.read(4096)
    if head.startswith(_GZIP_MAGIC):
        try:
            head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 64)
        except zlib.error:
            return False
    return head.lstrip(b"\r\n").startswith((b"WARC/", b"filedesc://"))


def iter_records(
    fh: IO[bytes], start: int = 0, end: int | None = None, problems: list[dict] | None = None
) -> Iterator[WarcRecord]:
    """Records that begin in [start, end). Records whose length does not match their
    Content-Length (a truncated or damaged file) are still yielded, and noted in `problems`.
    Each record of a .warc.gz is its own gzip member (WARC 1.1, annex D), so after a damaged
    member reading goes on at the next member that parses, and the damage is noted in
    `problems`. Damage that cannot be skipped (an uncompressed file; no `problems` to note it
    in) ends the file with WarcReadError.

    The caller must read each record's payload before asking for the next (warcio streams)."""
    fh.seek(0)
    gzipped = fh.read(len(_GZIP_MAGIC)) == _GZIP_MAGIC
    position = start
    skipped: _Stop | None = None  # damage being skipped over, noted once reading goes on
    while True:
        stop = yield from _records_from(fh, position, end, gzipped, problems)
        if skipped and (stop is None or stop.last_record is not None):
            skipped.note(problems, f"reading went on at the next gzip member, at byte {position}")
            skipped = None
        if stop is None:
            return
        if not gzipped or problems is None:
            if stop.truncated:
                return  # the caller sees the record cut short (is_truncated)
            raise WarcReadError(stop.offset, stop.error)
        if skipped is None:  # else a false start inside the damaged member: the first counts
            skipped = stop
        after = stop.last_record if stop.last_record is not None else position
        found = _next_member(fh, after + 1, end)
        if found is None:
            if not skipped.truncated:  # a file cut short: the caller notes its last record
                skipped.note(problems, "no readable gzip member after it")
            return
        position = found


@dataclass(frozen=True)
class _Stop:
    """Where and why reading stopped before the end of a file or range."""

    offset: int
    error: str
    last_record: int | None  # offset of the last record read before it, if any
    truncated: bool = False  # the last record was cut short: a damaged member, or the file's end

    def note(self, problems: list[dict] | None, then: str) -> None:
        if problems is not None:
            problems.append({"offset": self.offset, "error": f"{self.error}; {then}"})


def _records_from(
    fh: IO[bytes], start: int, end: int | None, gzipped: bool, problems: list[dict] | None
) -> Generator[WarcRecord, None, _Stop | None]:
    """Records from `start` on; returns None at the end of the file or range, else where
    reading stopped: a record that does not parse, or a gzip record cut short."""
    fh.seek(start)
    offset = start
    last: WarcRecord | None = None
    iterator = None
    try:
        iterator = ArchiveIterator(fh, arc2warc=True)
        seen_errors = 0
        for record in iterator:
            if iterator.err_count > seen_errors and problems is not None:
                seen_errors = iterator.err_count
                problems.append({"offset": offset, "error": _LENGTH_MISMATCH})
            offset = iterator.offset  # start of this record (get_record_offset() would read it)
            if end is not None and offset >= end:
                return None
            last = WarcRecord(offset=offset, record=record)
            yield last
        if iterator.err_count > seen_errors and problems is not None:
            problems.append({"offset": offset, "error": _LENGTH_MISMATCH})
    except Exception as exc:  # warcio raises many types for broken archives
        # warcio has moved on to the start of the record it could not read
        where = max(iterator.offset, offset) if iterator is not None else offset
        last_offset = last.offset if last else None
        return _Stop(where, _describe(exc), last_offset)
    # A gzip member that stops decompressing ends warcio's reading as if the file ended there
    # (it only prints zlib's error): its record is cut short, and later members may be fine.
    if gzipped and last is not None and is_truncated(last.record):
        return _Stop(last.offset, _DAMAGED_MEMBER, last.offset, truncated=True)
    return None


def _describe(exc: Exception) -> str:
    # warcio's message quotes the unparsable first line: of a damaged member, binary noise
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 200 else text[:200] + "..."


def _next_member(fh: IO[bytes], after: int, end: int | None) -> int | None:
    """Offset of the next gzip member header at or after `after` (and before `end`)."""
    fh.seek(after)
    position = after  # file offset of data[0]
    data = b""
    while end is None or position < end:
        block = fh.read(1 << 20)
        if not block:
            return None
        data += block
        found = data.find(_GZIP_MAGIC)
        if found >= 0:
            return position + found if end is None or position + found < end else None
        keep = len(_GZIP_MAGIC) - 1  # a header may straddle two blocks
        position += len(data) - keep
        data = data[-keep:]
    return None


_GZIP_MAGIC = b"\x1f\x8b\x08"  # gzip's ID bytes and its one compression method, deflate
_LENGTH_MISMATCH = "record not followed by a blank line: wrong Content-Length or truncated file"
_DAMAGED_MEMBER = "damaged gzip data: the record's member does not decompress to its end"


def is_truncated(record: ArcWarcRecord) -> bool:
    """After its payload was read to the end: did the file end before the record's
    Content-Length did?"""
    return getattr(record.raw_stream, "limit", 0) > 0


def split_points(fh: IO[bytes], chunk_bytes: int) -> list[tuple[int, int | None]]:
    """Cut a file into byte ranges of about `chunk_bytes`, at record boundaries where a new
    capture starts. A file that cannot be indexed to the end stays one range."""
    ranges: list[tuple[int, int | None]] = []
    start = 0
    try:
        previous_type = None
        iterator = ArchiveIterator(fh, arc2warc=True, no_record_parse=True)
        for record in iterator:
            offset = iterator.offset
            rec_type = record.rec_type
            new_capture = rec_type in _CUT_BEFORE or (
                rec_type in ("response", "resource") and previous_type not in ("request",)
            )
            if new_capture and offset - start >= chunk_bytes:
                ranges.append((start, offset))
                start = offset
            previous_type = rec_type
    except Exception:  # broken files are read in one piece, and their error reported then
        return [(0, None)]
    ranges.append((start, None))
    return ranges
