"""Shared test set-up: Prefect offline in a temp home (set before anything imports Prefect),
the third-party data folder, and small WARC files written by the tests themselves."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_PREFECT_HOME = tempfile.mkdtemp(prefix="textmill-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME  # never a developer's own Prefect database
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"  # datasets and transformers read local folders only
os.environ.pop("PREFECT_API_URL", None)  # tests never touch a developer's server

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TEXTMILL_SHARED_DATA", REPO.parent / "shared" / "data"))

needs_shared_data = pytest.mark.skipif(
    not (SHARED_DATA / "README.md").exists(),
    reason=f"third-party test data not found at {SHARED_DATA} (set TEXTMILL_SHARED_DATA)",
)


@pytest.fixture(scope="session")
def prefect_server():
    """One embedded Prefect server for the whole session (~10-20 s to start)."""
    from flows import prefect_api

    with prefect_api(workspace_root=_PREFECT_HOME) as url:
        yield url


@pytest.fixture(autouse=True)
def _environment_restored():
    """No test leaves environment variables behind for the tests after it: distributed's
    LocalCluster sets OMP_NUM_THREADS=1 (and MKL_, OPENBLAS_) in the process that starts it,
    which would make later tests' subprocesses compute with other thread counts."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
