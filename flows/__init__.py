"""Prefect flows: thin wrappers that map `pipeline` functions over work units.

Run flows inside `with prefect_api(workspace_root):`. It sets Prefect up before Prefect is
imported (Prefect reads its settings then): offline, analytics off, its home in the workspace.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCAL_SERVER = "http://127.0.0.1:4200/api"


@contextmanager
def prefect_api(workspace_root: str) -> Iterator[str]:
    """Yield the Prefect API URL the flows use: PREFECT_API_URL when set, a local server
    (`prefect server start`) when one answers, else an embedded server started here, shared
    with the task runner's worker processes and stopped at the end."""
    if "://" not in workspace_root and "PREFECT_HOME" not in os.environ:
        home = Path(workspace_root).resolve() / ".prefect"
        home.mkdir(parents=True, exist_ok=True)
        os.environ["PREFECT_HOME"] = str(home)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "pipeline")
    if "PREFECT_API_URL" not in os.environ and _answers(f"{LOCAL_SERVER}/health"):
        os.environ["PREFECT_API_URL"] = LOCAL_SERVER
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
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
            yield server.api_url
    finally:
        # Send the last logs and events while the server still listens; after it stops,
        # Prefect's exit handlers would retry them for a minute.
        APILogWorker.drain_all(timeout=10)
        EventsWorker.drain_all(timeout=10)
        server.stop()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.3) as response:
            return response.status == 200
    except OSError:
        return False
