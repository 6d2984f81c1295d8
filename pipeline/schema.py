"""The document schema every dataset stage reads and writes.

A document keeps its provenance (source, URL, crawl generation, WARC file and record offset) so
any text can be traced to the exact bytes it came from; later stages add their own columns
(filter scores, dedup clusters) beside these.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

DOCUMENT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        # the text's length in characters (code points), set by `with_chars` whenever a stage
        # writes documents, so that lengths are summed and ranked without reading any text
        pa.field("chars", pa.int64()),
        # provenance
        pa.field("source", pa.string()),  # the config's source name
        pa.field("source_kind", pa.string()),  # web | article | book
        pa.field("url", pa.string()),
        pa.field("generation", pa.string()),  # crawl generation; null for listed WARC files
        pa.field("warc_file", pa.string()),
        pa.field("warc_offset", pa.int64()),  # byte offset of the record in warc_file
        pa.field("warc_record_id", pa.string()),
        pa.field("warc_date", pa.string()),
        pa.field("http_status", pa.int32()),
        pa.field("content_type", pa.string()),
        pa.field("charset", pa.string()),
        # metadata, when known
        pa.field("title", pa.string()),
        pa.field("author", pa.string()),
        pa.field("date", pa.string()),
        pa.field("hostname", pa.string()),
        pa.field("sitename", pa.string()),
        pa.field("description", pa.string()),
        pa.field("categories", pa.string()),
        pa.field("tags", pa.string()),
        pa.field("license", pa.string()),
        pa.field("language", pa.string()),
        # what a stage noticed but did not act on, e.g. "gutenberg_no_markers"
        pa.field("flags", pa.list_(pa.string())),
    ]
)


def rejected_schema_of(schema: pa.Schema) -> pa.Schema:
    """What a stage dropped: the document's columns (text may be empty) plus which stage dropped
    it, the reason (a short stable name, e.g. "near_duplicate") and a detail for people."""
    for name in ("stage", "reason", "detail"):
        if schema.get_field_index(name) >= 0:
            schema = schema.remove(schema.get_field_index(name))
    return (
        schema.append(pa.field("stage", pa.string()))
        .append(pa.field("reason", pa.string(), nullable=False))
        .append(pa.field("detail", pa.string()))
    )


REJECTED_SCHEMA = rejected_schema_of(DOCUMENT_SCHEMA)


def with_chars(table: pa.Table) -> pa.Table:
    """The table with its `chars` column (added if missing) set to the length of its text, as
    Python's len and DuckDB's length count it. `VersionBuilder.write_part` calls it on every
    part with a text column, so a stage that edits text (clean, dedup, a takedown) never
    leaves a stale count."""
    field = DOCUMENT_SCHEMA.field("chars")
    chars = pc.utf8_length(table["text"]).cast(pa.int64())
    index = table.schema.get_field_index("chars")
    if index < 0:
        return table.append_column(field, chars)
    return table.set_column(index, field, chars)


def documents_table(rows: list[dict], schema: pa.Schema = DOCUMENT_SCHEMA) -> pa.Table:
    """Rows (dicts; missing keys are null) as a table of exactly `schema`."""
    return pa.Table.from_pylist(rows, schema=schema)
