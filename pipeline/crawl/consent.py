"""Opt-out signals beyond robots.txt, and the license a page states.

A fetched page is skipped, with the reason recorded, when it opts out of text and data mining:
- `X-Robots-Tag` response header (Google's syntax: `noai, noimageai`, or scoped to an agent,
  `CCBot: noai`; a scope applies to the directives after it). Reason `x_robots_tag:<value>`.
- `<meta name="robots" content="...">`, and `<meta name="<agent>">` for each agent the config
  claims (`CrawlConfig.agents`). Reason `meta_robots:<value>`.
- The TDM Reservation Protocol (W3C Community Group final report, 2024): the
  `tdm-reservation: 1` header (`tdm_reservation:header`), `<meta name="tdm-reservation"
  content="1">` (`tdm_reservation:meta`), and the origin's `/.well-known/tdmrep.json`
  (`tdm_reservation:tdmrep.json`): a JSON array of `{"location": pattern, "tdm-reservation":
  0|1}`, where a pattern is a path with `*` wildcards and an optional `$` end anchor; the first
  rule whose location matches decides.

Which directives opt out is `CrawlConfig.opt_out_directives` (default noai, noindex, none:
`noai` is the de-facto "no AI training" value introduced by DeviantArt and adopted by other
platforms; noindex/none ask not to be kept at all; `noimageai` is about images only).

tdmrep.json is fetched once per origin like robots.txt (`TdmRepCache`: `lookup`, then fetch
`tdmrep_url(url)` and `record`). A file that is absent, unreadable or not valid JSON reserves
nothing (the page-level signals still apply); an unreachable one is asked for again after the
retry delay.

`page_license` returns the license a page states: an HTTP `Link: <...>; rel="license"`,
`<link rel="license">`, `<a rel="license">`, Creative Commons RDFa (`rel`/`property`
`cc:license`, `dc:license`, `dcterms:license`), or `<meta name="dcterms.license">` /
`DC.rights` / `license`: a URL or a name, or None.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import lxml.html
from requests.utils import parse_header_links

from pipeline.config import CrawlConfig
from pipeline.crawl.fetch import FetchResult, Outcome, retry_delay
from pipeline.crawl.robots import OriginCache, origin
from pipeline.crawl.urls import parse_html

TDMREP_PATH = "/.well-known/tdmrep.json"
# Google's X-Robots-Tag directives that take a value (`name: value`), so are not agent scopes
_VALUED_DIRECTIVES = {"max-snippet", "max-image-preview", "max-video-preview", "unavailable_after"}
_SCOPE = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*:\s*(.*)$")
_LICENSE_RELS = {"license", "cc:license", "dc:license", "dcterms:license", "dct:license"}
_LICENSE_META = {"dcterms.license", "dc.license", "dc.rights", "dcterms.rights", "license"}


def html_tree(body: bytes, charset: str | None = None) -> lxml.html.HtmlElement | None:
    """The page parsed leniently, in the encoding the HTML standard decides (`charset`: the
    Content-Type header's; see urls.parse_html); None for a body with no document in it."""
    return parse_html(body, charset)


def directives(value: str, agents: list[str]) -> set[str]:
    """The lower-case directives of an X-Robots-Tag or robots meta value that apply to us:
    unscoped ones, and those scoped to one of `agents`."""
    claimed = {a.lower() for a in agents}
    found: set[str] = set()
    scope = None
    for part in value.split(","):
        match = _SCOPE.match(part)
        if match and match.group(1).lower() not in _VALUED_DIRECTIVES:
            scope, part = match.group(1).lower(), match.group(2)
        if scope is None or scope in claimed:
            found |= _words(part)
    return found


def _words(text: str) -> set[str]:
    return {word for word in re.split(r"[\s,]+", text.lower()) if word}


def opt_out(
    result: FetchResult, tree: lxml.html.HtmlElement | None, cfg: CrawlConfig
) -> str | None:
    """The reason a fetched page opts out (see the module docstring), or None."""
    refused = {d.lower() for d in cfg.opt_out_directives}
    header = result.header("X-Robots-Tag")
    if header:
        hit = sorted(directives(header, cfg.agents) & refused)
        if hit:
            return f"x_robots_tag:{hit[0]}"
    if (result.header("tdm-reservation") or "").strip() == "1":
        return "tdm_reservation:header"
    if tree is None:
        return None
    meta_names = {"robots", *(a.lower() for a in cfg.agents)}
    for meta in tree.iter("meta"):
        name = (meta.get("name") or "").strip().lower()
        content = meta.get("content") or ""
        if name in meta_names:
            hit = sorted(_words(content) & refused)  # the tag's name is its only scope
            if hit:
                return f"meta_robots:{hit[0]}"
        elif name == "tdm-reservation" and content.strip() == "1":
            return "tdm_reservation:meta"
    return None


def page_license(result: FetchResult, tree: lxml.html.HtmlElement | None) -> str | None:
    """The license the page states (a URL or a name), or None."""
    for link in parse_header_links(result.header("Link") or ""):
        if "license" in link.get("rel", "").lower().split() and link.get("url"):
            return link["url"]
    if tree is None:
        return None
    # only the elements that can state a license, in document order (the filter runs in C)
    for element in tree.xpath("//*[@rel or @property] | //meta[@name]"):
        rels = f"{element.get('rel', '')} {element.get('property', '')}".lower().split()
        if _LICENSE_RELS.intersection(rels):
            value = element.get("href") or element.get("resource") or element.get("content")
            if value and value.strip():
                return value.strip()
        if element.tag == "meta" and (element.get("name") or "").lower() in _LICENSE_META:
            value = (element.get("content") or "").strip()
            if value:
                return value
    return None


def tdmrep_url(url: str) -> str:
    return origin(url) + TDMREP_PATH


@dataclass(frozen=True)
class TdmRep:
    """An origin's tdmrep.json rules: (location pattern, reserved) in file order."""

    rules: tuple[tuple[re.Pattern[str], bool], ...] = ()
    unreachable: bool = False

    def opt_out(self, url: str) -> str | None:
        """The skip reason if the first rule matching `url`'s path reserves it, else None."""
        path = url[len(origin(url)) :] or "/"
        for pattern, reserved in self.rules:
            if pattern.match(path):
                return "tdm_reservation:tdmrep.json" if reserved else None
        return None


def _location_pattern(location: str) -> re.Pattern[str]:
    anchored = location.endswith("$")
    body = ".*".join(re.escape(piece) for piece in location.rstrip("$").split("*"))
    return re.compile(body + ("$" if anchored else ""))


def parse_tdmrep(text: str) -> TdmRep:
    """The rules of a tdmrep.json document; a document that is not an array of rules with a
    string location reserves nothing."""
    try:
        data = json.loads(text)
    except ValueError:
        return TdmRep()
    if not isinstance(data, list):
        return TdmRep()
    rules = []
    for rule in data:
        if isinstance(rule, dict) and isinstance(rule.get("location"), str):
            location = rule["location"]
            location = location if location.startswith("/") else "/" + location
            reserved = str(rule.get("tdm-reservation", 0)).strip() == "1"
            rules.append((_location_pattern(location), reserved))
    return TdmRep(tuple(rules))


class TdmRepCache:
    """tdmrep.json per origin for one crawl; shared by the crawl's threads."""

    def __init__(self, cfg: CrawlConfig):
        self.cfg = cfg
        self._files: OriginCache[TdmRep] = OriginCache()

    def lookup(self, url: str, now: float | None = None) -> TdmRep | None:
        """The origin's rules, or None when `tdmrep_url(url)` must be fetched."""
        return self._files.get(origin(url), now)

    def record(self, url: str, result: FetchResult, now: float | None = None) -> TdmRep:
        if result.outcome is Outcome.FETCHED:
            rules = parse_tdmrep(tdmrep_text(result))
            return self._files.put(origin(url), rules, self.cfg.robots_ttl_s, now)
        if result.outcome is Outcome.RETRY:
            delay = retry_delay(1, result.retry_after_s, self.cfg) or self.cfg.retry_max_s
            return self._files.put(origin(url), TdmRep(unreachable=True), delay, now)
        return self._files.put(origin(url), TdmRep(), self.cfg.robots_ttl_s, now)

    def restore(self, url: str, text: str | None, age_s: float, now: float | None = None) -> TdmRep:
        """The file an earlier crawl run read `age_s` seconds ago (`tdmrep_text`; None: there
        was none), cached for what is left of `robots_ttl_s`."""
        rules = TdmRep() if text is None else parse_tdmrep(text)
        return self._files.put(origin(url), rules, max(self.cfg.robots_ttl_s - age_s, 0.001), now)


def tdmrep_text(result: FetchResult) -> str:
    """A fetched tdmrep.json as text (JSON is UTF-8, RFC 8259)."""
    return result.body.decode("utf-8", errors="replace").lstrip("\ufeff")
