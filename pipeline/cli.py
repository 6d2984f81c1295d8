"""The `textmill` command line."""

from __future__ import annotations

import glob
import importlib
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from contextlib import ExitStack
from functools import partial, wraps
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from model.runs import run_status
from pipeline import stage as stage_api
from pipeline.config import (
    FOLDER_NAME_RULE,
    ConfigError,
    RunConfig,
    is_folder_name,
    load_config,
)
from pipeline.crawl_and_train import crawl_and_train, skip_reason, train_status
from pipeline.crawl_and_train import steps as chain_steps
from pipeline.datasets import Dataset, DatasetError
from pipeline.runner import make_map
from pipeline.stages import STAGES, all_statuses, curate_order, get_stage
from pipeline.workspace import Workspace, WorkspaceLocked


class _Console(Console):
    """Rich's console, ending as the rest of the CLI does when its reader goes away."""

    def on_broken_pipe(self) -> None:
        _reader_went_away()


out = _Console()

config_option = click.option(
    "--config",
    "-c",
    "config_path",
    required=True,
    envvar="TEXTMILL_CONFIG",
    type=click.Path(dir_okay=False),
    help="Run config (YAML). Env: TEXTMILL_CONFIG.",
)
set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config value for this run, e.g. --set extract.timeout_s=2 (repeatable).",
)


KNOWN_FAILURES = (ConfigError, DatasetError, WorkspaceLocked, KeyError, ValueError, OSError)


def fails_cleanly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Every failure ends with one line, `textmill: error: …`, and a non-zero exit (2 for a bad
    config). An unexpected one (a bug) also names the file its traceback was written to."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:
            _reader_went_away()
        except KNOWN_FAILURES as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            click.echo(f"textmill: error: {message}", err=True)
            sys.exit(2 if isinstance(exc, ConfigError) else 1)
        except Exception as exc:
            click.echo(f"textmill: error: {_internal_error(exc)}", err=True)
            sys.exit(1)

    return wrapper


def _reader_went_away() -> None:
    """Output piped into `head` and the like: stop quietly, as `cat` does (exit 141, SIGPIPE)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # Python's flush at exit must not fail again
    sys.exit(141)


def _internal_error(exc: Exception) -> str:
    """One line for a failure textmill did not foresee; the traceback goes to a file."""
    fd, path = tempfile.mkstemp(prefix="textmill-error-", suffix=".txt")
    with os.fdopen(fd, "w") as fh:
        traceback.print_exception(exc, file=fh)
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"unexpected {type(exc).__name__}: {first} (a bug; traceback in {path})"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """textmill: crawl web text, curate it, train a tokenizer and a model.

    Every stage reads and writes versioned datasets in the workspace that the run config names.
    Start with `textmill status -c CONFIG`, then `textmill run STAGE -c CONFIG`."""


@main.command()
@click.argument(
    "stage_name",
    metavar="STAGE",
    type=click.Choice(["crawl", *STAGES, "curate", "train", "crawl_and_train"]),
)
@config_option
@set_option
@click.option("--force", is_flag=True, help="Rebuild even if the stage is up to date.")
@click.option(
    "--no-prefect",
    is_flag=True,
    help="Run in this process without Prefect (same stage code; the config's runner maps units).",
)
@fails_cleanly
def run(
    stage_name: str, config_path: str, overrides: tuple[str, ...], force: bool, no_prefect: bool
) -> None:
    """Build STAGE if it is stale (or with --force), as a Prefect flow by default.
    `curate` is clean, dedup and filter, in the order their `dataset` settings give.
    `crawl` adds a crawl generation to every source with something to crawl (or finishes the
    generation a killed crawl left); it is never up to date.
    `crawl_and_train` is what a scheduled run does: a crawl, then every stage that is stale,
    then training, each skipped when up to date (--force: every stage rebuilt, training started
    over); then, when the config sets `retention.keep_versions`, what `textmill gc` removes. It
    prints what ran, what was skipped and why, where the outputs are and what was removed.

    A new version is built beside the current one; CURRENT moves to it only when it is complete,
    so a killed run loses nothing and the next run resumes where it stopped. Afterwards
    `textmill status` shows the stages downstream that became stale."""
    cfg = load_config(config_path, overrides)
    names = curate_order(cfg) if stage_name == "curate" else [stage_name]
    _run_stages(names, cfg, config_path, list(overrides), force, no_prefect)


def _run_stages(
    names: list[str],
    cfg: RunConfig,
    config_path: str,
    overrides: list[str],
    force: bool,
    no_prefect: bool,
) -> None:
    """Run stages in order, printing what each did. Prefect starts once, at the first stage
    that has work to do: a run with nothing to do never starts it."""
    ws = Workspace(cfg.workspace_root)
    with ExitStack() as prefect_session:
        api = None

        def run_flow(name: str) -> Any:
            nonlocal api
            if api is None:
                from flows import prefect_api

                api = prefect_session.enter_context(prefect_api(cfg.workspace_root))
                click.echo(f"Prefect API: {api} ({api.source})", err=True)
            return importlib.import_module(f"flows.{name}").run(config_path, overrides, force)

        def run_step(step: str) -> None:
            _run_stages([step], cfg, config_path, overrides, force, no_prefect)

        for name in names:
            if name == "crawl_and_train":
                _crawl_and_train(cfg, ws, run_flow, run_step, force, no_prefect)
            elif name == "crawl":
                _crawl(cfg, ws, run_flow, no_prefect)
            elif name == "train":
                _train(cfg, ws, run_flow, force, no_prefect)
            else:
                _stage(name, cfg, ws, run_flow, force, no_prefect)


RunFlow = Callable[[str], Any]


def _crawl_and_train(
    cfg: RunConfig,
    ws: Workspace,
    run_flow: RunFlow,
    run_step: Callable[[str], None],
    force: bool,
    no_prefect: bool,
) -> None:
    idle = not force and all(skip_reason(step, cfg, ws) for step in chain_steps(cfg))
    if no_prefect or idle:  # the plain chain; with nothing to do it runs no step
        log = partial(click.echo, err=True)
        _print_crawl_and_train(crawl_and_train(cfg, ws, run_step, force, log))
    else:
        _print_crawl_and_train(run_flow("crawl_and_train"))


def _crawl(cfg: RunConfig, ws: Workspace, run_flow: RunFlow, no_prefect: bool) -> None:
    if not no_prefect:
        for summary in run_flow("crawl").values():
            _print_crawl(summary)
        return
    from pipeline.crawl.crawler import crawl, crawl_sources

    with ws.lock("textmill run crawl"):
        log = partial(click.echo, err=True)
        for source in crawl_sources(cfg):
            _print_crawl(crawl(cfg, ws, source, log=log))


def _train(cfg: RunConfig, ws: Workspace, run_flow: RunFlow, force: bool, no_prefect: bool) -> None:
    run = run_status(cfg, ws)
    if run["state"] == "up to date" and not force:
        click.echo(f"train: run {run['run']} is up to date at step {run['step']}")
    elif not no_prefect:
        _print_train(run_flow("train"))
    else:
        from model.train import train  # imports torch: only when it trains here

        with ws.lock("textmill run train"):
            _print_train(train(cfg, ws, log=partial(click.echo, err=True), restart=force))


def _stage(
    name: str, cfg: RunConfig, ws: Workspace, run_flow: RunFlow, force: bool, no_prefect: bool
) -> None:
    stage = get_stage(name)
    if no_prefect:
        _print_result(stage_api.run(stage, cfg, ws, make_map(cfg.runner, name), force))
        return
    current = None if force else stage_api.up_to_date(stage, cfg, ws)
    if current is not None:
        _print_result(stage_api.summary(stage, current, built=False))
    else:
        _print_result(run_flow(name))


def _print_crawl_and_train(result: dict[str, Any]) -> None:
    click.echo(f"crawl_and_train: ran {', '.join(result['ran']) or 'nothing'}")
    for name, why in result["skipped"].items():
        click.echo(f"  skipped {name}: {why}")
    click.echo("outputs:")
    for name, where in result["outputs"].items():
        click.echo(f"  {name}: {where}")
    _print_removed(result["removed"])


def _print_removed(removed: dict[str, list[str]]) -> None:
    for where, names in removed.items():
        click.echo(f"{where}: removed {', '.join(names)}")


def _print_crawl(summary: dict[str, Any]) -> None:
    def reasons(counts: dict[str, int]) -> str:
        return ", ".join(f"{reason} {n}" for reason, n in counts.items()) or "none"

    click.echo(
        f"crawl {summary['source']}: generation {summary['generation']}"
        f"{' (resumed)' if summary['resumed'] else ''} in {summary['seconds']:.1f} s: "
        f"{summary['fetched']} fetched, {summary['not_modified']} not modified, "
        f"{summary['requests']} requests, {len(summary['warc_files'])} WARC files; "
        f"failed: {reasons(summary['failed'])}; skipped: {reasons(summary['skipped'])}"
    )


def _print_train(result: dict[str, Any]) -> None:
    evals = ", ".join(f"{k} {v}" for k, v in result.items() if k.endswith("bits_per_byte"))
    click.echo(
        f"train: step {result.get('step', '-')}, {result.get('steps_run', 0)} steps run in "
        f"{result.get('train_s', 0)} s; loss {result.get('loss', '-')}; {evals or 'no evaluation'}"
    )


def _print_result(result: dict[str, Any]) -> None:
    name, version = result["stage"], result["version"]
    what = result["headline"] or f"{result['docs_out']} documents"
    if not result["built"]:
        click.echo(f"{name}: up to date (version {version}: {what})")
        return
    if result["headline"]:
        click.echo(f"{name}: built version {version} in {result['wall_s']:.1f} s: {what}")
        return
    dropped = ", ".join(f"{r} {n}" for r, n in result["dropped"].items()) or "none"
    click.echo(
        f"{name}: built version {version} in {result['wall_s']:.1f} s: "
        f"{result['docs_out']} documents out of {result['docs_in']}; dropped: {dropped}; "
        f"{result['units_run']} units run, {result['units_reused']} reused; "
        f"{result['errors']} input errors (see the manifest)"
    )


@main.command()
@config_option
@set_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@fails_cleanly
def status(config_path: str, overrides: tuple[str, ...], as_json: bool) -> None:
    """Each stage: up to date, stale (and why) or missing, with its counts."""
    cfg = load_config(config_path, overrides)
    ws = Workspace(cfg.workspace_root)
    statuses = all_statuses(cfg, ws)
    run = train_status(cfg, ws, statuses)
    if as_json:
        training = {"stage": "train", **run}
        out.print_json(json.dumps([*(s.as_dict() for s in statuses), training]))
        return
    table = Table(title=f"workspace {ws.root}")
    for column in ("stage", "state", "version", "docs", "dropped", "errors"):
        table.add_column(column, no_wrap=True)
    colors = {"up to date": "green", "stale": "yellow", "missing": "red"}
    for s in statuses:
        table.add_row(
            s.stage,
            f"[{colors[s.state]}]{s.state}[/]",
            s.version or "-",
            "-" if s.docs_out is None or s.headline else str(s.docs_out),
            str(sum(s.dropped.values())) if s.dropped else "-",
            str(s.errors),
        )
    out.print(table)
    for s in statuses:
        if s.headline:
            click.echo(f"{s.stage}: {s.headline}")
        if s.dropped:
            click.echo(f"{s.stage} dropped: " + ", ".join(f"{r} {n}" for r, n in s.dropped.items()))
        for reason in s.reasons if s.state == "stale" else []:
            click.echo(f"{s.stage} is stale: {reason}")
    scores = ", ".join(f"{k} {v}" for k, v in run.items() if k.endswith("bits_per_byte"))
    click.echo(
        f"train (run {run['run']}): {run['state']}"
        + (f", step {run['step']}" if "step" in run else "")
        + (f"; {scores}" if scores else "")
    )
    for reason in run["reasons"] if run["state"] in ("stale", "unfinished") else []:
        click.echo(f"train is {run['state']}: {reason}")
    holder = ws.lock_holder()
    if holder:
        click.echo(f"locked by {holder.get('purpose')} (pid {holder.get('pid')})")


@main.command()
@click.argument("stage_name", metavar="STAGE", type=click.Choice(list(STAGES)))
@click.argument("version", required=False)
@config_option
@fails_cleanly
def use(stage_name: str, version: str | None, config_path: str) -> None:
    """Make a committed VERSION of STAGE current again (e.g. go back to the version before a
    rebuild); without VERSION, list the committed versions. The stages after it then read it:
    `textmill status` shows which became stale. Versions are kept until `textmill gc`."""
    cfg = load_config(config_path)
    ws = Workspace(cfg.workspace_root)
    committed = ws.committed_versions(stage_name)
    current = ws.current_version(stage_name)
    if version is None:
        for name in committed:
            manifest = Dataset(ws, stage_name, name).manifest
            mark = "*" if name == current else " "
            click.echo(f"{mark} {name}  {manifest.created_at[:19]}  {manifest.docs_out:,} out")
        return
    if version not in committed:
        known = ", ".join(committed) or "none"
        raise DatasetError(f"{stage_name} has no committed version {version!r}; committed: {known}")
    with ws.lock(f"textmill use {stage_name}"):
        ws.set_current(stage_name, version)
    click.echo(f"{stage_name}: version {version} is current (was {current})")


@main.command()
@config_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=4200, show_default=True, help="Port to listen on.")
@fails_cleanly
def server(config_path: str, host: str, port: int) -> None:
    """Run a local Prefect server (its SQLite database in <workspace>/.prefect) in the
    foreground until Ctrl-C, with its UI at the printed URL. `textmill serve` needs one for
    schedules (on port 4200, else set PREFECT_API_URL); `textmill run` uses it, on any port,
    while it runs: it records its process and address in <workspace>/.prefect/server.json.
    With PREFECT_API_URL set, textmill uses that server: this says which."""
    given = os.environ.get("PREFECT_API_URL")
    if given:
        click.echo(f"PREFECT_API_URL is set: textmill uses the Prefect server at {given}")
        click.echo("(unset it to start a local one here)")
        return
    from flows import LOCAL_SERVER, prefect_api, record_server, recorded_server

    cfg = load_config(config_path)
    api = f"http://{host}:{port}/api"
    # prefect_api sets Prefect up for the workspace as the flows see it; the URL given, it
    # starts no server of its own
    os.environ["PREFECT_API_URL"] = api
    with prefect_api(cfg.workspace_root):
        running = recorded_server()
        if running:
            click.echo(f"textmill server already runs for {cfg.workspace_root}: API {running}")
            return
        click.echo(f"Prefect server for {cfg.workspace_root}: UI http://{host}:{port}, API {api}")
        if api != LOCAL_SERVER:
            click.echo(f"For textmill serve to use it: export PREFECT_API_URL={api}")
        record_server(api)  # before the exec: this process, its pid, becomes the server
        command = ["prefect", "server", "start", "--host", host, "--port", str(port)]
        os.execv(sys.executable, [sys.executable, "-m", *command])


@main.command()
@config_option
@set_option
@fails_cleanly
def serve(config_path: str, overrides: tuple[str, ...]) -> None:
    """Register this config's deployments on the Prefect server (PREFECT_API_URL, else the
    local one of `textmill server`) and run them until Ctrl-C:

    \b
    - textmill/crawl-and-train, crawl, curate and train on the cron schedules of the config's
      `schedules:` section (or when triggered);
    - textmill/extract, clean, dedup, filter, tokenizer and shards when triggered, e.g.
      `prefect deployment run textmill/dedup --param force=true`.

    Each deployment runs one run at a time (a second waits for the first to end);
    schedules.max_concurrent_runs bounds the runs of all of them. A failed run shows in the UI,
    in its logs and here, and is POSTed to schedules.notify_webhook when set. The config is
    read again by every run; serve again after changing its schedules."""
    from flows import prefect_api

    cfg = load_config(config_path, overrides)
    # Schedules need a server that stays up, never Prefect's embedded one: the one given, or the
    # one `textmill server` started and recorded in the workspace's Prefect home
    with prefect_api(cfg.workspace_root, embedded=False):
        from flows.serve import serve_until_stopped

        serve_until_stopped(config_path, list(overrides), echo=click.echo)


@main.command()
@config_option
@click.option("--run", "run_name", default=None, help="The run (default: the config's train.run).")
@click.option("--tokens", default=200, show_default=True, help="Tokens to generate.")
@click.option("--temperature", default=0.8, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.argument("prompt")
@fails_cleanly
def sample(
    config_path: str, run_name: str | None, tokens: int, temperature: float, seed: int, prompt: str
) -> None:
    """Print text that a run's model generates from PROMPT."""
    from model.train import sample as generate

    cfg = load_config(config_path)
    if run_name is not None and not is_folder_name(run_name):
        # a run is a folder of <root>/runs/: a path (../../x) would read a model elsewhere
        raise ConfigError(f"--run {run_name!r}: not a run name ({FOLDER_NAME_RULE})")
    ws = Workspace(cfg.workspace_root)
    run_dir = Path(ws.storage.path(f"runs/{run_name or cfg.train.run}"))
    if not (run_dir / "run.json").exists():
        raise DatasetError(f"no run {run_dir.name} in {ws.root}: `textmill run train` first")
    click.echo(generate(ws, run_dir, prompt, tokens, temperature=temperature, seed=seed))


@main.command("train-quality-classifier")
@config_option
@set_option
@click.option(
    "--positives", multiple=True, help="Good examples: JSONL with `text`, or one per line."
)
@click.option("--negatives", multiple=True, help="Bad examples, as --positives.")
@click.option(
    "--labelled", multiple=True, help="An evaluation set: JSONL with `text` and `label` (hq/lq)."
)
@click.option(
    "--ccnet",
    multiple=True,
    help="CCNet JSONL(.gz) files or a glob: head bucket = good, to evaluate.",
)
@click.option("--seed", default=0, show_default=True)
@click.option("--epochs", default=5, show_default=True)
@fails_cleanly
def train_quality_classifier(
    config_path: str,
    overrides: tuple[str, ...],
    positives: tuple[str, ...],
    negatives: tuple[str, ...],
    labelled: tuple[str, ...],
    ccnet: tuple[str, ...],
    seed: int,
    epochs: int,
) -> None:
    """Train the fastText classifier that the filter's `quality` step uses.

    Without --positives/--negatives, as DCLM does: books and articles of the dataset the filter
    reads are good, what clean and filter rejected is bad. It is evaluated on a held-out split
    and on the sets you give with --labelled and --ccnet, which our filters did not label."""
    from pipeline.datasets import short_digest
    from pipeline.filters import quality

    cfg = load_config(config_path, overrides)
    ws = Workspace(cfg.workspace_root)
    good = [text for path in positives for text in quality.read_examples(path)]
    bad = [text for path in negatives for text in quality.read_examples(path)]
    if not (good and bad):
        found_good, found_bad = quality.workspace_examples(ws, cfg.filter.dataset)
        good, bad = good or found_good, bad or found_bad
    if not good:
        raise ValueError(
            f"no good examples: {cfg.filter.dataset} has no books or articles; give --positives"
        )
    if not bad:
        raise ValueError("no bad examples: clean and filter rejected nothing yet; give --negatives")
    external = {Path(path).name: quality.read_labelled(path) for path in labelled}
    if ccnet:  # a quoted glob is expanded here
        files = [match for path in ccnet for match in sorted(glob.glob(path)) or [path]]
        external["ccnet"] = quality.ccnet_examples(files)
    version = short_digest(sorted(good), sorted(bad), seed, epochs)
    out_dir = ws.storage.path(f"{quality.MODELS_FOLDER}/{version}")
    with ws.lock("textmill train-quality-classifier"):
        evaluation = quality.train_quality_classifier(
            good, bad, out_dir, seed=seed, epochs=epochs, external=external
        )
    click.echo(json.dumps(evaluation, indent=2))
    click.echo(
        f"classifier: {out_dir}/{quality.MODEL_FILE}\nTo use it: set filter.quality.model to that "
        "path and add `quality` to filter.steps."
    )


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
stage_option = click.option(
    "--stage",
    default=None,
    help="The document stage (default: the dataset the tokenizer reads, the curated one).",
)


def _catalog(config_path: str) -> Any:
    from pipeline.inspect import Catalog

    cfg = load_config(config_path)
    return Catalog(cfg, Workspace(cfg.workspace_root))


def _print(data: Any, as_json: bool, render: Callable[[Any], None]) -> None:
    if as_json:
        out.print_json(json.dumps(data, default=str))
    else:
        render(data)


def _table(title: str, rows: list[dict[str, Any]], columns: list[str] | None = None) -> Table:
    columns = columns or (list(rows[0]) if rows else [])
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    return table


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _one_line(text: str | None, width: int = 120) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


@main.group("inspect")
def inspect_group() -> None:
    """Look into the workspace's datasets: summary, funnel, samples, one document, what-if
    thresholds and SQL over the Parquet parts (DuckDB). Each view takes --json for scripts."""


@inspect_group.command("summary")
@config_option
@stage_option
@click.option("--top", default=10, show_default=True, help="Rows per breakdown.")
@json_option
@fails_cleanly
def inspect_summary(config_path: str, stage: str | None, top: int, as_json: bool) -> None:
    """Documents, characters and tokens (once shards exist) by source kind, language and
    domain; the length distribution."""
    from pipeline.inspect import summary

    def render(s: dict[str, Any]) -> None:
        tokens = "no shards of this version yet" if s["tokens"] is None else f"{s['tokens']:,}"
        click.echo(
            f"{s['stage']} {s['version']}: {s['documents']:,} documents, "
            f"{s['characters']:,} characters, tokens: {tokens}, {s['domains']:,} domains"
        )
        columns = ["value", "documents", "characters", "tokens"]
        for key, title in (("by_source_kind", "source kind"), ("by_language", "language")):
            out.print(_table(title, s[key], columns))
        out.print(_table(f"top {len(s['by_domain'])} domains", s["by_domain"], columns))
        q = s["length"]["quantiles"]
        click.echo("length (characters): " + ", ".join(f"{k} {v}" for k, v in q.items()))
        most = max((h["documents"] for h in s["length"]["histogram"]), default=1)
        for h in s["length"]["histogram"]:
            bar = "█" * max(1, round(40 * h["documents"] / most))
            click.echo(f"  {h['low']:>9,} - {h['high'] - 1:>9,}  {bar} {h['documents']:,}")

    _print(summary(_catalog(config_path), stage, top), as_json, render)


@inspect_group.command("funnel")
@config_option
@json_option
@fails_cleanly
def inspect_funnel(config_path: str, as_json: bool) -> None:
    """Documents in and out of each stage, from the crawl's fetched pages to the filter, and
    how many each stage dropped per reason."""
    from pipeline.inspect import funnel

    def render(rows: list[dict[str, Any]]) -> None:
        shown = [{**r, "dropped": sum(r.get("dropped", {}).values())} for r in rows]
        columns = ["stage", "version", "docs_in", "docs_out", "dropped", "errors", "note"]
        out.print(_table("funnel", shown, columns))
        for r in rows:
            for reason, count in r.get("dropped", {}).items():
                click.echo(f"  {r['stage']} dropped {count:,}: {reason}")

    _print(funnel(_catalog(config_path)), as_json, render)


@inspect_group.command("sample")
@config_option
@stage_option
@click.option("-n", "n", type=int, default=None, help="Documents (default 10; 20 with --search).")
@click.option("--seed", default=0, show_default=True, help="The same seed, the same sample.")
@click.option("--reason", default=None, help="Dropped documents of this reason (or filter).")
@click.option("--domain", default=None, help="This hostname and its subdomains.")
@click.option("--search", default=None, help="Text containing this (first matches in order).")
@click.option("--score", default=None, metavar="COL:LO:HI", help="A score column in a range.")
@json_option
@fails_cleanly
def inspect_sample(
    config_path: str,
    stage: str | None,
    n: int | None,
    seed: int,
    reason: str | None,
    domain: str | None,
    search: str | None,
    score: str | None,
    as_json: bool,
) -> None:
    """Sample documents: at random (seeded), dropped ones by reason, by domain, by substring
    or by score range; the conditions combine."""
    from pipeline.inspect import parse_score_range, sample

    score_range = parse_score_range(score) if score else None
    found = sample(_catalog(config_path), stage, n, seed, reason, domain, search, score_range)

    def render(s: dict[str, Any]) -> None:
        click.echo(f"{len(s['documents'])} documents of {s['source']}")
        for d in s["documents"]:
            why = f"  {d['stage']}: {d['reason']} ({d['detail']})" if reason else ""
            click.echo(f"\n{d['id']}  {d['url']}  {d['chars']:,} characters{why}")
            click.echo(f"    {_one_line(d['preview'], 200)}")

    _print(found, as_json, render)


@inspect_group.command("doc")
@config_option
@click.argument("doc_id", metavar="ID")
@click.option("--chars", default=2000, show_default=True, help="Text shown (--json: all).")
@json_option
@fails_cleanly
def inspect_doc(config_path: str, doc_id: str, chars: int, as_json: bool) -> None:
    """One document: where it was dropped (if it was), provenance, metadata, every filter
    score, its dedup cluster, and its text."""
    from pipeline.inspect import document

    def render(d: dict[str, Any]) -> None:
        where = ", ".join(
            f"{s['stage']} ({'kept' if s['kept'] else 'dropped'})" for s in d["stages"]
        )
        click.echo(f"document {d['id']}: {where}")
        if d["dropped"]:
            drop = d["dropped"]
            click.echo(f"dropped by {drop['stage']}: {drop['reason']} ({drop['detail']})")
        for key in ("provenance", "metadata", "scores"):
            rows = [{"field": k, "value": v} for k, v in d[key].items() if v is not None]
            out.print(_table(key, rows, ["field", "value"]))
        cluster = d["dedup"]
        if cluster is None:
            click.echo("dedup: no duplicate")
        elif cluster["kept"]:
            replaced = ", ".join(f"{r['id']} ({r['kind']})" for r in cluster["replaced"])
            click.echo(f"dedup: kept in place of {replaced}")
        else:
            click.echo(
                f"dedup: {cluster['kind']} duplicate of {cluster['kept_in_its_place']} "
                f"(similarity {cluster['similarity']}), which was kept in its place"
            )
        text = d["text"] or ""
        more = f"\n… {len(text) - chars:,} more characters" if len(text) > chars else ""
        click.echo(f"\n{text[:chars]}{more}")

    _print(document(_catalog(config_path), doc_id), as_json, render)


@inspect_group.command("whatif")
@config_option
@click.option(
    "--set",
    "overrides",
    multiple=True,
    required=True,
    metavar="filter.STEP.SETTING=VALUE",
    help="A filter threshold to try instead, e.g. --set filter.language.min_score=0.8.",
)
@click.option("--limit", default=20, show_default=True, help="Documents listed per change.")
@json_option
@fails_cleanly
def inspect_whatif(config_path: str, overrides: tuple[str, ...], limit: int, as_json: bool) -> None:
    """How many documents would the filter keep with these thresholds, and which change?
    From the stored scores, with the filters' own rules: nothing is recomputed."""
    from pipeline.inspect import whatif

    def render(w: dict[str, Any]) -> None:
        for key, (before, after) in w["changed"].items():
            click.echo(f"{key}: {before!r} -> {after!r}")
        click.echo(
            f"kept: {w['kept_before']:,} -> {w['kept_after']:,} of {w['docs_in']:,} "
            f"({w['newly_dropped_count']:,} newly dropped, {w['newly_kept_count']:,} newly "
            f"kept); {w['unknown']:,} would pass this rule, later filters not scored"
        )
        for key, title in (
            ("newly_dropped", "newly dropped"),
            ("newly_kept", "newly kept"),
            ("unknown_docs", "would pass this rule, later filters not scored"),
        ):
            if w[key]:
                out.print(_table(title, w[key]))

    _print(whatif(_catalog(config_path), list(overrides), limit), as_json, render)


@inspect_group.command("sql")
@config_option
@click.argument("query")
@json_option
@fails_cleanly
def inspect_sql(config_path: str, query: str, as_json: bool) -> None:
    """Run QUERY (DuckDB SQL) over views named after the stages: extract, clean, dedup, filter,
    <stage>_rejected, clusters (dedup's) and shards (tokens per document)."""
    from pipeline.inspect import sql

    def render(result: dict[str, Any]) -> None:
        rows = [dict(zip(result["columns"], row, strict=True)) for row in result["rows"]]
        out.print(_table(f"{len(rows)} rows", rows, result["columns"]))

    _print(sql(_catalog(config_path), query), as_json, render)


@main.command()
@config_option
@click.option("--run", "run_name", default=None, help="Trace this model run (default: current).")
@json_option
@fails_cleanly
def lineage(config_path: str, run_name: str | None, as_json: bool) -> None:
    """The chain crawl generations -> dataset versions -> tokenizer -> shards -> model runs,
    with each step's version, config digest and time: what a model learned from, down to the
    WARC files."""
    from pipeline.lineage import lineage as find_lineage

    cfg = load_config(config_path)

    def render(chain: dict[str, Any]) -> None:
        columns = ["kind", "name", "version", "created_at", "config_digest", "inputs", "detail"]
        steps = [{**s, "inputs": ", ".join(s["inputs"])} for s in chain["steps"]]
        out.print(_table("lineage", steps, columns))
        click.echo(f"{len(chain['warc_files'])} input files:")
        for f in chain["warc_files"]:
            click.echo(f"  {f['path']} (sha256 {f['sha256'][:16]}…)")
        for r in chain["other_runs"]:
            click.echo(f"other run: {r['run']} (shards {r['shards_version']})")

    _print(find_lineage(cfg, Workspace(cfg.workspace_root), run_name), as_json, render)


@main.command()
@config_option
@set_option
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False),
    default=None,
    help="HTML file to write (default: <workspace>/reports/<train.run>.html).",
)
@fails_cleanly
def report(config_path: str, overrides: tuple[str, ...], output: str | None) -> None:
    """Write one self-contained HTML page on the run (opens from disk, loads nothing): the
    funnel, length and score histograms (each filter's thresholds drawn, what it dropped),
    languages and domains, dedup clusters, tokens per split, training in bits per byte (every
    evaluation, the unigram baseline), and sample documents kept and dropped."""
    from pipeline.report import write_report

    cfg = load_config(config_path, overrides)
    click.echo(f"report: {write_report(cfg, Workspace(cfg.workspace_root), output)}")


@main.command()
@config_option
@set_option
@click.option(
    "--keep",
    type=int,
    default=None,
    help="Committed versions kept per stage [default: retention.keep_versions, else 3].",
)
@fails_cleanly
def gc(config_path: str, overrides: tuple[str, ...], keep: int | None) -> None:
    """Delete what no stage reads any more:

    \b
    - versions of each dataset, of the tokenizer and of the shards beyond the newest --keep
      (the current one always stays), and the folders that killed builds left;
    - with `extract.generation_window` set, each source's crawl generations older than the
      newest generation_window (the frontier keeps every URL's history, so recrawls stay
      conditional: a page unchanged since a deleted generation answers 304 and is not stored
      again, so widen the window before gc if extract should read it again).

    A crawl-and-train run ends with the same clean-up when the config sets
    `retention.keep_versions`. Training runs (runs/) are never touched."""
    cfg = load_config(config_path, overrides)
    if keep is None:
        keep = cfg.retention.keep_versions or 3
    removed = Workspace(cfg.workspace_root).gc(keep, cfg.extract.generation_window)
    _print_removed(removed)
    if not removed:
        click.echo("nothing to remove")


@main.command()
@click.argument("stage_name", metavar="[STAGE]", required=False, type=click.Choice(list(STAGES)))
@config_option
@json_option
@fails_cleanly
def verify(stage_name: str | None, config_path: str, as_json: bool) -> None:
    """Check every committed version (of STAGE, or of every stage) against its manifest: each
    part and file there, of the size and sha256 the manifest records; every manifest readable.
    Prints each mismatch and what to do, and exits 1 if there is any. Runs check less: a part's
    size whenever it is read, its sha256 when a build reuses it or reads it as input."""
    from pipeline.datasets import verify as verify_versions

    cfg = load_config(config_path)
    ws = Workspace(cfg.workspace_root)
    order = {name: i for i, name in enumerate(STAGES)}
    stages = sorted(ws.stages_on_disk(), key=lambda name: order.get(name, len(order)))
    checks = verify_versions(ws, [stage_name] if stage_name else stages)
    if as_json:
        out.print_json(json.dumps([check.__dict__ for check in checks]))
    for check in checks if not as_json else []:
        name = f"{check.stage} {check.version}{' (current)' if check.current else ''}"
        if not check.problems:
            click.echo(f"ok       {name}: {check.files} files")
        for problem in check.problems:
            click.echo(f"DAMAGED  {name}: {problem}")
        if check.problems:
            click.echo(f"         what to do: {check.advice}")
    damaged = sum(1 for check in checks if check.problems)
    files = sum(check.files for check in checks)
    if damaged:
        raise DatasetError(f"verify: {damaged} of {len(checks)} versions damaged ({files} files)")
    if not as_json:
        click.echo(f"verify: {len(checks)} versions whole ({files} files)")


@main.command()
@click.argument("targets", nargs=-1, metavar="URL|DOMAIN...")
@click.option(
    "--file",
    "list_file",
    type=click.Path(dir_okay=False),
    help="A file of URLs and domains, one a line (`#` comments).",
)
@config_option
@click.option("--note", default=None, help="Why (kept with each entry), e.g. a request's id.")
@json_option
@fails_cleanly
def takedown(
    targets: tuple[str, ...],
    list_file: str | None,
    config_path: str,
    note: str | None,
    as_json: bool,
) -> None:
    """Take pages (a URL, with its scheme) or whole sites (a domain, with its subdomains) out of
    the corpus: they join the workspace's takedown list (<workspace>/takedown.json), the current
    document datasets get new versions without them (nothing is extracted or filtered again), the
    shards are rebuilt, and the model runs trained on data that held them are named. Every later
    crawl skips them, and every later build drops them. The tokenizer is not retrained.

    A takedown that was killed is finished by the next `textmill takedown`, with the same
    targets or with none."""
    from pipeline import takedown as takedowns

    items = [*targets, *(takedowns.read_list_file(list_file) if list_file else [])]
    entries = [takedowns.parse(item, note) for item in items]
    cfg = load_config(config_path)
    ws = Workspace(cfg.workspace_root)
    if not items and takedowns.pending_job(ws) is None:
        raise click.UsageError(
            "give a URL or domain to take down, or --file LIST (no takedown is left to finish)"
        )
    result = takedowns.take_down(cfg, ws, entries, make_map(cfg.runner, "shards"))
    _print(result, as_json, lambda r: click.echo("\n".join(takedowns.describe_result(r))))


@main.command()
@click.option(
    "--config",
    "-c",
    "config_path",
    default="configs/demo.yaml",
    show_default=True,
    envvar="TEXTMILL_CONFIG",
    type=click.Path(dir_okay=False),
    help="Run config (YAML) whose seeds are on the pydoc site. Env: TEXTMILL_CONFIG.",
)
@set_option
@click.option("--no-prefect", is_flag=True, help="Run the steps without Prefect.")
@fails_cleanly
def demo(config_path: str, overrides: tuple[str, ...], no_prefect: bool) -> None:
    """The main job, offline: serve this environment's pydoc documentation on the port the
    seeds name, run crawl-and-train over it to the end (crawl, extract, clean, dedup, filter,
    tokenizer, shards, train), write the HTML report, and show where everything is and the
    headline figures. Run it again: a new crawl generation, and training continues."""
    # Before torch loads: its OpenMP threads otherwise spin while they wait, and where other
    # programs use the cores too each training step becomes ~15x slower (measured on 2 cores).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from pipeline.demo import figures, outputs, pydoc_site, site_address
    from pipeline.report import write_report

    cfg = load_config(config_path, overrides)
    ws = Workspace(cfg.workspace_root)
    started = time.perf_counter()
    host, port = site_address(cfg)
    Path(ws.root).mkdir(parents=True, exist_ok=True)
    with pydoc_site(port, host, log=Path(ws.root) / "pydoc.log") as url:
        click.echo(f"demo site: {url} (pydoc's documentation of {sys.prefix})", err=True)
        _run_stages(["crawl_and_train"], cfg, config_path, list(overrides), False, no_prefect)
    report_path = write_report(cfg, ws)
    click.echo(
        f"\nDone in {time.perf_counter() - started:.0f} s "
        f"(load average {os.getloadavg()[0]:.1f}). Workspace: {ws.root}"
    )
    for name, where in {**outputs(cfg, ws), "report": report_path}.items():
        click.echo(f"  {name}: {where}")
    f = figures(cfg, ws)
    click.echo(
        f"{f['pages_crawled']:,} pages crawled; {f['curated_mb']} MB of curated text "
        f"({f['curated_documents']:,} documents); {f['train_tokens']:,} training tokens; "
        f"validation {f['val_bits_per_byte']} bits per byte, unigram baseline "
        f"{f['unigram_val_bits_per_byte']} on the same tokens."
    )
    for more in ("status", "inspect funnel", "inspect summary"):
        click.echo(f"More: textmill {more} -c {config_path}")


if __name__ == "__main__":
    main()
