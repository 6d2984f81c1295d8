"""The document schema every dataset stage reads and writes.

A document keeps its provenance (source, URL, crawl generation, WARC file and record offset) so
any text can be traced to the exact bytes it came from; later stages add their own columns
(filter scores, dedup clusters) beside these.
"""

from __future__ import annotations

import pyarrow as pa

DOCUMENT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
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


def documents_table(rows: list[dict], schema: pa.Schema = DOCUMENT_SCHEMA) -> pa.Table:
    """Rows (dicts; missing keys are null) as a table of exactly `schema`."""
    return pa.Table.from_pylist(rows, schema=schema)
