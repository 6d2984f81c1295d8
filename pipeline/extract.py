"""The extract stage: WARC responses -> documents (trafilatura's main-text extraction + metadata).

Inputs are the WARC files of every finished crawl generation (or the newest `generation_window`
of them) and the WARC files a source lists in the config. Work units are input files, or byte
ranges of large files cut at record boundaries; each unit becomes one part of the dataset.

Every response ends up as a document or in `rejected/` with a reason: `revisit` (no payload),
`not_web` (no http(s) URI), `http_status`, `content_type` (not HTML or plain text),
`too_large`, `truncated_record`, `empty_extraction`,
`extract_timeout`, `extract_error`, `takedown` (the workspace's takedown list names the page or its
site: pipeline/takedown.py). A corrupt or truncated file yields the records before the
damage, and the error (file and byte offset) is recorded in the manifest; in a .warc.gz reading
goes on at the next gzip member after the damage. A file listed under `warc` that is not a WARC
or ARC file at all is a config error. Plain-text bodies of `book` sources lose Project
Gutenberg's license header and footer (pipeline/gutenberg.py).

Document files a source lists (`documents:` JSONL or Parquet, e.g. a corpus made elsewhere) are
imported as they are: the text (field `text`, or the source's `text_key`) is required; the id
(`id`, or `id_key`), `url`, `title`, `author`, `date`, `language` and `license` are kept when
present; `warc_file` and `warc_offset` then name the file and the line (or row, from 1) a
document came from. Rows without text are rejected as `empty_text`; a file none of whose rows
has the text field is a config error (the field is named otherwise: set `text_key`). A bad row
(not UTF-8, not JSON, not an object, text that is not a string, a field that is an object, a lone
surrogate) is one error in the manifest, naming file and line, and the other rows go on; so is a
damaged or truncated file, after the rows before the damage. Ids must be unique within a file:
the first row with an id keeps it, and later ones are rejected as `duplicate_id` (under an id of
their own, the line's digest, so that ids stay unique in the dataset; the detail names the
repeated id and where it was first). Ids repeated across two files are not caught here.
"""

from __future__ import annotations

import glob
import gzip
import json
import logging
import os
import re
import signal
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib.metadata import version
from typing import Any
from urllib.parse import urlsplit

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import trafilatura
from trafilatura.utils import decode_file, load_html

from pipeline import gutenberg, progress, takedown
from pipeline.charset import BOMS, codec
from pipeline.config import ConfigError, ExtractConfig, RunConfig
from pipeline.crash import crash_point
from pipeline.datasets import PartResult, VersionBuilder, short_digest
from pipeline.schema import DOCUMENT_SCHEMA, REJECTED_SCHEMA, documents_table
from pipeline.warc import (
    WarcReadError,
    is_truncated,
    iter_records,
    looks_like_archive,
    open_binary,
    split_points,
)
from pipeline.workspace import Workspace

NAME = "extract"
# What the output depends on besides the config: this module, pipeline/gutenberg.py (books)
# and the libraries that parse.
CODE_VERSION = f"8+trafilatura{version('trafilatura')}+warcio{version('warcio')}"

HTML_TYPES = {"text/html", "application/xhtml+xml"}
TEXT_TYPES = {"text/plain"}
WARC_SUFFIXES = (".warc", ".warc.gz", ".arc", ".arc.gz")
DOCUMENT_SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")
IMPORTED_FIELDS = ("url", "title", "author", "date", "language", "license")
# Keys of a source's JSON metadata record -> document columns.
SOURCE_METADATA_COLUMNS = {
    **{name: name for name in ("title", "author", "date", "language", "license", "description")},
    **{"authors": "author", "published": "date", "summary": "description"},
    **{"languages": "language", "subjects": "categories", "bookshelves": "tags", "tags": "tags"},
}

# Every page trafilatura gives up on is kept in rejected/ with its reason; its own log lines
# about them ("discarding data", "lxml parsing failed") would only repeat that, once per page.
logging.getLogger("trafilatura").setLevel(logging.CRITICAL)

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_:.-]+)""", re.I)
_LANGUAGE_TAG = re.compile(r"^([a-z]{2,3})(?:[-_]|$)", re.I)  # "en-GB" -> en; "English" -> none


class PageTimeout(BaseException):
    """BaseException: trafilatura's fallbacks catch Exception and would swallow the timeout."""


@dataclass(frozen=True)
class InputFile:
    url: str  # what to open
    path: str  # what documents cite: workspace-relative for crawl generations, else as listed
    source: str
    kind: str
    generation: str | None
    sha256: str
    size: int
    takedown: str = ""  # digest of the workspace's takedown list: which documents it drops
    text_key: str = "text"  # document files: the fields holding each document's text and id
    id_key: str = "id"


@dataclass(frozen=True)
class Unit:
    file: InputFile
    start: int = 0
    end: int | None = None  # None: to the end of the file

    def describe(self) -> dict[str, Any]:
        return {"file": self.file.path, "start": self.start, "end": self.end}


# ----- planning: which files, which units -----


def list_inputs(cfg: RunConfig, ws: Workspace) -> list[InputFile]:
    """Every input file, in a stable order: crawl generations first, then listed files."""
    found: list[tuple[str, str, str, str, str | None]] = []  # url, path, source, kind, gen
    keys = {s.name: {"text_key": s.text_key, "id_key": s.id_key} for s in cfg.sources}
    for source in cfg.sources:
        generations = ws.generations(source.name)
        if cfg.extract.generation_window:
            generations = generations[-cfg.extract.generation_window :]
        for gen in generations:
            for rel in ws.storage.glob(f"{gen.folder}/*"):
                if rel.endswith(WARC_SUFFIXES):
                    found.append((ws.storage.url(rel), rel, source.name, source.kind, gen.name))
        for key, patterns in (("warc", source.warc), ("documents", source.documents)):
            for pattern in patterns:
                matches = _glob(cfg.resolve(pattern))
                if not matches:
                    raise ConfigError(
                        f"sources.{source.name}.{key}: {pattern!r} matches no files "
                        f"(relative paths are read from {cfg.base_dir})"
                    )
                # WARC files are recognised by their records, whatever their names
                wrong = [m for m in matches if not m.endswith(DOCUMENT_SUFFIXES)]
                if key == "documents" and wrong:
                    raise ConfigError(
                        f"sources.{source.name}.documents: {wrong[0]} is not one of "
                        f"{', '.join(DOCUMENT_SUFFIXES)}"
                    )
                found += [(m, m, source.name, source.kind, None) for m in matches]
    found = list(dict.fromkeys(found))  # overlapping globs must not read a file twice
    if not found:
        raise ConfigError(
            f"extract: no input files: no finished crawl generation under {ws.storage.url('crawl')}"
            " and no `warc` paths in the config's sources"
        )
    digests = ws.file_digests([url for url, *_ in found])
    _check_listed_archives(ws, found, digests)
    listed = takedown.digest(takedown.load(ws))
    return [
        InputFile(url, path, source, kind, gen, *digests[url], takedown=listed, **keys[source])
        for url, path, source, kind, gen in found
    ]


def _check_listed_archives(
    ws: Workspace, found: list[tuple[str, str, str, str, str | None]], digests: dict
) -> None:
    """A file a source lists under `warc` that is no WARC or ARC file (a page, a PDF, a file
    of notes) would quietly give no documents, or garbage ones: it is a config error. The
    answer is cached by content digest, so `status` reads each file's head once."""
    with ws.cache("archive-files") as known:
        for url, path, source, _, generation in found:
            if generation is not None or url.endswith(DOCUMENT_SUFFIXES):
                continue  # crawl generations are textmill's own; document files are read as such
            sha256 = digests[url][0]
            if sha256 not in known:
                with open_binary(url) as fh:
                    known[sha256] = looks_like_archive(fh)
            if not known[sha256]:
                raise ConfigError(
                    f"sources.{source}.warc: {path} is not a WARC or ARC file (gzipped or not, "
                    "a WARC file begins with `WARC/`, an ARC file with `filedesc://`)"
                )


def _glob(pattern: str) -> list[str]:
    if "://" in pattern:
        fs, _ = fsspec.core.url_to_fs(pattern)
        return sorted(fs.unstrip_protocol(p) for p in fs.glob(pattern))
    return sorted(p for p in glob.glob(pattern, recursive=True) if not os.path.isdir(p))


def version_inputs(files: list[InputFile]) -> list[dict[str, Any]]:
    """What of the inputs the version depends on (and the manifest records)."""
    return [
        {
            "path": f.path,
            "source": f.source,
            "kind": f.kind,
            "generation": f.generation,
            "sha256": f.sha256,
            "size": f.size,
            "takedown": f.takedown,
            "fields": [f.text_key, f.id_key],
        }
        for f in files
    ]


def plan_units(ws: Workspace, files: list[InputFile], chunk_bytes: int) -> list[Unit]:
    """One unit per file, or per byte range of a file larger than chunk_bytes. Finding the
    record boundaries reads the whole file, so they are cached by its digest."""
    units = []
    with ws.cache("warc-split-points") as known:
        for file in files:
            if file.size <= chunk_bytes or file.path.endswith(DOCUMENT_SUFFIXES):
                units.append(Unit(file))
                continue
            key = f"{file.sha256}:{chunk_bytes}"
            if key not in known:
                with open_binary(file.url) as fh:
                    known[key] = split_points(fh, chunk_bytes)
            units += [Unit(file, start, end) for start, end in known[key]]
    return units


def unit_key(unit: Unit, cfg: ExtractConfig) -> str:
    """Digest of what a unit's part depends on: the file's content and how it is cited, the
    byte range, the takedown list and the per-record settings; not where the file is opened
    from (`url`), nor which generations are read (`generation_window`)."""
    identity = {**asdict(unit.file), "start": unit.start, "end": unit.end}
    identity.pop("url")
    settings = cfg.model_dump(exclude={"generation_window"})
    return short_digest(NAME, CODE_VERSION, settings, identity)


# ----- the work: one unit -> one part -----


def process_unit(unit: Unit, key: str, cfg: ExtractConfig, out: VersionBuilder) -> PartResult:
    """Extract the documents of one work unit and write them as one part."""
    started = time.perf_counter()
    docs: list[dict] = []
    rejected: list[dict] = []
    counts: Counter[str] = Counter()
    problems: list[dict] = []
    report = progress.unit(key)  # bytes of the unit read so far, and documents
    if unit.file.path.endswith(DOCUMENT_SUFFIXES):
        for doc in import_documents(unit.file, problems):
            counts["imported"] += 1
            report.update(0, counts["imported"])  # where a text stream is, is unknown
            (rejected if "reason" in doc else docs).append(doc)
    else:
        _extract_records(unit, cfg, docs, rejected, counts, problems, report)
    docs, taken_down = takedown.screen(
        docs, takedown.load_checked(out.ws, unit.file.takedown, NAME), NAME
    )
    rejected += taken_down
    errors = [{"file": unit.file.path, **problem} for problem in problems]
    dropped = Counter(d["reason"] for d in rejected)
    part = out.write_part(
        key,
        documents_table(docs, DOCUMENT_SCHEMA),
        documents_table(rejected, REJECTED_SCHEMA),
        counts=dict(counts),
        dropped=dict(dropped),
        errors=errors,
        seconds=round(time.perf_counter() - started, 3),
        unit=unit.describe(),
    )
    crash_point("unit.done")
    report.finish(docs=len(docs) + len(rejected))
    return part


def _extract_records(
    unit: Unit,
    cfg: ExtractConfig,
    docs: list[dict],
    rejected: list[dict],
    counts: Counter[str],
    problems: list[dict],
    report: progress.UnitProgress,
) -> None:
    by_record_id: dict[str, dict] = {}  # this unit's documents, for the metadata that follows them
    with open_binary(unit.file.url) as fh:
        try:
            for item in iter_records(fh, unit.start, unit.end, problems):
                report.update(item.offset - unit.start, len(docs) + len(rejected))
                crash_point("extract.record")
                counts[f"records_{item.record.rec_type}"] += 1
                if item.record.rec_type == "metadata":
                    apply_source_metadata(item.record, by_record_id, item.offset, problems)
                    continue
                try:
                    doc = record_to_document(item.record, item.offset, unit.file, cfg)
                except Exception as exc:  # a malformed record is one rejection, not a failed unit
                    problems.append(
                        {"offset": item.offset, "error": f"{type(exc).__name__}: {exc}"}
                    )
                    continue
                if doc is None:
                    continue
                (rejected if "reason" in doc else docs).append(doc)
                if doc.get("warc_record_id"):
                    by_record_id[doc["warc_record_id"]] = doc
                if doc.get("reason") == "truncated_record":
                    problems.append(
                        {"offset": item.offset, "error": "record truncated: " + doc["detail"]}
                    )
        except WarcReadError as exc:
            problems.append({"offset": exc.offset, "error": str(exc)})


def apply_source_metadata(
    record: Any, by_record_id: dict[str, dict], offset: int, problems: list[dict]
) -> None:
    """What a source knew before fetching (a feed item's title, author and date; a Gutenberg
    catalog record) travels in a JSON `metadata` record that refers to the response. Its known
    fields replace what extraction guessed; lists (authors, subjects) are joined with "; "."""
    headers = record.rec_headers
    doc = by_record_id.get(headers.get_header("WARC-Refers-To") or "")
    if doc is None or "json" not in (headers.get_header("Content-Type") or ""):
        return  # metadata of something else (e.g. a crawler's own log)
    try:
        known = json.loads(record.content_stream().read())
    except ValueError as exc:
        problems.append({"offset": offset, "error": f"metadata record is not JSON: {exc}"})
        return
    for name, value in known.items() if isinstance(known, dict) else ():
        column = SOURCE_METADATA_COLUMNS.get(name)
        if column and value not in (None, "", []):
            if isinstance(value, list):  # a book in several languages is filed under its first
                value = value[0] if column == "language" else "; ".join(map(str, value))
            doc[column] = str(value)


def import_documents(file: InputFile, problems: list[dict]) -> Iterator[dict]:
    """The documents of a JSONL(.gz) or Parquet file; a bad row is one recorded problem, and a
    repeated id keeps its first row (the module docstring says how the others are rejected)."""
    rows = with_text = 0
    fields_seen: set[str] = set()
    first_line: dict[str, int] = {}  # id -> the line that has it
    for line, row in _document_rows(file, problems):
        if not isinstance(row, dict):
            problems.append({"line": line, "error": f"expected a JSON object, got {_kind(row)}"})
            continue
        rows += 1
        with_text += file.text_key in row
        fields_seen.update(row)
        try:
            doc = _imported_document(file, line, row)
        except BadRow as exc:
            problems.append({"line": line, "error": str(exc)})
            continue
        first = first_line.setdefault(doc["id"], line)
        if first != line:
            doc = _duplicate(doc, file, line, first)
        yield doc
    if rows and not with_text:
        raise ConfigError(
            f"sources.{file.source}.documents: {file.path}: no row has a {file.text_key!r} "
            f"field (fields: {', '.join(sorted(fields_seen)[:12])}); name it with "
            f"sources.{file.source}.text_key"
        )


class BadRow(ValueError):
    """A row of a document file that cannot be a document; the message says which field."""


def _imported_document(file: InputFile, line: int, row: dict[str, Any]) -> dict:
    text = row.get(file.text_key)
    if text is not None and not isinstance(text, str):
        raise BadRow(f"{file.text_key!r} is {_kind(text)}, not a string")
    url = row.get("url")
    if url is not None and not isinstance(url, str):
        raise BadRow(f"'url' is {_kind(url)}, not a string")
    doc = {
        "id": _imported_id(file, line, row.get(file.id_key)),
        "text": text or "",
        "source": file.source,
        "source_kind": file.kind,
        "generation": file.generation,
        "warc_file": file.path,
        "warc_offset": line,
        "hostname": _hostname(url),
        **{name: _field_text(name, row.get(name)) for name in IMPORTED_FIELDS},
    }
    for name, value in doc.items():
        if isinstance(value, str) and not _encodable(value):
            raise BadRow(f"{name!r} holds a lone surrogate (e.g. \\ud800): not valid Unicode")
    if not doc["text"].strip():
        return _reject(doc, "empty_text", f"line {line}: no text")
    return doc


def _imported_id(file: InputFile, line: int, value: Any) -> str:
    """The row's own id, or the digest of where it is (the same file gives the same ids)."""
    if value is None or value == "":
        return short_digest(f"{file.sha256}:{line}")
    if isinstance(value, dict | list):
        raise BadRow(f"{file.id_key!r} is {_kind(value)}, not a string or number")
    return str(value)


def _duplicate(doc: dict, file: InputFile, line: int, first: int) -> dict:
    """A row whose id an earlier row has: rejected, under the digest of its line, so that a
    document's id names one row (dedup, takedown and `inspect` find documents by id)."""
    detail = f"line {line}: id {doc['id']!r} is also at line {first}, which is kept"
    duplicate = {**doc, "id": short_digest(f"{file.sha256}:{line}")}
    if "reason" in duplicate:  # already rejected (no text): its first reason stays
        duplicate["detail"] += f"; {detail}"
        return duplicate
    return _reject(duplicate, "duplicate_id", detail)


def _field_text(name: str, value: Any) -> str | None:
    """A metadata field as text: a list of plain values joined with "; " (several authors),
    other plain values (numbers, dates in Parquet) as written; an object is the row's error."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and not any(isinstance(v, dict | list) for v in value):
        return "; ".join(map(str, value))
    if isinstance(value, dict | list):
        raise BadRow(f"{name!r} is {_kind(value)}, not text")
    return str(value)


def _kind(value: Any) -> str:
    """What a JSON value is, in JSON's words."""
    kinds = {dict: "an object", list: "a list", bool: "a boolean", int: "a number"}
    return kinds.get(type(value), "a number" if isinstance(value, float) else type(value).__name__)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# What a damaged file raises part way: gzip (truncated, damaged, not gzip at all), Parquet.
# Not every OSError: a read that failed for a moment (a network error) must fail the unit,
# to be run again, rather than be committed as the file's end.
_DAMAGED_FILE = (EOFError, zlib.error, gzip.BadGzipFile, pa.ArrowInvalid)


def _document_rows(file: InputFile, problems: list[dict]) -> Iterator[tuple[int, Any]]:
    """(line, row) from 1, as editors and error messages count lines (Parquet: rows). A file
    that cannot be read to its end is one problem, at the first line it could not give."""
    line = 0
    rows = _parquet_rows(file) if file.path.endswith(".parquet") else _jsonl_rows(file, problems)
    try:
        for line, row in rows:
            yield line, row
    except _DAMAGED_FILE as exc:
        after = f"nothing after line {line} could be read" if line else "no row could be read"
        problems.append({"line": line + 1, "error": f"{_damage(exc)}: {after}"})


def _damage(exc: Exception) -> str:
    if isinstance(exc, EOFError):
        return "the gzip data ends early (a truncated file)"
    if isinstance(exc, zlib.error | gzip.BadGzipFile):
        return f"damaged gzip data ({exc})"
    return f"not a readable Parquet file ({exc})"


def _parquet_rows(file: InputFile) -> Iterator[tuple[int, Any]]:
    with fsspec.open(file.url, "rb") as fh:
        line = 1
        for batch in pq.ParquetFile(fh).iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                yield line, row
                line += 1


def _jsonl_rows(file: InputFile, problems: list[dict]) -> Iterator[tuple[int, Any]]:
    """Lines are decoded one by one, so a line that is not UTF-8 costs only itself."""
    with fsspec.open(file.url, "rb", compression="infer") as fh:
        for line, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                problems.append(
                    {"line": line, "error": f"not UTF-8 (byte {exc.start + 1} of the line)"}
                )
                continue
            except json.JSONDecodeError as exc:
                problems.append({"line": line, "error": f"not JSON: {exc}"})
                continue
            yield line, row


def record_to_document(
    record: Any, offset: int, file: InputFile, cfg: ExtractConfig
) -> dict | None:
    """A document, a rejected document (with `reason`), or None for records that are not
    documents at all (requests, metadata, warcinfo)."""
    rec_type = record.rec_type
    if rec_type not in ("response", "resource", "revisit"):
        return None
    headers = record.rec_headers
    url = _target_uri(headers.get_header("WARC-Target-URI"))
    # warcio invents a random record id for ARC records: only a WARC's own id is provenance
    is_arc = file.path.endswith((".arc", ".arc.gz"))
    record_id = None if is_arc else headers.get_header("WARC-Record-ID")
    doc: dict[str, Any] = {
        "id": short_digest(f"{file.sha256}:{offset}"),  # the same bytes give the same id
        "text": "",
        "source": file.source,
        "source_kind": file.kind,
        "url": url,
        "generation": file.generation,
        "warc_file": file.path,
        "warc_offset": offset,
        "warc_record_id": record_id,
        "warc_date": headers.get_header("WARC-Date"),
        "hostname": _hostname(url),
    }
    if rec_type == "revisit":
        return _reject(doc, "revisit", headers.get_header("WARC-Refers-To-Target-URI") or "")
    if not (url or "").startswith(("http://", "https://")):
        return _reject(doc, "not_web", f"URI {url}")  # e.g. wget's own log as a resource record

    http = record.http_headers if rec_type == "response" else None
    if http is not None:
        status = _status(http.get_statuscode())
        doc["http_status"] = status
        if status is not None and not 200 <= status < 300:
            return _reject(doc, "http_status", str(status))
        content_type = http.get_header("Content-Type") or ""
        language_header = http.get_header("Content-Language")
    else:
        content_type = headers.get_header("Content-Type") or ""
        language_header = None
    media_type, declared_charset = _parse_content_type(content_type)

    limit = int(cfg.max_page_mb * 1024 * 1024)
    payload = record.content_stream().read(limit + 1)
    if len(payload) > limit:
        return _reject(doc, "too_large", f"> {cfg.max_page_mb} MB")
    if is_truncated(record):
        return _reject(doc, "truncated_record", f"{len(payload)} payload bytes before the end")
    if not media_type or media_type in ("application/octet-stream", "unk", "unknown"):
        media_type = "text/html" if _looks_like_html(payload) else media_type
    doc["content_type"] = media_type or None
    if media_type not in HTML_TYPES | TEXT_TYPES:
        return _reject(doc, "content_type", media_type or "missing")

    text, charset = decode_payload(payload, declared_charset, media_type in HTML_TYPES)
    doc["charset"] = charset
    if media_type in TEXT_TYPES and file.kind == "book":
        doc["text"], found = gutenberg.strip_boilerplate(text)
        doc["flags"] = ["gutenberg_no_markers"] if found == "no_markers" else None
        doc["language"] = _language(language_header)
    elif media_type in TEXT_TYPES:
        doc["text"] = text.replace("\r\n", "\n").replace("\r", "\n").strip()
        doc["language"] = _language(language_header)
    else:
        try:
            with time_limit(cfg.timeout_s):
                extracted = extract_html(text, url, cfg)
        except PageTimeout:
            return _reject(doc, "extract_timeout", f"> {cfg.timeout_s} s")
        except Exception as exc:  # one bad page must not stop the shard
            return _reject(doc, "extract_error", f"{type(exc).__name__}: {exc}")
        if extracted is None:
            return _reject(doc, "empty_extraction", "no main text found")
        doc.update(extracted)
        doc["language"] = doc.get("language") or _language(language_header)
    if len(doc["text"]) < cfg.min_text_chars:
        return _reject(doc, "empty_extraction", f"{len(doc['text'])} chars")
    return doc


def extract_html(html: str, url: str | None, cfg: ExtractConfig) -> dict[str, Any] | None:
    """trafilatura's extraction with its fallbacks: main text plus metadata, or None."""
    tree = load_html(html)
    if tree is None:
        return None
    lang = tree.get("lang") or tree.get("{http://www.w3.org/XML/1998/namespace}lang")
    result = trafilatura.bare_extraction(
        tree,
        url=url,
        fast=cfg.fast,
        include_comments=cfg.include_comments,
        include_tables=cfg.include_tables,
        favor_precision=cfg.favor_precision,
        favor_recall=cfg.favor_recall,
        with_metadata=True,
    )
    if result is None or not result.text:
        return None
    fields = {
        "text": result.text,
        "title": result.title,
        "author": result.author,
        "date": result.date,
        "sitename": result.sitename,
        "description": result.description,
        "categories": ", ".join(result.categories or []) or None,
        "tags": ", ".join(result.tags or []) or None,
        "license": result.license,
        "language": _language(lang),
    }
    return fields


def decode_payload(payload: bytes, declared: str | None, is_html: bool) -> tuple[str, str]:
    """Bytes to text and the charset used: a byte-order mark; else UTF-8 when the bytes are
    valid UTF-8 with non-ASCII in them (a wrong latin-1 label is a common server default); else
    the declared charset, then the page's <meta charset>, then detection (charset_normalizer,
    as trafilatura does). Latin-1 and ASCII labels mean windows-1252, as browsers read them."""
    for bom, charset in BOMS:
        if payload.startswith(bom):
            return payload[len(bom) :].decode(charset, errors="replace"), charset
    meta = _META_CHARSET.search(payload[:4096]) if is_html else None
    candidates = [
        "utf-8" if not payload.isascii() else None,
        declared,
        meta.group(1).decode("ascii") if meta else None,
        "utf-8",
    ]
    for label in candidates:
        charset = codec(label)
        if charset:
            try:
                return payload.decode(charset), charset
            except UnicodeDecodeError:
                continue
    return decode_file(payload), "detected"


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block after `seconds` (SIGALRM; the main thread of a worker process).
    Thread-based runners cannot interrupt Python code, so there the block runs unlimited."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: Any) -> None:
        raise PageTimeout()

    outer_left, _ = signal.getitimer(signal.ITIMER_REAL)  # e.g. a test runner's own timeout
    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_left:  # give the outer timer back what is left of it
            signal.setitimer(
                signal.ITIMER_REAL, max(outer_left - (time.monotonic() - started), 1e-3)
            )


def _reject(doc: dict, reason: str, detail: str) -> dict:
    doc["stage"] = NAME
    doc["reason"] = reason
    doc["detail"] = detail
    return doc


def _target_uri(value: str | None) -> str | None:
    # Some WARC 1.1 writers wrap the URI in <...> (an older draft of the spec)
    return value.strip().removeprefix("<").removesuffix(">") if value else None


def _status(code: str | None) -> int | None:
    try:
        return int(code) if code else None
    except ValueError:
        return None


def _parse_content_type(value: str) -> tuple[str, str | None]:
    media_type, _, params = value.partition(";")
    charset = None
    for param in params.split(";"):
        name, _, val = param.partition("=")
        if name.strip().lower() == "charset":
            charset = val.strip().strip("\"'") or None
    return media_type.strip().lower(), charset


def _looks_like_html(payload: bytes) -> bool:
    head = payload[:1024].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html")) or b"<html" in head


def _language(value: str | None) -> str | None:
    match = _LANGUAGE_TAG.match(value.strip()) if value else None
    return match.group(1).lower() if match else None


def _hostname(url: str | None) -> str | None:
    try:
        return urlsplit(url).hostname if url else None
    except ValueError:  # e.g. "http://[bad/"
        return None
