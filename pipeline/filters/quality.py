"""Model-based quality: a fastText classifier of "hq" (what we want more of) against "lq", in the
manner of DCLM (Li et al. 2024, "DataComp-LM", section 4.4: a fastText bigram classifier,
positives from curated text, negatives from random web text). Training is single-threaded with
a fixed seed, so the same examples give the same model.

Its evaluation reports precision and recall on a held-out split and, so that it does not only
grade its own homework, on labelled sets that our heuristic filters did not produce (`external`:
e.g. CCNet's perplexity buckets, see `ccnet_examples`, or labels a user gives).
"""

from __future__ import annotations

import gzip
import json
import multiprocessing
import os
import random
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import fasttext

from pipeline.config import ConfigError, FilterConfig
from pipeline.filters.base import Document, Filter, Score, below, first_failure

POSITIVE, NEGATIVE = "__label__hq", "__label__lq"
MODEL_FILE, EVALUATION_FILE = "model.bin", "evaluation.json"


def classifier_line(text: str) -> str:
    """What the classifier reads, in training and in filtering: one line of lowercase words."""
    return " ".join(text.lower().split())


def load_classifier(path: str | os.PathLike) -> fasttext.FastText._FastText:
    if not Path(path).is_file():
        raise ConfigError(
            f"filter.quality.model: no classifier at {path} (train one with "
            "`textmill train-quality-classifier`)"
        )
    return fasttext.load_model(str(path))


def positive_probability(model: fasttext.FastText._FastText, text: str) -> float:
    labels, probs = model.predict(classifier_line(text), k=-1)
    return float(dict(zip(labels, probs, strict=True)).get(POSITIVE, 0.0))


class Quality(Filter):
    """Keeps documents the classifier gives at least `min_score` probability of "hq". Default
    0.5, the classifier's own decision boundary; DCLM instead keeps a top fraction (its
    threshold is a percentile of the scores), which a user can set here once scores are seen."""

    name = "quality"
    scores = ("score",)

    def __init__(self, cfg: FilterConfig.Quality):
        self.cfg = cfg
        self.model = load_classifier(cfg.model or "")

    def score(self, doc: Document) -> dict[str, Score]:
        return {"score": positive_probability(self.model, doc.text)}

    def keep(
        self, scores: dict[str, Score], ignore: frozenset[str] = frozenset()
    ) -> tuple[bool, str | None]:
        return first_failure(("score", below(scores["score"], self.cfg.min_score)), ignore=ignore)


def train_quality_classifier(
    positives: Iterable[str],
    negatives: Iterable[str],
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    epochs: int = 5,
    lr: float = 0.1,
    dim: int = 64,
    word_ngrams: int = 2,
    bucket: int = 200_000,
    held_out: float = 0.1,
    threshold: float = 0.5,
    external: Mapping[str, tuple[Sequence[str], Sequence[bool]]] | None = None,
) -> dict[str, Any]:
    """Train, evaluate and save `model.bin` and `evaluation.json` in out_dir; return the
    evaluation. Examples of each class are shuffled with `seed` and `held_out` of each kept
    aside. Defaults: fastText's lr 0.1 and 5 epochs, bigrams as DCLM's classifier; dim 64 and
    200,000 hash buckets keep the model near 50 MB (fastText's 100 x 2M would be 800 MB; a few
    thousand buckets made this fastText build diverge). fastText runs in a spawned process: a
    script calling this needs the `if __name__ == "__main__":` guard."""
    rng = random.Random(seed)
    train: list[tuple[str, str]] = []
    test: list[tuple[str, str]] = []
    counts = {}
    for label, texts in ((POSITIVE, positives), (NEGATIVE, negatives)):
        lines = [line for line in map(classifier_line, texts) if line]
        rng.shuffle(lines)
        n_test = round(len(lines) * held_out)
        train += [(label, line) for line in lines[n_test:]]
        test += [(label, line) for line in lines[:n_test]]
        counts[label.removeprefix("__label__")] = len(lines)
    if not all(counts.values()):
        raise ValueError(f"a quality classifier needs examples of both classes, got {counts}")
    rng.shuffle(train)  # fastText learns in file order: interleave the classes

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_file = out / "train.txt"
    train_file.write_text("".join(f"{label} {line}\n" for label, line in train), encoding="utf-8")
    params = {
        "epoch": epochs,
        "lr": lr,
        "dim": dim,
        "wordNgrams": word_ngrams,
        "bucket": bucket,
        "seed": seed,
        "thread": 1,  # reproducible: several threads update the weights in racing order
    }
    try:
        _train(train_file, out / MODEL_FILE, params)
    finally:
        train_file.unlink()
    model = load_classifier(out / MODEL_FILE)

    evaluation: dict[str, Any] = {
        "examples": counts,
        "train": len(train),
        "params": params,
        "threshold": threshold,
        "held_out": evaluate_on(
            model, [line for _, line in test], [label == POSITIVE for label, _ in test], threshold
        ),
        "external": {
            name: evaluate_on(model, texts, labels, threshold)
            for name, (texts, labels) in (external or {}).items()
        },
    }
    (out / EVALUATION_FILE).write_text(json.dumps(evaluation, indent=2) + "\n")
    return evaluation


def _train(train_file: Path, model_file: Path, params: dict[str, Any]) -> None:
    """fastText's trainer, in a fresh process: in one that has trained before, the installed
    fastText gave different models for the same input and seed, and now and then a spurious
    "Encountered NaN" (state left over from an earlier run, it seems)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            pool.submit(_train_here, str(train_file), str(model_file), params).result()
        except RuntimeError as exc:
            if "NaN" not in str(exc):
                raise
            raise ValueError(
                "the quality classifier's training diverged (NaN): give more varied examples "
                f"or a lower learning rate than {params['lr']}"
            ) from None


def _train_here(train_file: str, model_file: str, params: dict[str, Any]) -> None:
    fasttext.train_supervised(input=train_file, verbose=0, **params).save_model(model_file)


def evaluate_on(
    model: fasttext.FastText._FastText | str | os.PathLike,
    texts: Sequence[str],
    labels: Sequence[bool],
    threshold: float = 0.5,
) -> dict[str, Any]:
    """Precision, recall and F1 of the "hq" class on labelled texts (True: good), with the
    counts they come from. A ratio over nothing is None (e.g. precision with no positive
    predictions)."""
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    if not isinstance(model, fasttext.FastText._FastText):
        model = load_classifier(model)
    predicted = [positive_probability(model, text) >= threshold for text in texts]
    true_pos = sum(p and t for p, t in zip(predicted, labels, strict=True))
    precision = true_pos / sum(predicted) if any(predicted) else None
    recall = true_pos / sum(labels) if any(labels) else None
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else None
    return {
        "examples": len(texts),
        "positives": sum(labels),
        "predicted_positive": sum(predicted),
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def ccnet_examples(
    paths: Iterable[str | os.PathLike], good_buckets: Sequence[str] = ("head",)
) -> tuple[list[str], list[bool]]:
    """Texts and labels from CCNet output (JSONL, gzipped or not; CCNet's own records or Dolma's
    with the fields under `metadata`): good when the document's perplexity bucket (a KenLM
    model trained on Wikipedia; head < middle < tail) is one of `good_buckets`."""
    texts: list[str] = []
    labels: list[bool] = []
    for path in paths:
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    text, bucket = record["text"], record.get("metadata", record)["bucket"]
                except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                    raise ValueError(
                        f"{path} line {number}: not a CCNet record ({exc!r})"
                    ) from None
                texts.append(text)
                labels.append(bucket in good_buckets)
    return texts, labels


# ----- training data from a workspace, for `textmill train-quality-classifier` -----

CHUNK_WORDS = 400  # books are cut into examples of about this many words
MODELS_FOLDER = "models/quality"


def read_examples(path: str) -> list[str]:
    """Examples a user gives: JSONL with a `text` field, or plain text with one per line."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        lines = [line for line in fh if line.strip()]
    if not path.endswith((".jsonl", ".jsonl.gz")):
        return [line.strip() for line in lines]
    return [str(record["text"]) for record in _json_records(path, lines)]


def read_labelled(path: str) -> tuple[list[str], list[bool]]:
    """A user's labelled set: JSONL with `text` and `label` (true/false, or "hq"/"lq")."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        records = _json_records(path, [line for line in fh if line.strip()])
    return [str(r["text"]) for r in records], [r["label"] in (True, 1, "hq") for r in records]


def _json_records(path: str, lines: list[str]) -> list[dict[str, Any]]:
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: record {number} is not JSON ({exc})") from None
        if not isinstance(record, dict) or "text" not in record:
            raise ValueError(f"{path}: record {number} has no `text` field")
        records.append(record)
    return records


def chunks(text: str, words: int = CHUNK_WORDS) -> Iterable[str]:
    tokens = text.split()
    for start in range(0, len(tokens), words):
        yield " ".join(tokens[start : start + words])


def workspace_examples(ws: Any, dataset: str) -> tuple[list[str], list[str]]:
    """DCLM's default in our terms: books and articles of `dataset` (the one the filter reads)
    are positives, cut into chunks; what clean and filter rejected is negative."""
    from pipeline.datasets import Dataset, DatasetError

    current = Dataset.current(ws, dataset)
    positives = [
        chunk
        for row in current.read(["text", "source_kind"]).to_pylist()
        if row["source_kind"] in ("book", "article")
        for chunk in chunks(row["text"])
    ]
    negatives = []
    for stage in ("clean", "filter"):
        try:
            rejected = Dataset.current(ws, stage).read(["text"], rejected=True)
        except DatasetError:
            continue
        negatives += [text for text in rejected.column("text").to_pylist() if text]
    return positives, negatives
