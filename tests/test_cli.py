"""The command line: run, status, gc; failures end with one line and a non-zero exit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from click.testing import CliRunner

from pipeline import cli
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
    assert trained.stdout.startswith("train: run tiny is up to date at step 4")
    sampled = _cli("sample", "-c", config, "--run", "tiny", "--tokens", "5", "Analytical")
    assert sampled.exit_code == 0 and sampled.stdout.startswith("Analytical")
    missing = _cli("sample", "-c", config, "--run", "nope", "x")
    assert missing.exit_code == 1 and "no run nope" in missing.stderr


TEXTMILL = str(Path(sys.executable).with_name("textmill"))


def _error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("textmill: error: "), result.stderr
    return lines[0]


def test_set_values_that_are_not_yaml_are_taken_as_strings(tmp_path):
    config = _setup(tmp_path)
    cron = _cli("status", "-c", config, "--set", "schedules.curate=*/30 * * * *", "--json")
    assert cron.exit_code == 0
    bad = _cli("status", "-c", config, "--set", "train.max_steps=[1, 2")
    assert bad.exit_code == 2 and "train.max_steps" in _error_line(bad)
    wrong_cron = _cli("status", "-c", config, "--set", "schedules.curate=*/30 * *")
    assert wrong_cron.exit_code == 2 and "not a cron string" in _error_line(wrong_cron)


def test_an_unknown_key_is_answered_with_the_key_meant(tmp_path):
    config = _setup(tmp_path)
    result = _cli("status", "-c", config, "--set", "train.max_step=3")
    assert result.exit_code == 2
    assert "train.max_step: unknown key (did you mean max_steps?)" in _error_line(result)
    nested = _cli("status", "-c", config, "--set", "filter.language.min_scor=0.5")
    assert "(did you mean min_score?)" in _error_line(nested)


def test_output_piped_into_head_ends_quietly(tmp_path):
    documents = tmp_path / "big.jsonl"
    documents.write_text(json.dumps({"id": "big", "text": "many words " * 30_000}) + "\n")
    config = write_config(tmp_path, [])
    data = yaml.safe_load(config.read_text())
    data["sources"][0]["documents"] = [str(documents)]
    config.write_text(yaml.safe_dump(data))
    assert _cli("run", "extract", "-c", str(config), "--no-prefect").exit_code == 0
    # 330 KB of text: far more than a pipe holds before `head` goes away
    command = f"'{TEXTMILL}' inspect doc -c '{config}' big --chars 400000 | head -n 1"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True)
    assert done.stdout.startswith("document big")
    assert done.stderr == ""  # no "[Errno 32] Broken pipe", no traceback
    assert done.returncode == 141  # as `cat` ends when its reader goes away


def test_an_unexpected_failure_is_one_line_and_keeps_its_traceback(tmp_path, monkeypatch):
    config = _setup(tmp_path)

    def broken(*args, **kwargs):
        raise TypeError("an internal bug")

    monkeypatch.setattr(cli, "all_statuses", broken)
    result = _cli("status", "-c", config)
    line = _error_line(result)
    assert result.exit_code == 1 and "unexpected TypeError: an internal bug" in line
    traceback_file = Path(line.rsplit("traceback in ", 1)[1].rstrip(")"))
    assert "Traceback" in traceback_file.read_text() and "broken" in traceback_file.read_text()


def _stages_state(config: str, *sets: str) -> dict[str, str]:
    rows = json.loads(_cli("status", "-c", config, "--json", *sets).stdout)
    return {row["stage"]: row["state"] for row in rows}


def test_a_forced_rebuild_with_identical_output_leaves_later_stages_up_to_date(tmp_path):
    config = _setup(tmp_path)
    sets = ["--set", "tokenizer.dataset=extract", "--set", "tokenizer.vocab_size=300"]
    for stage in ("extract", "tokenizer", "shards"):
        assert _cli("run", stage, "-c", config, "--no-prefect", *sets).exit_code == 0
    for stage in ("extract", "tokenizer"):
        forced = _cli("run", stage, "-c", config, "--no-prefect", "--force", *sets)
        assert forced.exit_code == 0 and f"{stage}: built version" in forced.stdout
        assert Workspace(str(tmp_path / "workspace")).current_version(stage).endswith("-r1")
        states = _stages_state(config, *sets)
        assert states["tokenizer"] == states["shards"] == "up to date", states
    rebuilt = _cli("run", "shards", "-c", config, "--no-prefect", *sets)
    assert "shards: up to date" in rebuilt.stdout


def test_use_makes_an_older_committed_version_current(tmp_path):
    config = _setup(tmp_path)
    _cli("run", "extract", "-c", config, "--no-prefect")
    ws = Workspace(str(tmp_path / "workspace"))
    first = ws.current_version("extract")
    _cli("run", "extract", "-c", config, "--no-prefect", "--set", "extract.include_tables=false")
    assert ws.current_version("extract") != first
    assert _stages_state(config)["extract"] == "stale"

    listed = _cli("use", "extract", "-c", config)
    assert listed.exit_code == 0 and first in listed.stdout and "* " in listed.stdout
    used = _cli("use", "extract", first, "-c", config)
    assert used.exit_code == 0 and ws.current_version("extract") == first
    assert _stages_state(config)["extract"] == "up to date"  # what the config asks for again
    unknown = _cli("use", "extract", "../../elsewhere", "-c", config)
    assert unknown.exit_code == 1 and "no committed version" in _error_line(unknown)
    assert ws.current_version("extract") == first


def test_sample_reads_only_runs_inside_the_workspace(tmp_path):
    config = _setup(tmp_path)
    outside = tmp_path / "x"  # what runs/../../x names from the workspace's runs folder
    outside.mkdir()
    (outside / "run.json").write_text("{}")
    for name in ("../../x", "/tmp/x", ".hidden"):
        result = CliRunner().invoke(main, ["sample", "-c", config, "--run", name, "Hello"])
        assert result.exit_code == 2, result.output
        assert _error_line(result).startswith(f"textmill: error: --run {name!r}: not a run name")
