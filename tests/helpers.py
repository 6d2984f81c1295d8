"""Small WARC files and run configs written by the tests themselves."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

ARTICLE = """<!DOCTYPE html><html lang="en-GB"><head><title>{title}</title>
<meta name="author" content="Ada Lovelace"></head><body>
<nav><a href="/">Home</a> | <a href="/about">About</a></nav>
<article><h1>{title}</h1>
<p>{body} The analytical engine weaves algebraic patterns just as the Jacquard loom weaves
flowers and leaves, and this paragraph is long enough to count as main text for trafilatura.</p>
<p>A second paragraph follows, so that the page reads like a real article with several
sentences of prose rather than a navigation menu or a cookie notice.</p>
</article><footer>Copyright 2024 Example Ltd. All rights reserved.</footer></body></html>"""


def article(title: str, body: str = "") -> bytes:
    return ARTICLE.format(title=title, body=body).encode("utf-8")


def write_warc(path: Path, records: list[dict]) -> Path:
    """records: {url, body: bytes, type='response', status='200 OK', content_type, headers}."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        writer = WARCWriter(fh, gzip=str(path).endswith(".gz"))
        for rec in records:
            rec_type = rec.get("type", "response")
            if rec_type == "revisit":
                record = writer.create_revisit_record(
                    rec["url"],
                    digest="sha1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                    refers_to_uri=rec["url"],
                    refers_to_date="20240101000000",
                )
            else:
                headers = [("Content-Type", rec.get("content_type", "text/html; charset=utf-8"))]
                headers += rec.get("headers", [])
                http = StatusAndHeaders(rec.get("status", "200 OK"), headers, protocol="HTTP/1.1")
                record = writer.create_warc_record(
                    rec["url"], rec_type, payload=io.BytesIO(rec["body"]), http_headers=http
                )
            writer.write_record(record)
    return path


def write_config(folder: Path, warc_globs: list[str], **sections: dict) -> Path:
    """A run config in `folder` with its workspace at folder/workspace."""
    data = {
        "workspace": str(folder / "workspace"),
        "sources": [{"name": "pages", "kind": "web", "warc": warc_globs}],
        "runner": {"task_runner": "serial", "workers": 1},
        **sections,
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@contextmanager
def lock_held_elsewhere(root: Path, purpose: str) -> Iterator[subprocess.Popen]:
    """Another process holding the workspace lock, until the block ends (it is then killed)."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from pipeline.workspace import Workspace\n"
            f"with Workspace({str(root)!r}).lock({purpose!r}):\n"
            "    print('locked', flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def slow_page_warc(folder: Path, monkeypatch: Any, seconds: float) -> Path:
    """A WARC of two pages, the first of which takes `seconds` to extract (extract_html is
    patched to sleep on it), to test the per-page time limit."""
    from pipeline import extract

    real = extract.extract_html

    def slow_on_one_page(html: str, url: str, cfg: Any) -> Any:
        if url.endswith("/slow"):
            time.sleep(seconds)
        return real(html, url, cfg)

    monkeypatch.setattr(extract, "extract_html", slow_on_one_page)
    return write_warc(
        folder / "in" / "t.warc.gz",
        [
            {"url": "https://example.org/slow", "body": article("Slow")},
            {"url": "https://example.org/fast", "body": article("Fast")},
        ],
    )
