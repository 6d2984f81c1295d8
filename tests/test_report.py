"""`textmill report` over a real small run: the WARC files of ../shared/data/warc through every
stage and a tiny training run, then the page checked as HTML and in headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.datasets import Dataset
from pipeline.report import _document, build_report
from pipeline.workspace import Workspace
from tests.conftest import SHARED_DATA, needs_shared_data

TINY_TRAIN = {
    "run": "tiny",
    "context": 16,
    "n_layer": 1,
    "n_embd": 16,
    "n_head": 2,
    "batch_size": 2,
    "max_steps": 4,
    "sample_tokens": 0,
}


def _cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def run_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """extract -> clean -> dedup -> filter -> tokenizer -> shards -> train, without Prefect."""
    folder = tmp_path_factory.mktemp("report")
    warc = SHARED_DATA / "warc"
    config = folder / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "workspace": str(folder / "workspace"),
                "sources": [
                    {
                        "name": "warc-samples",
                        "kind": "web",
                        "warc": [f"{warc}/**/*.{ext}" for ext in ("warc", "warc.gz", "arc.gz")],
                    }
                ],
                "runner": {"task_runner": "serial", "workers": 1},
                "tokenizer": {"vocab_size": 300},
                "train": TINY_TRAIN,
            }
        )
    )
    for stage in ("extract", "curate", "tokenizer", "shards", "train"):
        result = _cli("run", stage, "-c", str(config), "--no-prefect")
        assert result.exit_code == 0, result.output
    return config


@needs_shared_data
def test_the_report_shows_what_the_run_made_and_loads_nothing(run_config):
    cfg = load_config(run_config)
    ws = Workspace(cfg.workspace_root)
    page = build_report(cfg, ws)

    for stage in ("extract", "clean", "dedup", "filter"):
        manifest = Dataset.current(ws, stage).manifest
        row = f"<td>{stage}</td><td>{manifest.version}</td><td>{manifest.docs_in:,}</td>"
        assert row + f"<td>{manifest.docs_out:,}</td>" in page  # the funnel's table
        for reason in manifest.dropped:
            assert f"{stage}: {reason}" in page  # in the chart of drops and among the samples
    splits = Dataset.current(ws, "shards").manifest.stats["splits"]
    assert f"<td>train</td><td>{splits['train']['docs']:,}</td>" in page
    sections = ("Filter scores", "Languages and domains", "Dedup clusters", "Training (run tiny)")
    for title in sections:
        assert f"<h2>{title}</h2>" in page
    assert "language_score" in page and "exact_duplicate" in page and "<td>en</td>" in page
    assert 'aria-label="Loss (nats per token) per step"' in page and "val_loss" in page
    # no external assets: every src and href points into the page
    assert not re.findall(r'(?:src|href)="(?!data:|#)', page)


def test_sample_text_is_escaped():
    doc = {
        "id": "x",
        "url": "https://evil.example/<b>",
        "text": "<script>alert(1)</script> & <img src=x onerror=alert(2)>",
        "bytes": 60,
        "stage": "filter",
        "reason": "language:detected",
        "detail": "detected=<i>fr</i>",
    }
    shown = _document(doc)
    assert "<script>" not in shown and "<img" not in shown and "<i>" not in shown
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;img" in shown


def _chromium() -> str:
    """Debian's chromium, installed with apt-get when missing (as root); skips if impossible."""
    found = shutil.which("chromium")
    if found is None and shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "install", "-y", "chromium"], ["apt-get", "update"]):
            subprocess.run(command, env=env, capture_output=True, timeout=900)
        if shutil.which("chromium") is None:  # the package lists were stale: now updated
            subprocess.run(
                ["apt-get", "install", "-y", "chromium"], env=env, capture_output=True, timeout=900
            )
        found = shutil.which("chromium")
    if found is None:
        pytest.skip("headless Chromium is not installed and apt-get could not install `chromium`")
    return found


def _headless(chromium: str, url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [chromium, "--headless", "--disable-gpu", "--no-sandbox", *args, url],
        capture_output=True,
        text=True,
        timeout=120,
    )


@needs_shared_data
def test_the_report_renders_in_headless_chromium(run_config, tmp_path):
    chromium = _chromium()
    page = tmp_path / "report.html"
    result = _cli("report", "-c", str(run_config), "-o", str(page))
    assert result.exit_code == 0 and result.output.strip() == f"report: {page}"

    # The page's script counts the charts drawn (SVG with a size and shapes) once it has loaded.
    dom = _headless(chromium, page.as_uri(), "--dump-dom").stdout
    drawn = re.search(r'id="charts-status">(\d+) of (\d+) charts drawn<', dom)
    assert drawn, dom[-2000:]
    assert int(drawn[1]) == int(drawn[2]) >= 10

    screenshot = tmp_path / "report.png"
    logged = _headless(
        chromium,
        page.as_uri(),
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1280,4000",
        f"--screenshot={screenshot}",
    )
    assert screenshot.stat().st_size > 10_000
    assert [line for line in logged.stderr.splitlines() if ":CONSOLE" in line] == []

    # The check can fail: a page with a console error and an external image is caught.
    bad = tmp_path / "bad.html"
    bad.write_text(page.read_text().replace("</body>", '<img src="https://example.org/x.png">'))
    logged = _headless(chromium, bad.as_uri(), "--enable-logging=stderr", "--v=0", "--dump-dom")
    assert any("Content Security Policy" in line for line in logged.stderr.splitlines())
