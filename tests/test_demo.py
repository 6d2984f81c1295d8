"""The demo's site (pydoc's documentation of this environment), a short crawl of it, the demo's
clear errors, and the shipped demo and web configs. The whole demo takes minutes: it is run by
hand (`make demo`), not here."""

from __future__ import annotations

import math
import socket
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from warcio.archiveiterator import ArchiveIterator

from model.baselines import unigram_loss, unigram_probs
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.crawl.crawler import crawl, crawl_sources
from pipeline.crawl.fetch import Fetcher
from pipeline.crawl.robots import RobotsState, parse_robots, robots_url
from pipeline.demo import SiteError, pydoc_site, site_address
from pipeline.workspace import Workspace

CONFIGS = Path(__file__).parents[1] / "configs"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def demo_config(tmp_path: Path, port: int, max_pages: int) -> Path:
    """configs/demo.yaml with its seeds on `port`, a small budget, the workspace in tmp_path."""
    data = yaml.safe_load((CONFIGS / "demo.yaml").read_text())
    source = data["sources"][0]
    source["seeds"] = [url.replace(":8719/", f":{port}/") for url in source["seeds"]]
    source["max_pages"] = max_pages
    data["workspace"] = str(tmp_path / "ws")
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_pydoc_site_serves_this_environment_and_stops(tmp_path):
    port = free_port()
    stop = pytest.raises(RuntimeError, match="stop here")
    with stop, pydoc_site(port, log=tmp_path / "pydoc.log") as url:
        page = urllib.request.urlopen(f"{url}index.html", timeout=30).read().decode()
        # the standard library and this environment's own packages (PyYAML, a dependency)
        assert "Index of Modules" in page and 'href="json.html"' in page
        assert 'href="yaml.html"' in page
        raise RuntimeError("stop here")  # an error in the block stops the server too
    assert not listening(port)
    with pydoc_site(port):  # the port is free again
        assert listening(port)
    assert not listening(port)


def test_a_busy_port_is_a_clear_error_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)  # the demo sets it: undone afterwards
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        busy = pytest.raises(SiteError, match=f"127.0.0.1:{port}.*change the port")
        with busy, pydoc_site(port):
            pass
        result = CliRunner().invoke(main, ["demo", "-c", str(demo_config(tmp_path, port, 5))])
    assert result.exit_code == 1
    assert f"cannot serve the demo site on 127.0.0.1:{port}" in result.output
    assert not (tmp_path / "ws" / "crawl").exists()  # nothing was started


def test_a_short_crawl_of_the_pydoc_site(tmp_path):
    port = free_port()
    cfg = load_config(demo_config(tmp_path, port, max_pages=12))
    ws = Workspace(cfg.workspace_root)
    with pydoc_site(port):
        # robots.txt answers 200 with pydoc's HTML error page: no rules, so nothing is refused
        robots_answer = Fetcher(cfg.crawl).fetch(robots_url(f"http://127.0.0.1:{port}/"))
        robots = parse_robots(robots_answer.final_url, robots_answer, 0, cfg.crawl)
        assert robots_answer.content_type == "text/html"
        assert robots.state is RobotsState.PARSED
        assert robots.allowed(f"http://127.0.0.1:{port}/json.html", cfg.crawl.agents)
        summary = crawl(cfg, ws, crawl_sources(cfg)[0])
    assert summary["fetched"] >= 10 and "robots" not in summary["skipped"]
    assert summary["skipped"]["max_pages"] > 100  # the index links to every module
    pages = {}
    for name in summary["warc_files"]:
        path = Path(ws.storage.path(f"crawl/pydoc/{summary['generation']}/{name}"))
        with open(path, "rb") as fh:
            for record in ArchiveIterator(fh):
                if record.rec_type == "response":
                    content_type = record.http_headers.get_header("Content-Type")
                    url = record.rec_headers.get_header("WARC-Target-URI")
                    pages[url] = (content_type, record.content_stream().read())
    seeds = set(cfg.sources[0].seeds)
    assert seeds <= set(pages)
    followed = [url for url in pages if url not in seeds]  # found by following links
    assert len(followed) >= 5
    html = [body for content_type, body in pages.values() if content_type.startswith("text/html")]
    assert len(html) >= 10 and all(b"<html" in body for body in html)
    # the topics seed comes first, so its links fill this small budget: help topics, real prose
    topics = [body for url, (_, body) in pages.items() if "topic?key=" in url]
    assert len(topics) >= 5 and all(b"<title>Pydoc: TOPIC " in body for body in topics)


def test_the_demo_config_crawls_only_its_local_site():
    cfg = load_config(CONFIGS / "demo.yaml")
    assert site_address(cfg) == ("127.0.0.1", 8719)
    assert cfg.crawl.allow_networks == ["127.0.0.0/8"]
    assert cfg.train.time_budget_s and cfg.sources[0].max_pages >= 300
    assert "language" in cfg.filter.steps


def test_the_web_config_names_books_articles_and_web_seeds():
    cfg = load_config(CONFIGS / "web.yaml")
    by_kind = {source.kind: source for source in crawl_sources(cfg)}
    assert set(by_kind) == {"book", "article", "web"}
    assert by_kind["book"].catalog.endswith("pg_catalog.csv") and by_kind["book"].mirror
    assert by_kind["article"].feeds and by_kind["web"].seeds
    assert all(source.max_pages for source in cfg.sources)
    assert not cfg.crawl.allow_networks and cfg.crawl.min_delay_s >= 1


def test_the_unigram_baseline_of_uniform_tokens_is_log_vocab():
    tokens = np.tile(np.arange(8), 100)
    assert unigram_loss(unigram_probs(tokens, 8, k=1.0), tokens) == pytest.approx(math.log(8))
