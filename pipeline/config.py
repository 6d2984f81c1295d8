"""Run configuration: one YAML file describes a run, validated by pydantic.

Errors name the file, the key and the problem. Command-line overrides (`--set extract.timeout_s=2`)
are applied to the parsed YAML before validation, so they are checked exactly like the file.
A key given twice in one mapping is an error (YAML readers would keep the last one); numbers
must be finite; the model's shape has upper bounds (TrainConfig says why).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

SourceKind = Literal["web", "article", "book"]
# The stages whose output is a document dataset, in their default order.
DOCUMENT_STAGES = ("extract", "clean", "dedup", "filter")
# A name that becomes a folder in the workspace (a run, an eval set): one plain path component,
# so that it cannot climb out (`..`) or name a hidden file.
FOLDER_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
FOLDER_NAME_RULE = "letters, digits, '_', '.' and '-', starting with a letter or digit"


def is_folder_name(name: str) -> bool:
    return re.match(FOLDER_NAME, name) is not None


def _once_each(names: list[str], rule: str) -> list[str]:
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"{rule}, repeated: {', '.join(repeated)}")
    return names


class ConfigError(ValueError):
    """A run config that cannot be used; the message says which file, key and problem."""


class Section(BaseModel):
    """Base for config sections: unknown keys are errors (a typo must not pass silently), and
    so are infinite and NaN numbers: no setting means "no limit" by .inf (None does, where a
    setting can be off), and a NaN threshold would compare false with everything."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    def digest(self) -> str:
        """Digest of the section's values, the part of a stage version that config decides."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class SourceConfig(Section):
    """Where documents come from. `warc` lists existing WARC/ARC files and `documents` existing
    document files (JSONL, JSONL.gz or Parquet; paths or globs, relative to the config file),
    whose text and id fields `text_key` and `id_key` name (datatrove's reader options); crawled
    sources add their generations under `<root>/crawl/<name>/`."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    kind: SourceKind = "web"
    warc: list[str] = Field(default_factory=list)
    documents: list[str] = Field(default_factory=list)
    text_key: str = Field(default="text", min_length=1)  # documents: the field holding the text
    id_key: str = Field(default="id", min_length=1)  # documents: the field holding the id
    # what `textmill run crawl` fetches for this source (pipeline/crawl/):
    seeds: list[str] = Field(default_factory=list)  # web: start pages; links followed in scope
    feeds: list[str] = Field(default_factory=list)  # article: RSS/Atom/JSON feeds
    sitemaps: list[str] = Field(default_factory=list)  # article: sitemaps (robots.txt adds more)
    catalog: str | None = None  # book: URL of Project Gutenberg's pg_catalog.csv
    mirror: str | None = None  # book: base URL of the mirror the texts are fetched from
    languages: list[str] = Field(default_factory=list)  # book: catalog languages, e.g. ["en"]
    subjects: list[str] = Field(default_factory=list)  # book: subject substrings (any matches)
    ids: list[int] = Field(default_factory=list)  # book: these ebook numbers only
    # scope and limits of a crawl of this source
    same_host: bool = True  # follow links only to the hosts of the seeds / feeds / sitemaps
    url_prefixes: list[str] = Field(default_factory=list)  # and only under these, if given
    allow_patterns: list[str] = Field(default_factory=list)  # regexes a URL must match (any)
    deny_patterns: list[str] = Field(default_factory=list)  # regexes that exclude a URL
    max_pages: int | None = Field(default=None, ge=1)  # per crawl run (books: books)
    max_pages_per_host: int | None = Field(default=None, ge=1)
    max_depth: int = Field(default=5, ge=0)  # link hops from a seed


class ExtractConfig(Section):
    """The extract stage: WARC responses to documents with trafilatura.

    Defaults follow trafilatura's own evaluation setup (comments off, tables on, fallbacks on),
    under which it scores F1 0.925 on its benchmark."""

    fast: bool = False  # True skips trafilatura's fallback extractors (faster, ~0.5 F1 points less)
    include_comments: bool = False
    include_tables: bool = True
    favor_precision: bool = False
    favor_recall: bool = False
    timeout_s: float = Field(default=20.0, gt=0)  # per page
    max_page_mb: float = Field(default=16.0, gt=0)  # larger payloads are rejected, not parsed
    min_text_chars: int = Field(default=1, ge=0)  # shorter extractions are "empty_extraction"
    generation_window: int | None = Field(default=None, ge=1)  # newest N generations; None = all


class CrawlConfig(Section):
    """The crawl stage (pipeline/crawl/): polite fetching into WARC generations.

    Defaults and where they come from: Googlebot reads the first 15 MiB of a page; Scrapy's
    download timeout is 180 s (ours is shorter: a page that slow is retried later); RFC 9309
    lets a robots.txt be cached for up to 24 h and asks parsers to read at least 500 KiB of it;
    one request in flight per host and 1 s between two starts is the common polite default
    (Heritrix, Scrapy's AutoThrottle floor); a crawl run waits for a Crawl-delay up to 30 s, as
    Apache Nutch does (`max_crawl_delay_s`). Retries: exponential backoff with equal jitter
    (AWS architecture blog, "Exponential Backoff And Jitter"), never sooner than Retry-After."""

    # who we are: a product token, a version and a contact URL
    user_agent: str = "textmill/0.1 (+https://github.com/textmill/textmill)"
    # robots.txt groups (and agent-scoped X-Robots-Tag / meta) we obey besides `*`; a URL is
    # fetched only if every one allows it. Claim AI crawlers' tokens (e.g. CCBot, GPTBot) here
    # to honour what sites ask of them. Empty: the user agent's product token ("textmill").
    robots_agents: list[str] = Field(default_factory=list)
    robots_ttl_s: float = Field(default=86400.0, gt=0)  # RFC 9309: cache at most 24 h
    robots_max_bytes: int = Field(default=512 * 1024, ge=1)  # RFC 9309: parse >= 500 KiB
    # only these networks may be reached when they are private, loopback, link-local, ...
    allow_networks: list[str] = Field(default_factory=list)  # e.g. ["127.0.0.0/8"] for tests
    # fetching
    connect_timeout_s: float = Field(default=10.0, gt=0)
    read_timeout_s: float = Field(default=30.0, gt=0)  # longest wait for the next bytes
    total_timeout_s: float = Field(default=120.0, gt=0)  # whole fetch, redirects included
    max_redirects: int = Field(default=5, ge=0)  # RFC 9309 asks for at least 5 (robots.txt)
    max_bytes: int = Field(default=15 * 2**20, ge=1)  # as transferred (Googlebot: 15 MiB)
    max_decompressed_bytes: int = Field(default=64 * 2**20, ge=1)  # after gzip/deflate
    # a book source's catalog (pg_catalog.csv was ~14 MB in 2025 and grows), transferred and
    # decompressed
    catalog_max_bytes: int = Field(default=128 * 2**20, ge=1)
    content_types: list[str] = Field(
        default_factory=lambda: [
            "text/html",
            "application/xhtml+xml",
            "text/plain",
            "application/xml",
            "text/xml",
            "application/rss+xml",
            "application/atom+xml",
            "application/rdf+xml",
            "application/feed+json",
            "application/json",
            "text/csv",  # Project Gutenberg's catalog (pg_catalog.csv)
            "application/gzip",  # gzipped sitemaps
            "application/x-gzip",
        ]
    )
    # retries of transient failures (timeouts, connection errors, 408, 429, 5xx)
    max_attempts: int = Field(default=4, ge=1)  # first try included
    retry_base_s: float = Field(default=2.0, gt=0)  # the backoff doubles from this ...
    retry_max_s: float = Field(default=300.0, gt=0)  # ... up to this
    retry_after_max_s: float = Field(default=3600.0, gt=0)  # a longer Retry-After: next crawl
    # politeness
    min_delay_s: float = Field(default=1.0, ge=0)  # between two request starts on one host
    max_per_host: int = Field(default=1, ge=1)  # requests in flight per host
    max_concurrency: int = Field(default=16, ge=1)  # requests in flight in all
    # a host that answers slowly waits this many times its last response time between two
    # starts (Heritrix waits 5x; 2x keeps a slow host's load at most half of its time)
    latency_factor: float = Field(default=2.0, ge=0)
    # the longest robots.txt Crawl-delay (or Request-rate interval) a crawl run waits between two
    # requests to a host. A host asking for more is not hurried: it gets one request per
    # generation once its delay has passed (its robots.txt and tdmrep.json are kept for that),
    # and its other URLs wait for the next generation, skipped with reason `crawl_delay`. 30 s is
    # Apache Nutch's fetcher.max.crawl.delay (nutch-default.xml), past which Nutch skips the
    # host's pages; Heritrix honours up to 300 s and waits only that long beyond
    # (DispositionProcessor.respectCrawlDelayUpToSeconds); Bing honours Crawl-delay and suggests
    # 5-10 s (Bing Webmaster blog, "Crawl delay and the Bing crawler, MSNBot", 2009); Google
    # ignores it (Search Central, robots.txt spec) and Scrapy does not apply it (issue #892)
    max_crawl_delay_s: float = Field(default=30.0, gt=0)
    # output: WARC files rotate at this size (WARC 1.1, annex C: 1 GB)
    warc_max_mb: float = Field(default=1000.0, gt=0)
    # which sources `textmill run crawl` crawls (names); empty: every source with something
    # to crawl (seeds, feeds, sitemaps or a catalog)
    sources: list[str] = Field(default_factory=list)
    # consent: opt-out signals beyond robots.txt (pipeline/crawl/consent.py)
    consent: bool = True
    # X-Robots-Tag / <meta name=robots> values that skip a page; noimageai is left out by
    # default because it only reserves images and this crawler keeps text
    opt_out_directives: list[str] = Field(default_factory=lambda: ["noai", "noindex", "none"])
    tdmrep: bool = True  # fetch /.well-known/tdmrep.json per origin

    @field_validator("allow_networks")
    @classmethod
    def _networks_parse(cls, networks: list[str]) -> list[str]:
        import ipaddress

        for network in networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"{network!r} is not a CIDR network such as 10.0.0.0/8") from None
        return networks

    @model_validator(mode="after")
    def _delay_cap_above_the_floor(self) -> CrawlConfig:
        if self.max_crawl_delay_s < self.min_delay_s:
            raise ValueError(
                f"max_crawl_delay_s {self.max_crawl_delay_s} < min_delay_s {self.min_delay_s}:"
                " every host would wait for the next generation"
            )
        return self

    @property
    def agents(self) -> list[str]:
        """The robots.txt tokens this crawler answers to."""
        return self.robots_agents or [self.user_agent.split("/")[0].strip()]


class CleanConfig(Section):
    """The clean stage (pipeline/clean.py): Unicode repair, line boilerplate, PII scrubbing.
    What each boilerplate rule removes, and where the defaults come from, is in that module."""

    dataset: str = "extract"  # the document stage it reads
    fix_mojibake: bool = True  # ftfy's encoding repair ("cafÃ©" -> "café")
    unicode_form: Literal["NFC", "NFKC", "NFD", "NFKD"] | None = "NFC"  # None: left as is
    boilerplate: bool = True  # drop boilerplate lines of web pages and articles (never books)
    boilerplate_skip: list[
        Literal["javascript", "cookies", "legal", "lorem_ipsum", "share", "navigation", "link_list"]
    ] = Field(default_factory=list)  # rules not to apply
    scrub_email: bool = True
    scrub_ip: bool = True  # public addresses only: private, loopback and reserved ones stay
    scrub_phone: bool = True
    email_placeholder: str = "<EMAIL>"
    ip_placeholder: str = "<IP_ADDRESS>"
    phone_placeholder: str = "<PHONE_NUMBER>"
    min_words: int = Field(default=20, ge=0)  # shorter documents are dropped as "too_short"


class DedupConfig(Section):
    """The dedup stage (pipeline/dedup.py): exact, MinHash near-duplicate and paragraph dedup.

    Defaults and where they come from: MinHash over word 5-grams with 14 bands x 8 rows (112
    permutations) as datatrove's MinhashConfig, whose LSH threshold (1/bands)^(1/rows) is 0.72
    (`threshold`); seed 1 as datasketch's default. `min_similarity` 0.70 and `num_perm` 256 are
    ours: a candidate pair whose MinHash-estimated Jaccard is below min_similarity is not joined
    (None: every band collision joins, as datatrove does), and the estimate uses num_perm values
    (the bands use the first bands x rows of them). On bench/curate.py's 10,000 original/copy
    pairs spread evenly over Jaccard 0.5-0.95 (truth: Jaccard >= 0.719), pair precision/recall
    with 112 values were: None 0.77/0.93, 0.68 0.87/0.92, 0.70 0.89/0.91, 0.71 0.91/0.90, 0.72
    0.92/0.89 (the estimate's noise near the threshold, about 0.04, keeps both from 0.92); with
    256 values at 0.70: 0.92/0.92, for about 1 s more signing per 20,000 documents.
    `paragraph_min_docs` 2 is Dolma's paragraph dedup (a paragraph is a duplicate once an
    earlier document had it). `hard_wrapped_kinds` ["book"] as the filter stage's: there a
    paragraph is a block between blank lines, not a line. `paragraph_min_words` 10 and
    `paragraph_min_chars` 50 are ours, the size a run of recurring paragraphs needs to be
    removed: the shortest boilerplate run of Dolma's fixture is a five-link menu of 12 words and
    70 characters ("PPAA Home" ... "Receive Care"), while the longest paragraph that two of the
    ten Gutenberg books in tests/test_dedup.py share is 4 words and 19 characters ('"What do you
    mean?"'); short recurring lines (chapter numerals, "Yes.", "* * * * *", "[Illustration]")
    are language, and 10 words is about half a sentence of prose. Both must hold: the
    characters stop a run of numerals or single letters from passing on its word count."""

    dataset: str = "clean"  # the document stage it reads
    # exact: one document per normalized text (pipeline/dedup.py says how it is normalized)
    exact: bool = True
    exact_include_url: bool = False  # the key is URL + text: the same text at two URLs stays
    # near: MinHash LSH
    near: bool = True
    ngram: int = Field(default=5, ge=1)  # words per shingle
    bands: int = Field(default=14, ge=1)
    rows: int = Field(default=8, ge=1)
    # set: bands x rows are chosen by datasketch for this Jaccard threshold (its optimum, with
    # false positives and negatives weighted equally, within num_perm values), not the above
    lsh_threshold: float | None = Field(default=None, gt=0, lt=1)
    min_similarity: float | None = Field(default=0.70, ge=0, le=1)
    num_perm: int = Field(default=256, ge=1)  # MinHash values; at least bands x rows
    seed: int = Field(default=1, ge=0)
    # which document of a cluster stays: earliest generation, then this order, then one with
    # no Gutenberg boilerplate left, then longest once stripped (pipeline/dedup.py)
    source_priority: list[SourceKind] = Field(default_factory=lambda: ["book", "article", "web"])
    # paragraphs that recur across documents: kept once, removed from the others
    paragraphs: bool = True
    paragraph_min_docs: int = Field(default=2, ge=2)  # kept documents it must appear in
    # kinds whose paragraph is a block between blank lines (hard-wrapped); a line for the rest
    hard_wrapped_kinds: list[SourceKind] = Field(default_factory=lambda: ["book"])
    # a run of adjacent recurring paragraphs (a block alone) is removed only when this long
    paragraph_min_words: int = Field(default=10, ge=0)
    paragraph_min_chars: int = Field(default=50, ge=0)
    # the reduce step groups bucket keys on disk, one partition at a time in memory
    max_partition_rows: int = Field(default=4_000_000, ge=1)  # 16 bytes a row
    temp_dir: str | None = None  # local folder for those partitions; None: the system's

    @model_validator(mode="after")
    def _enough_values_for_the_bands(self) -> DedupConfig:
        bands, rows = self.lsh
        if self.num_perm < bands * rows:
            raise ValueError(f"num_perm {self.num_perm} < bands x rows ({bands * rows})")
        return self

    @property
    def lsh(self) -> tuple[int, int]:
        """(bands, rows) of the LSH index."""
        if self.lsh_threshold is None:
            return self.bands, self.rows
        return _optimal_lsh(self.lsh_threshold, self.num_perm)

    @property
    def threshold(self) -> float:
        """The Jaccard similarity at which the LSH S-curve is steepest, (1/bands)^(1/rows)."""
        bands, rows = self.lsh
        return (1 / bands) ** (1 / rows)


@lru_cache
def _optimal_lsh(threshold: float, num_perm: int) -> tuple[int, int]:
    """datasketch's choice of (bands, rows) for a threshold, as MinHashLSH makes it."""
    from datasketch.lsh import _optimal_param  # imports scipy: only when asked

    bands, rows = _optimal_param(threshold, num_perm, 0.5, 0.5)
    return int(bands), int(rows)


class FilterConfig(Section):
    """The filter stage (pipeline/filter.py, filters in pipeline/filters/).

    `steps` are applied in order; a document stops at the first that drops it. Each step has
    its own section named like it; each filter's docstring says where its defaults come from."""

    class Step(Section):
        """Settings every filter has: source kinds it passes unscored, rules (named by their
        score) it does not apply to a source kind, and whose decisions it reproduces.

        `compat`: "textmill" (the default) decides as the filter's docstring says; "datatrove"
        as datatrove 0.10's filter of the same name, where they differ on purpose (each
        filter's docstring lists how). datatrove applies every rule to every document and
        reads books line by line: to reproduce its decisions also set `ignore_rules: {}` here
        and the stage's `hard_wrapped_kinds: []` (bench/curate.py does)."""

        skip_kinds: list[SourceKind] = Field(default_factory=list)
        ignore_rules: dict[SourceKind, list[str]] = Field(default_factory=dict)
        compat: Literal["textmill", "datatrove"] = "textmill"

    class Language(Step):
        """fastText lid.176 language ID; 0.65 as datatrove's LanguageFilter and DCLM."""

        languages: list[str] = Field(default_factory=lambda: ["en"])  # empty: any language
        min_score: float = Field(default=0.65, ge=0, le=1)
        model: str | None = None  # None: the bundled lid.176.ftz (pipeline/langid.py)

    class GopherQuality(Step):
        """Rae et al. 2021 (Gopher) quality rules, datatrove's GopherQualityFilter defaults.
        The word-count bounds were made for web pages: a novel has more than 100,000 words."""

        ignore_rules: dict[SourceKind, list[str]] = Field(
            default_factory=lambda: {"book": ["words"]}
        )

        min_doc_words: int | None = 50
        max_doc_words: int | None = 100_000
        min_avg_word_length: float | None = 3
        max_avg_word_length: float | None = 10
        max_symbol_word_ratio: float | None = 0.1  # "#" and ellipses per word
        max_bullet_lines_ratio: float | None = 0.9
        max_ellipsis_lines_ratio: float | None = 0.3
        min_alpha_words_ratio: float | None = 0.8  # datatrove's max_non_alpha_words_ratio
        min_stop_words: int | None = 2
        stop_words: list[str] = Field(
            default_factory=lambda: ["the", "be", "to", "of", "and", "that", "have", "with"]
        )

    class GopherRepetition(Step):
        """Gopher repetition rules (Rae et al. 2021, table A1), as datatrove's defaults."""

        dup_line_frac: float | None = 0.3
        dup_para_frac: float | None = 0.3
        dup_line_char_frac: float | None = 0.2
        dup_para_char_frac: float | None = 0.2
        top_n_grams: dict[int, float] = Field(default_factory=lambda: {2: 0.2, 3: 0.18, 4: 0.16})
        dup_n_grams: dict[int, float] = Field(
            default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
        )

        @field_validator("top_n_grams", "dup_n_grams")
        @classmethod
        def _n_at_least_two(cls, limits: dict[int, float]) -> dict[int, float]:
            if any(n < 2 for n in limits):
                raise ValueError("n-gram sizes must be at least 2")
            return limits

    class C4Quality(Step):
        """C4's rules (Raffel et al. 2020) as datatrove's C4QualityFilter defaults. "{" marks
        code on a web page; in a book it is editorial notation."""

        ignore_rules: dict[SourceKind, list[str]] = Field(
            default_factory=lambda: {"book": ["curly_bracket"]}
        )

        min_sentences: int = 5  # in the lines that the line rules keep; 0 disables
        min_words_per_line: int = 3
        max_word_length: int = 1000  # lines with a longer word are not counted
        terminal_punctuation: bool = True  # count only lines that end in . ? ! " '
        remove_citations: bool = True  # "[1]", "[edit]" before the punctuation check
        lorem_ipsum: bool = True  # drop pages with "lorem ipsum"
        curly_bracket: bool = True  # drop pages with "{"
        javascript: bool = True  # lines with "javascript" are not counted
        policy: bool = True  # lines with cookie / terms-of-use phrases are not counted

    class FineWebQuality(Step):
        """FineWeb's own rules (Penedo et al. 2024), datatrove's FineWebQualityFilter defaults.
        Duplicated lines mean boilerplate on a web page; a book repeats its section breaks
        ("*  *  *", 109 times in Gutenberg's Ontboezemingen) and headings."""

        ignore_rules: dict[SourceKind, list[str]] = Field(
            default_factory=lambda: {"book": ["char_dup_ratio"]}
        )

        line_punct_thr: float | None = 0.12  # drop if this fraction or less end in punctuation
        line_punct_exclude_zero: bool = False
        short_line_thr: float | None = 0.67  # drop if this fraction or more are short
        short_line_length: int = 30
        char_duplicates_ratio: float | None = 0.01
        new_line_ratio: float | None = 0.3  # line breaks per word

    class UrlBlocklist(Step):
        """Domains (and their subdomains) and URL substrings whose documents are dropped."""

        domains: list[str] = Field(default_factory=list)
        files: list[str] = Field(default_factory=list)  # one domain a line; "#" comments
        url_substrings: list[str] = Field(default_factory=list)

    class Quality(Step):
        """A fastText quality classifier (`textmill train-quality-classifier`)."""

        model: str | None = None  # model.bin of a trained classifier
        min_score: float = Field(default=0.5, ge=0, le=1)  # probability of the "hq" label

    class Decontamination(Step):
        """Drop documents sharing word n-grams with evaluation texts (GPT-3 used 13-grams)."""

        eval_files: list[str] = Field(default_factory=list)  # .txt (whole file) or .jsonl
        ngram: int = Field(default=13, ge=1)
        min_matches: int = Field(default=1, ge=1)  # drop at this many matching n-grams

    dataset: str = "dedup"  # the document stage it reads
    steps: list[
        Literal[
            "language",
            "gopher_quality",
            "gopher_repetition",
            "c4_quality",
            "fineweb_quality",
            "url_blocklist",
            "quality",
            "decontamination",
        ]
    ] = Field(
        default_factory=lambda: [
            "language",
            "gopher_quality",
            "gopher_repetition",
            "c4_quality",
            "fineweb_quality",
            "url_blocklist",
        ]
    )
    # Source kinds whose text is hard-wrapped (Gutenberg books): their line rules see paragraphs
    # with the wraps joined, since a web page's "line" is a paragraph (an HTML block).
    hard_wrapped_kinds: list[SourceKind] = Field(default_factory=lambda: ["book"])
    language: Language = Field(default_factory=Language)
    gopher_quality: GopherQuality = Field(default_factory=GopherQuality)
    gopher_repetition: GopherRepetition = Field(default_factory=GopherRepetition)
    c4_quality: C4Quality = Field(default_factory=C4Quality)
    fineweb_quality: FineWebQuality = Field(default_factory=FineWebQuality)
    url_blocklist: UrlBlocklist = Field(default_factory=UrlBlocklist)
    quality: Quality = Field(default_factory=Quality)
    decontamination: Decontamination = Field(default_factory=Decontamination)

    @field_validator("steps")
    @classmethod
    def _steps_once_each(cls, steps: list[str]) -> list[str]:
        return _once_each(steps, "each filter may be listed once")

    @model_validator(mode="after")
    def _listed_steps_are_configured(self) -> FilterConfig:
        if "quality" in self.steps and not self.quality.model:
            raise ValueError("the quality step needs quality.model (train-quality-classifier)")
        if "decontamination" in self.steps and not self.decontamination.eval_files:
            raise ValueError("the decontamination step needs decontamination.eval_files")
        return self


class TokenizerConfig(Section):
    """The tokenizer stage: byte-level BPE (HF tokenizers) trained on the train split only."""

    dataset: str = "filter"  # the document stage it reads: the curated corpus by default
    # at most 2**20 (1,048,576): 4 times the largest vocabulary in use (Gemma 3: 262,144);
    # a larger one aborts the BPE trainer (in Rust, killing the process) instead of training
    vocab_size: int = Field(default=8192, ge=1, le=2**20)
    special_tokens: list[str] = Field(default_factory=lambda: ["<|endoftext|>", "<|padding|>"])
    min_frequency: int = Field(default=2, ge=1)  # merges seen fewer times are not learned
    val_fraction: float = Field(default=0.05, ge=0, lt=1)  # documents held out, by id hash
    max_train_chars: int | None = Field(default=None, ge=1)  # cap for very large corpora

    @model_validator(mode="after")
    def _room_for_special_tokens(self) -> TokenizerConfig:
        if len(self.special_tokens) < 2:
            raise ValueError("special_tokens needs at least end-of-text and padding, in that order")
        needed = 256 + len(self.special_tokens)
        if self.vocab_size < needed:
            raise ValueError(
                f"vocab_size {self.vocab_size} is too small: byte-level BPE needs the 256 byte "
                f"symbols plus {len(self.special_tokens)} special tokens ({needed})"
            )
        return self


class ShardsConfig(Section):
    """The shards stage: documents encoded into Parquet token streams per split."""

    row_tokens: int = Field(default=2048, ge=16)  # tokens per Parquet row (the stream is joined)
    shard_mb: float = Field(default=64.0, gt=0)  # target size of one shard file (token bytes)
    seed: int = 0  # document shuffle
    source_weights: dict[str, float] = Field(default_factory=dict)  # source name or kind -> x
    domain_token_cap: int | None = Field(default=None, ge=1)  # most train tokens per hostname
    eval_sets: dict[str, str] = Field(default_factory=dict)  # name -> text file, own shards

    @field_validator("eval_sets")
    @classmethod
    def _eval_set_names_are_folders(cls, eval_sets: dict[str, str]) -> dict[str, str]:
        bad = [name for name in eval_sets if not is_folder_name(name)]
        if bad:
            raise ValueError(f"{bad[0]!r} names the eval/<name> shard folder: {FOLDER_NAME_RULE}")
        return eval_sets

    @field_validator("source_weights")
    @classmethod
    def _weights_not_negative(cls, weights: dict[str, float]) -> dict[str, float]:
        bad = [name for name, weight in weights.items() if weight < 0]
        if bad:
            raise ValueError(f"weights must be >= 0: {', '.join(bad)}")
        return weights


# Upper bounds of the model's shape and batch, a little above the largest published models
# (Llama 3 405B: 126 layers of width 16,384, a 128k context): past them a run fits no
# accelerator and would only fail late, deep inside torch. batch_size is per micro-step.
TRAIN_LIMITS = {"context": 2**17, "n_layer": 256, "n_embd": 2**14, "batch_size": 2**16}


class TrainConfig(Section):
    """The train stage: a GPT (model/gpt.py) on the token shards, in <root>/runs/<run>/.

    The model's shape and batch have upper bounds (TRAIN_LIMITS) a little above the largest
    published models, so that a slip (a context of 1e9) is a config error, not an out-of-memory
    traceback later; and the whole run must fit one accelerator (`train_memory_bytes`)."""

    run: str = Field(default="main", pattern=FOLDER_NAME)
    init: Literal["resume", "scratch"] = "resume"  # resume: from this run's last checkpoint
    # a fresh run starts from another run's last checkpoint
    init_from: str | None = Field(default=None, pattern=FOLDER_NAME)
    # the model
    context: int = Field(default=256, ge=8)
    n_layer: int = Field(default=4, ge=1)
    n_head: int = Field(default=4, ge=1)
    n_embd: int = Field(default=256, ge=8)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    # the optimisation
    batch_size: int = Field(default=16, ge=1)  # sequences per process per micro-step
    grad_accum: int = Field(default=1, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0)
    # muon: Muon for the blocks' matrices at muon_lr (on the same schedule), AdamW for the rest
    optimizer: Literal["adamw", "muon"] = "adamw"
    muon_lr: float = Field(default=0.04, gt=0)  # modded-nanogpt's order; 0.04 best on bench/train
    min_lr: float = Field(default=1e-4, ge=0)
    warmup_steps: int = Field(default=50, ge=0)
    max_steps: int = Field(default=1000, ge=1)
    time_budget_s: float | None = Field(default=None, gt=0)  # stop (and checkpoint) after this
    # the cosine decay ends at max_steps, or ("time") when this session's time budget ends
    schedule: Literal["steps", "time"] = "steps"
    weight_decay: float = Field(default=0.1, ge=0)
    beta1: float = Field(default=0.9, ge=0, lt=1)  # AdamW's decay rates: in [0, 1)
    beta2: float = Field(default=0.95, ge=0, lt=1)
    grad_clip: float = Field(default=1.0, ge=0)  # 0: no clipping
    seed: int = 1337
    # evaluation, checkpoints, samples
    eval_interval: int = Field(default=100, ge=1)
    eval_windows: int = Field(default=64, ge=1)
    checkpoint_interval: int = Field(default=100, ge=1)
    sample_prompt: str = "\n"
    sample_tokens: int = Field(default=64, ge=0)
    # the machine
    device: str = "auto"  # auto: cuda when there is one
    compile: bool = False  # torch.compile (CUDA only; no faster on small CPUs)

    @field_validator(*TRAIN_LIMITS)
    @classmethod
    def _fits_a_machine(cls, value: int, info: ValidationInfo) -> int:
        limit = TRAIN_LIMITS[str(info.field_name)]
        if value > limit:
            raise ValueError(
                f"{value:,} is more than {limit:,}, past what the largest models use; "
                "no accelerator could train it"
            )
        return value

    @model_validator(mode="after")
    def _time_schedule_needs_a_budget(self) -> TrainConfig:
        if self.schedule == "time" and self.time_budget_s is None:
            raise ValueError("schedule: time needs time_budget_s")
        return self

    @model_validator(mode="after")
    def _heads_divide_width(self) -> TrainConfig:
        if self.n_embd % self.n_head or (self.n_embd // self.n_head) % 2:
            raise ValueError("n_embd must be n_head times an even head size (rotary embeddings)")
        return self


def train_memory_bytes(train: TrainConfig, vocab_size: int) -> int:
    """A rough estimate of one training process's memory, leaving out what is small (norms,
    buffers, the CUDA context): 16 bytes a parameter (fp32 weights and gradients, AdamW's two
    moments; Muon keeps one moment less for the blocks' matrices); activations of 34 bytes per
    layer, position and unit of width (Korthikanti et al. 2022, "Reducing Activation
    Recomputation in Large Transformer Models": bf16, without the T x T attention matrix, which
    scaled_dot_product_attention does not keep); and the fp32 logits."""
    width, layers = train.n_embd, train.n_layer
    parameters = vocab_size * width + 12 * layers * width**2  # tied head; attention + MLP
    positions = train.batch_size * train.context
    return 16 * parameters + positions * (34 * layers * width + 4 * vocab_size)


# More than one accelerator holds (H200: 141 GB, B200: 192 GB). Every training process holds
# the whole model and its own micro-batch (DDP), so a larger estimate can run on no GPU (and
# on a CPU with that much memory it would train for months).
TRAIN_MEMORY_LIMIT = 256 * 2**30


class SchedulesConfig(Section):
    """`textmill serve`: when its deployments run, how many runs at once, whom to tell of a
    failure. A schedule is a cron string (minute hour day month weekday, e.g. "0 3 * * *");
    None: the deployment runs only when triggered."""

    crawl_and_train: str | None = None
    crawl: str | None = None
    curate: str | None = None
    train: str | None = None
    timezone: str = "UTC"  # an IANA name, e.g. Europe/Paris; the cron times are in it
    # runs at once over all deployments; one workspace has one writer, so more than 1 only
    # makes a run that finds the workspace locked fail instead of wait
    max_concurrent_runs: int = Field(default=1, ge=1)
    # a URL that is POSTed {"text": ...} (Slack's shape) when a run of a deployment fails or
    # crashes; None: the failure is only logged (the run's logs and the serving terminal)
    notify_webhook: str | None = Field(default=None, pattern=r"^https?://")

    @field_validator("crawl_and_train", "crawl", "curate", "train")
    @classmethod
    def _cron(cls, schedule: str | None) -> str | None:
        # Prefect vendors its own croniter; cronsim (installed with Prefect) checks the same
        # five-field grammar without importing Prefect here
        from cronsim import CronSim, CronSimError

        if schedule is not None:
            try:
                CronSim(schedule, datetime.now())
            except CronSimError as exc:
                raise ValueError(
                    f"{schedule!r} is not a cron string (minute hour day month weekday, "
                    f'e.g. "0 3 * * *"): {exc}'
                ) from None
        return schedule

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, timezone: str) -> str:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{timezone!r} is not a time zone name such as Europe/Paris") from None
        return timezone


class RunnerConfig(Section):
    """How stages are executed; never part of a stage version (it does not change outputs).

    `dask` runs the work units on a Dask cluster (prefect-dask): the one at `dask_scheduler`
    (e.g. tcp://10.0.0.5:8786), or, when that is None, a local cluster of `workers` processes
    with one thread each, started for the run and closed after it. Workers on other machines
    need the project installed and the workspace on storage they all reach: an `s3://` root,
    with credentials in each worker's environment (pipeline/storage.py says which)."""

    task_runner: Literal["processes", "threads", "serial", "dask"] = "processes"
    workers: int = Field(default=2, ge=1)
    dask_scheduler: str | None = None  # address of a running Dask scheduler
    chunk_mb: float = Field(default=2.0, gt=0)  # WARC files larger than this are split by record

    @model_validator(mode="after")
    def _scheduler_only_for_dask(self) -> RunnerConfig:
        if self.dask_scheduler and self.task_runner != "dask":
            raise ValueError(f"dask_scheduler needs task_runner: dask, not {self.task_runner}")
        return self

    def local_cluster_options(self) -> dict[str, Any]:
        """The Dask cluster of a run without `dask_scheduler`: `workers` processes, one thread
        each, no dashboard (the flows' DaskTaskRunner and the plain runner start the same)."""
        return {
            "n_workers": self.workers,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
        }

    @property
    def parallel(self) -> bool:
        """Whether units go to a pool or cluster (else they run one by one in this process)."""
        return self.task_runner == "dask" or (self.task_runner != "serial" and self.workers > 1)


class RetentionConfig(Section):
    """What a crawl-and-train run removes when it ends (as `textmill gc` does): dataset,
    tokenizer and shards versions beyond the newest `keep_versions` of each stage (the current
    one always stays), and crawl generations outside `extract.generation_window`."""

    keep_versions: int | None = Field(default=None, ge=1)  # None: keep everything


class RunConfig(Section):
    """A whole run: the workspace root, the sources and one section per stage."""

    workspace: str
    sources: list[SourceConfig] = Field(default_factory=list)
    crawl: CrawlConfig = Field(default_factory=CrawlConfig)
    extract: ExtractConfig = Field(default_factory=ExtractConfig)
    clean: CleanConfig = Field(default_factory=CleanConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    filter: FilterConfig = Field(default_factory=FilterConfig)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    shards: ShardsConfig = Field(default_factory=ShardsConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    schedules: SchedulesConfig = Field(default_factory=SchedulesConfig)
    runner: RunnerConfig = Field(default_factory=RunnerConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    # Directory the config file lives in; relative paths in the config are relative to it.
    base_dir: str = Field(default=".", exclude=True)

    @field_validator("sources")
    @classmethod
    def _unique_source_names(cls, sources: list[SourceConfig]) -> list[SourceConfig]:
        _once_each([s.name for s in sources], "source names must be unique")
        return sources

    @model_validator(mode="after")
    def _model_fits_a_machine(self) -> RunConfig:
        needed = train_memory_bytes(self.train, self.tokenizer.vocab_size)
        if needed > TRAIN_MEMORY_LIMIT:
            raise ValueError(
                f"train: the model and one micro-batch need about {needed / 2**30:,.0f} GiB, "
                f"more than one accelerator holds ({TRAIN_MEMORY_LIMIT // 2**30} GiB): make "
                "train.batch_size, context, n_embd or n_layer (or tokenizer.vocab_size) smaller"
            )
        return self

    @model_validator(mode="after")
    def _datasets_form_a_chain(self) -> RunConfig:
        """Which document stage each stage reads is configurable (e.g. filter before dedup);
        the choices must name document stages and must not loop."""
        reads = self.dataset_inputs()
        for stage, dataset in reads.items():
            if dataset not in DOCUMENT_STAGES or dataset == stage:
                choices = ", ".join(s for s in DOCUMENT_STAGES if s != stage)
                raise ValueError(f"{stage}.dataset: {dataset!r} is not one of {choices}")
        for stage in reads:
            seen = [stage]
            while seen[-1] in reads:
                seen.append(reads[seen[-1]])
                if seen[-1] in seen[:-1]:
                    raise ValueError("stages read each other in a loop: " + " <- ".join(seen))
        return self

    def dataset_inputs(self) -> dict[str, str]:
        """Document stage -> the document stage it reads."""
        return {
            "clean": self.clean.dataset,
            "dedup": self.dedup.dataset,
            "filter": self.filter.dataset,
            "tokenizer": self.tokenizer.dataset,
        }

    def resolve(self, path: str) -> str:
        """A path from the config, made absolute against the config file's folder (URLs pass)."""
        if "://" in path or Path(path).is_absolute():
            return path
        return str((Path(self.base_dir) / path).resolve())

    @property
    def workspace_root(self) -> str:
        return self.resolve(self.workspace)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`extract.timeout_s=2` -> (["extract", "timeout_s"], 2). The value is read as YAML, and
    taken as the string it is when it is not YAML (`*/30 * * * *`, `[1, 2`): validation then
    judges it like any other value."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. extract.timeout_s=2")
    try:
        value = yaml.load(raw, Loader=ConfigLoader) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def did_you_mean(name: str, choices: list[str]) -> str:
    """ " (did you mean min_score?)" for a misspelt name, else ""."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The config model that holds the key at `loc` (a pydantic error location), if any."""
    model: Any = RunConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue  # an item of a list, such as sources.0
        field = model.model_fields.get(part) if isinstance(model, type) else None
        if field is None:
            return None
        annotation = field.annotation
        model = next(iter(getattr(annotation, "__args__", ())), annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def unknown_key_message(model: type[BaseModel] | None, key: str) -> str:
    choices = list(model.model_fields) if model else []
    return f"unknown key{did_you_mean(key, choices)}"


def apply_overrides(data: dict[str, Any], overrides: list[str], origin: str) -> dict[str, Any]:
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for depth, key in enumerate(keys[:-1]):
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                where = ".".join(keys[: depth + 1])
                raise ConfigError(f"{origin}: --set {text}: {where} is not a section")
            node = child
        node[keys[-1]] = value
    return data


def _format_errors(origin: str, error: ValidationError) -> str:
    problems = []
    for err in error.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            message = unknown_key_message(_model_at(err["loc"]), str(err["loc"][-1]))
        else:
            message = err["msg"]
        problems.append(f"{key}: {message}")
    return f"{origin}: invalid config: " + "; ".join(problems)


class ConfigLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping: PyYAML keeps the last,
    so a second `train:` section would silently replace the first."""

    def construct_document(self, node: yaml.Node) -> Any:
        _refuse_repeated_keys(node, "", set())
        return super().construct_document(node)


def _refuse_repeated_keys(node: yaml.Node, where: str, seen: set[int]) -> None:
    """Checked on the parsed tree, before merge keys (`<<: *defaults`) are expanded: the keys
    beside a merge key may override what it brings. `seen`: nodes an alias already visited."""
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _refuse_repeated_keys(item, f"{where}{i}.", seen)
    if not isinstance(node, yaml.MappingNode):
        return
    lines: dict[str, int] = {}
    for key, value in node.value:
        name = key.value if isinstance(key, yaml.ScalarNode) else None
        if name is None or key.tag == "tag:yaml.org,2002:merge":
            continue
        line = key.start_mark.line + 1
        if name in lines:
            raise yaml.constructor.ConstructorError(
                problem=f"key {where}{name} is given twice, at lines {lines[name]} and {line}",
                problem_mark=key.start_mark,
            )
        lines[name] = line
        _refuse_repeated_keys(value, f"{where}{name}.", seen)


def _read_config_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:  # a folder, a file we may not read
        raise ConfigError(f"{path}: cannot read the config: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.start + 1}, on line {line}): save it as UTF-8"
        ) from None


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read, override and validate a run config; raise ConfigError naming file, key and problem."""
    path = Path(path)
    text = _read_config_text(path)
    try:
        data = yaml.load(text, Loader=ConfigLoader) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    data = apply_overrides(data, list(overrides), str(path))
    data["base_dir"] = str(path.resolve().parent)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(str(path), exc)) from None
