"""What the benchmark scripts share: the data folder, stderr progress, a JSON-only stdout,
package versions, text documents as a reproducible WARC file, and the keep-or-temp folder."""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def shared_data(script: str, *needed: str) -> Path:
    """The third-party data folder, or exit 1 saying which of `needed` is missing where."""
    shared = Path(os.environ.get("TEXTMILL_SHARED_DATA") or REPO.parent / "shared" / "data")
    missing = [str(shared / name) for name in needed if not (shared / name).exists()]
    if missing:
        sys.exit(
            f"{script}: missing {', '.join(missing)}.\nPut the data under {shared} or set "
            "TEXTMILL_SHARED_DATA to the folder that holds it."
        )
    return shared


def logger(script: str) -> Callable[[str], None]:
    def log(message: str) -> None:
        print(f"[{script}] {message}", file=sys.stderr, flush=True)

    return log


@contextmanager
def json_stdout() -> Iterator[io.TextIOWrapper]:
    """Send everything written to stdout (by Prefect, worker processes, the stages' own prints)
    to stderr and yield the real stdout, for the JSON result alone."""
    sys.stdout.flush()
    real = os.dup(1)
    os.dup2(2, 1)
    out = os.fdopen(real, "w", encoding="utf-8")
    try:
        yield out
    finally:
        sys.stdout.flush()
        out.flush()
        os.dup2(real, 1)
        out.close()


def versions(*packages: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in packages:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "missing"
    return found


def speech_documents(text: str, target: int) -> list[str]:
    """Blank-line separated paragraphs, joined in order into documents of about `target` chars."""
    docs, group, size = [], [], 0
    for speech in text.split("\n\n"):
        if not speech.strip():
            continue
        group.append(speech)
        size += len(speech) + 2
        if size >= target:
            docs.append("\n\n".join(group))
            group, size = [], 0
    if group:
        docs.append("\n\n".join(group))
    return docs


def write_text_warc(docs: list[tuple[str, str]], path: Path) -> None:
    """(url, text) documents as gzipped text/plain `response` records; record ids and dates are
    fixed, so the file (and the documents' ids and splits) are the same on every run."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    with path.open("wb") as fh:
        writer = WARCWriter(fh, gzip=True)
        for url, text in docs:
            http_headers = StatusAndHeaders(
                "200 OK", [("Content-Type", "text/plain; charset=utf-8")], protocol="HTTP/1.1"
            )
            record = writer.create_warc_record(
                url,
                "response",
                payload=io.BytesIO(text.encode("utf-8")),
                http_headers=http_headers,
                warc_headers_dict={
                    "WARC-Record-ID": f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, url)}>",
                    "WARC-Date": "2024-01-01T00:00:00Z",
                },
            )
            writer.write_record(record)


def add_keep_option(parser: argparse.ArgumentParser, what: str) -> None:
    """`--keep DIR`: build `what` in DIR and keep it (run_benchmark uses a temporary folder
    otherwise)."""
    parser.add_argument(
        "--keep", type=Path, default=None, metavar="DIR", help=f"build {what} in DIR and keep them"
    )


def reject_used_keep(parser: argparse.ArgumentParser, keep: Path | None, why: str) -> None:
    """A benchmark that must start from nothing refuses a --keep folder with files in it."""
    if keep is not None and keep.exists() and any(keep.iterdir()):
        parser.error(f"--keep {keep}: the folder is not empty ({why})")


def run_benchmark(
    name: str,
    args: argparse.Namespace,
    data: Path,
    benchmark: Callable[[argparse.Namespace, Path, Path], dict[str, Any]],
) -> int:
    """Run `benchmark` in `args.keep` (kept) or a temporary folder; print its JSON to stdout."""
    log = logger(f"bench/{name}")
    with json_stdout() as out:
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            figures = benchmark(args, data, args.keep.resolve())
            log(f"kept the benchmark's files in {args.keep}")
        else:
            with tempfile.TemporaryDirectory(prefix=f"textmill-bench-{name}-") as tmp:
                figures = benchmark(args, data, Path(tmp))
        out.write(json.dumps(figures, indent=2) + "\n")
    return 0
