"""Benchmark of curation (language ID, quality filters, MinHash dedup) against datatrove.

What it measures
  A corpus is built from the real texts of `<repo>/../shared/data` (or `$TEXTMILL_SHARED_DATA`):
  trafilatura's main text of the trafilatura-eval pages, of the HTML responses in warc/ and of
  the first doorway page of each near-duplicate template (extracted once, cached in the cache
  folder), Project Gutenberg books, Tiny Shakespeare, the CCNet documents of web-text-cc/ and
  Dolma's dedup fixture. Every text is cut at paragraph ends (lines, for pages) into originals
  of about CHUNK_WORDS (140) words; shorter remainders and texts under MIN_WORDS (50) words are
  left out. These originals are made distinct: one whose word-5-gram Jaccard with a kept one
  reaches 0.3 is left out (chunks of one book stay far below that), so pairs of originals are
  non-duplicates. Each original gets one seeded copy, edited at word level (insertions,
  deletions and substitutions with the original's own words, sometimes two paragraphs swapped)
  towards a Jaccard drawn uniformly from 0.5-0.95. So every family is an original and its copy,
  and every duplicate pair is a designed one: two copies edited independently from one
  original may each be close to it and not to each other, which no clustering can honour.
  `--docs` (20,000 by default) documents need half as many originals; a corpus larger than
  twice the originals (the 4x run, for memory only) gives each original more copies. The
  documents are shuffled into JSONL.gz shards (`id`, `text`, `url`, `source_kind`), at least
  MIN_SHARDS (8) so that 2 workers stay busy; both tools read the same files.

  Truth: for every pair within a family, the true Jaccard of word 5-grams (words: the
  lowercased text split at whitespace) against the threshold of 14 bands x 8 rows,
  (1/14)^(1/8) ~ 0.719; pairs across families are non-duplicates. A predicted duplicate pair is
  two documents in the same cluster. Each tool is scored on the documents that passed its own
  filters (`dedup_precision`, `dedup_recall`).

  Both tools run the same steps in the same order with 2 workers: language ID (lid.176, en,
  0.65), Gopher quality, Gopher repetition, C4 quality, FineWeb quality, then MinHash dedup
  (word 5-grams, 14 bands x 8 rows). Each step is a process timed end to end (start-up and
  imports included): ours `textmill run extract|filter|dedup --no-prefect` (extract imports
  the JSONL documents), datatrove's bench/curate_datatrove/run_datatrove.py steps in its own
  virtual environment, which this script creates in the cache folder (datatrove[processing]
  pins trafilatura < 1.12), with our lid.176.ftz placed in its HF_HOME asset cache so that
  nothing is downloaded (HF_HUB_OFFLINE=1; datatrove still resolves the model's https URL with
  fsspec, which needs aiohttp, so that is installed too). `docs_per_s` = documents / the sum of
  the steps' seconds; `ratio_vs_datatrove` = docs_per_s / datatrove_docs_per_s. Other load on
  the machine skews both: `load_average_1m` says how much there was. `peak_rss_mb_1x` and
  `peak_rss_mb_4x` are the largest resident set of any one of our processes (a stage's main
  process or a worker it waited for) on this corpus and on one `--scale` (4) times larger.
  Targets: ratio_vs_datatrove >= 1.5; our precision and recall each >= datatrove's and >= 0.9;
  peak_rss_mb_4x <= 1.25 x peak_rss_mb_1x; filter_agreement >= 0.98.

  Filter fidelity: each document's decision in each tool is the filter step that dropped it
  (ours: the filter stage's rejected documents and their reasons; datatrove's: the documents
  each of its filters wrote to `excluded/<step>/`), or kept. `filter_agreement` is the share of
  documents both tools keep or both drop; `filter_agreement_by_step` gives, per step, the share
  of the documents that reached it in both tools (passed every earlier step in both) on which
  both keep or both drop there, and how many reached it; `filter_disagreements` counts the
  documents whose first dropping step differs, as "<our step:rule> / <datatrove's step:reason>"
  ("kept" for none). These are for our filters with the settings that reproduce datatrove's
  decisions (`compat: datatrove` on every step, no `ignore_rules`, no hard-wrapped kinds: see
  pipeline/config.py's FilterConfig.Step), applied to the corpus in this process with the
  stage's own document function (pipeline/filter.py's `prepare`), untimed; the same figures
  with our defaults, those of the timed run, are `filter_agreement_defaults`,
  `filter_agreement_by_step_defaults` and `filter_disagreements_defaults`. The timed run keeps
  our defaults, so that throughput and dedup scores compare with earlier runs.

How to run it (from the repository root)
  .venv/bin/python bench/curate.py                          # 20,000 docs, then the 4x run
  .venv/bin/python bench/curate.py --docs 2000 --skip-4x    # a quick run
  .venv/bin/python bench/curate.py --skip-ours --keep /tmp/bc   # datatrove only, files kept

Progress goes to stderr; stdout holds only one JSON object.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's folder comes first on sys.path, where bench/tokenize.py would
# shadow the standard library's `tokenize`: put the repository root there instead.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import gzip
import importlib.util
import io
import json
import math
import random
import re
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

from bench._common import (
    add_keep_option,
    logger,
    reject_used_keep,
    run_benchmark,
    shared_data,
    versions,
)

log = logger("bench/curate")

NGRAM = 5
BANDS, ROWS = 14, 8
THRESHOLD = (1 / BANDS) ** (1 / ROWS)  # where a pair's chance to share a band is about 1/2
DISTINCT_BELOW = 0.3  # originals stay below this Jaccard with each other
COPY_JACCARD = (0.5, 0.95)  # the Jaccard that a copy's edits aim at, drawn uniformly
SWAP_CHANCE = 0.3  # a copy also has two paragraphs swapped
MIN_WORDS = 50  # shorter originals are left out (a few edits would change everything)
CHUNK_WORDS = 140  # texts are cut into originals of about this many words
DOCS_PER_SHARD = 1250
MIN_SHARDS = 8
WORKERS = 2
SEED = 4
TARGETS = {
    "ratio_vs_datatrove": 1.5,
    "dedup_precision": 0.9,
    "dedup_recall": 0.9,
    "peak_rss_4x_over_1x": 1.25,
    "filter_agreement": 0.98,
}
DATATROVE_PACKAGES = ["datatrove[processing]", "orjson", "spacy", "aiohttp"]
DATATROVE_STEPS = ("filter", "signatures", "buckets", "cluster", "dedup")
DATATROVE_SCRIPT = Path(__file__).resolve().parent / "curate_datatrove" / "run_datatrove.py"
OUR_STEPS = ("extract", "filter", "dedup")
FILTER_STEPS = ("language", "gopher_quality", "gopher_repetition", "c4_quality", "fineweb_quality")
KEPT = "kept"  # the decision of a document no filter dropped
_WORD_TOKEN = re.compile(r"\S+\s*")


# ----- the originals: real texts of the shared data -----


@dataclass
class Original:
    id: str
    text: str
    url: str
    source_kind: str  # book | article | web


def originals(data: Path, cache: Path) -> list[Original]:
    """Every source's texts cut into originals (pages and web documents at line ends, books at
    paragraph ends), in a fixed order, before they are made distinct."""
    pages = [*extracted_pages(data, cache), *jsonl_documents(data)]
    return [
        *(chunk for page in pages for chunk in chunked(page, "\n")),
        *(chunk for book in books(data) for chunk in chunked(book, "\n\n")),
    ]


def chunked(whole: Original, separator: str) -> list[Original]:
    """`whole` cut at `separator` into pieces of about CHUNK_WORDS words (a piece ends at the
    first separator after that many), less the pieces of fewer than MIN_WORDS words."""
    pieces, group, words = [], [], 0
    for block in whole.text.split(separator):
        if not block.strip():
            continue
        group.append(block)
        words += len(block.split())
        if words >= CHUNK_WORDS:
            pieces.append(separator.join(group))
            group, words = [], 0
    pieces.append(separator.join(group))
    return [
        Original(f"{whole.id}#{n}", text, f"{whole.url}#part-{n}", whole.source_kind)
        for n, text in enumerate(p for p in pieces if len(p.split()) >= MIN_WORDS)
    ]


def extracted_pages(data: Path, cache: Path) -> list[Original]:
    """trafilatura's text of the HTML pages, extracted once and cached in `cache`."""
    import trafilatura

    path = cache / f"curate-pages-v2-trafilatura-{trafilatura.__version__}.jsonl.gz"
    if path.exists():
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            return [Original(**json.loads(line)) for line in fh]
    log(f"extracting the HTML pages with trafilatura (once; cached in {path})")
    pages = []
    for page_id, url, kind, html in html_pages(data):
        try:
            text = trafilatura.extract(html, url=url, include_comments=False)
        except Exception as exc:  # a page trafilatura cannot read is simply not in the corpus
            log(f"{page_id}: {type(exc).__name__}: {exc}")
            continue
        if text:
            pages.append(Original(page_id, text, url, kind))
    cache.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with gzip.open(partial, "wt", encoding="utf-8") as fh:
        for page in pages:
            fh.write(json.dumps(vars(page)) + "\n")
    partial.replace(path)
    return pages


def html_pages(data: Path) -> Iterator[tuple[str, str, str, bytes]]:
    """(id, url, source kind, HTML) of trafilatura-eval, warc/ and the doorway pages (those of
    one template are near-duplicates: `distinct` keeps the first)."""
    from bench.extract import load_pages

    for page in load_pages(data / "trafilatura-eval", None):
        yield f"eval:{page.file}", page.target_uri, "article", page.body
    for warc in sorted((data / "warc").rglob("*")):
        archive = ".warc" in warc.name or ".arc" in warc.name
        if warc.is_file() and archive and ".paths" not in warc.name:  # not a list of paths
            for n, (url, html) in enumerate(warc_html(warc)):
                yield f"warc:{warc.relative_to(data / 'warc')}:{n}", url, "web", html
    doorway = data / "near-duplicates" / "heizung-defekt-doorway-pages"
    for line in (doorway / "manifest.jsonl").read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        url = f"https://heizung-defekt.de/{item['district']}/{Path(item['path']).stem}"
        html = gzip.decompress((doorway / item["path"]).read_bytes())
        yield f"doorway:{item['path']}", url, "web", html


def warc_html(path: Path) -> Iterator[tuple[str, bytes]]:
    """The HTML responses of a WARC/ARC file, up to any damage (some files are broken on
    purpose)."""
    from warcio.archiveiterator import ArchiveIterator

    try:
        with path.open("rb") as fh:
            for record in ArchiveIterator(fh, arc2warc=True):
                headers = record.http_headers
                content_type = headers.get_header("Content-Type", "") if headers else ""
                if record.rec_type == "response" and "html" in content_type.lower():
                    url = record.rec_headers.get_header("WARC-Target-URI") or ""
                    yield url, record.content_stream().read()
    except Exception as exc:
        log(f"{path.name}: stopped at {type(exc).__name__}: {exc}")


def books(data: Path) -> Iterator[Original]:
    """The Gutenberg books (without their license header and footer) and Tiny Shakespeare."""
    from pipeline.gutenberg import read_book_file, strip_boilerplate

    for book in sorted((data / "gutenberg" / "books").glob("*.txt")):
        body, _ = strip_boilerplate(read_book_file(book))
        url = f"https://www.gutenberg.org/ebooks/{book.stem}"
        yield Original(f"gutenberg:{book.stem}", body, url, "book")
    plays = (data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    yield Original("shakespeare:input", plays, "https://github.com/karpathy/char-rnn", "book")


def jsonl_documents(data: Path) -> Iterator[Original]:
    """The CCNet documents of web-text-cc/ and Dolma's dedup fixture (ids are URLs)."""
    files = [
        *sorted((data / "web-text-cc").rglob("*.jsonl.gz")),
        data / "near-duplicates" / "dolma-dedup-fixture" / "documents.jsonl.gz",
    ]
    for path in files:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for n, line in enumerate(fh):
                row = json.loads(line)
                doc_id = f"{path.parent.name}:{path.name}:{n}"
                yield Original(doc_id, row["text"], str(row["id"]), "web")


# ----- shingles and Jaccard: the truth's measure -----


def shingles(text: str) -> set[int]:
    """Hashes of the word 5-grams (words: lowercased, split at whitespace); a text of fewer
    words is one shingle."""
    words = text.lower().split()
    if len(words) < NGRAM:
        return {hash(tuple(words))} if words else set()
    return {hash(tuple(words[i : i + NGRAM])) for i in range(len(words) - NGRAM + 1)}


def jaccard(a: set[int], b: set[int]) -> float:
    if not a and not b:
        return 1.0
    shared = len(a & b)
    return shared / (len(a) + len(b) - shared)


def distinct(found: list[Original]) -> tuple[list[Original], float]:
    """The originals, less each one whose Jaccard with a kept original reaches DISTINCT_BELOW
    (exact copies included); also the highest Jaccard between two kept originals. Exact: an
    inverted index of shingles over the kept originals."""
    kept: list[Original] = []
    sizes: list[int] = []
    index: dict[int, list[int]] = {}
    highest = 0.0
    for original in found:
        own = shingles(original.text)
        overlap = Counter(k for s in own for k in index.get(s, ()))
        best = max(
            (shared / (len(own) + sizes[k] - shared) for k, shared in overlap.items()),
            default=0.0,
        )
        if best >= DISTINCT_BELOW:
            continue
        highest = max(highest, best)
        for s in own:
            index.setdefault(s, []).append(len(kept))
        kept.append(original)
        sizes.append(len(own))
    return kept, highest


# ----- the corpus: originals and their edited copies -----


@dataclass
class Corpus:
    folder: Path
    files: list[Path]
    docs: int
    families: dict[str, list[str]]  # original id -> ids of the original and its copies
    sources: dict[str, int]  # original documents per source


def edited_copy(text: str, target: float, rng: random.Random) -> str:
    """`text` with word-level edits (insert, delete, substitute: words of the text itself) at
    random places, as many as bring the word-5-gram Jaccard near `target`, and maybe two
    paragraphs swapped. k edits in n words leave a shingle (5 words) untouched with chance
    s = exp(-5k/n), and J = s / (2 - s), so k = n ln((1 + J) / 2J) / 5. Line and paragraph
    breaks stay, so line-based filters see the same shape."""
    paragraphs = [_WORD_TOKEN.findall(p) for p in text.split("\n\n")]
    paragraphs = [p for p in paragraphs if p]
    vocabulary = [token.strip() for p in paragraphs for token in p]
    n = max(len(vocabulary) - NGRAM + 1, 1)
    for _ in range(round(n * math.log((1 + target) / (2 * target)) / NGRAM)):
        tokens = rng.choices(paragraphs, weights=[len(p) for p in paragraphs])[0]
        at = rng.randrange(len(tokens))
        edit = rng.choice(("insert", "delete", "substitute"))
        if edit == "insert":
            tokens.insert(at, rng.choice(vocabulary) + " ")
        elif edit == "delete" and len(tokens) > 1:
            del tokens[at]
        else:
            word = tokens[at]
            tokens[at] = rng.choice(vocabulary) + word[len(word.rstrip()) :]
    if len(paragraphs) > 1 and rng.random() < SWAP_CHANCE:
        i, j = rng.sample(range(len(paragraphs)), 2)
        paragraphs[i], paragraphs[j] = paragraphs[j], paragraphs[i]
    return "\n\n".join("".join(tokens).rstrip() for tokens in paragraphs)


def build_corpus(pool: list[Original], docs: int, folder: Path, seed: int) -> Corpus:
    """`docs` documents: a seeded sample of `docs` // 2 distinct originals (all of `pool` if it
    has fewer) and edited copies of them, one each before any gets a second, shuffled into
    JSONL.gz shards."""
    if not pool:
        sys.exit("bench/curate.py: no original text to build the corpus from")
    rng = random.Random(seed)
    chosen = rng.sample(pool, min(len(pool), docs // 2))
    if docs > 2 * len(chosen):
        log(f"{len(chosen)} originals for {docs} documents: some have more than one copy")
    rows = [_row(o.id, o.text, o.url, o.source_kind) for o in chosen]
    families = {o.id: [o.id] for o in chosen}
    for n in range(docs - len(chosen)):
        original = chosen[n % len(chosen)]
        number = len(families[original.id])
        copy_id = f"{original.id}~copy{number}"
        text = edited_copy(original.text, rng.uniform(*COPY_JACCARD), rng)
        url = f"{original.url}{'&' if '?' in original.url else '?'}copy={number}"
        rows.append(_row(copy_id, text, url, original.source_kind))
        families[original.id].append(copy_id)
    rng.shuffle(rows)

    folder.mkdir(parents=True, exist_ok=True)
    shards = max(MIN_SHARDS, round(len(rows) / DOCS_PER_SHARD))
    files = [folder / f"part-{n:03d}.jsonl.gz" for n in range(shards)]
    for n, path in enumerate(files):
        # mtime=0: the same seed gives the same bytes
        with io.TextIOWrapper(
            gzip.GzipFile(path, "wb", compresslevel=1, mtime=0), encoding="utf-8"
        ) as fh:
            for row in rows[n::shards]:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    sources = Counter(o.id.split(":")[0] for o in chosen)
    return Corpus(folder, files, len(rows), families, dict(sorted(sources.items())))


def _row(doc_id: str, text: str, url: str, source_kind: str) -> dict[str, str]:
    return {"id": doc_id, "text": text, "url": url, "source_kind": source_kind}


def read_texts(files: Iterable[Path]) -> dict[str, str]:
    texts = {}
    for path in files:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                texts[row["id"]] = row["text"]
    return texts


# ----- the truth and the scores -----


@dataclass
class Truth:
    duplicates: list[tuple[str, str]]  # pairs within a family with Jaccard >= THRESHOLD
    pairs: int  # pairs within a family
    histogram: dict[str, int]  # pairs within a family per Jaccard bin of 0.05


def truth(corpus: Corpus) -> Truth:
    """Every pair within a family, with its true Jaccard (one family's shingles at a time)."""
    texts = read_texts(corpus.files)
    duplicates: list[tuple[str, str]] = []
    histogram: Counter[str] = Counter()
    pairs = 0
    for ids in corpus.families.values():
        sets = {doc_id: shingles(texts[doc_id]) for doc_id in sorted(ids)}
        for a, b in combinations(sets, 2):
            j = jaccard(sets[a], sets[b])
            pairs += 1
            histogram[f"{min(int(j * 20), 19) / 20:.2f}"] += 1
            if j >= THRESHOLD:
                duplicates.append((a, b))
    return Truth(duplicates, pairs, dict(sorted(histogram.items())))


def pair_scores(
    clusters: dict[str, str], survivors: set[str], duplicates: list[tuple[str, str]]
) -> dict[str, float]:
    """Precision and recall of duplicate pairs among `survivors` (the documents a tool's
    filters kept). Predicted: two documents in the same cluster (`clusters`: id -> cluster; a
    document alone may be left out). True: a pair of `duplicates`. Counted, never listed: a
    huge cluster costs no memory."""
    clusters = {d: c for d, c in clusters.items() if d in survivors}
    predicted = sum(n * (n - 1) // 2 for n in Counter(clusters.values()).values())
    true = [(a, b) for a, b in duplicates if a in survivors and b in survivors]
    hits = sum(a in clusters and clusters[a] == clusters.get(b) for a, b in true)
    return {
        "precision": _ratio(hits, predicted),
        "recall": _ratio(hits, len(true)),
        "predicted_pairs": predicted,
        "true_pairs": len(true),
    }


def _ratio(num: float, den: float, digits: int = 4) -> float:
    return round(num / den, digits) if den else 0.0


# ----- processes, timed -----


@dataclass
class Step:
    seconds: float
    peak_rss_mb: float  # the largest resident set of the process or any child it waited for


# Linux counts in a child's peak RSS what it had before exec, i.e. this big process (the corpus
# is in memory) when it forks. So a small launcher (stdlib only) runs each command: its own
# children start small, and it reports their time and peak from inside.
_LAUNCHER = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
code = subprocess.call(sys.argv[2:])
seconds = time.perf_counter() - started
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
with open(sys.argv[1], "w") as fh:
    json.dump({"code": code, "seconds": seconds, "peak_kib": peak_kib}, fh)
"""


def timed_process(name: str, cmd: list[str], env: dict[str, str] | None = None) -> Step:
    """Run `cmd` (its output to stderr), timing it end to end; exit 1 naming the step if it
    fails. The peak is the largest RSS of the process or of any child it waited for."""
    log(f"{name}: {' '.join(cmd)}")
    with tempfile.TemporaryDirectory(prefix="textmill-bench-step-") as tmp:
        report = Path(tmp) / "report.json"
        launcher = [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(report)]
        subprocess.run([*launcher, *cmd], env=env, stdout=sys.stderr, check=False)
        outcome = json.loads(report.read_text()) if report.exists() else {"code": "none"}
    if outcome["code"] != 0:
        sys.exit(
            f"bench/curate.py: {name} failed (exit {outcome['code']}): {' '.join(cmd)}\n"
            "Its output is above, on stderr."
        )
    step = Step(outcome["seconds"], outcome["peak_kib"] / 1024)  # KiB on Linux
    log(f"{name}: {step.seconds:.1f} s, peak RSS {step.peak_rss_mb:.0f} MB")
    return step


def _steps_s(steps: dict[str, Step]) -> dict[str, float]:
    return {name: round(step.seconds, 2) for name, step in steps.items()}


# ----- datatrove's side -----


def datatrove_python(cache: Path) -> Path:
    """The python of the benchmark's datatrove virtual environment, created (and the packages
    installed with pip) when it is missing or incomplete; exit 1 with pip's error if that fails."""
    venv = cache / "datatrove-venv"
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import datatrove, orjson, spacy, aiohttp, fasttext"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    log(f"creating {venv} and installing {' '.join(DATATROVE_PACKAGES)} (once)")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    install = [str(python), "-m", "pip", "install", "--quiet", *DATATROVE_PACKAGES]
    done = subprocess.run(install, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(
            f"bench/curate.py: could not install datatrove in {venv}: `{' '.join(install)}` "
            f"exited {done.returncode}:\n{(done.stdout + done.stderr)[-4000:]}"
        )
    return python


def run_datatrove(python: Path, corpus: Corpus, work: Path, cache: Path) -> dict[str, Any]:
    """datatrove's filters then its 4-stage MinHash dedup, one process per step."""
    from pipeline.langid import model_path

    env = {**os.environ, "HF_HOME": str(cache / "datatrove-hf-home"), "HF_HUB_OFFLINE": "1"}
    script = [str(python), str(DATATROVE_SCRIPT)]
    placed = subprocess.run(
        [*script, "place-lid", "--lid", str(model_path())], env=env, capture_output=True, text=True
    )
    if placed.returncode != 0:
        sys.exit(f"bench/curate.py: placing lid.176 for datatrove failed:\n{placed.stderr[-4000:]}")
    found = subprocess.run([*script, "versions"], env=env, capture_output=True, text=True)
    common = ["--corpus", str(corpus.folder), "--work", str(work)]
    common += ["--tasks", str(len(corpus.files)), "--workers", str(WORKERS)]
    steps = {
        name: timed_process(f"datatrove {name}", [*script, name, *common], env)
        for name in DATATROVE_STEPS
    }
    survivors, clusters, kept = datatrove_clusters(work)
    return {
        "steps": steps,
        "decisions": datatrove_decisions(work),
        "survivors": survivors,
        "clusters": clusters,
        "kept": kept,
        "versions": json.loads(found.stdout) if found.returncode == 0 else {},
    }


def datatrove_clusters(work: Path) -> tuple[set[str], dict[str, str], int]:
    """(documents that passed datatrove's filters, id -> MinHash cluster for documents with a
    duplicate, documents kept) from its dedup output (kept) and exclusion output (removed)."""
    survivors: set[str] = set()
    clusters: dict[str, str] = {}
    kept = 0
    for folder in ("deduped", "removed"):
        for path in sorted((work / folder).glob("*.jsonl.gz")):
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                for line in fh:
                    row = json.loads(line)
                    survivors.add(row["id"])
                    kept += folder == "deduped"
                    cluster = row.get("metadata", {}).get("minhash_cluster_id", -1)
                    if cluster != -1:
                        clusters[row["id"]] = str(cluster)
    return survivors, clusters, kept


def datatrove_decisions(work: Path) -> dict[str, str]:
    """id -> "<step>:<reason>" for each document one of datatrove's filters dropped (written to
    `excluded/<step>/` by run_datatrove.py)."""
    decisions = {}
    for step in FILTER_STEPS:
        for path in sorted((work / "excluded" / step).glob("*.jsonl.gz")):
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                for line in fh:
                    row = json.loads(line)
                    reason = row.get("metadata", {}).get("filter_reason") or "dropped"
                    decisions[row["id"]] = f"{step}:{reason}"
    return decisions


# ----- filter fidelity -----


def filter_agreement(
    ids: Iterable[str], ours: dict[str, str], theirs: dict[str, str]
) -> dict[str, Any]:
    """How often both tools decide alike (see the module docstring). `ours` and `theirs` map a
    dropped document's id to "<step>:<rule>"; a document in neither is kept."""
    ids = list(ids)
    step_of = {name: n for n, name in enumerate(FILTER_STEPS)}

    def first(decisions: dict[str, str], doc_id: str) -> int:  # the step index; kept: past all
        reason = decisions.get(doc_id)
        return step_of[reason.split(":")[0]] if reason else len(FILTER_STEPS)

    both = [(first(ours, d), first(theirs, d)) for d in ids]
    by_step = {}
    for n, name in enumerate(FILTER_STEPS):
        reached = [(a, b) for a, b in both if a >= n and b >= n]
        alike = sum((a == n) == (b == n) for a, b in reached)
        by_step[name] = {"agreement": _ratio(alike, len(reached)), "documents": len(reached)}
    differ = Counter(
        f"{ours.get(d, KEPT)} / {theirs.get(d, KEPT)}"
        for d, (a, b) in zip(ids, both, strict=True)
        if a != b
    )
    kept_alike = sum((a == len(FILTER_STEPS)) == (b == len(FILTER_STEPS)) for a, b in both)
    return {
        "filter_agreement": _ratio(kept_alike, len(ids)),
        "filter_agreement_by_step": by_step,
        "filter_disagreements": dict(differ.most_common()),
    }


# ----- our side -----


def our_stages_missing() -> list[str]:
    return [
        f"pipeline/{stage}.py"
        for stage in ("filter", "dedup")
        if importlib.util.find_spec(f"pipeline.{stage}") is None
    ]


def write_run_config(folder: Path, corpus: Corpus, compat: str = "textmill") -> Path:
    """Our run config; `compat` "datatrove": each filter step with the settings that reproduce
    datatrove's decisions, "textmill": our defaults."""
    import yaml

    sections: dict[str, dict[str, Any]] = {step: {} for step in FILTER_STEPS}
    if compat == "datatrove":
        sections = {step: {"compat": "datatrove", "ignore_rules": {}} for step in FILTER_STEPS}
    config = {
        "workspace": str(folder / "workspace"),
        "sources": [
            {"name": "corpus", "kind": "web", "documents": [str(corpus.folder / "*.jsonl.gz")]}
        ],
        "filter": {
            "dataset": "extract",
            "steps": list(FILTER_STEPS),
            **sections,
            "language": {**sections["language"], "languages": ["en"]},
            **({"hard_wrapped_kinds": []} if compat == "datatrove" else {}),
        },
        "dedup": {"dataset": "filter", "paragraphs": False},
        "runner": {"task_runner": "processes", "workers": WORKERS},
    }
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def check_our_side(folder: Path) -> None:
    """Exit 1 before any long work when our filter or dedup stage cannot run yet."""
    from pipeline.config import ConfigError, load_config

    missing = our_stages_missing()
    if missing:
        sys.exit(
            f"bench/curate.py: our side needs the filter and dedup stages, and "
            f"{', '.join(missing)} is not there yet (use --skip-ours to run datatrove alone)."
        )
    probe_cli = subprocess.run([_textmill(), "--help"], capture_output=True, text=True)
    if probe_cli.returncode != 0:
        sys.exit(f"bench/curate.py: `textmill --help` fails:\n{probe_cli.stderr[-4000:]}")
    folder.mkdir(parents=True, exist_ok=True)
    probe = Corpus(folder / "corpus", [], 0, {}, {})
    try:
        load_config(write_run_config(folder, probe))
    except ConfigError as exc:
        sys.exit(f"bench/curate.py: pipeline/config.py does not accept our run config yet:\n{exc}")


def run_ours(corpus: Corpus, folder: Path) -> dict[str, Step]:
    """`textmill run extract|filter|dedup --no-prefect`, each a process of its own, with our
    defaults."""
    folder.mkdir(parents=True, exist_ok=True)
    config = write_run_config(folder, corpus, "textmill")
    textmill = _textmill()
    env = {**os.environ, "PREFECT_HOME": str(folder / "prefect-home")}
    env.pop("PREFECT_API_URL", None)
    return {
        stage: timed_process(
            f"textmill {stage}", [textmill, "run", stage, "--no-prefect", "-c", str(config)], env
        )
        for stage in OUR_STEPS
    }


def _textmill() -> str:
    return str(Path(sys.executable).parent / "textmill")


def our_clusters(workspace: Path) -> dict[str, str]:
    """id -> cluster from the dedup stage's cluster table: the one place that knows its path
    (`datasets/dedup/<CURRENT>/_clusters/clusters.parquet`) and columns."""
    from pipeline.dedup import CLUSTERS_FILE
    from pipeline.workspace import Workspace

    ws = Workspace(str(workspace))
    version = ws.current_version("dedup")
    table = ws.storage.read_parquet(f"{ws.stage_dir('dedup', version)}/{CLUSTERS_FILE}")
    ids, clusters = table["id"].to_pylist(), table["cluster"].to_pylist()
    return {doc_id: str(cluster) for doc_id, cluster in zip(ids, clusters, strict=True)}


def our_outcome(workspace: Path) -> tuple[set[str], dict[str, str], int]:
    """(documents that passed our filters, id -> cluster, documents kept by dedup)."""
    from pipeline.datasets import Dataset
    from pipeline.workspace import Workspace

    ws = Workspace(str(workspace))
    survivors = set(Dataset.current(ws, "filter").read(columns=["id"])["id"].to_pylist())
    kept = Dataset.current(ws, "dedup").read(columns=["id"]).num_rows
    return survivors, our_clusters(workspace), kept


def datatrove_compatible_decisions(corpus: Corpus, folder: Path) -> dict[str, str]:
    """id -> "<step>:<rule>" for each document our filters drop with the datatrove-compatible
    settings: the filter stage's document function, run here on every document (untimed)."""
    from pipeline.config import load_config
    from pipeline.filter import prepare

    folder.mkdir(parents=True, exist_ok=True)
    decide = prepare(load_config(write_run_config(folder, corpus, "datatrove")).filter)
    decisions = {}
    for path in corpus.files:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                dropped = decide(row, Counter())
                if dropped:
                    decisions[row["id"]] = dropped[0]
    return decisions


def _agreement_line(figures: dict[str, Any]) -> str:
    steps = ", ".join(
        f"{name} {step['agreement']}" for name, step in figures["filter_agreement_by_step"].items()
    )
    return f"{figures['filter_agreement']} ({steps})"


def our_decisions(workspace: Path) -> dict[str, str]:
    """id -> "<step>:<rule>" for each document our filter stage dropped (its rejected rows'
    reasons, `<filter>:<rule>`)."""
    from pipeline.datasets import Dataset
    from pipeline.workspace import Workspace

    ws = Workspace(str(workspace))
    table = Dataset.current(ws, "filter").read(columns=["id", "reason"], rejected=True)
    return dict(zip(table["id"].to_pylist(), table["reason"].to_pylist(), strict=True))


# ----- the benchmark -----


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark curation (language ID, quality filters, MinHash dedup) "
        "against datatrove on a corpus with graded near-duplicates.",
        epilog="Prints one JSON object to stdout; progress goes to stderr.",
    )
    parser.add_argument(
        "--docs", type=int, default=20_000, help="documents in the corpus (default 20000)"
    )
    parser.add_argument(
        "--scale",
        type=int,
        default=4,
        help="the larger corpus for peak_rss_mb_4x is this many times --docs (default 4)",
    )
    parser.add_argument("--skip-4x", action="store_true", help="no run on the larger corpus")
    parser.add_argument("--skip-ours", action="store_true", help="run datatrove's side alone")
    parser.add_argument(
        "--skip-datatrove", action="store_true", help="run our side alone (no ratio)"
    )
    parser.add_argument("--seed", type=int, default=SEED, help=f"corpus seed (default {SEED})")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "textmill-bench",
        metavar="DIR",
        help="datatrove's virtual environment and HF_HOME, and the extracted pages, reused "
        "across runs (default ~/.cache/textmill-bench)",
    )
    add_keep_option(parser, "the corpus and both tools' outputs (a new or empty folder)")
    args = parser.parse_args(argv)
    if args.docs < 10:
        parser.error("--docs must be at least 10")
    if args.scale < 2:
        parser.error("--scale must be at least 2")
    if args.skip_ours and args.skip_datatrove:
        parser.error("--skip-ours and --skip-datatrove leave nothing to run")
    reject_used_keep(parser, args.keep, "reused outputs skip work")
    return args


def benchmark(args: argparse.Namespace, data: Path, folder: Path) -> dict[str, Any]:
    bench_started = time.perf_counter()
    start_load = round(os.getloadavg()[0], 2)  # other work on the machine skews the timings
    if not args.skip_ours:
        check_our_side(folder / "ours")
    python = None if args.skip_datatrove else datatrove_python(args.cache)

    started = time.perf_counter()
    pool, highest = distinct(originals(data, args.cache))
    corpus = build_corpus(pool, args.docs, folder / "corpus", args.seed)
    expected = truth(corpus)
    corpus_s = time.perf_counter() - started
    log(
        f"corpus: {corpus.docs} documents in {len(corpus.files)} shards from "
        f"{len(pool)} distinct originals; {expected.pairs} pairs within families, "
        f"{len(expected.duplicates)} duplicates (Jaccard >= {THRESHOLD:.3f}) in {corpus_s:.0f} s"
    )
    figures: dict[str, Any] = {
        "docs": corpus.docs,
        "docs_per_s": None,
        "datatrove_docs_per_s": None,
        "ratio_vs_datatrove": None,
        "dedup_precision": None,
        "dedup_recall": None,
        "datatrove_dedup_precision": None,
        "datatrove_dedup_recall": None,
        "peak_rss_mb_1x": None,
        "peak_rss_mb_4x": None,
        "filter_agreement": None,
        "filter_agreement_by_step": None,
        "filter_agreement_defaults": None,
    }

    if not args.skip_ours:
        from pipeline.config import DedupConfig

        steps = run_ours(corpus, folder / "ours")
        survivors, clusters, kept = our_outcome(folder / "ours" / "workspace")
        ours = our_decisions(folder / "ours" / "workspace")
        scores = pair_scores(clusters, survivors, expected.duplicates)
        total = sum(step.seconds for step in steps.values())
        figures.update(
            {
                "docs_per_s": _ratio(corpus.docs, total, 1),
                "dedup_precision": scores["precision"],
                "dedup_recall": scores["recall"],
                "peak_rss_mb_1x": round(max(s.peak_rss_mb for s in steps.values()), 1),
                "steps_s": _steps_s(steps),
                "total_s": round(total, 2),
                "docs_after_filters": len(survivors),
                "docs_kept": kept,
                "dedup_scores": scores,
                "dedup_min_similarity": DedupConfig().min_similarity,
            }
        )
    if python is not None:
        dt = run_datatrove(python, corpus, folder / "datatrove", args.cache)
        scores = pair_scores(dt["clusters"], dt["survivors"], expected.duplicates)
        total = sum(step.seconds for step in dt["steps"].values())
        figures.update(
            {
                "datatrove_docs_per_s": _ratio(corpus.docs, total, 1),
                "datatrove_dedup_precision": scores["precision"],
                "datatrove_dedup_recall": scores["recall"],
                "datatrove_steps_s": _steps_s(dt["steps"]),
                "datatrove_total_s": round(total, 2),
                "datatrove_docs_after_filters": len(dt["survivors"]),
                "datatrove_docs_kept": dt["kept"],
                "datatrove_dedup_scores": scores,
                "datatrove_versions": dt["versions"],
            }
        )
        if not args.skip_ours:
            ids = [doc_id for family in corpus.families.values() for doc_id in family]
            compatible = datatrove_compatible_decisions(corpus, folder / "ours-datatrove")
            figures.update(filter_agreement(ids, compatible, dt["decisions"]))
            defaults = filter_agreement(ids, ours, dt["decisions"])
            figures.update({f"{name}_defaults": value for name, value in defaults.items()})
            log(f"filter agreement with datatrove: {_agreement_line(figures)}")
            log(f"filter agreement with our defaults: {_agreement_line(defaults)}")
    if figures["docs_per_s"] and figures["datatrove_docs_per_s"]:
        figures["ratio_vs_datatrove"] = _ratio(
            figures["docs_per_s"], figures["datatrove_docs_per_s"], 3
        )

    if not (args.skip_ours or args.skip_4x):
        larger = build_corpus(pool, args.docs * args.scale, folder / "corpus-4x", args.seed)
        log(f"the {args.scale}x corpus: {larger.docs} documents; our side only")
        steps = run_ours(larger, folder / "ours-4x")
        figures["peak_rss_mb_4x"] = round(max(s.peak_rss_mb for s in steps.values()), 1)
        figures["steps_s_4x"] = _steps_s(steps)
        figures["docs_per_s_4x"] = _ratio(larger.docs, sum(s.seconds for s in steps.values()), 1)

    figures.update(
        {
            "scale": args.scale,
            "workers": WORKERS,
            "dedup_evaluated_on": "documents that passed each tool's own filters",
            "truth": {
                "threshold": round(THRESHOLD, 4),
                "family_pairs": expected.pairs,
                "duplicate_pairs": len(expected.duplicates),
                "jaccard_histogram": expected.histogram,
                "max_jaccard_between_originals": round(highest, 4),
            },
            "originals": sum(corpus.sources.values()),
            "originals_per_source": corpus.sources,
            "shards": len(corpus.files),
            "corpus_build_s": round(corpus_s, 2),
            "cpu_count": os.cpu_count(),
            "load_average_1m": {"start": start_load, "end": round(os.getloadavg()[0], 2)},
            "versions": versions("textmill", "datasketch", "fasttext-numpy2-wheel", "pyarrow"),
            "targets": TARGETS,
            "targets_met": targets_met(figures),
            "bench_s": round(time.perf_counter() - bench_started, 2),
        }
    )
    return figures


def targets_met(figures: dict[str, Any]) -> bool | None:
    """None while a figure a target needs is missing (a side or the 4x run skipped)."""
    needed = [
        "ratio_vs_datatrove",
        "dedup_precision",
        "dedup_recall",
        "datatrove_dedup_precision",
        "datatrove_dedup_recall",
        "peak_rss_mb_1x",
        "peak_rss_mb_4x",
        "filter_agreement",
    ]
    if any(figures.get(key) is None for key in needed):
        return None
    return (
        figures["filter_agreement"] >= TARGETS["filter_agreement"]
        and figures["ratio_vs_datatrove"] >= TARGETS["ratio_vs_datatrove"]
        and figures["dedup_precision"]
        >= max(TARGETS["dedup_precision"], figures["datatrove_dedup_precision"])
        and figures["dedup_recall"]
        >= max(TARGETS["dedup_recall"], figures["datatrove_dedup_recall"])
        and figures["peak_rss_mb_4x"] <= TARGETS["peak_rss_4x_over_1x"] * figures["peak_rss_mb_1x"]
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data = shared_data(
        "bench/curate.py",
        "trafilatura-eval/evaldata.json",
        "warc",
        "gutenberg/books",
        "tinyshakespeare/input.txt",
        "web-text-cc",
        "near-duplicates/heizung-defekt-doorway-pages/manifest.jsonl",
        "near-duplicates/dolma-dedup-fixture/documents.jsonl.gz",
    )
    return run_benchmark("curate", args, data, benchmark)


if __name__ == "__main__":
    raise SystemExit(main())
