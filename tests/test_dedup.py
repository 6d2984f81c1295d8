"""Dedup's algorithms on real duplicates (doorway pages, Dolma's fixture) and on small cases."""

from __future__ import annotations

import gzip
import itertools
import json
import os
import random
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from datasketch import MinHash, MinHashLSH

from pipeline import clean, dedup, gutenberg
from pipeline.config import CleanConfig, DedupConfig, ExtractConfig
from pipeline.extract import extract_html
from pipeline.schema import DOCUMENT_SCHEMA, documents_table
from tests.conftest import SHARED_DATA, needs_shared_data

DOORWAY = SHARED_DATA / "near-duplicates" / "heizung-defekt-doorway-pages"
DOLMA = SHARED_DATA / "near-duplicates" / "dolma-dedup-fixture"
BOOKS = SHARED_DATA / "gutenberg" / "books"

PROSE_TEXT = (
    "The river rose slowly through the night while the village slept, and by morning the "
    "low fields by the mill were under water. Farmers came out with their carts to move the "
    "grain, the miller opened his sluices, and the children watched from the church steps as "
    "the brown water carried branches, fence posts and a bewildered duck past the bakery."
)
PROSE = PROSE_TEXT.split()


def docs_table(rows: list[dict]) -> pa.Table:
    return documents_table([{"source_kind": "web", **row} for row in rows], DOCUMENT_SCHEMA)


def run_dedup(
    parts: list[pa.Table], cfg: DedupConfig, folder: Path
) -> tuple[pa.Table, list[pa.Table], list[dict], Counter]:
    """Map, reduce and write-out as the stage runs them: (clusters, kept parts, rejected,
    counts)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i, part in enumerate(parts):
        files.append(str(folder / f"signatures-{i}.parquet"))
        pq.write_table(dedup.signature_table(part, cfg), files[-1])
    clusters = dedup.find_duplicates(files, cfg)
    repeated = dedup.repeated_paragraphs(files, cfg, clusters) if cfg.paragraphs else None
    counts: Counter[str] = Counter()
    kept, rejected = [], []
    for part in parts:
        table, dropped = dedup.dedup_documents(part, clusters, repeated, cfg, counts)
        kept.append(table)
        rejected += dropped
    return clusters, kept, rejected, counts


def cluster_pairs(clusters: pa.Table) -> set[frozenset[str]]:
    """Every pair of documents that share a cluster."""
    members: dict[str, list[str]] = {}
    for row in clusters.to_pylist():
        members.setdefault(row["cluster"], []).append(row["id"])
    return {frozenset(p) for ids in members.values() for p in itertools.combinations(ids, 2)}


# ----- the doorway pages: two templates, 267 pages -----


@pytest.fixture(scope="module")
def doorway() -> tuple[pa.Table, list[dict]]:
    manifest = [json.loads(line) for line in (DOORWAY / "manifest.jsonl").open()]
    rows = []
    for page in manifest:
        html = gzip.decompress((DOORWAY / page["path"]).read_bytes()).decode("utf-8")
        url = "https://heizung-defekt.de/" + page["path"]
        extracted = extract_html(html, url, ExtractConfig())
        rows.append({"id": page["path"], "text": extracted["text"], "url": url})
    return docs_table(rows), manifest


def true_pairs(manifest: list[dict], field: str) -> set[frozenset[str]]:
    groups: dict[str, list[str]] = {}
    for page in manifest:
        groups.setdefault(page[field], []).append(page["path"])
    return {frozenset(p) for ids in groups.values() for p in itertools.combinations(ids, 2)}


@needs_shared_data
def test_near_dedup_finds_each_doorway_template_and_never_joins_two(doorway, tmp_path):
    docs, manifest = doorway
    half = docs.num_rows // 2  # two parts, as two input files would give
    clusters, kept, rejected, _ = run_dedup(
        [docs.slice(0, half), docs.slice(half)], DedupConfig(paragraphs=False), tmp_path
    )
    found, truth = cluster_pairs(clusters), true_pairs(manifest, "content_template")
    precision = len(found & truth) / len(found)
    recall = len(found & truth) / len(truth)
    assert precision >= 0.98 and recall >= 0.98, (precision, recall)
    template = {page["path"]: page["content_template"] for page in manifest}
    by_cluster: dict[str, set[str]] = {}
    for row in clusters.to_pylist():
        by_cluster.setdefault(row["cluster"], set()).add(template[row["id"]])
    assert all(len(templates) == 1 for templates in by_cluster.values())
    assert sum(t.num_rows for t in kept) == len(by_cluster)  # one page per cluster stays
    assert len(rejected) == docs.num_rows - len(by_cluster)
    assert {r["reason"] for r in rejected} <= {"exact_duplicate", "near_duplicate"}
    near = [r for r in rejected if r["reason"] == "near_duplicate"]
    assert all(r["detail"].startswith("of html/") and ", jaccard 0." in r["detail"] for r in near)


@needs_shared_data
def test_exact_dedup_alone_finds_the_74_identical_texts(doorway, tmp_path):
    docs, manifest = doorway
    truth = true_pairs(manifest, "text_md5")
    assert len(truth) == 74  # SOURCE.txt: 74 towns with two slugs and identical extracted text
    cfg = DedupConfig(near=False, paragraphs=False)
    clusters, _, rejected, _ = run_dedup([docs], cfg, tmp_path)
    assert cluster_pairs(clusters) == truth
    assert set(clusters["kind"].drop_null().to_pylist()) == {"exact"}
    assert len(rejected) == 74 and {r["reason"] for r in rejected} == {"exact_duplicate"}
    with_url, _, _, _ = run_dedup(
        [docs], cfg.model_copy(update={"exact_include_url": True}), tmp_path / "u"
    )
    assert with_url.num_rows == 0  # every page has its own URL


@needs_shared_data
def test_paragraph_dedup_still_removes_the_doorway_templates(doorway, tmp_path):
    """Paragraph dedup alone over the doorway pages: the template's text recurs on every page,
    in runs long enough to go; the size rule spares less than 2% of what removing every
    recurring line would, and the 74 pages identical to another are emptied."""
    docs, _ = doorway
    alone = {"near": False, "exact": False}
    _, _, rejected, counts = run_dedup([docs], DedupConfig(**alone), tmp_path)
    every_line = DedupConfig(**alone, paragraph_min_words=0, paragraph_min_chars=0)
    _, _, _, unsized = run_dedup([docs], every_line, tmp_path / "every")
    assert counts["paragraph_chars_removed"] >= 0.98 * unsized["paragraph_chars_removed"]
    assert unsized["paragraph_chars_removed"] > 0.8 * sum(map(len, docs["text"].to_pylist()))
    assert Counter(r["reason"] for r in rejected) == {"empty_after_paragraph_dedup": 74}


# ----- Dolma's paragraph dedup fixture -----


def dolma_documents() -> tuple[list[dict], dict[str, list[tuple[int, int]]]]:
    """Dolma's fixture documents and the spans its paragraph dedup removes from each."""
    with gzip.open(DOLMA / "documents.jsonl.gz", "rt") as fh:
        documents = [json.loads(line) for line in fh]
    with gzip.open(DOLMA / "expected" / "dedupe-paragraphs.jsonl.gz", "rt") as fh:
        expected = {
            d["id"]: d["attributes"]["bff_duplicate_paragraph_spans"] for d in map(json.loads, fh)
        }
    # Dolma's last span ends at its character count, or past it when the text has multi-byte
    # characters (it compares characters with the UTF-8 length): clip it.
    text = {d["id"]: d["text"] for d in documents}
    spans = {i: [(s, min(e, len(text[i]))) for s, e, _ in found] for i, found in expected.items()}
    return documents, spans


@needs_shared_data
def test_paragraph_dedup_reproduces_dolmas_spans(tmp_path):
    documents, expected = dolma_documents()
    docs = docs_table([{"id": d["id"], "text": d["text"]} for d in documents])
    cfg = DedupConfig(near=False, exact=False)
    clusters, kept, rejected, counts = run_dedup([docs], cfg, tmp_path)
    signatures = [str(tmp_path / "signatures-0.parquet")]
    repeated = dedup.repeated_paragraphs(signatures, cfg, clusters)
    for doc in documents:
        spans = dedup.duplicate_paragraph_spans(
            doc["text"], dedup.id_hash(doc["id"]), repeated, cfg
        )
        assert spans == expected[doc["id"]], doc["id"]
    assert counts["paragraphs_removed"] == 43 and not rejected
    text = {row["id"]: row["text"] for row in kept[0].to_pylist()}
    first, second = (d["id"] for d in documents[:2])
    assert text[first] == documents[0]["text"]  # the first holder keeps its paragraphs
    assert "PPAA Home" not in text[second] and "Tag Archives: good cholesterol" in text[second]


FOOTER = "Home\nAbout us\nContact\nCookie settings\nPrivacy policy\nTerms of use\nSitemap"


def test_a_document_made_only_of_recurring_paragraphs_is_rejected(tmp_path):
    footer = FOOTER  # 12 words, 71 characters: a run long enough to be boilerplate
    docs = docs_table(
        [
            {"id": "a", "text": " ".join(PROSE[:45]) + "\n" + footer},
            {"id": "b", "text": " ".join(PROSE[20:]) + "\n" + footer},
            {"id": "c", "text": footer + "\n" + footer},
        ]
    )
    _, kept, rejected, counts = run_dedup([docs], DedupConfig(), tmp_path)
    text = {row["id"]: row["text"] for row in kept[0].to_pylist()}
    assert text["a"].endswith(footer)  # longest first: "a" keeps the footer
    assert text["b"] == " ".join(PROSE[20:])
    assert [(r["id"], r["reason"]) for r in rejected] == [("c", "empty_after_paragraph_dedup")]
    assert rejected[0]["text"] == footer + "\n" + footer  # nothing lost
    assert counts["paragraphs_removed"] == 7 + 14
    few = DedupConfig(paragraph_min_docs=4)
    _, kept, rejected, _ = run_dedup([docs], few, tmp_path / "few")
    assert not rejected and kept[0].num_rows == 3


# ----- the keep rule -----


def test_keep_rule_generation_then_source_then_length_then_id(tmp_path):
    text = " ".join(PROSE)
    rows = [
        {"id": "web-new", "text": text + " More.", "generation": "20260301T000000Z"},
        {"id": "web-old", "text": text, "generation": "20260101T000000Z"},
        {"id": "listed", "text": text, "generation": None},  # listed WARC files: oldest
        {"id": "book", "text": text, "generation": "20260101T000000Z", "source_kind": "book"},
        {"id": "b-long", "text": text + " Yes.", "generation": "20260101T000000Z"},
        {"id": "a-long", "text": text + " Yes.", "generation": "20260101T000000Z"},
    ]

    def kept_of(rows: list[dict], folder: str, **settings) -> str:
        clusters, *_ = run_dedup([docs_table(rows)], DedupConfig(**settings), tmp_path / folder)
        return {row["cluster"] for row in clusters.to_pylist()}.pop()

    assert kept_of(rows, "all") == "listed"
    assert kept_of(rows[:2], "gen") == "web-old"  # the recrawl does not replace it
    assert kept_of(rows[1:4:2], "book") == "book"
    assert kept_of(rows[1:4:2], "prio", source_priority=["web", "book"]) == "web-old"
    assert kept_of(rows[4:], "id") == "a-long"
    assert kept_of([rows[1], rows[4]], "long") == "b-long"
    for seed in range(3):  # any order of documents and parts gives the same clusters
        shuffled = random.Random(seed).sample(rows, len(rows))
        parts = [docs_table(shuffled[:2]), docs_table(shuffled[2:])]
        clusters, *_ = run_dedup(parts, DedupConfig(), tmp_path / f"order{seed}")
        assert clusters.sort_by("id").to_pylist() == (
            run_dedup([docs_table(rows)], DedupConfig(), tmp_path / "ref")[0]
            .sort_by("id")
            .to_pylist()
        )


def test_kept_by_names_the_rule_that_decided_each_row(tmp_path):
    text = " ".join(PROSE)
    old, new = "20260101T000000Z", "20260301T000000Z"
    rows = [
        {"id": "a", "text": text, "generation": old},
        {"id": "b", "text": text, "generation": old},  # loses to "a" on its id
        {"id": "c", "text": text, "generation": new},
        {"id": "d", "text": text + " Yes.", "generation": new, "source_kind": "book"},
    ]
    clusters, *_ = run_dedup([docs_table(rows)], DedupConfig(), tmp_path)
    by = {row["id"]: (row["kept"], row["kept_by"]) for row in clusters.to_pylist()}
    assert by == {
        "a": (True, "smaller_id"),  # against the runner-up, "b"
        "b": (False, "smaller_id"),
        "c": (False, "generation"),
        "d": (False, "generation"),  # the recrawl's book does not replace the page
    }
    clusters, *_ = run_dedup([docs_table(rows[2:])], DedupConfig(), tmp_path / "new")
    assert {r["id"]: r["kept_by"] for r in clusters.to_pylist()} == {
        "c": "source_priority",
        "d": "source_priority",
    }


def book_editions() -> tuple[str, str]:
    """Alice in Wonderland as Project Gutenberg ships it, and as the clean stage strips it."""
    raw = gutenberg.read_book_file(BOOKS / "11.txt").replace("\r\n", "\n")
    stripped, found = gutenberg.strip_boilerplate(raw)
    assert found == "markers"
    return raw, stripped


@needs_shared_data
def test_the_stripped_edition_of_a_book_is_kept_not_the_one_with_its_boilerplate(tmp_path):
    raw, stripped = book_editions()
    rows = [  # the unstripped edition is longer and has the smaller id: it won before
        {"id": "a-mirror", "text": raw, "source_kind": "web"},
        {"id": "b-stripped", "text": stripped, "source_kind": "web"},
    ]
    table = dedup.signature_table(docs_table(rows), DedupConfig())
    assert table["boilerplate"].to_pylist() == [True, False]
    assert table["stripped_length"].to_pylist() == [len(stripped), len(stripped)]
    clusters, kept, rejected, _ = run_dedup([docs_table(rows)], DedupConfig(), tmp_path)
    assert kept[0]["id"].to_pylist() == ["b-stripped"]
    assert [(r["id"], r["reason"]) for r in rejected] == [("a-mirror", "near_duplicate")]
    assert set(clusters["kept_by"].to_pylist()) == {"boilerplate_removed"}
    # Both with boilerplate left: the longer book wins, not the longer boilerplate.
    header = raw[: raw.index(stripped[:60])]
    footer = raw[raw.index(stripped[-60:]) + 60 :]
    padded = header + stripped[: -len(stripped) // 20] + footer + footer  # less book, more license
    assert len(padded) > len(raw)
    rows = [
        {"id": "a-padded", "text": padded, "source_kind": "web"},
        {"id": "b-whole", "text": raw, "source_kind": "web"},
    ]
    clusters, kept, *_ = run_dedup([docs_table(rows)], DedupConfig(), tmp_path / "both")
    assert kept[0]["id"].to_pylist() == ["b-whole"]
    assert set(clusters["kept_by"].to_pylist()) == {"longer_stripped_text"}


def book_lines(raw: str) -> list[str]:
    """The non-blank lines of a book's own text: between Project Gutenberg's start and end
    markers, found here independently of pipeline/gutenberg.py."""
    lines = raw.replace("\r\n", "\n").split("\n")
    start = re.compile(r"^\s*\*{3}\s*START OF (THE|THIS) PROJECT|\*END\*.*SMALL PRINT", re.I)
    end = re.compile(
        r"^\s*\*{3}\s*END OF (THE|THIS) PROJECT|^\s*End of (the )?Project Gutenb", re.I
    )
    first = next(i for i, line in enumerate(lines) if start.search(line)) + 1
    last = next(i for i in range(first, len(lines)) if end.search(lines[i]))
    return [" ".join(line.split()) for line in lines[first:last] if line.strip()]


@needs_shared_data
def test_paragraph_dedup_removes_no_line_of_ten_real_books_and_still_dolmas_spans(tmp_path):
    """The ten Gutenberg books through clean, then dedup with paragraphs on, beside Dolma's web
    pages: the books share chapter numerals, "* * * * *", "[Illustration]", "Yes." and sentence
    tails wrapped onto a line of their own, which line-based paragraph dedup removed (294
    lines); none is removed now, and the web pages still lose their site boilerplate."""
    cleaner = clean.prepare(CleanConfig())
    books = []
    for path in sorted(BOOKS.glob("*.txt")):
        row = {"id": path.stem, "text": gutenberg.read_book_file(path), "source_kind": "book"}
        assert cleaner(row, Counter()) is None
        books.append(row)
    documents, expected = dolma_documents()
    pages = [{"id": d["id"], "text": d["text"]} for d in documents]
    cfg = DedupConfig()
    _, kept, rejected, counts = run_dedup([docs_table(books), docs_table(pages)], cfg, tmp_path)
    assert not rejected
    after = {row["id"]: row["text"] for part in kept for row in part.to_pylist()}
    for book in books:
        own = book_lines(gutenberg.read_book_file(BOOKS / f"{book['id']}.txt"))
        cleaned = Counter(" ".join(line.split()) for line in book["text"].split("\n"))
        cleaned &= Counter(own)  # lines compared as clean leaves them: one space between words
        assert cleaned.total() >= 0.98 * len(own), book["id"]  # clean keeps the book's text
        deduped = Counter(" ".join(line.split()) for line in after[book["id"]].split("\n"))
        assert not cleaned - deduped, book["id"]  # no book line removed by dedup
    for doc in documents:  # the web pages lose exactly Dolma's spans
        pieces, start = [], 0
        for s, e in expected[doc["id"]]:
            pieces.append(doc["text"][start:s])
            start = e
        assert after[doc["id"]] == ("".join(pieces) + doc["text"][start:]).rstrip("\n")
    assert counts["paragraphs_removed"] == 43


def test_short_recurring_lines_stay_and_long_runs_go(tmp_path):
    """A short line that recurs on its own is language; the same line in a long enough run of
    recurring lines (a footer) is boilerplate. A book's blocks are judged one by one, so short
    blocks that two books share stay even where they stand together."""
    prose = [" ".join(PROSE[i : i + 12]) for i in range(0, 48, 12)]
    shared = ["CHAPTER I.", "* * * * *", "[Illustration]", '"Yes."', '"What do you mean?"']
    shared += ["CHAPTER II.", "THE END"]  # 17 words, 76 characters, 7 blocks of at most 19
    rows = [
        {"id": "a", "text": "\n".join([prose[0], "Yes.", prose[1], FOOTER])},
        {"id": "b", "text": "\n".join([prose[2], "Yes.", prose[3], FOOTER])},
        {"id": "c", "text": "\n\n".join([PROSE_TEXT, *shared]), "source_kind": "book"},
        {"id": "d", "text": "\n\n".join(["Call me Ishmael.", *shared]), "source_kind": "book"},
    ]
    _, kept, _, counts = run_dedup([docs_table(rows)], DedupConfig(), tmp_path)
    text = {row["id"]: row["text"] for row in kept[0].to_pylist()}
    assert text["b"] == "\n".join([prose[2], "Yes.", prose[3]])  # the footer went, "Yes." stays
    assert text["c"] == rows[2]["text"] and text["d"] == rows[3]["text"]
    assert counts["paragraphs_removed"] == 7
    small = DedupConfig(paragraph_min_words=0, paragraph_min_chars=0)
    _, kept, _, _ = run_dedup([docs_table(rows)], small, tmp_path / "small")
    text = {row["id"]: row["text"] for row in kept[0].to_pylist()}
    assert text["b"] == "\n".join([prose[2], prose[3]])
    assert text["d"] == "Call me Ishmael."  # the longer book, "c", keeps the shared blocks


# ----- signatures and edge cases -----


def five_grams(words: list[str]) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + 5]) for i in range(len(words) - 4)}


def test_signatures_are_datasketchs_and_estimate_jaccard(tmp_path):
    cfg = DedupConfig()
    texts = [" ".join(PROSE), " ".join([*PROSE[:-3], "and", "a", "goose"]), "one", ""]
    table = dedup.signature_table(
        docs_table([{"id": str(i), "text": t} for i, t in enumerate(texts)]), cfg
    )
    words = pc.utf8_split_whitespace(dedup.normalize(pa.array(texts[:3])))
    hashes, per_doc = dedup.shingle_hashes(words, cfg.ngram)
    assert per_doc.tolist() == [len(PROSE) - 4, len(PROSE) - 4, 1]  # one word: one shingle
    starts = np.r_[0, np.cumsum(per_doc)]
    for i in range(3):
        sketch = MinHash(num_perm=cfg.num_perm, seed=1, scheme="affine32", hashfunc=int)
        sketch.update_batch(hashes[starts[i] : starts[i + 1]].tolist())
        assert table["signature"][i].as_py() == sketch.hashvalues.tolist()
    assert table["words"].to_pylist() == [len(PROSE), len(PROSE), 1, 0]
    assert table["signature"][3].as_py() == [2**32 - 1] * cfg.num_perm  # an empty MinHash
    shingles = [five_grams(t.lower().replace(",", "").replace(".", "").split()) for t in texts[:2]]
    true_jaccard = len(shingles[0] & shingles[1]) / len(shingles[0] | shingles[1])
    sig = np.array(table["signature"].to_pylist()[:2])
    assert abs((sig[0] == sig[1]).mean() - true_jaccard) < 0.12


def test_empty_and_one_word_documents(tmp_path):
    docs = docs_table(
        [
            {"id": "e1", "text": ""},
            {"id": "e2", "text": "  \n "},
            {"id": "w1", "text": "Hello!"},
            {"id": "w2", "text": "hello"},
            {"id": "w3", "text": "goodbye"},
        ]
    )
    clusters, kept, rejected, _ = run_dedup([docs], DedupConfig(), tmp_path)
    assert clusters.sort_by("id").to_pylist() == [
        {"id": "w1", "cluster": "w1", "kept": True, "kind": None, "similarity": 1.0}
        | {"kept_by": "longer_stripped_text"},
        {"id": "w2", "cluster": "w1", "kept": False, "kind": "exact", "similarity": 1.0}
        | {"kept_by": "longer_stripped_text"},
    ]  # empty texts are no one's duplicates; "Hello!" and "hello" normalize alike
    assert sorted(kept[0]["id"].to_pylist()) == ["e1", "e2", "w1", "w3"]
    assert [(r["id"], r["reason"], r["detail"]) for r in rejected] == [
        ("w2", "exact_duplicate", "of w1")
    ]


def test_chinese_without_spaces_is_compared_by_characters(tmp_path):
    base = "今天天气很好我们一起去公园散步然后在湖边的小餐馆吃了一顿丰盛的午饭大家都很开心"
    other = "昨天下了一整天的大雨街上几乎没有行人商店也都早早关门老人们只好待在家里看电视"
    docs = docs_table(
        [
            {"id": "a", "text": base + "。"},
            # one character changed: Jaccard of character 5-grams 30/40 = 0.75
            {"id": "b", "text": base.replace("盛", "富") + "！"},
            {"id": "c", "text": other},
            {
                "id": "d",
                "text": "東京の夏はとても暑いので、多くの人が海や山へ出かけて休みを楽しみます。",
            },
        ]
    )
    table = dedup.signature_table(docs, DedupConfig())
    assert table["words"].to_pylist()[:3] == [len(base), len(base), len(other)]
    clusters, *_ = run_dedup([docs], DedupConfig(), tmp_path)
    assert cluster_pairs(clusters) == {frozenset({"a", "b"})}
    assert clusters.filter(pc.equal(clusters["id"], "b"))["kind"].to_pylist() == ["near"]


@needs_shared_data
def test_a_whole_book_in_bounded_time(tmp_path):
    book = (SHARED_DATA / "gutenberg" / "books" / "1342.txt").read_text(encoding="utf-8-sig")
    words = book.split()
    docs = docs_table(
        [
            {"id": "book", "text": book, "source_kind": "book"},
            {"id": "copy", "text": " ".join(words[:-200])},  # an incomplete copy
            {"id": "half", "text": " ".join(words[: len(words) // 2])},
        ]
    )
    started = time.perf_counter()
    clusters, kept, _, _ = run_dedup([docs], DedupConfig(paragraphs=False), tmp_path)
    assert time.perf_counter() - started < 20
    assert {(r["id"], r["cluster"]) for r in clusters.to_pylist() if not r["kept"]} == {
        ("copy", "book")
    }  # the half copy has Jaccard 0.5 with the book: below the threshold
    assert kept[0]["id"].to_pylist() == ["book", "half"]


# ----- the on-disk grouping -----


def test_grouping_on_disk_equals_grouping_in_memory(tmp_path):
    rng = np.random.default_rng(7)
    keys = rng.integers(0, 500, 20_000).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    values = rng.integers(0, 5_000, 20_000)
    chunks = [(keys[i : i + 3000], values[i : i + 3000]) for i in range(0, 20_000, 3000)]
    small = DedupConfig(max_partition_rows=2000, temp_dir=str(tmp_path))
    groups = dedup.grouped_by_key(chunks, len(keys), small, str(tmp_path / "g"))
    first = next(groups)
    assert len(os.listdir(tmp_path / "g")) == 9  # ten partitions, the first one read
    got = [first, *groups]
    assert not os.listdir(tmp_path / "g")  # each partition is deleted once read
    assert all(len(k) <= 2 * small.max_partition_rows for k, _ in got)
    found = np.concatenate([k for k, _ in got]), np.concatenate([v for _, v in got])
    assert sorted(zip(*found, strict=True)) == sorted(zip(keys, values, strict=True))


def test_clusters_are_the_same_with_many_small_partitions(tmp_path):
    docs = docs_table(
        [
            {"id": f"{i:03d}", "text": " ".join(random.Random(i % 40).sample(PROSE, 45))}
            for i in range(200)
        ]
    )
    one = DedupConfig(temp_dir=str(tmp_path))
    many = DedupConfig(temp_dir=str(tmp_path), max_partition_rows=100)
    reference, *_ = run_dedup([docs], one, tmp_path / "one")
    partitioned, *_ = run_dedup([docs.slice(0, 70), docs.slice(70)], many, tmp_path / "many")
    assert reference.num_rows == 200 and len(set(reference["cluster"].to_pylist())) == 40
    assert partitioned.sort_by("id").equals(reference.sort_by("id"))
    assert sorted(os.listdir(tmp_path)) == ["many", "one"]  # no work files left behind


def test_config_threshold_and_errors():
    assert round(DedupConfig().threshold, 3) == 0.719
    # a threshold instead of bands and rows: datasketch's MinHashLSH choice for it
    chosen = DedupConfig(lsh_threshold=0.8)
    index = MinHashLSH(threshold=0.8, num_perm=chosen.num_perm)
    assert chosen.lsh == (index.b, index.r)
    assert abs(chosen.threshold - 0.8) < 0.05
    with pytest.raises(ValueError, match="num_perm 100 < bands x rows"):
        DedupConfig(bands=20, rows=6, num_perm=100)
    with pytest.raises(ValueError, match="source_priority"):
        DedupConfig(source_priority=["books"])
