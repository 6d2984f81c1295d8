"""The dedup stage's algorithms: exact, MinHash near-duplicate and repeated-paragraph dedup.

The stage is a map, a reduce and a write-out, all plain functions on Arrow tables:

- `signature_table` (map, per input part): what the reduce needs of each document, so a part's
  signatures are computed once and a new crawl generation costs only its own documents.
- `find_duplicates` (reduce, over every part of every generation): exact groups and MinHash LSH
  candidates, grouped on disk partition by partition and joined into clusters; one document
  kept per cluster. `repeated_paragraphs` (reduce): paragraphs that recur across the documents
  that stay.
- `dedup_documents` (write-out, per input part): the documents that stay, their recurring
  paragraphs removed, and the dropped ones with their reason. Documents the workspace's takedown
  list names are dropped first (reason `takedown`, pipeline/takedown.py); a cluster whose kept
  document is taken down keeps none.

Normalized text (exact key and shingles): lowercased; every run of characters that are not
letters, marks or digits (punctuation, symbols, whitespace) becomes one space; each Han, kana
and Thai character is a word of its own, since those scripts do not put spaces between words
(so for them a 5-word shingle is a character 5-gram). A document with fewer words than `ngram`
has one shingle of all its words; one without words takes part in neither exact nor near dedup
(nothing to compare: the clean stage drops empty documents).

Paragraphs: a line (Dolma's), but for the hard-wrapped kinds (`hard_wrapped_kinds`: books) a
block of lines between blank lines, since there a line is only as long as the wrap width.
A recurring paragraph is removed only as part of a run of adjacent recurring paragraphs (lines
with no blank line between them; a block on its own) of at least `paragraph_min_words` words and
`paragraph_min_chars` characters: a site's menu or footer is such a run, while a short line that
recurs on its own ("Yes.", "* * * * *", "Chapter 3") is language, never removed.

The keep rule, among the documents of a cluster and the holders of a repeated paragraph: the
earliest crawl generation (null, for listed WARC files, is the oldest), then the first source
kind in `source_priority`, then a copy without Project Gutenberg boilerplate left (markers
pipeline/gutenberg.py finds: an edition the clean stage did not strip), then the longest text
once such boilerplate is stripped (so a copy never wins by its boilerplate), then the smallest
id. It depends on no input order, so a recrawl never readmits what the corpus holds and a rerun
gives the same output. The cluster table's `kept_by` names the rule that decided each row.

MinHash is datasketch's "affine32" scheme (a 32-bit shingle hash, MurmurHash3's finalizer, then
h * a + b mod 2^32 with datasketch's permutations for `seed`), computed for a whole part at once
with numpy instead of one `MinHash` per document; `test_dedup.py` checks that the signatures are
datasketch's own. Shingle hashes combine xxh3 hashes of the words, so each distinct word of a
part is hashed once.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib.metadata import version

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from xxhash import xxh3_64_intdigest

from pipeline import gutenberg, progress, takedown
from pipeline.clean import count_words
from pipeline.config import DedupConfig
from pipeline.datasets import PartResult, VersionBuilder, short_digest
from pipeline.docmap import PartUnit
from pipeline.schema import rejected_schema_of
from pipeline.stage import Build, Reduced

NAME = "dedup"
CODE_VERSION = f"4+datasketch{version('datasketch')}"

ReadTable = Callable[[str, list[str]], pa.Table]  # (path, columns) -> table


def _read_parquet(path: str, columns: list[str]) -> pa.Table:
    return pq.read_table(path, columns=columns)


# ----- normalization and hashing -----

_NOT_WORD = r"[^\p{L}\p{M}\p{N}]+"  # RE2 syntax (pyarrow.compute)
_UNSPACED_SCRIPT = r"([\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}])"

_MASK64 = (1 << 64) - 1
# Odd 64-bit multipliers that make a shingle's hash depend on the order of its words.
_POSITION_MULTIPLIERS = np.array(
    [(0x9E3779B97F4A7C15 * (2 * i + 1)) & _MASK64 for i in range(64)], dtype=np.uint64
)
_MAX32 = np.uint32(0xFFFFFFFF)
_CHUNK_SHINGLES = 2048  # shingles per numpy block: the permuted block stays in cache


def normalize(texts: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Texts as compared by exact and near dedup (see the module docstring)."""
    folded = pc.replace_substring_regex(pc.utf8_lower(texts), _NOT_WORD, " ")
    spaced = pc.replace_substring_regex(folded, _UNSPACED_SCRIPT, r" \1 ")
    trimmed = pc.utf8_trim_whitespace(spaced)
    return trimmed.combine_chunks() if isinstance(trimmed, pa.ChunkedArray) else trimmed


def id_hash(doc_id: str) -> int:
    """The 64-bit stand-in for a document id in the paragraph keeper table."""
    return xxh3_64_intdigest(doc_id.encode())


_BLANK_LINES = re.compile(r"\n(?:[ \t]*\n)+")  # what ends a block of lines


def paragraph_spans(text: str, hard_wrapped: bool = False) -> list[tuple[int, int]]:
    """A text's paragraphs as (start, end) spans that cover it. Dolma's by default: the text
    split at "\\n", each span including its newline. Hard-wrapped text (books): blocks of lines,
    each span including the blank lines after it."""
    spans, start = [], 0
    if not hard_wrapped:
        for paragraph in text.split("\n"):
            end = min(start + len(paragraph) + 1, len(text))
            spans.append((start, end))
            start = end
        return spans
    for gap in _BLANK_LINES.finditer(text):
        spans.append((start, gap.end()))
        start = gap.end()
    if start < len(text) or not spans:
        spans.append((start, len(text)))
    return spans


def paragraphs_of(text: str, hard_wrapped: bool = False) -> list[str]:
    """The paragraphs of paragraph_spans, without the line break or blank lines that end them."""
    spans = paragraph_spans(text, hard_wrapped)
    if hard_wrapped:
        return [text[s:e].rstrip("\n \t") for s, e in spans]
    return [text[s:e].removesuffix("\n") for s, e in spans]


def paragraph_hash(paragraph: str) -> int | None:
    """The exact hash of a paragraph (without its newline), as Dolma keys them; None for a
    blank one, which is never counted as a repeat."""
    return xxh3_64_intdigest(paragraph.encode()) if paragraph.strip() else None


def _fmix64(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, as datasketch's affine32 scheme applies it."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def shingle_hashes(words: pa.ListArray, ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of each document's word n-grams, concatenated, and their count per
    document. A document with 0 < words < ngram gets one shingle of all its words."""
    counts = pc.list_value_length(words).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = pc.list_flatten(words)
    encoded = pc.dictionary_encode(flat)
    vocabulary = encoded.dictionary.cast(pa.binary()).to_pylist()
    vocab_hashes = np.fromiter(
        (xxh3_64_intdigest(w) for w in vocabulary), dtype=np.uint64, count=len(vocabulary)
    )
    word_hashes = vocab_hashes[encoded.indices.to_numpy(zero_copy_only=False)]
    total = len(word_hashes)
    ends = np.repeat(np.cumsum(counts), counts)  # each word's document end
    starts = ends - np.repeat(counts, counts)
    position = np.arange(total)
    combined = np.zeros(total, dtype=np.uint64)
    padded = np.concatenate([word_hashes, np.zeros(ngram, dtype=np.uint64)])
    for j in range(ngram):  # windows are cut at the document's end
        inside = position + j < ends
        combined += np.where(inside, padded[j : j + total], 0) * _POSITION_MULTIPLIERS[j % 64]
    short = np.repeat(counts < ngram, counts)
    valid = (position + ngram <= ends) | (short & (position == starts))
    hashes = (_fmix64(combined[valid]) >> np.uint64(32)).astype(np.uint32)
    per_doc = np.where(counts >= ngram, counts - ngram + 1, np.minimum(counts, 1))
    return hashes, per_doc


def permutations(cfg: DedupConfig) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's affine32 permutation parameters (a, b) for cfg.seed and cfg.num_perm."""
    # imported here: datasketch imports scipy (about a second), which only the map step needs
    from datasketch import MinHash

    a, b = MinHash(num_perm=cfg.num_perm, seed=cfg.seed, scheme="affine32").permutations
    return a.astype(np.uint32), b.astype(np.uint32)


def minhash_signatures(
    hashes: np.ndarray, per_doc: np.ndarray, a: np.ndarray, b: np.ndarray
) -> np.ndarray:
    """(documents, permutations) uint32 MinHash signatures, equal to datasketch's
    MinHash(scheme="affine32").update_batch(hashes of the document) for each document; a
    document without shingles has datasketch's empty signature (all 2^32 - 1)."""
    signatures = np.full((len(per_doc), len(a)), _MAX32, dtype=np.uint32)
    doc_of = np.repeat(np.arange(len(per_doc)), per_doc)
    mixed = _fmix32(hashes)
    for lo in range(0, len(mixed), _CHUNK_SHINGLES):
        docs = doc_of[lo : lo + _CHUNK_SHINGLES]
        permuted = mixed[lo : lo + _CHUNK_SHINGLES, None] * a + b  # wraps mod 2^32
        starts = np.flatnonzero(np.r_[True, docs[1:] != docs[:-1]])
        lows = np.minimum.reduceat(permuted, starts, axis=0)
        here = docs[starts]  # a document spanning two blocks meets itself again below
        signatures[here] = np.minimum(signatures[here], lows)
    return signatures


def band_hashes(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(documents, bands) uint64: one hash per band of `rows` signature values, the band's
    index mixed in so that equal values in two bands are different bucket keys."""
    grouped = signatures[:, : bands * rows].reshape(len(signatures), bands, rows)
    combined = np.broadcast_to(np.arange(bands, dtype=np.uint64), grouped.shape[:2]).copy()
    for j in range(rows):
        combined = combined * _POSITION_MULTIPLIERS[(j + 1) % 64] + grouped[:, :, j]
    return _fmix64(combined)


# ----- map: one part of the document dataset -> its signatures -----


def signature_table(docs: pa.Table, cfg: DedupConfig) -> pa.Table:
    """One row per document: what the reduce needs (see SIGNATURE_SCHEMA)."""
    texts = docs["text"]
    normalized = normalize(texts)
    no_words = pa.scalar([], pa.list_(pa.string()))  # splitting "" gives [""]
    words = pc.if_else(pc.equal(normalized, ""), no_words, pc.utf8_split_whitespace(normalized))
    keys = normalized.to_pylist()
    if cfg.exact_include_url:
        keys = [
            f"{url or ''}\n{text}" for url, text in zip(docs["url"].to_pylist(), keys, strict=True)
        ]
    n = docs.num_rows
    if cfg.near:
        hashes, per_doc = shingle_hashes(words, cfg.ngram)
        signatures = minhash_signatures(hashes, per_doc, *permutations(cfg))
        bands = band_hashes(signatures, *cfg.lsh)
    else:
        signatures = np.zeros((n, 0), dtype=np.uint32)
        bands = np.zeros((n, 0), dtype=np.uint64)
    wrapped = pc.is_in(docs["source_kind"], pa.array(cfg.hard_wrapped_kinds, pa.string()))
    paragraphs = [
        _paragraph_set(text or "", hard_wrapped) if cfg.paragraphs else []
        for text, hard_wrapped in zip(texts.to_pylist(), wrapped.to_pylist(), strict=True)
    ]
    boilerplate, stripped_length = gutenberg_left(texts)
    return pa.table(
        {
            "id": docs["id"],
            "id_hash": pa.array([id_hash(i) for i in docs["id"].to_pylist()], pa.uint64()),
            "generation": docs["generation"],
            "source_kind": docs["source_kind"],
            "boilerplate": pa.array(boilerplate),
            "stripped_length": pa.array(stripped_length),
            "words": pc.list_value_length(words).cast(pa.int64()),
            "exact_hash": pa.array([xxh3_64_intdigest(k.encode()) for k in keys], pa.uint64()),
            "signature": _fixed_lists(signatures),
            "bands": _fixed_lists(bands),
            "paragraphs": pa.array(paragraphs, pa.list_(pa.uint64())),
        },
        schema=SIGNATURE_SCHEMA,
    )


SIGNATURE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("id_hash", pa.uint64()),
        ("generation", pa.string()),  # null: listed WARC files, the oldest
        ("source_kind", pa.string()),
        ("boilerplate", pa.bool_()),  # Project Gutenberg markers left in the text
        ("stripped_length", pa.int64()),  # characters of text, Gutenberg boilerplate stripped
        ("words", pa.int64()),  # words of normalized text
        ("exact_hash", pa.uint64()),  # of normalized text (URL + text with exact_include_url)
        ("signature", pa.list_(pa.uint32())),  # MinHash, num_perm values (empty when near is off)
        ("bands", pa.list_(pa.uint64())),  # LSH band hashes
        ("paragraphs", pa.list_(pa.uint64())),  # distinct non-blank paragraph hashes
    ]
)


def _fixed_lists(matrix: np.ndarray) -> pa.ListArray:
    offsets = np.arange(len(matrix) + 1, dtype=np.int32) * matrix.shape[1]
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(matrix.ravel()))


_GUTENBERG = r"(?i)project\s+gutenberg"  # RE2: only texts that name it can hold its markers


def gutenberg_left(texts: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Which texts still hold Project Gutenberg's header or footer (pipeline/gutenberg.py finds
    its markers), and each text's length once that is stripped. The clean stage strips books;
    this catches an edition it did not (another source kind, a copy extracted elsewhere)."""
    lengths = pc.fill_null(pc.utf8_length(texts), 0).to_numpy(zero_copy_only=False)
    lengths = lengths.astype(np.int64)
    left = np.zeros(len(lengths), dtype=bool)
    mentions = pc.fill_null(pc.match_substring_regex(texts, _GUTENBERG), False)
    for i in np.flatnonzero(mentions.to_numpy(zero_copy_only=False)):
        stripped, found = gutenberg.strip_boilerplate(texts[int(i)].as_py())
        if found == "markers":
            left[i], lengths[i] = True, len(stripped)
    return left, lengths


def _paragraph_set(text: str, hard_wrapped: bool) -> list[int]:
    hashes = {paragraph_hash(p) for p in paragraphs_of(text, hard_wrapped)}
    hashes.discard(None)
    return sorted(hashes)


def _matrix(column: pa.ChunkedArray, width: int, dtype: type) -> np.ndarray:
    values = pc.list_flatten(column).to_numpy(zero_copy_only=False)
    return values.astype(dtype, copy=False).reshape(-1, width)


# ----- reduce: clusters over every part's signatures -----


@dataclass
class _Corpus:
    """What the reduce keeps in memory of every document: small integers and the ids."""

    files: list[str]
    offsets: np.ndarray  # global number of each file's first document
    ids: pa.Array
    id_hashes: np.ndarray
    rank: np.ndarray  # position under the keep rule (0 stays first)
    keys: np.ndarray  # (documents, len(KEEP_KEYS)): the keep rule's keys but the id
    words: np.ndarray
    exact_hashes: np.ndarray


def _load_corpus(files: list[str], cfg: DedupConfig, read: ReadTable) -> _Corpus:
    columns = ["id", "id_hash", "generation", "source_kind", "boilerplate", "stripped_length"]
    columns += ["words", "exact_hash"]
    tables = [read(path, columns) for path in files]
    meta = pa.concat_tables(tables) if tables else SIGNATURE_SCHEMA.empty_table().select(columns)
    sizes = [t.num_rows for t in tables]
    keys = _keep_keys(meta, cfg)
    return _Corpus(
        files=files,
        offsets=np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]),
        ids=meta["id"].combine_chunks(),
        id_hashes=meta["id_hash"].to_numpy(),
        rank=_keep_rank(keys, meta["id"]),
        keys=keys,
        words=meta["words"].to_numpy(),
        exact_hashes=meta["exact_hash"].to_numpy(),
    )


# The keep rule's keys, in order (module docstring), each named as the cluster table's
# `kept_by` says it decided; a smaller value stays.
KEEP_KEYS = ("generation", "source_priority", "boilerplate_removed", "longer_stripped_text")


def _keep_keys(meta: pa.Table, cfg: DedupConfig) -> np.ndarray:
    """(documents, len(KEEP_KEYS)) int64: the generation's order (0: null, the oldest), the
    source kind's place in source_priority, 1 if Gutenberg boilerplate is left, minus the
    stripped length."""
    if not meta.num_rows:
        return np.zeros((0, len(KEEP_KEYS)), dtype=np.int64)
    generations = meta["generation"].combine_chunks()
    distinct = pc.unique(generations).drop_null()
    distinct = distinct.take(pc.array_sort_indices(distinct))
    generation = pc.fill_null(pc.add(pc.index_in(generations, distinct), 1), 0)
    kinds = pc.index_in(meta["source_kind"], pa.array(cfg.source_priority, pa.string()))
    priority = pc.fill_null(kinds, len(cfg.source_priority))
    columns = [generation, priority, meta["boilerplate"], pc.negate(meta["stripped_length"])]
    return np.stack(
        [np.asarray(c.to_numpy(zero_copy_only=False), dtype=np.int64) for c in columns], axis=1
    )


def _keep_rank(keys: np.ndarray, ids: pa.ChunkedArray) -> np.ndarray:
    """Each document's position under the keep rule: its keys, then the smallest id."""
    table = pa.table({f"k{j}": keys[:, j] for j in range(keys.shape[1])} | {"id": ids})
    order = pc.sort_indices(table, sort_keys=[(name, "ascending") for name in table.column_names])
    order = order.to_numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank


_ROW = np.dtype([("key", np.uint64), ("value", np.int64)])


def grouped_by_key(
    chunks: Iterable[tuple[np.ndarray, np.ndarray]], rows: int, cfg: DedupConfig, folder: str
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(key, value) rows grouped on disk: written to partitions by key, then each partition
    read back alone and yielded sorted by key, then value. At most about
    cfg.max_partition_rows rows are in memory at once, whatever the corpus size. Each
    partition file is deleted once read."""
    partitions = partition_count(rows, cfg)
    os.makedirs(folder)
    for keys, values in chunks:
        part = keys % np.uint64(partitions)
        order = np.argsort(part, kind="stable")
        block = np.empty(len(keys), dtype=_ROW)
        block["key"], block["value"] = keys[order], values[order]
        bounds = np.searchsorted(part[order], np.arange(partitions + 1))
        for p in np.flatnonzero(np.diff(bounds)):
            with open(os.path.join(folder, f"{p:06d}.bin"), "ab") as fh:
                block[bounds[p] : bounds[p + 1]].tofile(fh)
    for p in range(partitions):
        path = os.path.join(folder, f"{p:06d}.bin")
        if not os.path.exists(path):
            continue
        block = np.fromfile(path, dtype=_ROW)
        os.remove(path)
        order = np.lexsort((block["value"], block["key"]))
        yield block["key"][order], block["value"][order]


def partition_count(rows: int, cfg: DedupConfig) -> int:
    return max(1, math.ceil(rows / cfg.max_partition_rows))


def _grouped(
    what: str,
    chunks: Iterable[tuple[np.ndarray, np.ndarray]],
    rows: int,
    cfg: DedupConfig,
    folder: str,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """grouped_by_key, its partitions counted on the progress display."""
    groups = grouped_by_key(chunks, rows, cfg, folder)
    return progress.iterate(
        groups, f"dedup: grouping {what}", partition_count(rows, cfg), "partitions"
    )


def _run_starts(keys: np.ndarray) -> np.ndarray:
    """For sorted keys: which rows start a run of equal keys."""
    new = np.ones(len(keys), dtype=bool)
    new[1:] = keys[1:] != keys[:-1]
    return new


def _runs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For sorted keys: the index of each row's run start, and which rows repeat a key."""
    new = _run_starts(keys)
    return np.flatnonzero(new)[np.cumsum(new) - 1], ~new


def _pairs(groups: Iterator[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Distinct (first document of a bucket, other document) pairs, shape (pairs, 2)."""
    found = []
    for keys, docs in groups:
        first, repeated = _runs(keys)
        found.append(np.stack([docs[first][repeated], docs[repeated]], axis=1))
    return np.unique(np.concatenate(found), axis=0) if found else np.zeros((0, 2), np.int64)


def _components(n: int, pairs: np.ndarray) -> np.ndarray:
    """Union-find over pairs, vectorized (hooking and pointer jumping): each document's
    root, the smallest document number of its connected component."""
    label = np.arange(n)
    a, b = pairs[:, 0], pairs[:, 1]
    while True:
        la, lb = label[a], label[b]
        if np.array_equal(la, lb):
            return label
        np.minimum.at(label, np.maximum(la, lb), np.minimum(la, lb))
        while not np.array_equal(jumped := label[label], label):
            label = jumped


def _signatures_of(
    corpus: _Corpus, docs: np.ndarray, cfg: DedupConfig, read: ReadTable
) -> np.ndarray:
    """The signatures of the sorted global document numbers `docs`, in that order."""
    found = np.zeros((len(docs), cfg.num_perm), dtype=np.uint32)
    for i, path in enumerate(corpus.files):
        lo, hi = np.searchsorted(docs, corpus.offsets[i : i + 2])
        if hi > lo:
            local = docs[lo:hi] - corpus.offsets[i]
            found[lo:hi] = _matrix(read(path, ["signature"])["signature"], cfg.num_perm, np.uint32)[
                local
            ]
    return found


def _similarity(signatures: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """MinHash-estimated Jaccard of row pairs (the share of equal signature values)."""
    out = np.empty(len(left))
    for lo in range(0, len(left), 65536):
        x, y = signatures[left[lo : lo + 65536]], signatures[right[lo : lo + 65536]]
        out[lo : lo + 65536] = (x == y).mean(axis=1)
    return out


def find_duplicates(
    signature_files: list[str], cfg: DedupConfig, read: ReadTable = _read_parquet
) -> pa.Table:
    """The cluster table of all documents in clusters of more than one (CLUSTER_SCHEMA): exact
    groups (equal exact_hash) and near-duplicate clusters (documents sharing a band bucket whose
    MinHash-estimated Jaccard is at least cfg.min_similarity), joined transitively; in each, the
    document the keep rule puts first is kept. `read(path, columns)` reads a signature file.

    Memory: per document a few integers and its id; per document in a candidate pair its
    signature; bucket keys are grouped on disk (grouped_by_key) under cfg.temp_dir."""
    corpus = _load_corpus(signature_files, cfg, read)
    n = len(corpus.rank)
    with_words = corpus.words > 0
    exact_pairs = near_pairs = np.zeros((0, 2), np.int64)
    with tempfile.TemporaryDirectory(dir=cfg.temp_dir, prefix="textmill-dedup-") as tmp:
        if cfg.exact:
            docs = np.flatnonzero(with_words)
            chunks = [(corpus.exact_hashes[docs], docs)]
            exact_pairs = _pairs(_grouped("exact hashes", chunks, len(docs), cfg, f"{tmp}/exact"))
        if cfg.near:
            rows = int(with_words.sum()) * cfg.lsh[0]
            chunks = progress.iterate(
                _band_rows(corpus, cfg, read, with_words),
                "dedup: reading band hashes",
                len(corpus.files),
                "parts",
            )
            near_pairs = _pairs(_grouped("band buckets", chunks, rows, cfg, f"{tmp}/bands"))
    involved = np.unique(np.concatenate([exact_pairs.ravel(), near_pairs.ravel()]))
    signatures = _signatures_of(corpus, involved, cfg, read) if cfg.near else None
    if cfg.near and cfg.min_similarity is not None and len(near_pairs):
        where = np.searchsorted(involved, near_pairs)
        similar = _similarity(signatures, where[:, 0], where[:, 1]) >= cfg.min_similarity
        near_pairs = near_pairs[similar]
    roots = _components(n, np.concatenate([exact_pairs, near_pairs]))
    members = involved[np.bincount(roots[involved], minlength=n)[roots[involved]] > 1]
    order = np.lexsort((corpus.rank[members], roots[members]))
    members = members[order]
    first, repeated = _runs(roots[members])
    is_first = ~repeated
    keepers = members[first]
    if signatures is None:
        similarity = np.ones(len(members))
    else:
        similarity = _similarity(
            signatures, np.searchsorted(involved, members), np.searchsorted(involved, keepers)
        )
    exact = cfg.exact & (corpus.exact_hashes[members] == corpus.exact_hashes[keepers])
    runner_up = members.copy()  # whom each row's kept document was ranked against
    runner_up[is_first] = members[np.flatnonzero(is_first) + 1]
    kind = np.where(exact, "exact", "near").astype(object)
    kind[is_first] = None
    return pa.table(
        {
            "id": corpus.ids.take(members),
            "cluster": corpus.ids.take(keepers),
            "kept": pa.array(is_first),
            "kind": pa.array(kind, pa.string()),
            "similarity": pa.array(np.round(similarity, 4)),
            "kept_by": pa.array(_kept_by(corpus.keys, keepers, runner_up), pa.string()),
        },
        schema=CLUSTER_SCHEMA,
    )


CLUSTER_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("cluster", pa.string()),  # the kept document's id
        ("kept", pa.bool_()),
        ("kind", pa.string()),  # exact | near (same normalized text as the kept one or not)
        ("similarity", pa.float64()),  # MinHash-estimated Jaccard with the kept document
        # the keep rule that put the kept document first: ahead of this one, or for the kept
        # one, of the runner-up (KEEP_KEYS, or smaller_id)
        ("kept_by", pa.string()),
    ]
)


def _kept_by(keys: np.ndarray, keepers: np.ndarray, others: np.ndarray) -> np.ndarray:
    """The first of KEEP_KEYS on which each keeper differs from the other, else smaller_id."""
    names = np.array([*KEEP_KEYS, "smaller_id"], dtype=object)
    if not len(keepers):
        return names[:0]
    differ = keys[keepers] != keys[others]
    return names[np.where(differ.any(axis=1), differ.argmax(axis=1), len(KEEP_KEYS))]


def _band_rows(
    corpus: _Corpus, cfg: DedupConfig, read: ReadTable, with_words: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for i, path in enumerate(corpus.files):
        bands = _matrix(read(path, ["bands"])["bands"], cfg.lsh[0], np.uint64)
        docs = np.arange(corpus.offsets[i], corpus.offsets[i + 1])
        keep = with_words[docs]
        yield bands[keep].ravel(), np.repeat(docs[keep], cfg.lsh[0])


# ----- reduce: paragraphs that recur across the documents that stay -----


@dataclass(frozen=True)
class RepeatedParagraphs:
    """Paragraphs found in at least cfg.paragraph_min_docs kept documents: their hashes
    (sorted) and the id hash of the document that keeps each (the first under the keep rule)."""

    hashes: np.ndarray
    keepers: np.ndarray

    def keeper_of(self, hashes: np.ndarray) -> np.ndarray:
        """For each paragraph hash, the id hash of its keeper, or 0 when it does not recur."""
        if not len(self.hashes):
            return np.zeros(len(hashes), dtype=np.uint64)
        at = np.minimum(np.searchsorted(self.hashes, hashes), len(self.hashes) - 1)
        return np.where(self.hashes[at] == hashes, self.keepers[at], np.uint64(0))


def repeated_paragraphs(
    signature_files: list[str],
    cfg: DedupConfig,
    duplicates: pa.Table,
    read: ReadTable = _read_parquet,
) -> RepeatedParagraphs:
    """Dolma's paragraph dedup over the documents that find_duplicates keeps: a paragraph
    (exact, blank ones aside; a block of lines for hard-wrapped kinds) in at least
    cfg.paragraph_min_docs of them stays in the first under the keep rule and is removed from
    the others, as are its later repeats in that first one, where it stands in a long enough
    run (every paragraph is counted here; duplicate_paragraph_spans judges the size). Dolma
    keeps the first occurrence in stream order, and removes repeats within a single document
    too: with the default minimum of 2 the result is the same except that the first is chosen
    by the keep rule (stream order depends on how parts are scheduled), a paragraph repeated
    only inside one document stays (the Gopher repetition filter scores that), and so do short
    runs. A larger minimum removes only boilerplate that recurs on many pages."""
    corpus = _load_corpus(signature_files, cfg, read)
    dropped = np.zeros(len(corpus.rank), dtype=bool)
    rejected = pc.filter(duplicates["id"], pc.invert(duplicates["kept"]))
    dropped[pc.index_in(rejected, corpus.ids).drop_null().to_numpy()] = True
    by_rank = np.argsort(corpus.rank)
    rows = sum(len(pc.list_flatten(read(p, ["paragraphs"])["paragraphs"])) for p in corpus.files)
    with tempfile.TemporaryDirectory(dir=cfg.temp_dir, prefix="textmill-paragraphs-") as tmp:
        chunks = _paragraph_rows(corpus, read, dropped)
        hashes, keepers = [], []
        for keys, ranks in _grouped("paragraphs", chunks, rows, cfg, f"{tmp}/p"):
            starts = np.flatnonzero(_run_starts(keys))
            sizes = np.diff(np.r_[starts, len(keys)])
            common = starts[sizes >= cfg.paragraph_min_docs]
            hashes.append(keys[common])
            keepers.append(corpus.id_hashes[by_rank[ranks[common]]])
    if not hashes:
        return RepeatedParagraphs(np.zeros(0, np.uint64), np.zeros(0, np.uint64))
    hashes, keepers = np.concatenate(hashes), np.concatenate(keepers)
    order = np.argsort(hashes)
    return RepeatedParagraphs(hashes[order], keepers[order])


def _paragraph_rows(
    corpus: _Corpus, read: ReadTable, dropped: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for i, path in enumerate(corpus.files):
        lists = read(path, ["paragraphs"])["paragraphs"]
        counts = pc.list_value_length(lists).to_numpy(zero_copy_only=False).astype(np.int64)
        docs = np.repeat(np.arange(corpus.offsets[i], corpus.offsets[i + 1]), counts)
        hashes = pc.list_flatten(lists).to_numpy(zero_copy_only=False).astype(np.uint64)
        keep = ~dropped[docs]
        yield hashes[keep], corpus.rank[docs[keep]]


# ----- write-out: one part of the document dataset -----


def dedup_documents(
    docs: pa.Table,
    duplicates: pa.Table,
    repeated: RepeatedParagraphs | None,
    cfg: DedupConfig,
    counts: Counter[str],
) -> tuple[pa.Table, list[dict]]:
    """The documents of one part that stay, recurring paragraphs removed, and the rejected ones
    as rows with `reason` (exact_duplicate | near_duplicate | empty_after_paragraph_dedup) and
    `detail`. `duplicates` is find_duplicates' table, or any part of it that has these ids.
    Counts paragraphs_removed and paragraph_chars_removed."""
    losers = pc.filter(duplicates, pc.invert(duplicates["kept"]))
    losers = {
        row["id"]: row for row in losers.filter(pc.is_in(losers["id"], docs["id"])).to_pylist()
    }
    dropped = np.array([doc_id in losers for doc_id in docs["id"].to_pylist()], dtype=bool)
    rejected = []
    for i in np.flatnonzero(dropped):
        doc = docs.slice(i, 1).to_pylist()[0]
        row = losers[doc["id"]]
        detail = f"of {row['cluster']}"
        if row["kind"] == "near":
            detail += f", jaccard {row['similarity']:.2f}"
        rejected.append({**doc, "reason": f"{row['kind']}_duplicate", "detail": detail})
    kept = docs.filter(pa.array(~dropped))
    if not cfg.paragraphs or repeated is None or not len(repeated.hashes):
        return kept, rejected
    texts, empty = [], np.zeros(kept.num_rows, dtype=bool)
    hard_wrapped = pc.is_in(kept["source_kind"], pa.array(cfg.hard_wrapped_kinds, pa.string()))
    rows = zip(
        kept["id"].to_pylist(), kept["text"].to_pylist(), hard_wrapped.to_pylist(), strict=True
    )
    for i, (doc_id, text, wrapped) in enumerate(rows):
        new_text, removed = _without_repeated(text, id_hash(doc_id), repeated, cfg, wrapped)
        if removed:
            counts["paragraphs_removed"] += removed
            counts["paragraph_chars_removed"] += len(text) - len(new_text)
        if removed and not new_text.strip():
            empty[i] = True
            rejected.append(
                {
                    **kept.slice(i, 1).to_pylist()[0],
                    "reason": "empty_after_paragraph_dedup",
                    "detail": f"all {removed} paragraphs recur in other documents",
                }
            )
        texts.append(new_text)
    column = kept.schema.get_field_index("text")
    kept = kept.set_column(column, kept.schema.field(column), pa.array(texts, pa.string()))
    return kept.filter(pa.array(~empty)), rejected


def duplicate_paragraph_spans(
    text: str,
    doc_id_hash: int,
    repeated: RepeatedParagraphs,
    cfg: DedupConfig,
    hard_wrapped: bool = False,
) -> list[tuple[int, int]]:
    """The spans (as paragraph_spans) of the paragraphs this document loses: those that recur
    and are kept by another document, and a kept one's later repeats in the same document, each
    in a run of such paragraphs that is long enough (module docstring)."""
    spans = paragraph_spans(text, hard_wrapped)
    paragraphs = paragraphs_of(text, hard_wrapped)
    hashes = [paragraph_hash(p) for p in paragraphs]
    keepers = repeated.keeper_of(np.array([h or 0 for h in hashes], dtype=np.uint64))
    duplicates, seen = [], set()
    for i, (h, keeper) in enumerate(zip(hashes, keepers.tolist(), strict=True)):
        if h is None or keeper == 0:
            continue
        if keeper != doc_id_hash or h in seen:
            duplicates.append(i)
        seen.add(h)
    # Blocks are apart by blank lines already: each is judged alone.
    runs = _adjacent_runs(duplicates, join=not hard_wrapped)
    return [
        spans[i] for run in runs if _long_enough([paragraphs[i] for i in run], cfg) for i in run
    ]


def _adjacent_runs(indices: list[int], join: bool) -> list[list[int]]:
    """Sorted paragraph numbers in runs of consecutive ones (join), or each alone."""
    runs: list[list[int]] = []
    for i in indices:
        if join and runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _long_enough(paragraphs: list[str], cfg: DedupConfig) -> bool:
    """Whether a run is boilerplate-sized: words as the clean stage counts them (a letter of
    Chinese or Thai is one), characters without the indentation and the line breaks between."""
    words = sum(count_words(p) for p in paragraphs)
    chars = sum(len(p.strip()) for p in paragraphs)
    return words >= cfg.paragraph_min_words and chars >= cfg.paragraph_min_chars


def _without_repeated(
    text: str, doc_id_hash: int, repeated: RepeatedParagraphs, cfg: DedupConfig, hard_wrapped: bool
) -> tuple[str, int]:
    lost = duplicate_paragraph_spans(text, doc_id_hash, repeated, cfg, hard_wrapped)
    if not lost:
        return text, 0
    pieces, start = [], 0
    for s, e in lost:
        pieces.append(text[start:s])
        start = e
    pieces.append(text[start:])
    return "".join(pieces).rstrip("\n"), len(lost)


# ----- the stage: signatures per input part (map), clusters (reduce), then the write-out -----

SIGNATURE_INPUT_COLUMNS = ["id", "text", "url", "generation", "source_kind"]
SIGNATURE_BATCH_ROWS = 4096  # documents signed at once (each document's signature is its own)
SIGNATURES_FOLDER = "_signatures/"  # "_": readers of the version folder as a dataset skip it
CLUSTERS_FILE = "_clusters/clusters.parquet"  # "_": not one of the kept documents
# What the signatures depend on: a change elsewhere (e.g. paragraph_min_docs) reuses them.
SIGNATURE_SETTINGS = (
    *("exact_include_url", "near", "ngram", "bands", "rows", "lsh_threshold", "num_perm"),
    *("seed", "paragraphs", "hard_wrapped_kinds"),
)


def signature_key(unit: PartUnit, cfg: DedupConfig) -> str:
    settings = {name: getattr(cfg, name) for name in SIGNATURE_SETTINGS}
    return short_digest(NAME, CODE_VERSION, "signatures", settings, unit.sha256)


def signature_part(unit: PartUnit, key: str, cfg: DedupConfig, out: VersionBuilder) -> PartResult:
    """Map: one input part's signatures, cached by the part's content and the settings."""
    started = time.perf_counter()
    docs = out.ws.storage.read_parquet(unit.path, SIGNATURE_INPUT_COLUMNS)
    report = progress.unit(key)
    tables = []  # in batches: progress as it goes, and a bound on the numpy temporaries
    for start in range(0, max(docs.num_rows, 1), SIGNATURE_BATCH_ROWS):
        tables.append(signature_table(docs.slice(start, SIGNATURE_BATCH_ROWS), cfg))
        report.update(start + tables[-1].num_rows)
    part = out.write_part(
        key,
        pa.concat_tables(tables).combine_chunks(),
        None,
        folder=SIGNATURES_FOLDER,
        counts={"signed": docs.num_rows},
        seconds=round(time.perf_counter() - started, 3),
        unit={"part": unit.path},
    )
    report.finish()
    return part


def output_keys(signature_keys: list[str], takedown_digest: str) -> list[str]:
    """The write-out's part keys: they name the whole input (every part's signatures) and the
    takedown list, so a killed write-out resumes where it stopped and a different input never
    reuses them."""
    whole_input = short_digest(signature_keys, takedown_digest)
    return [short_digest(NAME, "out", whole_input, key) for key in signature_keys]


def write_out(build: Build, parts: list[PartResult]) -> Reduced:
    """Reduce: cluster every part's signatures, find the recurring paragraphs, then write each
    input part without its duplicates and the documents the takedown list names."""
    cfg: DedupConfig = build.config
    out = build.builder
    storage = out.ws.storage
    units: list[PartUnit] = build.raw_inputs
    listed_digest = units[0].takedown if units else ""
    listed = takedown.load_checked(out.ws, listed_digest, NAME)
    signature_files = [f"{out.dir}/{part.file}" for part in parts]
    started = time.perf_counter()
    clusters = find_duplicates(signature_files, cfg, storage.read_parquet)
    repeated = (
        repeated_paragraphs(signature_files, cfg, clusters, storage.read_parquet)
        if cfg.paragraphs
        else None
    )
    cluster_s = time.perf_counter() - started
    files = [out.write_file(CLUSTERS_FILE, parquet_bytes(clusters))]
    keys = output_keys([part.key for part in parts], listed_digest)
    done = out.finished_parts(set(keys), elsewhere=False)
    written = []
    parts_out = progress.iterate(
        zip(units, keys, strict=True),
        "dedup: writing parts",
        sum(unit.rows for unit in units),
        weight=lambda unit_key: unit_key[0].rows,
    )
    for unit, key in parts_out:
        if key in done:
            written.append(done[key])
            continue
        part_started = time.perf_counter()
        docs = storage.read_parquet(unit.path)
        counts: Counter[str] = Counter()
        docs, taken_down = takedown.screen_table(docs, listed, NAME)
        kept, rejected = dedup_documents(docs, clusters, repeated, cfg, counts)
        rejected += taken_down
        written.append(
            out.write_part(
                key,
                kept,
                pa.Table.from_pylist(
                    [{**row, "stage": NAME} for row in rejected],
                    schema=rejected_schema_of(docs.schema),
                ),
                counts=dict(counts),
                dropped=dict(Counter(row["reason"] for row in rejected)),
                seconds=round(time.perf_counter() - part_started, 3),
                unit={"part": unit.path},
            )
        )
    kept_in_clusters = pc.sum(clusters["kept"]).as_py() or 0
    stats = {
        "clusters": kept_in_clusters,
        "duplicates": clusters.num_rows - kept_in_clusters,
        "repeated_paragraphs": 0 if repeated is None else len(repeated.hashes),
        "cluster_s": round(cluster_s, 3),
    }
    return Reduced(files=files, stats=stats, parts=written)


def parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()
