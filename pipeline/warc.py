"""Reading WARC (and legacy ARC) files with warcio: records with their byte offsets, byte ranges
of one file for parallel work, and tolerance for truncated or corrupt files."""

from __future__ import annotations

from collections.abc import Iterator
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

    def __init__(self, offset: int, cause: BaseException):
        super().__init__(f"at byte {offset}: {type(cause).__name__}: {cause}")
        self.offset = offset


@contextmanager
def open_binary(url: str) -> Iterator[IO[bytes]]:
    with fsspec.open(url, "rb") as fh:
        yield fh


def iter_records(
    fh: IO[bytes], start: int = 0, end: int | None = None, problems: list[dict] | None = None
) -> Iterator[WarcRecord]:
    """Records that begin in [start, end). A read error ends the file with WarcReadError;
    records whose length does not match their Content-Length (a truncated or damaged file)
    are still yielded, and noted in `problems`.

    The caller must read each record's payload before asking for the next (warcio streams)."""
    fh.seek(start)
    offset = start
    try:
        iterator = ArchiveIterator(fh, arc2warc=True)
        seen_errors = 0
        for record in iterator:
            if iterator.err_count > seen_errors and problems is not None:
                seen_errors = iterator.err_count
                problems.append({"offset": offset, "error": _LENGTH_MISMATCH})
            offset = iterator.offset  # start of this record (get_record_offset() would read it)
            if end is not None and offset >= end:
                return
            yield WarcRecord(offset=offset, record=record)
        if iterator.err_count > seen_errors and problems is not None:
            problems.append({"offset": offset, "error": _LENGTH_MISMATCH})
    except Exception as exc:  # warcio raises many types for broken archives
        raise WarcReadError(offset, exc) from exc


_LENGTH_MISMATCH = "record not followed by a blank line: wrong Content-Length or truncated file"


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
