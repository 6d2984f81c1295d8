"""Prefect flows: thin wrappers that map `pipeline` functions over work units.

Run flows inside `with prefect_api(workspace_root):`. It sets Prefect up before Prefect is
imported (Prefect reads its settings then): offline, analytics off, its home in the workspace.

The flows talk to a server that the user named (PREFECT_API_URL) or that textmill started:
`textmill server` records its process and address in the Prefect home (`server.json`, see
`record_server`). Whatever else listens on a local port is never sent a request.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.workspace import process_alive

LOCAL_SERVER = "http://127.0.0.1:4200/api"  # where `textmill server` listens by default
SERVER_RECORD = "server.json"  # in the Prefect home: the server `textmill server` started
# Which server a run uses, in the words of the line the CLI prints ("Prefect API: URL (...)")
GIVEN, STARTED, EMBEDDED = (
    "PREFECT_API_URL",
    "the server `textmill server` started",
    "an embedded server for this run",
)


class PrefectAPI(str):
    """The API URL the flows use, and which server that is (`source`: GIVEN, STARTED or
    EMBEDDED). A str, so that it goes wherever a URL does."""

    source: str

    def __new__(cls, url: str, source: str) -> PrefectAPI:
        api = super().__new__(cls, url)
        api.source = source
        return api


@contextmanager
def prefect_api(workspace_root: str, embedded: bool = True) -> Iterator[PrefectAPI]:
    """Yield the Prefect API the flows use: PREFECT_API_URL when set; else the server that
    `textmill server` started with this Prefect home, while its process lives and it answers;
    else (unless `embedded` is False: schedules need a server that stays up) an embedded server
    started here, shared with the task runner's worker processes and stopped at the end."""
    if "://" not in workspace_root and "PREFECT_HOME" not in os.environ:
        home = Path(workspace_root).resolve() / ".prefect"
        home.mkdir(parents=True, exist_ok=True)
        os.environ["PREFECT_HOME"] = str(home)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "pipeline")
    if os.environ.get("PREFECT_API_URL"):
        yield PrefectAPI(os.environ["PREFECT_API_URL"], GIVEN)
        return
    started = recorded_server()
    if started:
        os.environ["PREFECT_API_URL"] = started  # the task runner's workers inherit it
        yield PrefectAPI(started, STARTED)
        return
    if not embedded:
        raise ConnectionError(
            "no Prefect server: start one with `textmill server -c CONFIG` (in another "
            "terminal) or set PREFECT_API_URL"
        )
    # Prefect's own ephemeral mode would start one server per worker process (its URL is not
    # passed on to them); one server for the whole run is ~10 s cheaper per worker.
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = SubprocessASGIServer()
    server.start(timeout=120)  # the first start in a new home also creates its database
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            yield PrefectAPI(server.api_url, EMBEDDED)
    finally:
        # Send the last logs and events while the server still listens; after it stops,
        # Prefect's exit handlers would retry them for a minute.
        APILogWorker.drain_all(timeout=10)
        EventsWorker.drain_all(timeout=10)
        server.stop()


def server_record() -> Path:
    """Where `textmill server` records the server it started: in the Prefect home, which
    `prefect_api` sets (<workspace>/.prefect for a local workspace, else Prefect's default)."""
    return Path(os.environ.get("PREFECT_HOME") or "~/.prefect").expanduser() / SERVER_RECORD


def record_server(url: str) -> None:
    """Called by `textmill server` in the process that becomes the server (it execs it)."""
    server_record().parent.mkdir(parents=True, exist_ok=True)
    server_record().write_text(json.dumps({"pid": os.getpid(), "url": url}))


def recorded_server() -> str | None:
    """The URL of the server `textmill server` started with this Prefect home, while its
    process lives and it answers; None otherwise (no record, or a server since stopped)."""
    try:
        record = json.loads(server_record().read_text())
        pid, url = int(record["pid"]), str(record["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return url if process_alive(pid) and _answers(f"{url}/health") else None


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.3) as response:
            return response.status == 200
    except OSError:
        return False
