"""Schedules on a real Prefect server: `textmill server` and `textmill serve` in subprocesses,
deployments triggered through the API as a user would, and a schedule that comes due during a
test, whose run the server's scheduler makes on its own."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from flows import _answers
from pipeline.config import ConfigError, load_config
from pipeline.workspace import Workspace
from tests.conftest import SHARED_DATA, needs_shared_data
from tests.helpers import lock_held_elsewhere, write_config

pytestmark = pytest.mark.prefect

TEXTMILL = str(Path(sys.executable).with_name("textmill"))
CRON = "0 3 * * *"
TIMEZONE = "Europe/Paris"
TINY = {
    "tokenizer": {"vocab_size": 300},
    "train": {
        "context": 16,
        "n_layer": 1,
        "n_embd": 16,
        "n_head": 2,
        "batch_size": 2,
        "max_steps": 3,
        "sample_tokens": 0,
        "eval_windows": 2,
    },
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    """This environment without the test session's Prefect home and server."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_HOME", "PREFECT_API_URL")}
    return {**env, **extra}


def _wait_for(done: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {seconds} s for {what}")
        time.sleep(0.5)


@dataclass
class Served:
    api: str
    config: Path
    workspace: Path
    serve_log: Path
    server_log: Path
    posts: list[str] = field(default_factory=list)  # bodies the webhook received


@contextmanager
def _serving(
    folder: Path, schedules: dict, server_env: dict[str, str] | None = None
) -> Iterator[Served]:
    """`textmill server` on a free port (its database in the workspace) and `textmill serve` of
    a tiny config with these schedules against it, each with its own log in `folder`; the
    client's PREFECT_API_URL is that server's until both are stopped at the end."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    warcs = [str(SHARED_DATA / "warc" / "dolma" / "*.warc.gz")]
    config = write_config(folder, warcs, schedules=schedules, **TINY)
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    served = Served(api, config, folder / "workspace", folder / "serve.log", folder / "server.log")
    processes: list[subprocess.Popen] = []

    def start(command: list[str], log: Path, **env: str) -> None:
        with open(log, "w") as out:  # each in its own process group, stopped with its children
            process = subprocess.Popen(
                command,
                env=_env(**env),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        processes.append(process)

    try:
        start(
            [TEXTMILL, "server", "-c", str(config), "--port", str(port)],
            served.server_log,
            **(server_env or {}),
        )
        _wait_for(lambda: _answers(f"{api}/health"), 120, "the Prefect server to answer")
        start(
            [TEXTMILL, "serve", "-c", str(config)],
            served.serve_log,
            PREFECT_API_URL=api,
            PREFECT_RUNNER_POLL_FREQUENCY="1",  # look for runs every second, not every 10
        )
        _wait_for(lambda: "being served" in served.serve_log.read_text(), 120, "textmill serve")
        with temporary_settings({PREFECT_API_URL: api}):
            yield served
    finally:
        for process in reversed(processes):
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A served tiny config whose crawl-and-train runs at 03:00 (so never during the tests: they
    trigger its runs), and a webhook that records what it is sent."""
    posts: list[str] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            posts.append(self.rfile.read(int(self.headers["Content-Length"])).decode())
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    hook = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    schedules = {
        "crawl_and_train": CRON,
        "timezone": TIMEZONE,
        "max_concurrent_runs": 2,  # so that only the deployment's own limit keeps runs apart
        "notify_webhook": f"http://127.0.0.1:{hook.server_port}/hook",
    }
    # a waiting run retries for a slot after 1 s, not 30
    server_env = {"PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "1"}
    try:
        with _serving(tmp_path_factory.mktemp("serve"), schedules, server_env) as served:
            served.posts = posts
            yield served
    finally:
        hook.shutdown()
        hook.server_close()


def _wait_for_runs(ids: list, seconds: float) -> list:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        runs: list = []

        def ended() -> bool:
            runs[:] = [client.read_flow_run(id_) for id_ in ids]
            return all(run.state.is_final() for run in runs)

        _wait_for(ended, seconds, "the runs to end")
        return runs


def test_a_bad_cron_string_is_refused_naming_its_key(tmp_path):
    config = write_config(tmp_path, [], schedules={"crawl": "0 3 * *"})
    with pytest.raises(ConfigError, match=r"run.yaml.*schedules\.crawl.*not a cron string"):
        load_config(config)


def test_serve_without_a_server_says_how_to_start_one(tmp_path):
    config = write_config(tmp_path, [])
    nowhere = f"http://127.0.0.1:{_free_port()}/api"
    serve = subprocess.run(
        [TEXTMILL, "serve", "-c", str(config)],
        env=_env(PREFECT_API_URL=nowhere),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert serve.returncode == 1
    assert f"no Prefect server answers at {nowhere}" in serve.stderr
    assert "textmill server" in serve.stderr and "PREFECT_API_URL" in serve.stderr


def test_server_names_the_server_that_prefect_api_url_sets(tmp_path):
    config = write_config(tmp_path, [])
    elsewhere = "http://prefect.example:4200/api"
    server = subprocess.run(
        [TEXTMILL, "server", "-c", str(config)],
        env=_env(PREFECT_API_URL=elsewhere),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert server.returncode == 0 and f"Prefect server at {elsewhere}" in server.stdout


def _problems(log: Path, lines: int = 20) -> str:
    """The log's last error lines (the scheduler's, when it fails), else its last lines."""
    text = log.read_text(errors="replace").splitlines()
    errors = [line for line in text if "error" in line.lower() or "exception" in line.lower()]
    return "\n".join((errors or text)[-lines:])


@needs_shared_data
def test_a_schedule_that_comes_due_runs_crawl_and_train_untriggered(tmp_path):
    """Nothing is triggered: the server's scheduler makes the run and `textmill serve` runs it.
    (A server of its own: the module's server has the same deployments on a 03:00 schedule.)"""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId

    schedules = {"crawl_and_train": "* * * * *", "timezone": TIMEZONE}
    # The scheduler's main loop every 5 s, not 60, so that it runs during the test (its quick
    # loop, every 5 s, only looks at deployments updated in the last 6 s).
    server_env = {"PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5"}
    with (
        _serving(tmp_path, schedules, server_env) as served,
        get_client(sync_client=True) as client,
    ):
        deployment = client.read_deployment_by_name("textmill/crawl-and-train")
        of_deployment = FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[deployment.id]))
        runs: list = []

        def started() -> bool:
            runs[:] = sorted(
                client.read_flow_runs(flow_run_filter=of_deployment),
                key=lambda run: run.expected_start_time,
            )
            return any(run.auto_scheduled and run.start_time for run in runs)

        try:  # the next minute, the scheduler's loop and the runner's poll
            _wait_for(started, 150, "an auto-scheduled run of textmill/crawl-and-train to start")
        except TimeoutError as exc:
            seen = [f"{r.name} {r.state_name} at {r.expected_start_time}" for r in runs[:5]]
            raise AssertionError(
                f"{exc}; its runs: {seen or 'none'}\n"
                f"server log ({served.server_log}):\n{_problems(served.server_log)}\n"
                f"serve log ({served.serve_log}):\n{_problems(served.serve_log)}"
            ) from None
        assert all(run.auto_scheduled for run in runs), "only the schedule makes runs here"
        first = next(run for run in runs if run.start_time)
        (first,) = _wait_for_runs([first.id], 300)
        assert first.state.is_completed(), (first.state.message, _problems(served.serve_log))

    ws = Workspace(str(served.workspace))
    assert ws.current_version("filter") is not None and ws.current_version("shards") is not None
    assert (served.workspace / "runs" / "main" / "checkpoint").is_dir()


@needs_shared_data
def test_deployments_carry_the_schedule_and_the_limits(served):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import ConcurrencyLimitStrategy

    from flows.serve import AUTOMATION, RERUNS, register

    assert (served.workspace / ".prefect" / "prefect.db").exists()  # the server's database
    with get_client(sync_client=True) as client:
        scheduled = client.read_deployment_by_name("textmill/crawl-and-train")
        assert [(s.schedule.cron, s.schedule.timezone) for s in scheduled.schedules] == [
            (CRON, TIMEZONE)
        ]
        assert scheduled.global_concurrency_limit.limit == 1
        assert scheduled.concurrency_options.collision_strategy == ConcurrencyLimitStrategy.ENQUEUE
        assert scheduled.parameters["config_path"] == str(served.config.resolve())
        for stage in ("crawl", "curate", "train", *RERUNS):
            deployment = client.read_deployment_by_name(f"textmill/{stage}")
            assert deployment.schedules == [] and deployment.parameters["stage"] == stage
        assert len(client.read_automations_by_name(AUTOMATION)) == 1

        # Serving again (here: registering again) updates what is there, adds nothing
        register(str(served.config), [])
        assert len(client.read_automations_by_name(AUTOMATION)) == 1
        assert client.read_deployment_by_name("textmill/crawl-and-train").id == scheduled.id


@needs_shared_data
def test_triggered_crawl_and_train_completes_and_a_second_trigger_waits(served):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    first = run_deployment("textmill/crawl-and-train", timeout=0)
    with get_client(sync_client=True) as client:
        _wait_for(
            lambda: client.read_flow_run(first.id).state.type.value != "SCHEDULED",
            120,
            "the first run to start",
        )
    second = run_deployment("textmill/crawl-and-train", timeout=0)
    first, second = _wait_for_runs([first.id, second.id], 300)
    assert first.state.is_completed(), first.state.message
    assert second.state.is_completed(), second.state.message
    assert second.start_time >= first.end_time  # it waited for the first to end

    ws = Workspace(str(served.workspace))
    assert ws.current_version("shards") is not None
    assert (served.workspace / "runs" / "main" / "checkpoint").is_dir()


@needs_shared_data
def test_a_run_that_finds_the_workspace_locked_fails_and_is_notified(served):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.deployments import run_deployment

    holder = "a manual textmill run"
    with lock_held_elsewhere(served.workspace, holder):
        run = run_deployment(
            "textmill/extract", parameters={"force": True}, timeout=180, poll_interval=1
        )
    assert run.state.is_failed()
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
    assert any(f"is locked by {holder}" in log.message for log in logs)
    assert f"textmill: extract run {run.name} Failed" in served.serve_log.read_text()

    _wait_for(lambda: served.posts, 60, "the webhook to be called")
    text = json.loads(served.posts[0])["text"]
    assert f"extract run {run.name} Failed" in text and f"is locked by {holder}" in text
