"""Bad input from an adversarial run: each is one clear error naming what and where, and what
was fine still goes through."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from warcio.archiveiterator import ArchiveIterator

from pipeline.cli import main
from pipeline.config import ConfigError, load_config
from pipeline.datasets import Dataset
from pipeline.runner import make_map
from pipeline.stage import run
from pipeline.stages import EXTRACT, SHARDS, TOKENIZER
from pipeline.workspace import Workspace
from tests.helpers import article, write_config, write_warc


def _run(config: Path, *overrides: str) -> tuple[dict, Workspace]:
    cfg = load_config(config, list(overrides))
    ws = Workspace(cfg.workspace_root)
    return run(EXTRACT, cfg, ws, make_map(cfg.runner)), ws


def _cli(*args: str):
    return CliRunner().invoke(main, list(args))


def _one_error_line(result, exit_code: int) -> str:
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("textmill: error: "), result.output
    return lines[-1]


# ----- 8: imported document files -----


def _documents_config(tmp_path: Path, files: list[Path]) -> Path:
    config = write_config(tmp_path, [])
    data = yaml.safe_load(config.read_text())
    data["sources"][0]["documents"] = [str(f) for f in files]
    config.write_text(yaml.safe_dump(data))
    return config


def _line(row: dict) -> bytes:
    return json.dumps(row).encode() + b"\n"


GOOD = [_line({"id": "g1", "text": "The first good document."})]
GOOD_AFTER = [_line({"id": "g3", "text": "The third good document."})]


@pytest.mark.parametrize(
    "bad_line, field",
    [
        (_line({"id": "b", "text": 5}), "'text' is a number"),
        (_line({"id": "b", "text": ["a", "list"]}), "'text' is a list"),
        (_line({"id": "b", "text": "A text.", "url": {"href": "https://x.example/"}}), "'url'"),
        (_line({"id": {"n": 1}, "text": "A text."}), "'id' is an object"),
        (_line({"id": "b", "text": "A text.", "title": {"en": "T"}}), "'title' is an object"),
        (b'{"id": "b", "text": "a lone \\ud800 surrogate"}\n', "'text' holds a lone surrogate"),
        (b'{"id": "b", "text": "not UTF-8: \xff\xfe"}\n', "not UTF-8"),
    ],
    ids=[
        "text-number",
        "text-list",
        "url-object",
        "id-object",
        "title-object",
        "surrogate",
        "utf8",
    ],
)
def test_a_bad_imported_row_is_one_error_naming_file_and_line(tmp_path, bad_line, field):
    docs = tmp_path / "in" / "docs.jsonl"
    docs.parent.mkdir(parents=True)
    docs.write_bytes(b"".join([*GOOD, bad_line, *GOOD_AFTER]))
    _, ws = _run(_documents_config(tmp_path, [docs]))
    dataset = Dataset.current(ws, "extract")
    assert sorted(d["id"] for d in dataset.read(["id"]).to_pylist()) == ["g1", "g3"]
    [error] = dataset.manifest.errors
    assert error["file"] == str(docs) and error["line"] == 2
    assert field in error["error"]


def _many_rows(n: int) -> bytes:
    rng = random.Random(1)  # varied text, so that half the gzip bytes hold many rows
    return b"".join(
        _line({"id": f"r{i}", "text": f"Row {i}: " + " ".join(str(rng.random()) for _ in range(8))})
        for i in range(n)
    )


def test_a_truncated_or_garbage_gzip_document_file_is_one_error_and_the_rest_goes_on(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    whole = gzip.compress(_many_rows(200))
    truncated = folder / "truncated.jsonl.gz"
    truncated.write_bytes(whole[: len(whole) // 2])
    garbage = folder / "garbage.jsonl.gz"
    garbage.write_bytes(b"\x1f\x8b\x08\x00" + random.Random(2).randbytes(300))
    good = folder / "good.jsonl"
    good.write_bytes(b"".join(GOOD + GOOD_AFTER))
    _, ws = _run(_documents_config(tmp_path, [truncated, garbage, good]))
    dataset = Dataset.current(ws, "extract")
    docs = dataset.read(["id", "warc_file", "warc_offset"]).to_pylist()
    from_truncated = [d for d in docs if d["warc_file"] == str(truncated)]
    assert 20 < len(from_truncated) < 200  # the rows before the damage are kept
    assert {d["id"] for d in docs if d["warc_file"] == str(good)} == {"g1", "g3"}
    errors = {e["file"]: e for e in dataset.manifest.errors}
    assert set(errors) == {str(truncated), str(garbage)}
    assert "truncated" in errors[str(truncated)]["error"]
    assert errors[str(truncated)]["line"] == max(d["warc_offset"] for d in from_truncated) + 1
    assert "damaged gzip" in errors[str(garbage)]["error"] and errors[str(garbage)]["line"] == 1


def test_a_repeated_id_keeps_its_first_row_and_rejects_the_later_one(tmp_path):
    docs = tmp_path / "in" / "docs.jsonl"
    docs.parent.mkdir(parents=True)
    rows = [("a", "The first text with id a."), ("b", "Text b."), ("a", "Another text, id a.")]
    docs.write_bytes(b"".join(_line({"id": i, "text": t}) for i, t in rows))
    result, ws = _run(_documents_config(tmp_path, [docs]))
    dataset = Dataset.current(ws, "extract")
    kept = {d["id"]: d["text"] for d in dataset.read(["id", "text"]).to_pylist()}
    assert kept == {"a": rows[0][1], "b": rows[1][1]}
    assert result["dropped"] == {"duplicate_id": 1}
    [rejected] = dataset.read(rejected=True).to_pylist()
    assert rejected["text"] == rows[2][1] and rejected["warc_offset"] == 3
    assert rejected["id"] not in kept  # ids stay unique in the version
    assert "id 'a' is also at line 1" in rejected["detail"]


# ----- 9: names that become paths -----


def test_eval_set_names_and_init_from_are_folder_names(tmp_path):
    config = write_config(tmp_path, [])
    load_config(config, ["shards.eval_sets={hamlet: h.txt}", "train.init_from=base.v2"])
    with pytest.raises(ConfigError, match=r"shards\.eval_sets.*'\.\./\.\./\.\./\.\./escaped'"):
        load_config(config, ["shards.eval_sets={../../../../escaped: h.txt}"])
    with pytest.raises(ConfigError, match=r"shards\.eval_sets.*'a/b'"):
        load_config(config, ["shards.eval_sets={a/b: h.txt}"])
    with pytest.raises(ConfigError, match=r"train\.init_from"):
        load_config(config, ["train.init_from=../../x"])


def test_a_current_pointer_out_of_the_stage_folder_is_refused(tmp_path):
    ws = Workspace(str(tmp_path / "workspace"))
    pointer = tmp_path / "workspace" / "datasets" / "extract" / "CURRENT"
    pointer.parent.mkdir(parents=True)
    for text in ("../../../outside\n", "/etc\n", ".hidden\n", "a/b\n"):
        pointer.write_text(text)
        with pytest.raises(ValueError, match=r"extract/CURRENT: names .*not a version folder"):
            ws.current_version("extract")
    pointer.write_text("6cf45e10882573eb-r2\n")
    assert ws.current_version("extract") == "6cf45e10882573eb-r2"


@pytest.fixture(scope="module")
def shards_config(tmp_path_factory) -> Path:
    """A config whose workspace has extract, tokenizer and shards, from a few small pages."""
    folder = tmp_path_factory.mktemp("bad-train")
    pages = [{"url": f"https://t.example/{i}", "body": article(f"Page {i}")} for i in range(12)]
    warc = write_warc(folder / "in" / "pages.warc.gz", pages)
    train = {"context": 16, "n_layer": 1, "n_head": 2, "n_embd": 16, "batch_size": 2}
    config = write_config(
        folder,
        [str(warc)],
        tokenizer={"dataset": "extract", "vocab_size": 300, "val_fraction": 0.2},
        shards={"row_tokens": 32},
        train={**train, "max_steps": 1, "eval_interval": 1, "eval_windows": 1},
    )
    cfg = load_config(config)
    for stage in (EXTRACT, TOKENIZER, SHARDS):
        run(stage, cfg, Workspace(cfg.workspace_root), make_map(cfg.runner))
    return config


def test_init_from_a_run_without_a_checkpoint_is_an_error(shards_config):
    from model.train import train

    cfg = load_config(shards_config, ["train.run=fresh", "train.init_from=no-such-run"])
    with pytest.raises(ConfigError, match=r"train\.init_from: run 'no-such-run' has no checkpoint"):
        train(cfg, Workspace(cfg.workspace_root), log=lambda message: None)
    assert not (Path(cfg.workspace_root) / "runs" / "fresh" / "checkpoint").exists()


def test_an_eval_set_that_is_not_utf8_names_its_file(shards_config, tmp_path):
    held_out = tmp_path / "held-out.txt"
    held_out.write_bytes("Caf\xe9 au lait\n".encode("latin-1"))
    cfg = load_config(shards_config, [f"shards.eval_sets={{latin: {held_out}}}"])
    with pytest.raises(ConfigError, match=r"shards\.eval_sets\.latin: .*held-out\.txt.*UTF-8"):
        run(SHARDS, cfg, Workspace(cfg.workspace_root), make_map(cfg.runner))


# ----- 12: configs that should not be accepted -----


def test_a_key_given_twice_is_an_error_naming_the_key_and_its_lines(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        "workspace: ws\ntrain:\n  n_layer: 2\nsources: []\ntrain:\n  n_layer: 8\n"  # lines 2, 5
    )
    with pytest.raises(ConfigError, match=r"run\.yaml: .*key train is given twice.*lines 2 and 5"):
        load_config(config)
    config.write_text("workspace: ws\nsources:\n  - name: a\n    kind: web\n    kind: book\n")
    with pytest.raises(ConfigError, match=r"key sources\.0\.kind is given twice.*lines 4 and 5"):
        load_config(config)
    # keys beside a YAML merge key override what it brings: that is not a repeated key
    config.write_text("workspace: ws\ntrain:\n  <<: {n_layer: 2, context: 64}\n  n_layer: 3\n")
    assert load_config(config).train.n_layer == 3


def test_a_config_that_is_not_utf8_is_a_config_error_naming_the_file(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_bytes("workspace: ws\ntrain:\n  run: caf\xe9\n".encode("latin-1"))
    line = _one_error_line(_cli("status", "-c", str(config)), 2)
    assert str(config) in line and "not UTF-8" in line and "line 3" in line


@pytest.mark.parametrize(
    "override",
    [
        "extract.timeout_s=.inf",
        "extract.max_page_mb=.nan",
        "shards.shard_mb=.inf",
        "shards.source_weights={web: .inf}",
        "train.time_budget_s=.inf",
        "train.learning_rate=.nan",
        "dedup.min_similarity=.nan",
        "filter.gopher_repetition.top_n_grams={2: .inf}",
    ],
)
def test_infinite_and_nan_numbers_are_refused(tmp_path, override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"{key}.*: Input should be a finite number"):
        load_config(write_config(tmp_path, []), [override])


def test_a_timeout_of_infinity_is_exit_2_not_every_page_rejected(tmp_path):
    warc = write_warc(tmp_path / "in" / "a.warc", [{"url": "https://a.example/", "body": b"x"}])
    config = write_config(tmp_path, [str(warc)], extract={"timeout_s": float("inf")})
    line = _one_error_line(_cli("run", "extract", "-c", str(config), "--no-prefect"), 2)
    assert "extract.timeout_s" in line and "finite" in line
    assert not (tmp_path / "workspace" / "datasets" / "extract").exists()


@pytest.mark.parametrize(
    "override, message",
    [
        ("tokenizer.vocab_size=1000000000000", "tokenizer.vocab_size: .*1048576"),
        ("train.context=1000000000", "train.context: .*1,000,000,000 is more than 131,072"),
        ("train.n_embd=65536", "train.n_embd: .*65,536 is more than 16,384"),
        ("train.n_layer=100000", "train.n_layer: .*100,000 is more than 256"),
        ("train.batch_size=10000000", "train.batch_size: .*10,000,000 is more than 65,536"),
        # each within its bound, together far more than one accelerator holds
        ("train={context: 131072, batch_size: 64}", r"train: .* need about [\d,]+ GiB"),
        ("train={n_embd: 16384, n_layer: 256, n_head: 128}", r"need about [\d,]+ GiB"),
    ],
)
def test_model_sizes_no_machine_can_hold_are_refused(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write_config(tmp_path, []), [override])


def test_a_large_model_that_fits_a_big_accelerator_is_accepted(tmp_path):
    # about 7B parameters (Llama 2 7B's shape) with one 4,096-token sequence per micro-step
    big = "train={n_embd: 4096, n_layer: 32, n_head: 32, context: 4096, batch_size: 1}"
    cfg = load_config(write_config(tmp_path, []), [big, "tokenizer.vocab_size=32000"])
    assert cfg.train.n_embd == 4096


# ----- 13c, 13d: WARC files -----


def _big_pages_warc(path: Path, n: int) -> list[int]:
    """A .warc.gz of n pages whose gzip members are larger than warcio's 16 KiB read block
    (damage past a member's first block is what warcio takes for the end of the file); returns
    the offset of each member, and the file's size last."""
    rng = random.Random(0)
    words = [
        "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9))) for _ in range(3000)
    ]
    records = [
        {
            "url": f"https://example.org/{i}",
            "body": article(f"Page {i}", " ".join(rng.choices(words, k=8000)) + "."),
        }
        for i in range(n)
    ]
    write_warc(path, records)
    offsets = []
    with open(path, "rb") as fh:
        iterator = ArchiveIterator(fh)
        for record in iterator:
            offsets.append(iterator.offset)
            record.content_stream().read()
    return [*offsets, path.stat().st_size]


@pytest.mark.parametrize("where", ["inside the member", "at the member's start"])
def test_a_damaged_gzip_member_is_reported_and_reading_goes_on(tmp_path, where):
    warc = tmp_path / "in" / "pages.warc.gz"
    offsets = _big_pages_warc(warc, 12)
    data = bytearray(warc.read_bytes())
    damaged = offsets[5]
    start = (offsets[5] + offsets[6]) // 2 if where == "inside the member" else damaged + 30
    data[start : start + 40] = bytes(b ^ 0x55 for b in data[start : start + 40])
    warc.write_bytes(bytes(data))
    _, ws = _run(write_config(tmp_path, [str(warc)]))
    dataset = Dataset.current(ws, "extract")
    urls = {d["url"] for d in dataset.read(["url"]).to_pylist()}
    assert urls == {f"https://example.org/{i}" for i in range(12) if i != 5}
    damage = [e for e in dataset.manifest.errors if "next gzip member" in e["error"]]
    assert len(damage) == 1 and damage[0]["file"] == str(warc)
    assert damage[0]["offset"] == damaged
    assert f"at byte {offsets[6]}" in damage[0]["error"]


@pytest.mark.parametrize(
    "name, content",
    [
        ("page.html", article("Not a WARC")),
        ("docs.txt", b"".join(GOOD + GOOD_AFTER)),  # JSON lines, read as ARC headers before
        ("notes.warc.gz", gzip.compress(b"some notes\n" * 20)),
        ("empty.warc", b""),
        ("image.png", b"\x89PNG\r\n\x1a\n" + bytes(200)),
    ],
)
def test_a_listed_file_that_is_not_a_warc_is_a_config_error_naming_it(tmp_path, name, content):
    folder = tmp_path / "in"
    write_warc(folder / "good.warc.gz", [{"url": "https://a.example/", "body": article("A")}])
    (folder / name).write_bytes(content)
    config = write_config(tmp_path, [str(folder / "*")])
    line = _one_error_line(_cli("run", "extract", "-c", str(config), "--no-prefect"), 2)
    assert f"sources.pages.warc: {folder / name} is not a WARC or ARC file" in line
    assert not (tmp_path / "workspace" / "datasets" / "extract").exists()
