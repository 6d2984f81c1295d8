"""The curate stages together: clean -> dedup -> filter over a dataset, as the pipeline runs them
(the algorithms have their own tests in test_clean.py, test_dedup.py and test_filters.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline import gutenberg
from pipeline.config import ConfigError, load_config
from pipeline.datasets import Dataset
from pipeline.dedup import CLUSTERS_FILE
from pipeline.runner import make_map
from pipeline.stage import run
from pipeline.stages import STAGES, all_statuses, curate_order
from pipeline.workspace import Workspace
from tests.conftest import SHARED_DATA, needs_shared_data

ARTICLES = [
    """The old lighthouse on the northern cape was built in 1872, when ships carrying timber and
grain still passed the headland every week. Its keepers lived in a small stone cottage beside
the tower, and they kept a log of every vessel, every storm and every repair to the lamp.

Those logs survive today in the county archive. They show that the light failed only twice in
forty years, both times during the great winter gales, and that the keepers rowed out to help
the crews of at least eleven ships that ran aground on the rocks below the cliff.

When the light was automated in 1968, the last keeper moved to the village. He spent his
retirement writing a history of the cape, which the local library still lends to visitors who
want to know why the tower stands where it does.""",
    """Sourdough bread needs only flour, water and salt, but it asks for patience. The starter, a
mixture of flour and water that has been fed for days, holds the wild yeasts and bacteria that
make the dough rise and give the bread its slightly sour taste.

Bakers usually mix the dough in the evening and let it ferment slowly overnight. In the
morning they shape the loaves, leave them to rise again for a few hours and then bake them in a
very hot oven, often inside a heavy pot that traps the steam and helps the crust form.

A good loaf has an open crumb, a crisp crust and a deep brown colour. It keeps for several
days, and many people say that it tastes even better on the second day than on the first.""",
    """The river delta is home to more than two hundred species of birds. In spring, flocks of
waders arrive from the south to feed on the mud flats, and the reed beds fill with the songs of
warblers that have flown thousands of kilometres to breed there.

Scientists have counted the birds every year since 1985. Their records show that some species
have become much rarer, while others, such as the great white egret, have spread north as the
winters have grown milder and the wetlands have been protected from drainage.

Visitors can watch the birds from wooden hides along the dykes. The best time to come is early
in the morning, when the light is soft and the birds are busy feeding before the heat of the
day drives them into the shade of the reeds.""",
]


# As extracted pages come: one line per paragraph (C4's rules judge lines, not wrapped prose).
ARTICLES = ["\n\n".join(p.replace("\n", " ") for p in text.split("\n\n")) for text in ARTICLES]


def _documents(folder: Path) -> Path:
    """Three articles, an exact copy of the first under another URL, a near copy of the second
    (a few words changed), a French text and a short scrap."""
    near_copy = ARTICLES[1].replace("patience", "time").replace("very hot", "hot")
    rows = [
        {"id": f"a{i}", "text": text, "url": f"https://example.org/{i}"}
        for i, text in enumerate(ARTICLES)
    ]
    rows += [
        {"id": "copy", "text": ARTICLES[0], "url": "https://mirror.example.net/0"},
        {"id": "near", "text": near_copy, "url": "https://mirror.example.net/1"},
        {
            "id": "french",
            "text": "Le vieux phare du cap nord fut construit en 1872, quand les navires "
            "chargés de bois et de grain passaient encore chaque semaine. " * 6,
            "url": "https://example.fr/phare",
        },
        {"id": "scrap", "text": "Click here.", "url": "https://example.org/scrap"},
    ]
    path = folder / "docs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _config(tmp_path: Path, **sections: dict) -> Path:
    data = {
        "workspace": str(tmp_path / "workspace"),
        "sources": [{"name": "docs", "kind": "web", "documents": [str(_documents(tmp_path))]}],
        "runner": {"task_runner": "serial", "workers": 1},
        **sections,
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _run_all(config: Path, *overrides: str) -> tuple[dict[str, dict], Workspace]:
    cfg = load_config(config, list(overrides))
    ws = Workspace(cfg.workspace_root)
    results = {}
    for name in ["extract", *curate_order(cfg)]:
        results[name] = run(STAGES[name], cfg, ws, make_map(cfg.runner))
    return results, ws


def test_curate_drops_each_document_for_its_reason_and_keeps_the_rest(tmp_path):
    results, ws = _run_all(_config(tmp_path))
    kept = {d["id"] for d in Dataset.current(ws, "filter").read().to_pylist()}
    assert kept == {"a0", "a1", "a2"}
    rejected = {}
    for stage in ("clean", "dedup", "filter"):
        for doc in Dataset.current(ws, stage).read(rejected=True).to_pylist():
            assert doc["stage"] == stage and doc["text"]  # everything kept, with its reason
            rejected[doc["id"]] = (doc["stage"], doc["reason"], doc["detail"])
    assert rejected["scrap"][:2] == ("clean", "too_short")
    assert rejected["copy"][:2] == ("dedup", "exact_duplicate")
    assert rejected["copy"][2].startswith("of a0")  # the earlier id of two equal documents
    assert rejected["near"][:2] == ("dedup", "near_duplicate")
    assert rejected["french"][0] == "filter" and rejected["french"][1].startswith("language")
    assert results["dedup"]["dropped"] == {"exact_duplicate": 1, "near_duplicate": 1}

    clusters = f"{Dataset.current(ws, 'dedup').dir}/{CLUSTERS_FILE}"
    table = ws.storage.read_parquet(clusters).to_pylist()
    assert {(r["id"], r["cluster"], r["kept"]) for r in table} >= {("copy", "a0", False)}
    # Scores are columns of the filtered documents, so thresholds can be revisited.
    doc = Dataset.current(ws, "filter").read().to_pylist()[0]
    assert doc["language_score"] > 0.65


def test_each_version_folder_reads_as_its_kept_documents_in_other_tools(tmp_path):
    """pyarrow (and so polars and Spark), DuckDB and Hugging Face `datasets` pointed at a
    version folder, as a user would, see the kept documents only; datasets' `rejected` config
    gives the dropped ones."""
    import datasets
    import duckdb
    import pyarrow.dataset as pads

    _, ws = _run_all(_config(tmp_path))
    for stage in ("extract", "clean", "dedup", "filter"):
        version = Dataset.current(ws, stage)
        kept = sorted(version.read(["id"]).column("id").to_pylist())
        dropped = sorted(version.read(["id"], rejected=True).column("id").to_pylist())
        folder = ws.storage.url(version.dir)
        assert sorted(pads.dataset(folder).to_table(columns=["id"])["id"].to_pylist()) == kept
        sql = f"SELECT id FROM read_parquet('{folder}/*.parquet') ORDER BY id"
        assert [row[0] for row in duckdb.sql(sql).fetchall()] == kept
        loaded = datasets.load_dataset(folder, split="train")
        assert sorted(loaded["id"]) == kept and "text" in loaded.column_names
        if dropped:
            rejected = datasets.load_dataset(folder, "rejected", split="train")
            assert sorted(rejected["id"]) == dropped and "reason" in rejected.column_names
    assert Dataset.current(ws, "filter").manifest.dropped  # the filter did drop some


def test_a_second_run_is_up_to_date_and_a_config_change_redoes_only_what_follows(tmp_path):
    config = _config(tmp_path)
    _run_all(config)
    again, ws = _run_all(config)
    assert not any(result["built"] for result in again.values())

    changed, _ = _run_all(config, "filter.language.min_score=0.9")
    assert [name for name, result in changed.items() if result["built"]] == ["filter"]

    cfg = load_config(config, ["dedup.ngram=3"])
    states = {s.stage: s for s in all_statuses(cfg, ws)}
    assert states["clean"].state == "up to date"
    assert states["dedup"].state == "stale"
    assert any("dedup.ngram changed" in reason for reason in states["dedup"].reasons)
    assert states["filter"].state == "stale"  # it reads dedup


def test_stages_can_be_reordered_by_their_inputs(tmp_path):
    """Filter before dedup (as datatrove's examples do): dedup then reads filter's output,
    score columns included."""
    config = _config(
        tmp_path,
        filter={"dataset": "clean"},
        dedup={"dataset": "filter"},
        tokenizer={"dataset": "dedup"},
    )
    cfg = load_config(config)
    assert curate_order(cfg) == ["clean", "filter", "dedup"]
    _, ws = _run_all(config)
    kept = Dataset.current(ws, "dedup").read().to_pylist()
    assert {d["id"] for d in kept} == {"a0", "a1", "a2"}
    assert all(d["language_score"] is not None for d in kept)


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"dedup": {"dataset": "filter"}}, "loop"),
        ({"filter": {"dataset": "tokenizer"}}, "filter.dataset"),
        ({"clean": {"dataset": "clean"}}, "clean.dataset"),
    ],
)
def test_inputs_that_loop_or_name_no_document_stage_are_config_errors(tmp_path, sections, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_config(tmp_path, **sections))


def test_a_trained_quality_classifier_scores_documents_in_the_filter(tmp_path):
    """`textmill train-quality-classifier` from examples a user gives, evaluated on a labelled
    set of theirs, then the filter's `quality` step with that model."""
    from click.testing import CliRunner

    from pipeline.cli import main

    sentences = [s.strip() + "." for text in ARTICLES for s in text.split(".") if len(s) > 40]
    junk = [
        f"login {i} | cart | menu | $${i}.99 | click | sign up | cookie {i} ok" for i in range(40)
    ]
    (tmp_path / "good.txt").write_text("\n".join(sentences * 3))
    (tmp_path / "bad.txt").write_text("\n".join(junk))
    labelled = [{"text": sentences[i], "label": "hq"} for i in range(5)]
    labelled += [{"text": junk[i], "label": "lq"} for i in range(5)]
    (tmp_path / "labelled.jsonl").write_text("".join(json.dumps(r) + "\n" for r in labelled))
    config = _config(tmp_path)
    examples = ["--positives", str(tmp_path / "good.txt"), "--negatives", str(tmp_path / "bad.txt")]
    examples += ["--labelled", str(tmp_path / "labelled.jsonl")]
    trained = CliRunner().invoke(
        main, ["train-quality-classifier", "-c", str(config), *examples], catch_exceptions=False
    )
    assert trained.exit_code == 0, trained.output
    evaluation = json.loads(trained.output[: trained.output.rindex("}") + 1])
    assert evaluation["external"]["labelled.jsonl"]["recall"] == 1.0
    model = trained.output.split("classifier: ")[1].split()[0]

    steps = "filter.steps=[language,gopher_quality,gopher_repetition,quality]"
    _, ws = _run_all(config, steps, f"filter.quality.model={model}")
    kept = Dataset.current(ws, "filter").read().to_pylist()
    assert {d["id"] for d in kept} == {"a0", "a1", "a2"}
    assert all(d["quality_score"] > 0.5 for d in kept)


def test_a_new_generation_costs_only_its_own_documents_and_never_readmits_a_duplicate(tmp_path):
    """Dedup runs over the union of every crawl generation: a recrawl's copy of a page the
    corpus holds is dropped (the earliest generation wins, even against a longer copy), and
    only the new generation's part is signed."""
    from tests.helpers import article, write_warc

    crawl = tmp_path / "workspace" / "crawl" / "pages"

    def generation(name: str, pages: dict[str, str]) -> None:
        records = [{"url": url, "body": article(url, body)} for url, body in pages.items()]
        write_warc(crawl / name / "00000.warc.gz", records)
        (crawl / name / "_manifest.json").write_text("{}")

    old = {f"https://example.org/{i}": text for i, text in enumerate(ARTICLES)}
    generation("20260101T000000Z", old)
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "workspace": str(tmp_path / "workspace"),
                "sources": [{"name": "pages", "kind": "web"}],
                "runner": {"task_runner": "serial"},
                "clean": {"boilerplate": False},
            }
        )
    )
    first, ws = _run_all(config)
    assert first["dedup"]["docs_out"] == 3

    longer_copy = ARTICLES[0] + "\n\nA footnote the second crawl found on the page."
    generation("20260201T000000Z", {"https://example.org/moved": longer_copy})
    second, _ = _run_all(config)
    assert second["dedup"]["units_run"] == 1 and second["dedup"]["units_reused"] == 1
    assert second["dedup"]["dropped"] == {"near_duplicate": 1}
    kept = Dataset.current(ws, "dedup").read(["url", "generation"]).to_pylist()
    assert {d["url"] for d in kept} == set(old)


def test_a_jaccard_threshold_instead_of_bands_and_rows(tmp_path):
    results, _ = _run_all(_config(tmp_path, dedup={"lsh_threshold": 0.8}))
    assert results["dedup"]["dropped"] == {"exact_duplicate": 1, "near_duplicate": 1}


@needs_shared_data
def test_dedup_keeps_the_stripped_edition_of_a_book_and_says_why(tmp_path):
    """Two web copies of Alice in Wonderland: one as Project Gutenberg ships it (header and
    license, which clean leaves on a web page), one stripped. The stripped one stays though the
    other is longer and first by id, and clusters.parquet says why."""
    raw = gutenberg.read_book_file(SHARED_DATA / "gutenberg" / "books" / "11.txt")
    stripped, found = gutenberg.strip_boilerplate(raw)
    assert found == "markers"
    rows = [
        {"id": "a-mirror", "text": raw, "url": "https://mirror.example.net/11.txt"},
        {"id": "b-stripped", "text": stripped, "url": "https://example.org/alice"},
    ]
    documents = tmp_path / "editions.jsonl"
    documents.write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "workspace": str(tmp_path / "workspace"),
                "sources": [{"name": "mirrors", "kind": "web", "documents": [str(documents)]}],
                "runner": {"task_runner": "serial", "workers": 1},
            }
        )
    )
    _, ws = _run_all(config)
    dedup = Dataset.current(ws, "dedup")
    assert dedup.read(["id"])["id"].to_pylist() == ["b-stripped"]
    assert dedup.read(["id"], rejected=True)["id"].to_pylist() == ["a-mirror"]
    clusters = ws.storage.read_parquet(f"{dedup.dir}/{CLUSTERS_FILE}").to_pylist()
    assert {(r["id"], r["kept"], r["kept_by"]) for r in clusters} == {
        ("b-stripped", True, "boilerplate_removed"),
        ("a-mirror", False, "boilerplate_removed"),
    }
