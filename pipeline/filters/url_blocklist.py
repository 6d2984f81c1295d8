"""A URL blocklist: domains (with their subdomains) and URL substrings to drop."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pipeline.config import ConfigError, FilterConfig
from pipeline.filters.base import Document, Filter, Score, first_failure


class UrlBlocklist(Filter):
    """Drops documents whose host is a listed domain or a subdomain of one ("example.com"
    blocks "www.example.com", not "notexample.com"), or whose URL contains a listed substring
    (case-insensitive). No defaults: the lists are the user's (`domains`, `files` of one domain a
    line with "#" comments, as UT1 / Block List Project files, and `url_substrings`). Its
    scores are what matched, as text."""

    name = "url_blocklist"
    scores = ("domain", "substring")
    text_scores = frozenset(scores)

    def __init__(self, cfg: FilterConfig.UrlBlocklist):
        self.domains = frozenset(_domain(d) for d in cfg.domains) | frozenset(
            d for path in cfg.files for d in read_domains(path)
        )
        self.substrings = tuple(s.lower() for s in cfg.url_substrings)

    def score(self, doc: Document) -> dict[str, Score]:
        url = doc.row.get("url") or ""
        host = (doc.row.get("hostname") or _host(url)).lower().rstrip(".")
        labels = host.split(".")
        suffixes = (".".join(labels[i:]) for i in range(len(labels)))  # host, then parents
        lower_url = url.lower()
        return {
            "domain": next((s for s in suffixes if s in self.domains), None),
            "substring": next((s for s in self.substrings if s in lower_url), None),
        }

    def keep(
        self, scores: dict[str, Score], ignore: frozenset[str] = frozenset()
    ) -> tuple[bool, str | None]:
        return first_failure(
            ("domain", scores["domain"] is not None),
            ("substring", scores["substring"] is not None),
            ignore=ignore,
        )


def read_domains(path: str) -> list[str]:
    """The domains a blocklist file lists, one a line; blank lines and "#" comments skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"filter.url_blocklist.files: cannot read {path}: {exc}") from None
    return [_domain(line) for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or ""
    except ValueError:  # e.g. "http://[bad/"
        return ""


def _domain(entry: str) -> str:
    """ "Example.COM." / "*.example.com" / "http://example.com/x" -> "example.com"."""
    entry = entry.split("#", 1)[0].strip().lower()
    if "//" in entry:
        entry = _host(entry)
    return entry.removeprefix("*.").rstrip(".")
