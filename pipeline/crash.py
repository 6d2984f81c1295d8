"""Injectable crash points, so tests can kill a stage at chosen moments.

`TEXTMILL_CRASH=part.write:2,manifest.write:1` makes this process die (as SIGKILL would: no
cleanup, no `finally`) the 2nd time it reaches `part.write`, or the 1st time it reaches
`manifest.write`. Counts are per process. Points in the code:

- `part.write`      half-way through writing a part file (a shard of documents)
- `part.done`       after a part file is in place, before the marker that says it is complete
- `extract.record`  between two WARC records of one work unit
- `unit.done`       between two work units (input files or file chunks)
- `manifest.write`  half-way through writing a version's manifest
- `current.write`   after the manifest, before `CURRENT` moves to the new version
- `crawl.fetched`   a URL fetched, before any of its WARC records or frontier changes are written
- `warc.record`     half-way through writing one URL's WARC records
- `frontier.commit` inside a crawl frontier transaction, before it commits
- `crawl.url.done`  between two URLs of a crawl, once one is committed
- `crawl.manifest.write`  half-way through writing a crawl generation's manifest
- `gc.remove`       `textmill gc`: a version's (or generation's) manifest deleted, its files not
- `takedown.listed` `textmill takedown`: the list and the job written, no dataset rewritten yet
"""

from __future__ import annotations

import os
from collections import Counter
from functools import lru_cache

CRASH_ENV = "TEXTMILL_CRASH"
CRASH_EXIT_CODE = 86

_hits: Counter[str] = Counter()


def _targets() -> dict[str, int]:
    return _parse(os.environ.get(CRASH_ENV, ""))


@lru_cache
def _parse(spec: str) -> dict[str, int]:
    """Parsed once per value: crash points sit on hot paths (every crawled URL, every record)."""
    targets = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, count = item.partition(":")
        targets[name] = int(count or 1)
    return targets


def crash_point(name: str) -> None:
    """Die here if TEXTMILL_CRASH names this point and this is the chosen hit."""
    targets = _targets()
    if name not in targets:
        return
    _hits[name] += 1
    if _hits[name] == targets[name]:
        os._exit(CRASH_EXIT_CODE)
