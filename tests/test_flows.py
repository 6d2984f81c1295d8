"""The real Prefect flow: tasks map over input files on a process pool."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from pipeline.datasets import Dataset
from pipeline.workspace import Workspace
from tests.conftest import REPO
from tests.helpers import article, slow_page_warc, write_config, write_warc

pytestmark = pytest.mark.prefect


def _inputs(folder):
    for name in ("a", "b", "c"):
        write_warc(
            folder / f"{name}.warc.gz",
            [
                {"url": f"https://{name}.example/{i}", "body": article(f"{name} {i}")}
                for i in range(4)
            ],
        )
    return [str(folder / "*.warc.gz")]


def test_extract_flow_on_a_process_pool_matches_the_plain_run(prefect_server, tmp_path):
    from prefect.client.orchestration import get_client

    import flows.extract

    warcs = _inputs(tmp_path / "in")
    config = str(write_config(tmp_path, warcs))
    result = flows.extract.run(config, ["runner.task_runner=processes", "runner.workers=2"])
    assert result["built"] and result["units_run"] == 3 and result["docs_out"] == 12

    plain = write_config(tmp_path / "plain", warcs)
    subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", "extract", "-c", str(plain), "--no-prefect"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    columns = ["id", "url", "text", "title"]
    flow_docs = Dataset.current(Workspace(str(tmp_path / "workspace")), "extract").read(columns)
    plain_docs = Dataset.current(Workspace(str(tmp_path / "plain" / "workspace")), "extract")
    assert flow_docs.to_pylist() == plain_docs.read(columns).to_pylist()

    with get_client(sync_client=True) as client:
        names = [run.name for run in client.read_task_runs()]
    assert sum(name.startswith("extract-unit") for name in names) >= 3


def test_cli_runs_the_flow_on_a_running_server(prefect_server, tmp_path):
    config = str(write_config(tmp_path, _inputs(tmp_path / "in")))
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    command = [sys.executable, "-m", "pipeline.cli", "run", "extract", "-c", config]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    assert f"Prefect API: {prefect_server}" in first.stderr
    assert "built version" in first.stdout
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0 and "up to date" in second.stdout


def test_serial_flow_keeps_the_per_page_time_limit(prefect_server, tmp_path, monkeypatch):
    """Units of a serial run execute in the flow's main thread, where SIGALRM can interrupt."""
    import flows.extract

    warc = slow_page_warc(tmp_path, monkeypatch, seconds=10)
    config = str(write_config(tmp_path, [str(warc)], extract={"timeout_s": 0.5}))
    result = flows.extract.run(config)
    assert result["dropped"] == {"extract_timeout": 1} and result["docs_out"] == 1


def test_tokenizer_and_shards_flows(prefect_server, tmp_path):
    import flows.extract
    import flows.shards
    import flows.tokenizer

    config = str(write_config(tmp_path, _inputs(tmp_path / "in")))
    overrides = [
        "tokenizer.dataset=extract",
        "tokenizer.vocab_size=300",
        "runner.task_runner=processes",
        "runner.workers=2",
    ]
    flows.extract.run(config, overrides)
    trained = flows.tokenizer.run(config, overrides)
    assert trained["built"] and trained["headline"].startswith("vocabulary 300")
    sharded = flows.shards.run(config, overrides)
    assert sharded["built"] and sharded["units_run"] == 3
    manifest = Dataset.current(Workspace(str(tmp_path / "workspace")), "shards").manifest
    assert sum(s["docs"] for s in manifest.stats["splits"].values()) == 12

    import flows.train

    tiny = [
        "train.context=16",
        "train.n_layer=1",
        "train.n_embd=16",
        "train.n_head=2",
        "train.batch_size=2",
        "train.max_steps=3",
        "train.sample_tokens=4",
    ]
    trained = flows.train.run(config, overrides + tiny)
    assert trained["step"] == 3 and (tmp_path / "workspace/runs/main/checkpoint").is_dir()


def test_curate_flow_runs_clean_dedup_filter_as_subflows(prefect_server, tmp_path):
    import flows.curate
    import flows.extract
    from tests.test_curate import _config

    config = str(_config(tmp_path, runner={"task_runner": "processes", "workers": 2}))
    flows.extract.run(config)
    results = flows.curate.run(config)
    assert [r["stage"] for r in results] == ["clean", "dedup", "filter"]
    assert all(r["built"] for r in results)
    ws = Workspace(str(tmp_path / "workspace"))
    kept = {d["id"] for d in Dataset.current(ws, "filter").read(["id"]).to_pylist()}
    assert kept == {"a0", "a1", "a2"}  # as the plain run in test_curate.py


def test_flows_publish_artifacts_under_keys_stable_per_workspace(prefect_server, tmp_path):
    import json

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    import flows.extract
    import flows.shards
    import flows.tokenizer
    import flows.train
    from flows.artifacts import artifact_key

    config = str(write_config(tmp_path, _inputs(tmp_path / "in")))
    overrides = ["tokenizer.dataset=extract", "tokenizer.vocab_size=300", "train.max_steps=3"]
    overrides += ["train.context=16", "train.n_layer=1", "train.n_embd=16", "train.n_head=2"]
    overrides += ["train.batch_size=2", "train.sample_tokens=0", "train.run=Tiny_1"]
    flows.extract.run(config, [*overrides, "extract.timeout_s=5"])
    flows.extract.run(config, overrides)  # a second version: the key's history grows
    for flow_module in (flows.tokenizer, flows.shards, flows.train):
        flow_module.run(config, overrides)

    ws = Workspace(str(tmp_path / "workspace"))

    def history(*names: str) -> list:
        key = artifact_key(ws, *names)
        assert key.startswith("textmill-") and key == key.lower()
        with get_client(sync_client=True) as client:
            return client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                sort=ArtifactSort.CREATED_DESC,
            )

    def table(artifact) -> dict:
        rows = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
        return {next(iter(row.values())): row["value"] for row in rows}  # name -> value

    extract_tables = history("extract")
    assert len(extract_tables) == 2
    assert table(extract_tables[0])["documents out"] == 12
    summary = history("extract", "summary")[0].data
    assert "12 documents out of 12" in summary and "https://" in summary  # samples, with URLs
    assert "vocabulary 300" in history("tokenizer", "summary")[0].data  # its figures
    assert table(history("train", "Tiny_1")[0])["step"] == 3
    progress = history("train", "Tiny_1", "progress")
    assert progress and progress[0].data == 100.0


# ----- which Prefect server a run trusts -----


@contextmanager
def _anything_answers_200() -> Iterator[tuple[str, list[str]]]:
    """A server on a free loopback port that answers 200 to every request, as any program on
    port 4200 could; yields its API URL and the paths it was sent."""
    paths: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            paths.append(self.path)
            body = b"{}"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/api", paths
    finally:
        server.shutdown()
        server.server_close()


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_run_sends_nothing_to_a_server_textmill_did_not_start(tmp_path):
    """A server that answers 200 where the local one would be (the code's own address for it,
    and a record of `textmill server` whose process is gone) is never asked anything: the run
    uses an embedded server, and says so."""
    config = str(write_config(tmp_path, _inputs(tmp_path / "in")))
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_HOME")}
    with _anything_answers_200() as (impostor, paths):
        home = tmp_path / "workspace" / ".prefect"  # the run's Prefect home (no PREFECT_HOME)
        home.mkdir(parents=True)
        (home / "server.json").write_text(json.dumps({"pid": _dead_pid(), "url": impostor}))
        run = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, flows; flows.LOCAL_SERVER = sys.argv[1]\n"
                "from pipeline.cli import main; main(sys.argv[2:])",
                impostor,
                *("run", "extract", "-c", config),
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert paths == []
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Prefect API: http://127.0.0.1:" in run.stderr
    assert "(an embedded server for this run)" in run.stderr
    assert "built version" in run.stdout


def test_the_server_textmill_server_started_is_used_while_it_lives(tmp_path, monkeypatch):
    from flows import STARTED, prefect_api, record_server, recorded_server

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with _anything_answers_200() as (server, paths):
        record_server(server)  # as `textmill server` does, in the process that then serves
        with prefect_api(str(tmp_path / "workspace")) as api:
            assert api == server and api.source == STARTED
            assert os.environ["PREFECT_API_URL"] == server  # for the task runner's workers
        assert paths == ["/api/health"]

        record = json.loads((tmp_path / "home" / "server.json").read_text())
        assert record == {"pid": os.getpid(), "url": server}
        record["pid"] = _dead_pid()  # that server stopped; its record stays behind
        (tmp_path / "home" / "server.json").write_text(json.dumps(record))
        assert recorded_server() is None and paths == ["/api/health"]
    record_server(server)  # alive, but nothing answers there any more
    assert recorded_server() is None


def test_textmill_server_records_itself_and_does_not_start_twice(tmp_path, monkeypatch):
    from pipeline.cli import main

    execs: list[list[str]] = []
    monkeypatch.setattr(os, "execv", lambda path, argv: execs.append(argv))
    monkeypatch.delenv("PREFECT_HOME", raising=False)  # its home: <workspace>/.prefect
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    config = str(write_config(tmp_path, []))
    with _anything_answers_200() as (server, _):
        port = server.split(":")[2].split("/")[0]
        started = CliRunner().invoke(main, ["server", "-c", config, "--port", port])
        assert started.exit_code == 0, started.output
        assert execs and execs[0][-4:] == ["--host", "127.0.0.1", "--port", port]
        record = tmp_path / "workspace" / ".prefect" / "server.json"
        assert json.loads(record.read_text()) == {"pid": os.getpid(), "url": server}

        monkeypatch.delenv("PREFECT_API_URL")  # the first `server` set it in this process
        again = CliRunner().invoke(main, ["server", "-c", config, "--port", "4299"])
        assert again.exit_code == 0 and "already runs" in again.output and len(execs) == 1
