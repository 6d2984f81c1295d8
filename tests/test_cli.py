"""The command line: run, status, gc; failures end with one line and a non-zero exit."""

from __future__ import annotations

import json

from click.testing import CliRunner

from pipeline.cli import main
from pipeline.workspace import Workspace
from tests.helpers import article, lock_held_elsewhere, write_config, write_warc


def _setup(tmp_path):
    write_warc(
        tmp_path / "in" / "a.warc.gz",
        [{"url": f"https://a.example/{i}", "body": article(f"A {i}")} for i in range(3)],
    )
    return str(write_config(tmp_path, [str(tmp_path / "in" / "*.warc.gz")]))


def _cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_run_then_status_then_rerun(tmp_path):
    config = _setup(tmp_path)
    assert json.loads(_cli("status", "-c", config, "--json").stdout)[0]["state"] == "missing"

    first = _cli("run", "extract", "-c", config, "--no-prefect")
    assert first.exit_code == 0
    assert "extract: built version" in first.stdout and "3 documents out of 3" in first.stdout

    status = json.loads(_cli("status", "-c", config, "--json").stdout)[0]
    assert status["state"] == "up to date" and status["docs_out"] == 3

    again = _cli("run", "extract", "-c", config, "--no-prefect")
    assert again.exit_code == 0 and "extract: up to date" in again.stdout

    stale = _cli("status", "-c", config, "--set", "extract.include_tables=false")
    assert "stale" in stale.stdout and "include_tables changed" in stale.stdout


def test_bad_config_is_one_line_and_exit_2(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("workspace: ws\nextract: {timout_s: 2}\n")
    result = _cli("run", "extract", "-c", str(path), "--no-prefect")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("textmill: error:") and "extract.timout_s" in lines[0]


def test_missing_input_files_are_a_clear_error(tmp_path):
    config = write_config(tmp_path, [str(tmp_path / "nowhere" / "*.warc.gz")])
    result = _cli("run", "extract", "-c", str(config), "--no-prefect")
    assert result.exit_code == 2 and "matches no files" in result.stderr


def test_run_while_locked_says_who_holds_the_lock(tmp_path):
    config = _setup(tmp_path)
    with lock_held_elsewhere(tmp_path / "workspace", "crawl-and-train flow"):
        result = _cli("run", "extract", "-c", config, "--no-prefect")
    assert result.exit_code == 1 and "locked by crawl-and-train flow" in result.stderr


def test_gc(tmp_path):
    config = _setup(tmp_path)
    for timeout in (5, 6, 7):
        _cli(
            "run", "extract", "-c", config, "--no-prefect", "--set", f"extract.timeout_s={timeout}"
        )
    result = _cli("gc", "-c", config, "--keep", "2")
    assert result.exit_code == 0 and result.stdout.startswith("extract: removed ")
    assert len(Workspace(str(tmp_path / "workspace")).versions("extract")) == 2


def test_train_and_sample(tmp_path):
    write_warc(
        tmp_path / "in" / "a.warc.gz",
        [{"url": f"https://a.example/{i}", "body": article(f"A {i}")} for i in range(12)],
    )
    config = str(write_config(tmp_path, [str(tmp_path / "in" / "*.warc.gz")]))
    tiny = [
        "tokenizer.dataset=extract",  # the pages are near-duplicates of each other
        "tokenizer.vocab_size=300",
        "train.context=16",
        "train.n_layer=1",
        "train.n_embd=16",
        "train.n_head=2",
        "train.batch_size=2",
        "train.max_steps=4",
        "train.run=tiny",
    ]
    sets = [arg for item in tiny for arg in ("--set", item)]
    for stage in ("extract", "tokenizer", "shards", "train"):
        assert _cli("run", stage, "-c", config, "--no-prefect", *sets).exit_code == 0
    trained = _cli("run", "train", "-c", config, "--no-prefect", *sets)
    assert trained.stdout.startswith("train: step 4, 0 steps run")  # resumed: already done
    sampled = _cli("sample", "-c", config, "--run", "tiny", "--tokens", "5", "Analytical")
    assert sampled.exit_code == 0 and sampled.stdout.startswith("Analytical")
    missing = _cli("sample", "-c", config, "--run", "nope", "x")
    assert missing.exit_code == 1 and "no run nope" in missing.stderr
