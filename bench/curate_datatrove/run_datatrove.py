"""datatrove's side of bench/curate.py: one step per process, run with the python of the
benchmark's own datatrove virtual environment (datatrove[processing] pins trafilatura < 1.12, so
it cannot share textmill's). It imports nothing of textmill.

Steps, in order (bench/curate.py times each process end to end):
  place-lid   put a fastText lid.176 model where datatrove's LanguageFilter looks for it
              (HF_HOME's asset cache), so it never downloads lid.176.bin; not timed
  filter      JsonlReader -> LanguageFilter(en, 0.65) -> GopherQualityFilter ->
              GopherRepetitionFilter -> C4QualityFilter -> FineWebQualityFilter -> JsonlWriter;
              each filter writes the documents it drops (with datatrove's `filter_reason` in
              their metadata) to `excluded/<step>/`, the step named as textmill names it, so
              that bench/curate.py can compare both tools' decisions document by document
  signatures  MinHash stage 1 (MinhashDedupSignature) over the filtered documents
  buckets     MinHash stage 2 (MinhashDedupBuckets), one task per bucket
  cluster     MinHash stage 3 (MinhashDedupCluster), saving cluster ids
  dedup       MinHash stage 4 (MinhashDedupFilter): kept documents to `deduped/`, removed ones
              to `removed/`, both with `minhash_cluster_id` in their metadata (-1: no duplicate)
  versions    print the versions of datatrove and its relevant dependencies as JSON

The MinHash parameters are datatrove's MinhashConfig defaults, which are also textmill's: word
5-grams, 14 buckets x 8 hashes (threshold about 0.72), its default hash settings. Every filter
keeps datatrove's own defaults. Executors run under `if __name__ == "__main__":`, as datatrove's
process pool (forkserver) requires.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

FILTER_TASKS_DEFAULT = 8
STEPS = ("place-lid", "filter", "signatures", "buckets", "cluster", "dedup", "versions")


def place_lid(model: Path) -> Path:
    """Copy `model` to the file FT176LID would download into, and mark it complete, the way
    datatrove.io.cached_asset_path_or_download names and marks it: HF_HOME/assets/datatrove/
    lid/ft176/<the URL as fsspec's strip_protocol leaves it (https URLs whole), "/" -> "_">, plus
    "<that>.completed". Then asks datatrove itself where the model is, to be sure."""
    from datatrove.io import cached_asset_path_or_download
    from datatrove.utils.lid import FT176LID
    from fsspec.core import strip_protocol
    from huggingface_hub import cached_assets_path

    folder = cached_assets_path(
        library_name="datatrove", namespace="lid", subfolder=FT176LID.MODEL_SUBFOLDER
    )
    target = Path(folder) / strip_protocol(FT176LID.MODEL_URL).replace("/", "_")
    shutil.copyfile(model, target)
    Path(f"{target}.completed").touch()
    found = cached_asset_path_or_download(
        FT176LID.MODEL_URL, namespace="lid", subfolder=FT176LID.MODEL_SUBFOLDER
    )
    if Path(found) != target:
        raise SystemExit(f"datatrove looks for lid.176 at {found}, not at {target}")
    return target


def minhash_config():  # type: ignore[no-untyped-def]
    from datatrove.pipeline.dedup.minhash import MinhashConfig

    return MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8)


def run_step(step: str, corpus: Path, work: Path, tasks: int, workers: int) -> None:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
        LanguageFilter,
    )
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.typeshelper import Languages

    config = minhash_config()
    filtered = str(work / "filtered")

    def dropped(step: str) -> JsonlWriter:
        return JsonlWriter(str(work / "excluded" / step))

    minhash = work / "minhash"
    pipelines = {
        "filter": (
            [
                JsonlReader(str(corpus), glob_pattern="*.jsonl.gz"),
                LanguageFilter(
                    languages=["en"], language_threshold=0.65, exclusion_writer=dropped("language")
                ),
                GopherQualityFilter(exclusion_writer=dropped("gopher_quality")),
                GopherRepetitionFilter(exclusion_writer=dropped("gopher_repetition")),
                C4QualityFilter(exclusion_writer=dropped("c4_quality")),
                FineWebQualityFilter(exclusion_writer=dropped("fineweb_quality")),
                JsonlWriter(filtered),
            ],
            tasks,
        ),
        "signatures": (
            [
                JsonlReader(filtered),
                MinhashDedupSignature(
                    output_folder=str(minhash / "signatures"),
                    config=config,
                    language=Languages.english,
                ),
            ],
            tasks,
        ),
        "buckets": (
            [
                MinhashDedupBuckets(
                    input_folder=str(minhash / "signatures"),
                    output_folder=str(minhash / "buckets"),
                    config=config,
                )
            ],
            config.num_buckets,
        ),
        "cluster": (
            [
                MinhashDedupCluster(
                    input_folder=str(minhash / "buckets"),
                    output_folder=str(minhash / "remove_ids"),
                    config=config,
                    save_cluster_id=True,
                )
            ],
            1,  # datatrove's clustering is one task
        ),
        "dedup": (
            [
                JsonlReader(filtered),
                MinhashDedupFilter(
                    input_folder=str(minhash / "remove_ids"),
                    exclusion_writer=JsonlWriter(str(work / "removed")),
                    load_cluster_ids=True,
                ),
                JsonlWriter(str(work / "deduped")),
            ],
            tasks,
        ),
    }
    pipeline, step_tasks = pipelines[step]
    LocalPipelineExecutor(
        pipeline=pipeline,
        tasks=step_tasks,
        workers=min(workers, step_tasks),
        logging_dir=str(work / "logs" / step),
    ).run()


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("datatrove", "fasttext-numpy2-wheel", "spacy")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=STEPS)
    parser.add_argument("--corpus", type=Path, help="folder of *.jsonl.gz documents")
    parser.add_argument("--work", type=Path, help="datatrove's output folder")
    parser.add_argument("--tasks", type=int, default=FILTER_TASKS_DEFAULT)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--lid", type=Path, help="the lid.176 model file to place")
    args = parser.parse_args()
    if args.step == "place-lid":
        print(json.dumps({"lid_model": str(place_lid(args.lid))}))
    elif args.step == "versions":
        print(json.dumps(versions()))
    else:
        run_step(args.step, args.corpus, args.work, args.tasks, args.workers)


if __name__ == "__main__":
    main()
