"""Run configuration: one YAML file describes a run, validated by pydantic.

Errors name the file, the key and the problem. Command-line overrides (`--set extract.timeout_s=2`)
are applied to the parsed YAML before validation, so they are checked exactly like the file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

SourceKind = Literal["web", "article", "book"]


class ConfigError(ValueError):
    """A run config that cannot be used; the message says which file, key and problem."""


class Section(BaseModel):
    """Base for config sections: unknown keys are errors (a typo must not pass silently)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def digest(self) -> str:
        """Digest of the section's values, the part of a stage version that config decides."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class SourceConfig(Section):
    """Where documents come from. `warc` lists existing WARC/ARC files (paths or globs, relative
    to the config file); crawled sources add their generations under `<root>/crawl/<name>/`."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    kind: SourceKind = "web"
    warc: list[str] = Field(default_factory=list)


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
    Owned by the crawl work; fields are added as the crawler grows."""

    user_agent: str = "textmill/0.1 (+https://github.com/textmill/textmill)"
    allow_networks: list[str] = Field(default_factory=list)  # e.g. ["127.0.0.0/8"] for tests


class CleanConfig(Section):
    """The clean stage (pipeline/clean.py): Unicode repair, line boilerplate, PII scrubbing."""

    dataset: str = "extract"  # the document stage it reads


class DedupConfig(Section):
    """The dedup stage (pipeline/dedup.py): exact, MinHash near-duplicate and paragraph dedup."""

    dataset: str = "clean"  # the document stage it reads


class FilterConfig(Section):
    """The filter stage (pipeline/filter.py, filters in pipeline/filters/)."""

    dataset: str = "dedup"  # the document stage it reads


class TokenizerConfig(Section):
    """The tokenizer stage: byte-level BPE (HF tokenizers) trained on the train split only."""

    dataset: str = "extract"  # the document stage it reads (the curated one once it exists)
    vocab_size: int = Field(default=8192, ge=1)
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

    @field_validator("source_weights")
    @classmethod
    def _weights_not_negative(cls, weights: dict[str, float]) -> dict[str, float]:
        bad = [name for name, weight in weights.items() if weight < 0]
        if bad:
            raise ValueError(f"weights must be >= 0: {', '.join(bad)}")
        return weights


class TrainConfig(Section):
    """The train stage: a GPT (model/gpt.py) on the token shards, in <root>/runs/<run>/."""

    run: str = Field(default="main", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    init: Literal["resume", "scratch"] = "resume"  # resume: from this run's last checkpoint
    init_from: str | None = None  # a fresh run starts from another run's last checkpoint
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
    min_lr: float = Field(default=1e-4, ge=0)
    warmup_steps: int = Field(default=50, ge=0)
    max_steps: int = Field(default=1000, ge=1)
    time_budget_s: float | None = Field(default=None, gt=0)  # stop (and checkpoint) after this
    # the cosine decay ends at max_steps, or ("time") when this session's time budget ends
    schedule: Literal["steps", "time"] = "steps"
    weight_decay: float = Field(default=0.1, ge=0)
    beta1: float = 0.9
    beta2: float = 0.95
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


class RunnerConfig(Section):
    """How stages are executed; never part of a stage version (it does not change outputs)."""

    task_runner: Literal["processes", "threads", "serial"] = "processes"
    workers: int = Field(default=2, ge=1)
    chunk_mb: float = Field(default=2.0, gt=0)  # WARC files larger than this are split by record


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
    runner: RunnerConfig = Field(default_factory=RunnerConfig)
    # Directory the config file lives in; relative paths in the config are relative to it.
    base_dir: str = Field(default=".", exclude=True)

    @field_validator("sources")
    @classmethod
    def _unique_source_names(cls, sources: list[SourceConfig]) -> list[SourceConfig]:
        names = [s.name for s in sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique, repeated: {', '.join(dupes)}")
        return sources

    def resolve(self, path: str) -> str:
        """A path from the config, made absolute against the config file's folder (URLs pass)."""
        if "://" in path or Path(path).is_absolute():
            return path
        return str((Path(self.base_dir) / path).resolve())

    @property
    def workspace_root(self) -> str:
        return self.resolve(self.workspace)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`extract.timeout_s=2` -> (["extract", "timeout_s"], 2); the value is read as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. extract.timeout_s=2")
    return key.strip().split("."), yaml.safe_load(raw) if raw.strip() else ""


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
        problems.append(f"{key}: {err['msg']}")
    return f"{origin}: invalid config: " + "; ".join(problems)


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read, override and validate a run config; raise ConfigError naming file, key and problem."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
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
