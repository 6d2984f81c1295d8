"""Fetching one URL: a single attempt that always ends in a FetchResult, never an exception.

`Fetcher` is shared by the crawl's worker threads, which share its connection pools: one
kept-alive connection per host serves whichever worker fetches from it. One call to `fetch`:
- sends GET with the configured User-Agent, `Accept-Encoding: gzip, deflate`, no cookies, no
  proxies, and the validators of an earlier crawl (If-None-Match / If-Modified-Since) if given;
- follows redirects itself, up to `max_redirects`, checking every target with the safety rules
  (pipeline/crawl/safety.py: http(s) only, no private addresses, checked on the connection)
  and recording every hop;
- streams the body under caps: `max_bytes` as transferred, `max_decompressed_bytes` after
  gzip/deflate (a gzip bomb stops at the cap), `read_timeout_s` between two reads and
  `total_timeout_s` for the whole fetch (a server that drips a byte a second stops there); a
  fetch with `truncate` (robots.txt: RFC 9309 2.5 reads its first 500 KiB) keeps the first
  `max_bytes` instead of failing, with the warning `truncated`;
- refuses content types outside `content_types` before reading the body, and text that is
  binary (WHATWG's "binary data bytes" in its first KiB).

Outcomes: FETCHED (a 2xx body), NOT_MODIFIED (a 304: the page is unchanged, nothing to store
again), RETRY (transient: timeouts, connection errors and resets, 408, 429, 5xx; `retry_delay`
says when) and FAILED (permanent: other 4xx, unsafe targets, redirect loops, too many
redirects, too large, wrong content type, binary text, broken compression). A failure has a
short machine-readable `reason` and a human `detail`. Charset trouble is not a failure (the
extract stage sniffs the encoding) but is noted in `warnings`: `charset_missing`,
`charset_unknown`, `charset_mismatch`.

Each hop is an `Exchange` (pipeline/crawl/warcwriter.py): the request as sent (method, target,
headers, the time its bytes went to the socket, the peer address) and the response as received
(status line, headers, payload bytes as transferred: still content-encoded, with chunked
transfer coding removed), which is what a WARC request/response record pair holds.
"""

from __future__ import annotations

import codecs
import http.client
import random
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from enum import StrEnum
from urllib.parse import urljoin, urlsplit

import requests
from urllib3.exceptions import ProtocolError, ReadTimeoutError

from pipeline.config import CrawlConfig
from pipeline.crawl.safety import AddressPolicy, SafeAdapter, UnsafeTarget, check_url
from pipeline.crawl.warcwriter import Exchange

ACCEPT = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,text/plain;q=0.8,"
    "application/json;q=0.8,*/*;q=0.5"
)
REDIRECTS = {301, 302, 303, 307, 308}
TRANSIENT_STATUSES = {408, 429, 500, 502, 503, 504, 507, 509, 520, 521, 522, 523, 524}
READ_SIZE = 64 * 1024
SNIFF_BYTES = 1024
# WHATWG MIME sniffing: bytes that never occur in text ("binary data bytes")
_BINARY_BYTES = bytes([*range(0x00, 0x09), 0x0B, *range(0x0E, 0x1B), *range(0x1C, 0x20)])
_UNICODE_BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF16_BE, codecs.BOM_UTF16_LE)


REDIRECT_NOT_FOLLOWED = "redirect_not_followed"  # a FAILED reason: may_follow refused a hop
TRUNCATED = "truncated"  # a warning: the body is the first max_bytes of a longer one


class Outcome(StrEnum):
    FETCHED = "fetched"
    NOT_MODIFIED = "not_modified"
    RETRY = "retry"
    FAILED = "failed"


@dataclass
class FetchResult:
    url: str  # as asked for
    outcome: Outcome
    reason: str | None = None  # why it is RETRY or FAILED: "timeout", "http_503", ...
    detail: str = ""
    exchanges: list[Exchange] = field(default_factory=list)  # every hop, the final one last
    body: bytes = b""  # the final payload, content-decoded (FETCHED only)
    retry_after_s: float | None = None  # what the server asked for (429/503 Retry-After)
    warnings: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    redirect_target: str | None = None  # a redirect not followed (may_follow refused it)

    @property
    def final(self) -> Exchange | None:
        return self.exchanges[-1] if self.exchanges else None

    @property
    def final_url(self) -> str:
        return self.final.url if self.final else self.url

    @property
    def status(self) -> int | None:
        return self.final.status if self.final else None

    @property
    def transient(self) -> bool:
        return self.outcome is Outcome.RETRY

    def header(self, name: str) -> str | None:
        return self.final.header(name) if self.final else None

    @property
    def content_type(self) -> str | None:
        """The media type, lower case, without parameters."""
        media = (self.header("Content-Type") or "").split(";")[0].strip().lower()
        return media or None

    @property
    def charset(self) -> str | None:
        return _charset(self.header("Content-Type"))

    @property
    def etag(self) -> str | None:
        return self.header("ETag")

    @property
    def last_modified(self) -> str | None:
        return self.header("Last-Modified")


class _BodyError(Exception):
    def __init__(self, outcome: Outcome, reason: str, detail: str, truncated: str | None):
        super().__init__(detail)
        self.outcome, self.reason, self.detail, self.truncated = outcome, reason, detail, truncated


class Fetcher:
    """Fetches URLs under one CrawlConfig; safe to share between threads."""

    def __init__(self, cfg: CrawlConfig):
        self.cfg = cfg
        self.policy = AddressPolicy(cfg.allow_networks)
        # One adapter (urllib3's connection pools, which are thread-safe) for every worker
        # thread, so a host's requests reuse its kept-alive connection whichever worker sends
        # them; `pool_connections` hosts keep theirs. Requests go to it directly, without a
        # requests.Session: no cookies, no proxies (safety.py), redirects followed here.
        self._adapter = SafeAdapter(self.policy, pool_connections=256, max_retries=0)
        self._headers = {
            "User-Agent": cfg.user_agent,
            "Accept": ACCEPT,
            "Accept-Encoding": "gzip, deflate",
        }

    def close(self) -> None:
        self._adapter.close()

    def fetch(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        content_types: list[str] | None = None,
        max_bytes: int | None = None,
        may_follow: Callable[[str], str | None] | None = None,
        truncate: bool = False,
    ) -> FetchResult:
        """One attempt at `url`. `etag`/`last_modified` (from an earlier crawl) make it
        conditional; `content_types` (empty: any) and `max_bytes` override the config for this
        call (robots.txt, say); with `truncate`, a longer body is cut at `max_bytes` (decoded)
        and FETCHED with the warning `truncated`. `may_follow(target)` says why a redirect
        must not be followed (robots.txt, scope) or None: a refused one ends the fetch as
        FAILED with reason `redirect_not_followed` and the target in `redirect_target`, for the
        crawler to queue it as a URL of its own. Never raises for anything the network or the
        server does."""
        started = time.monotonic()
        result = FetchResult(url, Outcome.FAILED)
        try:
            self._follow(
                url,
                result,
                started,
                etag,
                last_modified,
                content_types,
                max_bytes,
                may_follow,
                truncate,
            )
        except _BodyError as exc:
            result.outcome, result.reason, result.detail = exc.outcome, exc.reason, exc.detail
        result.elapsed_s = time.monotonic() - started
        return result

    def _follow(
        self,
        url: str,
        result: FetchResult,
        started: float,
        etag: str | None,
        last_modified: str | None,
        content_types: list[str] | None,
        max_bytes: int | None,
        may_follow: Callable[[str], str | None] | None,
        truncate: bool,
    ) -> None:
        cfg = self.cfg
        deadline = started + cfg.total_timeout_s
        seen = {url}
        current = url
        for hop in range(cfg.max_redirects + 1):
            headers = {}
            if hop == 0 and etag:
                headers["If-None-Match"] = etag
            if hop == 0 and last_modified:
                headers["If-Modified-Since"] = last_modified
            response = self._send(current, headers, deadline)
            with response:
                status = response.status_code
                location = response.headers.get("Location") if status in REDIRECTS else None
                if location is None and 200 <= status < 300:
                    allowed = cfg.content_types if content_types is None else content_types
                    _check_type(response, allowed, max_bytes, cfg, truncate)
                exchange, body, cut = self._read(response, deadline, max_bytes, truncate)
            result.exchanges.append(exchange)
            if location is not None:
                target = urljoin(current, location.strip())
                if target in seen:
                    raise _BodyError(Outcome.FAILED, "redirect_loop", f"{target} again", None)
                refused = may_follow(target) if may_follow else None
                if refused:
                    result.redirect_target = target
                    raise _BodyError(
                        Outcome.FAILED, REDIRECT_NOT_FOLLOWED, f"{target}: {refused}", None
                    )
                seen.add(target)
                current = target
                continue
            _classify(result, exchange, body)
            if cut:
                result.warnings.append(TRUNCATED)
            return
        raise _BodyError(
            Outcome.FAILED, "too_many_redirects", f"more than {cfg.max_redirects}", None
        )

    def _send(self, url: str, headers: dict[str, str], deadline: float) -> requests.Response:
        """The response, its body not read yet."""
        try:
            check_url(url)
            # only the parts a GET without cookies, auth or body needs
            prepared = requests.PreparedRequest()
            prepared.prepare_method("GET")
            prepared.prepare_url(url, None)
            prepared.prepare_headers({**self._headers, **headers})
            # Sent explicitly so that the recorded request headers are the ones sent.
            prepared.headers["Host"] = urlsplit(prepared.url).netloc.rsplit("@", 1)[-1]
            remaining = max(deadline - time.monotonic(), 0.001)
            timeout = (
                min(self.cfg.connect_timeout_s, remaining),
                min(self.cfg.read_timeout_s, remaining),
            )
            response = self._adapter.send(prepared, stream=True, timeout=timeout)
        except UnsafeTarget as exc:
            raise _BodyError(Outcome.FAILED, exc.reason, str(exc), None) from None
        except requests.Timeout as exc:
            raise _BodyError(Outcome.RETRY, "timeout", f"{url}: {exc}", None) from None
        except requests.ConnectionError as exc:
            raise _BodyError(Outcome.RETRY, "connection", f"{url}: {exc}", None) from None
        except (requests.RequestException, ValueError) as exc:  # invalid URL, bad header
            raise _BodyError(Outcome.FAILED, "invalid_request", f"{url}: {exc}", None) from None
        return response

    def _read(
        self, response: requests.Response, deadline: float, max_bytes: int | None, truncate: bool
    ) -> tuple[Exchange, bytes, bool]:
        """The response as an Exchange, its content-decoded body and whether that was cut at
        the cap (`truncate`); a body that breaks a cap otherwise, or the connection, raises
        _BodyError."""
        url = response.request.url or ""
        raw = response.raw
        version = {10: "HTTP/1.0", 11: "HTTP/1.1"}.get(raw.version, "HTTP/1.1")
        connection = raw.connection  # the checked connection (safety.py), until the body is read
        exchange = Exchange(
            url=url,
            status=response.status_code,
            reason=response.reason or http.client.responses.get(response.status_code, ""),
            response_headers=list(raw.headers.items()),
            request_headers=list(response.request.headers.items()),
            method=response.request.method or "GET",
            request_target=response.request.path_url,
            http_version=version,
            ip_address=getattr(connection, "peer_address", None),
            sent_at=getattr(connection, "sent_at", None),
        )
        limit = max_bytes or self.cfg.max_bytes
        # a larger transfer cap (the book catalog's) raises the decompressed one with it; a
        # truncated body is cut at the cap once decoded (what is parsed is what counts)
        decoded_limit = limit if truncate else max(self.cfg.max_decompressed_bytes, limit)
        try:
            payload, body, cut = _read_body(response, limit, decoded_limit, deadline, truncate)
        except _BodyError as exc:
            exc.detail = f"{url}: {exc.detail}"
            raise
        return replace(exchange, payload=payload), body, cut


def _check_type(
    response: requests.Response,
    allowed: list[str],
    max_bytes: int | None,
    cfg: CrawlConfig,
    truncate: bool,
) -> None:
    """Refuse a 2xx response by its headers, before reading its body (by its length only when
    the body is not to be cut at the cap)."""
    url = response.request.url
    media = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if media and allowed and media not in allowed:
        raise _BodyError(Outcome.FAILED, "content_type", f"{url}: {media} is not fetched", None)
    length = response.headers.get("Content-Length", "")
    limit = max_bytes or cfg.max_bytes
    if not truncate and length.isdigit() and int(length) > limit:
        detail = f"{url}: Content-Length {length} > {limit}"
        raise _BodyError(Outcome.FAILED, "too_large", detail, None)


def _read_body(
    response: requests.Response,
    max_bytes: int,
    max_decoded: int,
    deadline: float,
    truncate: bool = False,
) -> tuple[bytes, bytes, bool]:
    """(payload as transferred, payload content-decoded, cut), read under the caps. With
    `truncate`, a cap reached ends the read (cut) instead of failing the fetch."""
    encoding = (response.headers.get("Content-Encoding") or "identity").strip().lower()
    decoder = _decoder(encoding)
    raw, decoded = bytearray(), bytearray()
    cut = False
    while not cut:
        if time.monotonic() > deadline:
            raise _BodyError(Outcome.RETRY, "too_slow", "total_timeout_s reached", "time")
        try:
            # read1: one receive at most, so a slow drip returns here to meet the deadline
            data = response.raw.read1(READ_SIZE, decode_content=False)
        except (ReadTimeoutError, TimeoutError) as exc:
            raise _BodyError(Outcome.RETRY, "timeout", f"reading the body: {exc}", "time") from None
        except (ProtocolError, OSError, http.client.HTTPException) as exc:
            raise _BodyError(
                Outcome.RETRY, "connection_reset", f"body cut short: {exc}", "disconnect"
            ) from None
        if not data:
            break
        if len(raw) + len(data) > max_bytes:
            if not truncate:
                raise _BodyError(
                    Outcome.FAILED, "too_large", f"body over {max_bytes} bytes", "length"
                )
            data, cut = data[: max_bytes - len(raw)], True
        raw += data
        if decoder is None:
            continue
        try:
            decoded += decoder.decompress(data, max_decoded + 1 - len(decoded))
        except zlib.error as exc:
            raise _BodyError(Outcome.FAILED, "bad_encoding", f"{encoding}: {exc}", None) from None
        if len(decoded) > max_decoded or decoder.unconsumed_tail:
            if not truncate:
                raise _BodyError(
                    Outcome.FAILED,
                    "decompressed_too_large",
                    f"{encoding} body inflates past {max_decoded} bytes",
                    "length",
                )
            del decoded[max_decoded:]
            cut = True
    if decoder is None:
        return bytes(raw), bytes(raw), cut
    if raw and not decoder.eof and not cut:
        raise _BodyError(Outcome.FAILED, "bad_encoding", f"{encoding} stream ends early", None)
    return bytes(raw), bytes(decoded), cut


def _decoder(encoding: str) -> zlib._Decompress | None:
    if encoding in ("identity", ""):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj(32 + zlib.MAX_WBITS)  # zlib-wrapped (or gzip): what is sent
    raise _BodyError(Outcome.FAILED, "bad_encoding", f"Content-Encoding {encoding!r}", None)


def _classify(result: FetchResult, exchange: Exchange, body: bytes) -> None:
    status = exchange.status
    if status == 304:
        result.outcome = Outcome.NOT_MODIFIED
        return
    if 200 <= status < 300:
        result.outcome, result.body = Outcome.FETCHED, body
        media = result.content_type
        if media and (media.startswith("text/") or media.endswith(("+xml", "/xml"))):
            _check_text(result, body)
        return
    result.reason, result.detail = f"http_{status}", f"{exchange.url}: {exchange.status_line}"
    if status in TRANSIENT_STATUSES or status >= 500:
        result.outcome = Outcome.RETRY
        result.retry_after_s = parse_retry_after(exchange.header("Retry-After"))
    else:
        result.outcome = Outcome.FAILED


def _check_text(result: FetchResult, body: bytes) -> None:
    """Binary bytes in a text type fail the fetch; charset trouble is only noted."""
    head = body[:SNIFF_BYTES]
    # translate's deletion runs in C: the head is binary if deleting those bytes shortens it
    if not head.startswith(_UNICODE_BOMS) and len(head.translate(None, _BINARY_BYTES)) < len(head):
        result.outcome, result.body = Outcome.FAILED, b""
        result.reason = "binary_body"
        result.detail = f"{result.final_url}: {result.content_type} but binary bytes in its start"
        return
    charset = result.charset
    if charset is None:
        result.warnings.append("charset_missing")
        return
    try:
        body.decode(charset)
    except LookupError:
        result.warnings.append("charset_unknown")
    except UnicodeDecodeError:
        result.warnings.append("charset_mismatch")


def _charset(content_type: str | None) -> str | None:
    for param in (content_type or "").split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip(' "'):
            return value.strip(' "').lower()
    return None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP-date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def retry_delay(
    attempt: int,
    retry_after_s: float | None,
    cfg: CrawlConfig,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds to wait after failed attempt number `attempt` (1 = the first), or None to give
    up on the URL in this crawl (out of attempts, or the server asks for longer than
    `retry_after_max_s`). Exponential backoff `retry_base_s * 2**(attempt-1)` capped at
    `retry_max_s`, with equal jitter (half fixed, half random, so the delay never shrinks
    from one attempt to the next), and never less than Retry-After."""
    if attempt >= cfg.max_attempts:
        return None
    if retry_after_s is not None and retry_after_s > cfg.retry_after_max_s:
        return None
    backoff = min(cfg.retry_max_s, cfg.retry_base_s * 2 ** (attempt - 1))
    jittered = backoff / 2 + (rng or random).uniform(0, backoff / 2)
    return max(jittered, retry_after_s or 0.0)
