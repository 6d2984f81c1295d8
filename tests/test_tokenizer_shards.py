"""The tokenizer and shards stages: exact round trip, staleness, mixture, errors."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from tokenizers import Tokenizer

from pipeline import shards, tokenizer
from pipeline.config import ConfigError, load_config
from pipeline.datasets import Dataset, DatasetError
from pipeline.runner import make_map
from pipeline.stage import run
from pipeline.stages import EXTRACT, SHARDS, TOKENIZER, all_statuses
from pipeline.workspace import Workspace
from tests.conftest import SHARED_DATA
from tests.helpers import article, write_warc

PAGES = {
    "https://en.example/": article("Engines", "Babbage designed engines."),
    "https://ru.example/": "<html lang='ru'><body><article><p>Быстрая коричневая лиса прыгает "
    "через ленивую собаку. Москва — столица России, крупнейший город страны.</p></article>"
    "</body></html>",
    "https://zh.example/": "<html lang='zh'><body><article><p>敏捷的棕色狐狸跳过了懒狗。北京是中华"
    "人民共和国的首都，是全国的政治、文化中心。</p></article></body></html>",
    "https://ar.example/": "<html lang='ar'><body><article><p>القاهرة هي عاصمة جمهورية مصر العربية "
    "وأكبر مدنها، وتقع على ضفاف نهر النيل.</p></article></body></html>",
}
TRICKY_TEXT = "A text that mentions <|endoftext|> and <|padding|> as plain words.\nEmoji: 🦊🐕\n"


def _books(real: bool) -> dict[str, bytes]:
    """The Gutenberg books (when asked for and the shared data is there), else small stand-ins."""
    folder = SHARED_DATA / "gutenberg" / "books"
    if real and folder.exists():
        return {f"https://books.example/{p.name}": p.read_bytes() for p in sorted(folder.iterdir())}
    return {f"https://books.example/{i}.txt": (f"Book {i}. " * 400).encode() for i in range(3)}


def _workspace(tmp_path: Path, real_books: bool = False, **sections: dict) -> Path:
    """WARC files for a web source and a books source, and a run config over them."""
    web = [
        {"url": url, "body": body if isinstance(body, bytes) else body.encode()}
        for url, body in PAGES.items()
    ]
    web += [
        {"url": f"https://many.example/{i}", "body": article(f"Page {i}", f"Item {i}.")}
        for i in range(30)
    ]
    web.append(
        {
            "url": "https://tricky.example/t.txt",
            "body": TRICKY_TEXT.encode(),
            "content_type": "text/plain; charset=utf-8",
        }
    )
    write_warc(tmp_path / "in" / "web.warc.gz", web)
    books = [
        {"url": url, "body": body, "content_type": "text/plain"}
        for url, body in _books(real_books).items()
    ]
    write_warc(tmp_path / "in" / "books.warc.gz", books)
    data = {
        "workspace": str(tmp_path / "workspace"),
        "sources": [
            {"name": "web", "kind": "web", "warc": [str(tmp_path / "in" / "web.warc.gz")]},
            {"name": "books", "kind": "book", "warc": [str(tmp_path / "in" / "books.warc.gz")]},
        ],
        "runner": {"task_runner": "serial"},
        "tokenizer": {"dataset": "extract", "vocab_size": 600, "val_fraction": 0.2},
        "shards": {"row_tokens": 64, "shard_mb": 0.05},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _build(config: Path, *stages, overrides: tuple[str, ...] = ()) -> list[dict]:
    cfg = load_config(config, list(overrides))
    ws = Workspace(cfg.workspace_root)
    return [run(stage, cfg, ws, make_map(cfg.runner)) for stage in stages]


def _decode_documents(ws: Workspace, split: str) -> list[str]:
    tok = Tokenizer.from_str(ws.storage.read_text(tokenizer.current(ws)[1]))
    eot = tok.token_to_id("<|endoftext|>")
    stream = shards.token_stream(ws, split)
    ends = np.flatnonzero(stream == eot)
    starts = np.concatenate([[0], ends[:-1] + 1])
    pairs = zip(starts, ends, strict=True)
    return [tok.decode(stream[s:e].tolist(), skip_special_tokens=False) for s, e in pairs]


def test_shards_decode_to_exactly_the_dataset_text(tmp_path):
    config = _workspace(tmp_path, real_books=True, shards={"shard_mb": 0.005})  # several shards
    _build(config, EXTRACT, TOKENIZER, SHARDS)
    ws = Workspace(str(tmp_path / "workspace"))
    texts = Dataset.current(ws, "extract").read(["text"]).column("text").to_pylist()
    decoded = _decode_documents(ws, "train") + _decode_documents(ws, "val")
    assert Counter(decoded) == Counter(texts)
    assert any("Быстрая" in t for t in decoded) and any("敏捷的棕色狐狸" in t for t in decoded)
    assert TRICKY_TEXT.strip() in decoded  # literal special-token text stays text

    manifest = Dataset.current(ws, "shards").manifest
    stats = manifest.stats
    assert stats["dtype"] == "uint16"
    assert stats["splits"]["val"]["docs"] >= 1 and stats["splits"]["train"]["shards"] >= 2
    for split in ("train", "val"):
        encoded = [t.encode() for t in (_decode_documents(ws, split))]
        assert stats["splits"][split]["bytes"] == sum(len(b) for b in encoded)
        assert stats["splits"][split]["tokens"] == shards.token_stream(ws, split).size
    rows = ws.storage.read_parquet(
        f"{ws.stage_dir('shards', manifest.version)}/train/shard-00000.parquet"
    )
    assert {len(r) for r in rows.column("tokens").to_pylist()[:-1]} == {64}


def test_split_is_by_id_and_train_only_feeds_the_tokenizer(tmp_path):
    ids = [f"doc-{i}" for i in range(20000)]
    val = [i for i in ids if tokenizer.split_of(i, 0.1) == "val"]
    assert 0.09 < len(val) / len(ids) < 0.11
    assert val == [i for i in ids if tokenizer.split_of(i, 0.1) == "val"]  # stable
    config = _workspace(tmp_path)
    _build(config, EXTRACT, TOKENIZER)
    ws = Workspace(str(tmp_path / "workspace"))
    docs = Dataset.current(ws, "extract").read(["id"]).column("id").to_pylist()
    train_docs = sum(tokenizer.split_of(d, 0.2) == "train" for d in docs)
    assert Dataset.current(ws, "tokenizer").manifest.stats["train_docs"] == train_docs


def test_rerun_is_a_no_op_and_vocab_change_makes_only_tokenizer_and_shards_stale(tmp_path):
    config = _workspace(tmp_path)
    first = _build(config, EXTRACT, TOKENIZER, SHARDS)
    again = _build(config, EXTRACT, TOKENIZER, SHARDS)
    assert all(not r["built"] for r in again)
    assert [r["version"] for r in again] == [r["version"] for r in first]

    cfg = load_config(config, ["tokenizer.vocab_size=400"])
    states = {s.stage: s.state for s in all_statuses(cfg, Workspace(cfg.workspace_root))}
    assert states["extract"] == "up to date"
    assert states["tokenizer"] == states["shards"] == "stale"
    rebuilt = _build(config, EXTRACT, TOKENIZER, SHARDS, overrides=("tokenizer.vocab_size=400",))
    assert [r["built"] for r in rebuilt] == [False, True, True]
    assert rebuilt[2]["units_run"] == 2  # every part re-encoded with the new tokenizer

    # This corpus has fewer than 600 merges to learn: 700 trains the very same tokenizer, which
    # is a new tokenizer version, but the shards key on its content and stay as they are.
    same = _build(config, EXTRACT, TOKENIZER, SHARDS, overrides=("tokenizer.vocab_size=700",))
    assert [r["built"] for r in same] == [False, True, False]
    assert same[2]["version"] == first[2]["version"]


def test_tokenizer_training_is_deterministic_and_loads_in_transformers(tmp_path):
    config = _workspace(tmp_path)
    _build(config, EXTRACT, TOKENIZER)
    ws = Workspace(str(tmp_path / "workspace"))
    first = ws.storage.read_bytes(tokenizer.current(ws)[1])
    cfg = load_config(config)
    run(TOKENIZER, cfg, ws, make_map(cfg.runner), force=True)
    assert ws.storage.read_bytes(tokenizer.current(ws)[1]) == first

    import transformers  # a dev dependency: the tokenizer must load where models are trained

    folder = ws.storage.path(ws.stage_dir("tokenizer", ws.current_version("tokenizer")))
    fast = transformers.PreTrainedTokenizerFast.from_pretrained(folder)
    plain = Tokenizer.from_str(first.decode())
    text = "Babbage designed engines. Быстрая лиса"
    assert fast(text)["input_ids"] == plain.encode(text).ids
    assert fast.eos_token == "<|endoftext|>" and fast.pad_token == "<|padding|>"


def test_books_weighted_twice_double_their_train_tokens(tmp_path):
    config = _workspace(tmp_path)
    ws = Workspace(str(tmp_path / "workspace"))
    counts = []
    for weights in ("{}", "{book: 2}"):
        _build(config, EXTRACT, TOKENIZER, SHARDS, overrides=(f"shards.source_weights={weights}",))
        counts.append(Dataset.current(ws, "shards").manifest.stats)
    before, after = (c["tokens_by_source"] for c in counts)
    assert after["books"] == 2 * before["books"] and after["web"] == before["web"]
    ratio = (after["books"] / after["web"]) / (before["books"] / before["web"])
    assert ratio == pytest.approx(2.0, rel=0.01)
    assert counts[1]["splits"]["val"] == counts[0]["splits"]["val"]  # val is never reweighted


def test_half_weight_and_domain_cap(tmp_path):
    config = _workspace(tmp_path, shards={"source_weights": {"web": 0.5}, "domain_token_cap": 200})
    _build(config, EXTRACT, TOKENIZER, SHARDS)
    ws = Workspace(str(tmp_path / "workspace"))
    stats = Dataset.current(ws, "shards").manifest.stats
    assert stats["docs_dropped_by_domain_cap"] > 0
    docs = Dataset.current(ws, "extract").read(["id", "text", "source", "hostname"]).to_pylist()
    host_of = {d["text"]: d["hostname"] for d in docs}
    tok = Tokenizer.from_str(ws.storage.read_text(tokenizer.current(ws)[1]))
    tokens_per_host: Counter[str] = Counter()
    for text in _decode_documents(ws, "train"):
        tokens_per_host[host_of[text]] += len(tok.encode(text).ids) + 1
    assert tokens_per_host and max(tokens_per_host.values()) <= 200
    web_train = [
        d for d in docs if d["source"] == "web" and tokenizer.split_of(d["id"], 0.2) == "train"
    ]
    kept_web = [t for t in _decode_documents(ws, "train") if host_of[t] != "books.example"]
    assert 0 < len(kept_web) < len(web_train)


def test_eval_sets_get_their_own_shards(tmp_path):
    held_out = tmp_path / "held-out.txt"
    held_out.write_text("To be, or not to be, that is the question.\n")
    config = _workspace(tmp_path, shards={"eval_sets": {"hamlet": str(held_out)}})
    _build(config, EXTRACT, TOKENIZER, SHARDS)
    ws = Workspace(str(tmp_path / "workspace"))
    tok = Tokenizer.from_str(ws.storage.read_text(tokenizer.current(ws)[1]))
    stream = shards.token_stream(ws, "eval/hamlet")
    assert tok.decode(stream[:-1].tolist()) == held_out.read_text()
    assert Dataset.current(ws, "shards").manifest.stats["eval_sets"]["hamlet"]["bytes"] == len(
        held_out.read_bytes()
    )


def test_clear_errors(tmp_path):
    config = _workspace(tmp_path)
    with pytest.raises(DatasetError, match="no extract dataset"):
        _build(config, TOKENIZER)
    with pytest.raises(ConfigError, match="vocab_size 100 is too small"):
        load_config(config, ["tokenizer.vocab_size=100"])
    _build(config, EXTRACT, TOKENIZER, SHARDS)
    ws = Workspace(str(tmp_path / "workspace"))
    shards.check_tokenizer(ws, ws.storage.read_bytes(tokenizer.current(ws)[1]))
    with pytest.raises(tokenizer.TokenizerMismatch, match="rebuild the shards"):
        shards.check_tokenizer(ws, b'{"another": "tokenizer"}')


def test_an_empty_dataset_is_a_clear_error(tmp_path):
    write_warc(
        tmp_path / "in" / "x.warc.gz", [{"url": "https://x.example/", "body": b"<html></html>"}]
    )
    path = tmp_path / "run.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "workspace": str(tmp_path / "ws"),
                "runner": {"task_runner": "serial"},
                "sources": [{"name": "x", "warc": [str(tmp_path / "in" / "x.warc.gz")]}],
                "tokenizer": {"dataset": "extract"},
            }
        )
    )
    _build(path, EXTRACT)
    with pytest.raises(DatasetError, match="has no documents"):
        _build(path, TOKENIZER)


def test_sampling_cap_limits_what_the_tokenizer_reads(tmp_path):
    config = _workspace(tmp_path, tokenizer={"max_train_chars": 2000})
    _build(config, EXTRACT, TOKENIZER)
    stats = Dataset.current(Workspace(str(tmp_path / "workspace")), "tokenizer").manifest.stats
    assert stats["train_chars"] == 2000 and stats["train_docs"] >= 1
