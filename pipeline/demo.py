"""`textmill demo`: its target site, and what it shows at the end (where the outputs are and
the headline figures).

The site is the HTML documentation that Python's pydoc serves for this very environment
(`python -m pydoc -n 127.0.0.1 -p PORT`): every install has it, offline included, and its pages
are real ones written by others, with links, near-duplicates (a help topic under each of its
keywords, one package under two names: attr and attrs) and a robots.txt that answers 200 with
an HTML error page, pydoc's answer to any unknown address. protego
finds no rules in that page, so the crawl treats it as allowing everything (and the same for
`/.well-known/tdmrep.json`: not JSON, so no reservation).

pydoc imports every module whose page is asked for, in its own process: the demo config keeps
the crawl away from modules whose import does something (`antigravity` opens a web browser,
`idlelib.idle` starts IDLE, `__main__` modules run programs, the `test` package runs tests).
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow.compute as pc

from model.baselines import unigram_loss, unigram_probs
from model.runs import run_status
from pipeline.config import RunConfig
from pipeline.crawl.crawler import crawl_sources
from pipeline.datasets import Dataset
from pipeline.shards import token_stream
from pipeline.tokenizer import TOKENIZER_FILE
from pipeline.workspace import MANIFEST, Workspace

START_TIMEOUT_S = 60.0  # pydoc imports itself and binds in about a second; a loaded CI is slower
# pydoc's server loop notices the end of its input within a second; but a thread that one of
# the hundreds of modules it imported has left running can keep its interpreter from exiting
STOP_TIMEOUT_S = 2.0


class SiteError(OSError):
    """The demo's site could not be served."""


def site_address(cfg: RunConfig) -> tuple[str, int]:
    """The one (host, port) that every seed of the config's crawled sources names."""
    addresses = {
        (parts.hostname or "", parts.port or 80)
        for source in cfg.sources
        for parts in map(urlsplit, source.seeds)
    }
    if len(addresses) != 1:
        found = ", ".join(f"{host}:{port}" for host, port in sorted(addresses)) or "none"
        raise SiteError(f"the demo serves one site: the seeds must name one host:port ({found})")
    return addresses.pop()


@contextmanager
def pydoc_site(
    port: int, host: str = "127.0.0.1", python: str = sys.executable, log: Path | None = None
) -> Iterator[str]:
    """Serve pydoc's HTML documentation of `python`'s environment at `http://host:port/` while
    the block runs; stop the server at the end, on errors and Ctrl-C too. `log` keeps what
    pydoc and the modules it imports print (by default it is thrown away)."""
    _check_free(host, port)
    # pydoc puts its working folder on sys.path and lists its modules: an empty one adds none
    with tempfile.TemporaryDirectory(prefix="textmill-pydoc-") as folder:
        output = open(log or os.devnull, "ab")  # noqa: SIM115 - closed in `finally`
        env = {
            **os.environ,
            "MPLBACKEND": "Agg",  # an imported matplotlib never opens a window
            "PYTHONDONTWRITEBYTECODE": "1",  # nor does any import write into the environment
        }
        env.pop("DISPLAY", None)
        env.pop("WAYLAND_DISPLAY", None)
        server = subprocess.Popen(
            [python, "-m", "pydoc", "-n", host, "-p", str(port)],
            stdin=subprocess.PIPE,  # kept open: pydoc's server quits when its stdin ends
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=folder,
            env=env,
        )
        try:
            _wait_until_listening(server, host, port)
            yield f"http://{host}:{port}/"
        finally:
            _stop(server)
            output.close()


def _check_free(host: str, port: int) -> None:
    with socket.socket() as probe:
        # as pydoc's server binds: connections of an earlier server waiting out TIME_WAIT
        # do not make the port busy, a program listening there does
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise SiteError(
                f"cannot serve the demo site on {host}:{port}: {exc.strerror} (another program "
                "listens there: stop it, or change the port in the config's seeds)"
            ) from None


def _wait_until_listening(server: subprocess.Popen, host: str, port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SiteError(f"pydoc exited with code {server.returncode} before serving {port}")
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SiteError(f"pydoc did not listen on {host}:{port} within {START_TIMEOUT_S:.0f} s")


def _stop(server: subprocess.Popen) -> None:
    """End of input asks pydoc to stop; a server still running after STOP_TIMEOUT_S is
    terminated, then killed."""
    try:
        server.stdin.close()
        server.wait(STOP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        server.terminate()
        try:
            server.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# ----- what the demo shows at the end -----


def outputs(cfg: RunConfig, ws: Workspace) -> dict[str, str]:
    """Where the newest crawl generation, the curated dataset, the tokenizer, the shards and
    the model run are."""
    found = {
        f"crawl {source.name}": ws.storage.url(ws.generations(source.name)[-1].folder)
        for source in crawl_sources(cfg)
        if ws.generations(source.name)
    }
    curated = Dataset.current(ws, cfg.tokenizer.dataset)
    tokenizer = Dataset.current(ws, "tokenizer")
    found["dataset"] = ws.storage.url(curated.dir)
    found["tokenizer"] = ws.storage.url(f"{tokenizer.dir}/{TOKENIZER_FILE}")
    found["shards"] = ws.storage.url(Dataset.current(ws, "shards").dir)
    found["model"] = (
        ws.storage.url(f"runs/{cfg.train.run}") + " (checkpoint, loss.png, samples.txt)"
    )
    return found


def figures(cfg: RunConfig, ws: Workspace) -> dict[str, Any]:
    """The headline figures: pages the newest crawl generation fetched, the curated text, the
    training tokens, and the model's validation bits per byte beside the unigram baseline's on
    the same tokens."""
    pages = 0
    for source in crawl_sources(cfg):
        generations = ws.generations(source.name)
        if generations:
            manifest = ws.storage.read_json(f"{generations[-1].folder}/{MANIFEST}")
            pages += manifest["counts"]["fetched"]
    curated = Dataset.current(ws, cfg.tokenizer.dataset)
    curated_bytes = sum(
        pc.sum(pc.binary_length(batch.column("text"))).as_py() or 0
        for batch in curated.iter_batches(["text"])
    )
    shards = Dataset.current(ws, "shards").manifest.stats
    return {
        "pages_crawled": pages,
        "curated_documents": curated.manifest.docs_out,
        "curated_mb": round(curated_bytes / 1e6, 2),
        "train_tokens": shards["splits"]["train"]["tokens"],
        "val_bits_per_byte": run_status(cfg, ws).get("val_bits_per_byte"),
        "unigram_val_bits_per_byte": round(unigram_bits_per_byte(ws, shards), 4),
    }


def unigram_bits_per_byte(ws: Workspace, shards: dict[str, Any]) -> float:
    """Bits per byte of the val split under the train split's token frequencies (add-one)."""
    probs = unigram_probs(token_stream(ws, "train").astype("int64"), shards["vocab_size"], k=1.0)
    val = shards["splits"]["val"]
    return unigram_loss(probs, token_stream(ws, "val")) / math.log(2) * val["tokens"] / val["bytes"]
