"""bench/crawl.py and bench/crawl_hosts.py: the fixture sites, the judge of a request log, and
the servers' process, crawled by small stand-in clients (the crawl stage is not needed)."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urljoin

import requests
from protego import Protego

from bench import crawl, crawl_hosts
from tests.conftest import REPO, SHARED_DATA, needs_shared_data

PROSE = [
    f"Paragraph {i}: the mill turns slowly in the evening wind, and the miller counts the sacks "
    "of flour that wait by the door for the carts that come from the villages below the hill."
    for i in range(40)
]
_HREF = re.compile(r'href="([^"]+)"')


def _links(body: bytes) -> list[str]:
    return _HREF.findall(body.decode())


def test_a_site_has_its_pages_reachable_from_home_and_links_to_private_and_outside():
    site = crawl_hosts.site_pages(
        "Site 1",
        PROSE,
        60,
        "http://127.0.0.3:9/articles/0/",
        "http://127.0.0.9:9/",
        random.Random(0),
    )
    assert len(site) == 60
    depth = {"/": 0}
    queue = ["/"]
    private, external = set(), set()
    while queue:
        path = queue.pop(0)
        for href in _links(site[path]):
            if href.startswith("http"):
                external.add(href)
            elif href.startswith("/private/"):
                private.add(href)
            elif href not in depth:
                assert href in site, f"{path} links to {href}, which the site does not serve"
                depth[href] = depth[path] + 1
                queue.append(href)
    assert set(depth) == set(site)
    assert max(depth.values()) <= 10  # the benchmark's max_depth
    assert external == {"http://127.0.0.3:9/articles/0/", "http://127.0.0.9:9/"}
    assert len(private) == sum(p.startswith("/articles/") for p in site)


def _request(t: float, path: str, conditional: bool = False) -> dict:
    return {"t": t, "method": "GET", "path": path, "conditional": conditional}


def _host(origin: str, requests_: list[dict], in_scope: bool = True) -> dict:
    return {
        "origin": origin,
        "in_scope": in_scope,
        "pages": ["/", "/a/", "/b/"],
        "disallowed": ["/private/"],
        "requests": requests_,
    }


def test_judge_a_perfect_crawl_scores_the_bound():
    paths = ["/robots.txt", "/", "/a/", "/b/"]
    log = {
        "hosts": [
            _host("http://h1", [_request(10 + 0.2 * i, p) for i, p in enumerate(paths)]),
            _host("http://h2", [_request(10.01 + 0.2 * i, p) for i, p in enumerate(paths)]),
        ]
    }
    figures = crawl.judge(log, delay_s=0.2, tolerance_s=0.005)
    assert figures["hosts"] == 2 and figures["pages"] == 6 and figures["requests"] == 8
    assert figures["requests_by_kind"] == {"page": 6, "robots.txt": 2}
    assert figures["crawl_s"] == 0.81  # 10.0 to 10.61, plus the last request's 0.2 s slot
    assert figures["politeness_bound_pages_per_s"] == 10.0
    assert figures["ratio_to_bound"] == round(8 / 0.81 / 10, 4)
    assert figures["robots_violations"] == 0 and figures["politeness_violations"] == 0
    assert figures["pages_missed"] == 0 and figures["page_refetches"] == 0
    assert figures["min_gap_s"] == 0.2


def test_judge_counts_each_kind_of_violation():
    log = {
        "hosts": [
            _host(
                "http://h1",
                [
                    _request(0.0, "/private/1/"),  # disallowed and before robots.txt: one
                    _request(0.2, "/a/?x=1"),  # before robots.txt
                    _request(0.4, "/robots.txt"),
                    _request(0.597, "/"),  # 3 ms short: within the tolerance
                    _request(0.75, "/private/2/"),  # 47 ms short, and disallowed
                    _request(0.95, "/a/"),  # fetched a second time
                    _request(1.15, "/b/", conditional=True),  # a 304, not a page
                ],
            ),
            _host("http://outside", [_request(0.5, "/")], in_scope=False),
        ]
    }
    figures = crawl.judge(log, delay_s=0.2, tolerance_s=0.005)
    assert figures["robots_violations"] == 3
    assert figures["robots_violations_by_reason"] == {"disallowed": 2, "before_robots": 2}
    assert figures["politeness_violations"] == 1
    assert figures["min_gap_s"] == 0.153
    assert figures["scope_violations"] == 1
    assert figures["pages"] == 2 and figures["page_refetches"] == 1 and figures["pages_missed"] == 1
    assert figures["requests"] == 7  # the outside host's request is not one of them


def test_judge_a_host_that_never_asked_for_robots_txt_violates_with_every_request():
    log = {"hosts": [_host("http://h1", [_request(0.0, "/"), _request(0.3, "/a/")])]}
    assert crawl.judge(log, 0.2, 0.005)["robots_violations"] == 2


def test_the_run_config_is_one_the_pipeline_accepts(tmp_path: Path):
    from pipeline.config import load_config

    args = crawl.parse_args(["--hosts", "2"])
    origins = ["http://127.0.0.2:8001", "http://127.0.0.3:8002"]
    cfg = load_config(crawl.write_config(tmp_path, origins, args))
    (source,) = cfg.sources
    assert source.seeds == ["http://127.0.0.2:8001/", "http://127.0.0.3:8002/"]
    assert source.same_host and source.max_depth == 10
    assert cfg.crawl.min_delay_s == 0.2 and cfg.crawl.max_concurrency == 32
    assert cfg.crawl.allow_networks == ["127.0.0.0/8"]


# ----- the servers' process, with stand-in clients -----


def _polite_client(origin: str, delay_s: float) -> None:
    """robots.txt first, then every in-scope page it allows, one request per delay_s."""
    session = requests.Session()
    last = -delay_s

    def get(url: str) -> requests.Response:
        nonlocal last
        time.sleep(max(0.0, last + delay_s - time.monotonic()))
        last = time.monotonic()
        return session.get(url, timeout=10)

    robots = Protego.parse(get(origin + "/robots.txt").text)
    seen, queue = {origin + "/"}, [origin + "/"]
    while queue:
        page = get(queue.pop(0))
        for href in _links(page.content):
            url = urljoin(page.url, href)
            if url.startswith(origin + "/") and url not in seen and robots.can_fetch(url, "*"):
                seen.add(url)
                queue.append(url)


def _rude_client(origin: str, outside: str) -> None:
    """No robots.txt, no delay: a disallowed page, two pages and the outside site, all at once."""
    urls = [origin + "/private/0/", origin + "/", origin + "/articles/0/", outside + "/"]
    threads = [
        threading.Thread(target=requests.get, args=(u,), kwargs={"timeout": 10}) for u in urls
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@needs_shared_data
def test_servers_record_what_clients_did_and_the_judge_tells_polite_from_rude(tmp_path: Path):
    log_path = tmp_path / "requests.json"
    servers = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "bench" / "crawl_hosts.py"),
            f"--books={SHARED_DATA / 'gutenberg' / 'books'}",
            f"--log={log_path}",
            "--hosts=2",
            "--pages=8",
            "--latency=0.01",
            "--jitter=0.005",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        ready = json.loads(servers.stdout.readline())
        polite, rude = ready["origins"]
        _polite_client(polite, delay_s=0.05)
        _rude_client(rude, ready["outside"])
    finally:
        servers.stdin.close()
        assert servers.wait(timeout=30) == 0
    log = json.loads(log_path.read_text())
    by_origin = {h["origin"]: h for h in log["hosts"]}
    outside = by_origin[ready["outside"]]

    # a loaded 2-core machine delays some arrivals by several ms (a new connection, the handler
    # thread's start, the GIL), so this stand-in client, which spaces its starts exactly, gets
    # a wider tolerance than the benchmark's 5 ms
    good = crawl.judge({"hosts": [by_origin[polite]]}, delay_s=0.05, tolerance_s=0.02)
    assert good["pages"] == 8 and good["pages_missed"] == 0 and good["page_refetches"] == 0
    assert good["requests_by_kind"] == {"page": 8, "robots.txt": 1}
    assert good["robots_violations"] == 0 and good["politeness_violations"] == 0, good["gap_s"]
    assert good["ratio_to_bound"] > 0.5  # 9 requests at one per 50 ms, 10 ms answers

    bad = crawl.judge({"hosts": [by_origin[rude], outside]}, delay_s=0.05, tolerance_s=0.02)
    assert bad["robots_violations"] == 3  # none asked for robots.txt first
    assert bad["robots_violations_by_reason"]["disallowed"] == 1
    assert bad["politeness_violations"] == 2 and bad["min_gap_s"] < 0.02
    assert bad["scope_violations"] == 1


def test_read_warcs_counts_records_and_finds_a_broken_file(tmp_path: Path):
    from tests.helpers import article, write_warc

    generation = tmp_path / "crawl" / crawl.SOURCE_NAME / "20240101T000000Z"
    pages = [{"url": f"http://127.0.0.2/{i}", "body": article(f"Page {i}")} for i in range(3)]
    good = write_warc(generation / "a-00000.warc.gz", pages)
    figures = crawl.read_warcs(tmp_path)
    assert figures["files"] == 1 and figures["records"] == {"response": 3}
    assert figures["readable"] and figures["generations"] == 1 and figures["manifests"] == 0

    data = good.read_bytes()
    (generation / "a-00001.warc.gz").write_bytes(data[: len(data) - 40])  # a cut final record
    figures = crawl.read_warcs(tmp_path)
    assert not figures["readable"] and "a-00001.warc.gz" in figures["errors"][0]
