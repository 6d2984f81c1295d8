"""The extract stage on WARC files we write ourselves, and on the real ones in ../shared/data."""

from __future__ import annotations

import gzip
import io
import json
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from pipeline import extract, gutenberg
from pipeline.cli import main
from pipeline.config import ConfigError, load_config
from pipeline.datasets import Dataset
from pipeline.runner import make_map
from pipeline.stage import run
from pipeline.stages import EXTRACT
from pipeline.warc import iter_records, open_binary
from pipeline.workspace import Workspace
from tests.conftest import SHARED_DATA, needs_shared_data
from tests.helpers import article, slow_page_warc, write_config, write_warc

LATIN1_PAGE = (
    "<html><head><meta charset='iso-8859-1'><title>Café</title></head><body><article>"
    "<p>Größere Übungen für Anfänger: über die Brücke zum Bahnhof, und dann weiter zur Straße "
    "mit den schönen Häusern, wo die Bäckerei frische Brötchen verkauft.</p>"
    "<p>Noch ein Absatz, damit die Seite wie ein echter Artikel aussieht und genug Text hat.</p>"
    "</article></body></html>"
).encode("iso-8859-1")


def _mixed_records() -> list[dict]:
    return [
        {"url": "https://example.org/a", "body": article("First article", "Alpha.")},
        {
            "url": "https://example.org/book.txt",
            "body": b"CHAPTER I.\r\nIt was a dark night.\r\n",
            "content_type": "text/plain; charset=us-ascii",
        },
        {"url": "https://example.org/latin", "body": LATIN1_PAGE, "content_type": "text/html"},
        {"url": "https://example.org/a", "type": "revisit", "body": b""},
        {
            "url": "https://example.org/missing",
            "body": b"<html>gone</html>",
            "status": "404 Not Found",
        },
        {
            "url": "https://example.org/logo.png",
            "body": b"\x89PNG\r\n",
            "content_type": "image/png",
        },
        {"url": "https://example.org/empty", "body": b"<html><body></body></html>"},
    ]


def _run(config: Path, *overrides: str) -> tuple[dict, Workspace]:
    cfg = load_config(config, list(overrides))
    ws = Workspace(cfg.workspace_root)
    return run(EXTRACT, cfg, ws, make_map(cfg.runner)), ws


def test_every_response_becomes_a_document_or_a_reasoned_rejection(tmp_path):
    warc = write_warc(tmp_path / "in" / "mixed.warc.gz", _mixed_records())
    result, ws = _run(write_config(tmp_path, [str(warc)]))
    dataset = Dataset.current(ws, "extract")
    docs = {d["url"]: d for d in dataset.read().to_pylist()}
    rejected = {(d["url"], d["reason"]) for d in dataset.read(rejected=True).to_pylist()}

    assert set(docs) == {
        "https://example.org/a",
        "https://example.org/book.txt",
        "https://example.org/latin",
    }
    assert rejected == {
        ("https://example.org/a", "revisit"),
        ("https://example.org/missing", "http_status"),
        ("https://example.org/logo.png", "content_type"),
        ("https://example.org/empty", "empty_extraction"),
    }
    assert result["docs_in"] == 7 and result["docs_out"] == 3
    assert dataset.manifest.dropped == {
        "content_type": 1,
        "empty_extraction": 1,
        "http_status": 1,
        "revisit": 1,
    }

    page = docs["https://example.org/a"]
    assert "Jacquard loom" in page["text"] and "Alpha." in page["text"]
    assert "All rights reserved" not in page["text"]  # boilerplate left out
    assert page["title"] == "First article"
    assert page["author"] == "Ada Lovelace"
    assert page["language"] == "en"
    assert page["hostname"] == "example.org"
    assert page["source"] == "pages" and page["source_kind"] == "web"
    assert page["http_status"] == 200 and page["warc_file"] == str(warc)

    assert docs["https://example.org/book.txt"]["text"] == "CHAPTER I.\nIt was a dark night."
    latin = docs["https://example.org/latin"]
    assert "Größere Übungen für Anfänger" in latin["text"]
    assert latin["charset"] == "cp1252"  # as browsers read a latin-1 label


def test_provenance_points_at_the_record(tmp_path):
    warc = write_warc(tmp_path / "in" / "mixed.warc.gz", _mixed_records())
    _, ws = _run(write_config(tmp_path, [str(warc)]))
    for doc in Dataset.current(ws, "extract").read().to_pylist():
        with open_binary(doc["warc_file"]) as fh:
            record = next(iter_records(fh, doc["warc_offset"])).record
        assert record.rec_headers.get_header("WARC-Target-URI") == doc["url"]
        assert record.rec_headers.get_header("WARC-Record-ID") == doc["warc_record_id"]


def test_large_files_split_into_units_give_the_same_documents(tmp_path):
    records = [
        {"url": f"https://example.org/{i}", "body": article(f"Page {i}", f"Number {i}.")}
        for i in range(40)
    ]
    warc = write_warc(tmp_path / "in" / "big.warc.gz", records)
    config = write_config(tmp_path, [str(warc)])
    whole, ws = _run(config)
    split, _ = _run(config, f"workspace={tmp_path / 'split'}", "runner.chunk_mb=0.002")
    assert whole["units_run"] == 1 and split["units_run"] > 5
    columns = ["id", "url", "text", "warc_offset"]
    expected = Dataset.current(ws, "extract").read(columns).to_pylist()
    got = Dataset.current(Workspace(str(tmp_path / "split")), "extract").read(columns).to_pylist()
    assert got == expected and len(got) == 40


def test_a_page_over_the_time_limit_is_rejected_and_the_shard_goes_on(tmp_path, monkeypatch):
    warc = slow_page_warc(tmp_path, monkeypatch, seconds=5)
    started = time.perf_counter()
    _, ws = _run(write_config(tmp_path, [str(warc)], extract={"timeout_s": 0.5}))
    assert time.perf_counter() - started < 4
    dataset = Dataset.current(ws, "extract")
    assert [d["url"] for d in dataset.read(["url"]).to_pylist()] == ["https://example.org/fast"]
    assert dataset.manifest.dropped == {"extract_timeout": 1}


def test_a_truncated_file_yields_what_it_can_and_reports_where(tmp_path):
    records = [{"url": f"https://example.org/{i}", "body": article(f"Page {i}")} for i in range(5)]
    whole = write_warc(tmp_path / "whole.warc", records).read_bytes()
    cut = tmp_path / "in" / "cut.warc"
    cut.parent.mkdir()
    cut.write_bytes(whole[: int(len(whole) * 0.7)])
    result, ws = _run(write_config(tmp_path, [str(cut)]))
    manifest = Dataset.current(ws, "extract").manifest
    assert 2 <= result["docs_out"] < 5
    assert manifest.errors and manifest.errors[0]["file"] == str(cut)
    assert manifest.errors[0]["offset"] > 0


@needs_shared_data
def test_all_shared_warc_files(tmp_path):
    """~100 real HTML pages come out; the broken files are reported, not fatal."""
    warcs = [
        str(SHARED_DATA / "warc" / "**" / pattern)
        for pattern in ("*.warc", "*.warc.gz", "*.arc", "*.arc.gz", "*.warc.gz.bad")
    ]
    config = write_config(tmp_path, warcs, extract={"timeout_s": 20})
    result, ws = _run(config, "runner.task_runner=processes", "runner.workers=2")
    manifest = Dataset.current(ws, "extract").manifest
    assert 100 <= result["docs_out"] <= 140
    assert manifest.dropped["revisit"] >= 120  # iana.org's payload-digest revisits
    broken = {Path(e["file"]).name for e in manifest.errors}
    assert {
        "example-bad-non-chunked.warc.gz",
        "example-wrong-chunks.warc.gz",
        "example-bad.warc.gz.bad",
    } <= broken
    docs = Dataset.current(ws, "extract").read(["url", "warc_file", "language"]).to_pylist()
    # Dolma's samples: modern pages, every one a document (URIs wrapped in <...> there)
    dolma = [d for d in docs if "/dolma/" in d["warc_file"]]
    assert len(dolma) == _count_html_responses(SHARED_DATA.glob("warc/dolma/*.warc.gz"))
    assert all(d["url"].startswith("https://") for d in dolma)
    assert sum(1 for d in docs if d["language"] == "en") >= 30


def _count_html_responses(paths) -> int:
    count = 0
    for path in paths:
        with open(path, "rb") as fh:
            for record in ArchiveIterator(fh):
                if record.rec_type == "response" and "html" in (
                    record.http_headers.get_header("Content-Type") or ""
                ):
                    count += 1
    return count


@needs_shared_data
@pytest.mark.parametrize("name", ["iana.warc.gz", "clueweb-quirk.warc.gz"])
def test_real_warc_documents_have_text_and_provenance(tmp_path, name):
    warc = next(SHARED_DATA.glob(f"warc/*/{name}"))
    _, ws = _run(write_config(tmp_path, [str(warc)]))
    docs = Dataset.current(ws, "extract").read().to_pylist()
    assert docs
    for doc in docs:
        assert doc["text"].strip() and doc["url"].startswith("http")
        assert doc["warc_file"] == str(warc) and doc["warc_offset"] >= 0


def test_reads_finished_crawl_generations_and_skips_unfinished_ones(tmp_path):
    crawl = tmp_path / "workspace" / "crawl" / "pages"
    for generation, finished in (("20260101T000000Z", True), ("20260201T000000Z", False)):
        write_warc(
            crawl / generation / "00000.warc.gz",
            [{"url": f"https://{generation}.example/", "body": article(generation)}],
        )
        if finished:
            (crawl / generation / "_manifest.json").write_text("{}")
    config = write_config(tmp_path, [])
    _, ws = _run(config)
    docs = Dataset.current(ws, "extract").read().to_pylist()
    assert [d["generation"] for d in docs] == ["20260101T000000Z"]
    assert docs[0]["warc_file"] == "crawl/pages/20260101T000000Z/00000.warc.gz"

    (crawl / "20260201T000000Z" / "_manifest.json").write_text("{}")  # that crawl ended
    second, _ = _run(config)
    assert second["units_run"] == 1 and second["units_reused"] == 1
    assert second["docs_out"] == 2
    newest, _ = _run(config, "extract.generation_window=1")
    docs = Dataset.current(ws, "extract").read(["generation"]).to_pylist()
    assert newest["docs_out"] == 1 and docs == [{"generation": "20260201T000000Z"}]
    assert newest["units_run"] == 0 and newest["units_reused"] == 1  # the window is no new work


def test_no_inputs_at_all_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no input files"):
        _run(write_config(tmp_path, []))


def test_a_workspace_on_another_filesystem(tmp_path):
    """Everything goes through fsspec: an in-memory filesystem stands in for s3:// here."""
    warc = write_warc(tmp_path / "in" / "a.warc.gz", _mixed_records())
    result, ws = _run(write_config(tmp_path, [str(warc)]), "workspace=memory://textmill-test")
    assert result["docs_out"] == 3
    assert not ws.storage.is_local and ws.storage.url("x").startswith("memory:")
    assert Dataset.current(ws, "extract").read(["url"]).num_rows == 3
    again, _ = _run(write_config(tmp_path, [str(warc)]), "workspace=memory://textmill-test")
    assert not again["built"]


@pytest.mark.parametrize(
    ("payload", "declared", "text", "charset"),
    [
        ("Grüße".encode(), "iso-8859-1", "Grüße", "utf-8"),  # a wrong server default
        ("“quoted”".encode("cp1252"), "iso-8859-1", "“quoted”", "cp1252"),
        (b"\xef\xbb\xbfWith BOM", None, "With BOM", "utf-8"),
        ("Привет".encode("koi8-r"), "KOI8-R", "Привет", "koi8-r"),
        (b"plain ascii", "UTF8", "plain ascii", "utf-8"),
    ],
)
def test_charset_decoding(payload, declared, text, charset):
    assert extract.decode_payload(payload, declared, is_html=False) == (text, charset)


def test_a_malformed_record_is_reported_and_the_unit_goes_on(tmp_path):
    warc = write_warc(
        tmp_path / "in" / "bad.warc.gz",
        [
            {"url": "http://[bad/", "body": article("Broken URL")},
            {"url": "https://example.org/ok", "body": article("Fine")},
        ],
    )
    result, ws = _run(write_config(tmp_path, [str(warc)]))
    manifest = Dataset.current(ws, "extract").manifest
    assert result["docs_out"] == 2  # the bad URL has no hostname, its text is still there
    docs = Dataset.current(ws, "extract").read(["url", "hostname"]).to_pylist()
    assert {"url": "http://[bad/", "hostname": None} in docs and not manifest.errors


def test_overlapping_globs_read_each_file_once(tmp_path):
    warc = write_warc(tmp_path / "in" / "a.warc.gz", _mixed_records())
    result, _ = _run(write_config(tmp_path, [str(warc), str(tmp_path / "in" / "*.gz")]))
    assert result["docs_out"] == 3 and result["units_run"] == 1


@needs_shared_data
def test_ids_are_stable_across_runs_even_for_arc_files(tmp_path):
    arc = SHARED_DATA / "warc" / "warcio" / "example.arc"
    ids = []
    for name in ("one", "two"):
        _, ws = _run(write_config(tmp_path / name, [str(arc)]))
        ids.append(Dataset.current(ws, "extract").read(["id", "warc_record_id"]).to_pylist())
    assert ids[0] == ids[1] and ids[0] and all(d["warc_record_id"] is None for d in ids[0])


def test_language_tags():
    assert [extract._language(v) for v in ("en-GB", "de", "pt_BR", "English", "", None)] == [
        "en",
        "de",
        "pt",
        None,
        None,
        None,
    ]


BOOK_ENDS = {  # first and last words of the book's own text, as printed
    "11.txt": ("ALICE'S ADVENTURES IN WONDERLAND", "THE END"),
    "84.txt": ("Frankenstein,", "lost in darkness and distance."),
    "1342.txt": ("PRIDE AND PREJUDICE", "been the means of uniting them."),
    "972.txt": ("THE DEVIL'S DICTIONARY", "sheds its horn every two years."),
    "24675-8.txt": ("ELK DEEL IS AFZONDERLIJK VERKRIJGBAAR", None),  # ISO-8859-1, Dutch
    "44157-0.txt": ("Au lecteur.", None),  # UTF-8 with a byte-order mark, French
}


@needs_shared_data
def test_gutenberg_books_lose_the_license_and_keep_their_text(tmp_path):
    books = sorted((SHARED_DATA / "gutenberg" / "books").iterdir())
    records = [
        {
            "url": f"https://mirror.example/{p.name}",
            "body": p.read_bytes(),
            "content_type": "text/plain",
        }
        for p in books
    ]
    warc = write_warc(tmp_path / "in" / "books.warc.gz", records)
    path = tmp_path / "run.yaml"
    path.write_text(
        f"workspace: {tmp_path / 'ws'}\nrunner: {{task_runner: serial}}\n"
        f"sources: [{{name: gutenberg, kind: book, warc: ['{warc}']}}]\n"
    )
    _, ws = _run(path)
    docs = {
        d["url"].rsplit("/", 1)[1]: d for d in Dataset.current(ws, "extract").read().to_pylist()
    }
    assert len(docs) == 10
    for name, doc in docs.items():
        assert gutenberg.license_text(doc["text"]) == [], name
        assert doc["flags"] is None and len(doc["text"]) > 100_000, name
    for name, (first, last) in BOOK_ENDS.items():
        assert docs[name]["text"].lstrip().startswith(first), name
        assert last is None or docs[name]["text"].rstrip().endswith(last), name
    assert "Größ" not in docs["24675-8.txt"]["text"] and "ë" in docs["24675-8.txt"]["text"]


def test_a_book_without_markers_is_kept_whole_and_flagged(tmp_path):
    body = b"CHAPTER I\n\nA book that never mentions its origin.\n"
    warc = write_warc(
        tmp_path / "in" / "b.warc.gz",
        [{"url": "https://books.example/1.txt", "body": body, "content_type": "text/plain"}],
    )
    path = tmp_path / "run.yaml"
    path.write_text(
        f"workspace: {tmp_path / 'ws'}\nrunner: {{task_runner: serial}}\n"
        f"sources: [{{name: b, kind: book, warc: ['{warc}']}}]\n"
    )
    _, ws = _run(path)
    (doc,) = Dataset.current(ws, "extract").read().to_pylist()
    assert doc["text"] == body.decode().strip() and doc["flags"] == ["gutenberg_no_markers"]


def test_source_metadata_records_reach_the_document(tmp_path):
    """A crawl writes what a source knew (a feed item's title and author, a catalog record) as
    a JSON metadata record referring to the response; extract puts it on the document."""
    path = tmp_path / "in" / "crawl.warc.gz"
    path.parent.mkdir(parents=True)
    with open(path, "wb") as fh:
        writer = WARCWriter(fh, gzip=True)
        for url, title in (("https://example.org/a", "Feed title"), ("https://example.org/b", "")):
            http = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], "HTTP/1.1")
            response = writer.create_warc_record(
                url, "response", payload=io.BytesIO(article("Page title")), http_headers=http
            )
            writer.write_record(response)
            known = {"title": title, "authors": ["Ada Lovelace", "Charles Babbage"]}
            writer.write_record(
                writer.create_warc_record(
                    url,
                    "metadata",
                    payload=io.BytesIO(json.dumps(known).encode()),
                    warc_headers_dict={
                        "WARC-Refers-To": response.rec_headers.get_header("WARC-Record-ID"),
                        "Content-Type": "application/json",
                    },
                )
            )
    _, ws = _run(write_config(tmp_path, [str(path)]))
    docs = {d["url"]: d for d in Dataset.current(ws, "extract").read().to_pylist()}
    assert docs["https://example.org/a"]["title"] == "Feed title"
    assert docs["https://example.org/b"]["title"] == "Page title"  # empty values don't replace
    assert docs["https://example.org/a"]["author"] == "Ada Lovelace; Charles Babbage"


def test_document_files_are_imported_as_they_are(tmp_path):
    rows = [
        {"id": "d1", "text": "First document.", "url": "https://example.org/1", "title": "One"},
        {"text": "Second document, without an id."},
        {"id": "d3", "text": "   "},
    ]
    jsonl = tmp_path / "in" / "docs.jsonl.gz"
    jsonl.parent.mkdir(parents=True)
    with gzip.open(jsonl, "wt") as fh:
        fh.writelines(json.dumps(row) + "\n" for row in rows)
        fh.write("{not json\n")
    parquet = tmp_path / "in" / "more.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": "p1", "text": "From Parquet."}]), parquet)
    config = write_config(tmp_path, [])
    data = yaml.safe_load(config.read_text())
    data["sources"][0]["documents"] = [str(jsonl), str(parquet)]
    config.write_text(yaml.safe_dump(data))
    result, ws = _run(config)
    dataset = Dataset.current(ws, "extract")
    docs = {d["id"]: d for d in dataset.read().to_pylist()}
    assert set(docs) - {"d1", "p1"} and {"d1", "p1"} <= set(docs)  # the id-less one gets one
    assert docs["d1"]["title"] == "One" and docs["d1"]["hostname"] == "example.org"
    assert docs["d1"]["warc_file"] == str(jsonl) and docs["d1"]["warc_offset"] == 1
    assert result["dropped"] == {"empty_text": 1}
    assert [e["line"] for e in dataset.manifest.errors] == [4]  # lines count from 1


def _documents_config(tmp_path, rows: list[dict], **source: str):
    jsonl = tmp_path / "in" / "docs.jsonl"
    jsonl.parent.mkdir(parents=True, exist_ok=True)
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = write_config(tmp_path, [])
    data = yaml.safe_load(config.read_text())
    data["sources"][0].update(documents=[str(jsonl)], **source)
    config.write_text(yaml.safe_dump(data))
    return config


CONTENT_ROWS = [
    {"doc_id": "a", "content": "The first text of this corpus."},
    {"doc_id": "b", "content": "The second text of this corpus."},
]


def test_the_text_and_id_fields_of_a_document_file_can_be_named(tmp_path):
    config = _documents_config(tmp_path, CONTENT_ROWS, text_key="content", id_key="doc_id")
    _, ws = _run(config)
    docs = {d["id"]: d["text"] for d in Dataset.current(ws, "extract").read().to_pylist()}
    assert docs == {"a": CONTENT_ROWS[0]["content"], "b": CONTENT_ROWS[1]["content"]}


def test_a_document_file_without_the_text_field_is_one_clear_error(tmp_path):
    config = _documents_config(tmp_path, CONTENT_ROWS)
    result = CliRunner().invoke(main, ["run", "extract", "-c", str(config), "--no-prefect"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("textmill: error: sources.") and "'text'" in lines[-1]
    assert "content" in lines[-1] and "text_key" in lines[-1]
    assert "Traceback" not in result.output
