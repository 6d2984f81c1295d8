"""bench/curate.py: the corpus with graded near-duplicates, its truth, the pair scores, and
datatrove's side (when the benchmark's datatrove environment exists)."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest

from bench import curate
from tests.conftest import SHARED_DATA, needs_shared_data

PROSE = (
    "The engine weaves algebraic patterns just as the loom weaves flowers and leaves.\n"
    "Every card holds a step of the computation, and the mill carries out each in turn.\n\n"
    "A second paragraph tells how the store keeps numbers until the mill needs them again, "
    "and how the result is printed on a plate for the reader.\n\n"
    "The third paragraph closes the account with a note on the cost of the brass wheels and "
    "the patience of the people who cut them by hand in the workshop."
)


def _originals(n: int) -> list[curate.Original]:
    rng = random.Random(1)
    words = PROSE.split()
    return [
        curate.Original(f"doc:{i}", " ".join(rng.sample(words, len(words))), f"u{i}", "web")
        for i in range(n)
    ]


def test_edited_copy_lands_near_its_target_and_keeps_paragraphs():
    rng = random.Random(5)
    vocabulary = [f"w{i}" for i in range(2000)]  # no repeated 5-grams, as in real prose
    text = "\n\n".join(" ".join(rng.choices(vocabulary, k=100)) for _ in range(8))
    original = curate.shingles(text)
    for target in (0.5, 0.7, 0.9):
        copy = curate.edited_copy(text, target, random.Random(7))
        assert abs(curate.jaccard(original, curate.shingles(copy)) - target) < 0.1
        assert copy.count("\n\n") == text.count("\n\n")
    assert curate.edited_copy(text, 0.7, random.Random(3)) == curate.edited_copy(
        text, 0.7, random.Random(3)
    )


def test_distinct_drops_near_copies():
    base = _originals(3)
    near = curate.edited_copy(base[0].text, 0.8, random.Random(2))
    found = [*base, curate.Original("copy", near, "x", "web"), base[1]]
    kept, highest = curate.distinct(found)
    assert [o.id for o in kept] == ["doc:0", "doc:1", "doc:2"]
    assert highest < curate.DISTINCT_BELOW


def test_chunked_cuts_at_separators_and_leaves_out_short_pieces():
    paragraph = " ".join(["word"] * 60)
    whole = curate.Original("book", "\n\n".join([paragraph] * 6 + ["a short ending."]), "u", "book")
    pieces = curate.chunked(whole, "\n\n")
    # 60-word paragraphs: a piece closes at the first paragraph end past CHUNK_WORDS (140)
    assert [len(p.text.split()) for p in pieces] == [180, 180]  # the last 3 words: left out
    assert [p.id for p in pieces] == ["book#0", "book#1"]
    assert pieces[0].text == "\n\n".join([paragraph] * 3)
    assert curate.chunked(curate.Original("s", "too short", "u", "web"), "\n") == []


def test_pair_scores_count_pairs_within_survivors():
    duplicates = [("a", "a~copy1"), ("b", "b~copy1"), ("d", "d~copy1")]
    clusters = {"a": "1", "a~copy1": "1", "b": "2", "c": "2", "d": "3"}
    scores = curate.pair_scores(clusters, {"a", "a~copy1", "b", "b~copy1", "c", "d"}, duplicates)
    # predicted: a-a~copy1, b-c; true among survivors: a-a~copy1, b-b~copy1
    assert scores["predicted_pairs"] == 2 and scores["true_pairs"] == 2
    assert scores["precision"] == 0.5 and scores["recall"] == 0.5
    # a document the tool's filters dropped is in no pair, predicted or true
    assert curate.pair_scores(clusters, {"a", "a~copy1", "b"}, duplicates)["precision"] == 1.0


def test_filter_agreement_compares_first_dropping_steps():
    ids = ["kept", "both_c4", "ours_gopher", "theirs_fineweb", "lang_vs_c4"]
    ours = {
        "both_c4": "c4_quality:sentences",
        "ours_gopher": "gopher_quality:alpha_words_ratio",
        "lang_vs_c4": "language:score",
    }
    theirs = {
        "both_c4": "c4_quality:too_few_sentences",
        "theirs_fineweb": "fineweb_quality:char_dup_ratio",
        "lang_vs_c4": "c4_quality:too_few_sentences",
    }
    found = curate.filter_agreement(ids, ours, theirs)
    # alike: kept (both keep), both_c4 and lang_vs_c4 (both drop, at different steps)
    assert found["filter_agreement"] == 0.6
    by_step = found["filter_agreement_by_step"]
    assert by_step["language"] == {"agreement": 0.8, "documents": 5}
    # gopher_quality: reached in both by all but lang_vs_c4; ours_gopher differs there
    assert by_step["gopher_quality"] == {"agreement": 0.75, "documents": 4}
    assert by_step["c4_quality"] == {"agreement": 1.0, "documents": 3}
    assert by_step["fineweb_quality"] == {"agreement": 0.5, "documents": 2}
    assert found["filter_disagreements"] == {
        "gopher_quality:alpha_words_ratio / kept": 1,
        "kept / fineweb_quality:char_dup_ratio": 1,
        "language:score / c4_quality:too_few_sentences": 1,
    }


def test_run_config_reproduces_datatrove_or_keeps_our_defaults(tmp_path: Path):
    from pipeline.config import load_config

    probe = curate.Corpus(tmp_path / "corpus", [], 0, {}, {})
    compatible = load_config(curate.write_run_config(tmp_path, probe, "datatrove")).filter
    assert compatible.hard_wrapped_kinds == []
    for step in curate.FILTER_STEPS:
        section = getattr(compatible, step)
        assert section.compat == "datatrove" and section.ignore_rules == {}
    ours = load_config(curate.write_run_config(tmp_path, probe, "textmill")).filter
    assert ours.fineweb_quality.compat == "textmill" and ours.hard_wrapped_kinds == ["book"]
    assert ours.language.languages == compatible.language.languages == ["en"]


def _pool() -> list[curate.Original]:
    found = [
        *(c for doc in curate.jsonl_documents(SHARED_DATA) for c in curate.chunked(doc, "\n")),
        *(c for book in curate.books(SHARED_DATA) for c in curate.chunked(book, "\n\n")),
    ]
    pool, highest = curate.distinct(found)
    assert highest < curate.DISTINCT_BELOW
    return pool


@needs_shared_data
def test_corpus_is_pairs_spread_over_jaccard_and_reproducible(tmp_path: Path):
    pool = _pool()
    assert len(pool) > 5000  # chunks of one book are distinct from each other
    corpus = curate.build_corpus(pool, 800, tmp_path / "a", seed=4)
    assert corpus.docs == 800 and len(corpus.files) == curate.MIN_SHARDS
    lines = [line for f in corpus.files for line in gzip.decompress(f.read_bytes()).splitlines()]
    rows = [json.loads(line) for line in lines]
    assert len({r["id"] for r in rows}) == 800
    assert set(rows[0]) == {"id", "text", "url", "source_kind"}
    assert sorted(map(len, corpus.families.values())) == [2] * 400  # an original and its copy

    expected = curate.truth(corpus)
    assert expected.pairs == 400
    bins = expected.histogram
    assert all(bins.get(f"{b / 20:.2f}", 0) > 0 for b in range(10, 19))  # 0.50 ... 0.90
    assert sum(n for b, n in bins.items() if float(b) < 0.45) < 10  # copies aim at 0.5-0.95
    assert 0.3 < len(expected.duplicates) / expected.pairs < 0.7

    again = curate.build_corpus(pool, 800, tmp_path / "b", seed=4)
    assert [f.read_bytes() for f in corpus.files] == [f.read_bytes() for f in again.files]


def test_corpus_larger_than_twice_the_originals_gives_more_copies(tmp_path: Path):
    corpus = curate.build_corpus(_originals(5), 12, tmp_path, seed=1)
    assert sorted(map(len, corpus.families.values())) == [2, 2, 2, 3, 3]


DATATROVE_PYTHON = Path.home() / ".cache" / "textmill-bench" / "datatrove-venv" / "bin" / "python"


@needs_shared_data
@pytest.mark.skipif(
    not DATATROVE_PYTHON.exists(),
    reason=f"no datatrove environment at {DATATROVE_PYTHON} (bench/curate.py creates it)",
)
def test_datatrove_side_filters_and_finds_the_duplicates(tmp_path: Path):
    books = [o for o in _pool() if o.source_kind == "book"]  # prose: most pass the filters
    corpus = curate.build_corpus(books, 400, tmp_path / "corpus", seed=4)
    outcome = curate.run_datatrove(
        DATATROVE_PYTHON, corpus, tmp_path / "datatrove", DATATROVE_PYTHON.parents[2]
    )
    assert set(outcome["steps"]) == set(curate.DATATROVE_STEPS)
    assert 0 < len(outcome["survivors"]) < corpus.docs  # its filters dropped some, not all
    assert outcome["kept"] < len(outcome["survivors"])  # and its dedup removed some
    scores = curate.pair_scores(
        outcome["clusters"], outcome["survivors"], curate.truth(corpus).duplicates
    )
    assert scores["true_pairs"] > 20
    # datatrove's own tokens (punctuation apart) see an edit as more changed shingles than
    # the truth's whitespace words do: it misses more pairs than our side (0.78 on 20,000)
    assert scores["precision"] > 0.5 and scores["recall"] > 0.3
    assert outcome["versions"]["datatrove"]
    # each document a filter dropped, with the step that dropped it and datatrove's reason
    dropped = outcome["decisions"]
    assert len(dropped) == corpus.docs - len(outcome["survivors"])
    assert {reason.split(":")[0] for reason in dropped.values()} <= set(curate.FILTER_STEPS)
