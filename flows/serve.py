"""`textmill serve`: a run config's deployments on a Prefect server, run until stopped.

Every deployment runs one flow, `textmill`, which runs one of textmill's flows as `textmill run`
does: through the flow module's `run`, which gives the flow the task runner the config asks for.
(A served run loads its flow object anew, with the task runner it was declared with; so the
deployed flow is this small one, and the stage's flow runs as its subflow.)

- `crawl-and-train`, `crawl`, `curate` and `train` run on the config's cron schedules
  (`schedules:`), or when triggered;
- `extract`, `clean`, `dedup`, `filter`, `tokenizer` and `shards` run one stage when triggered:
  `prefect deployment run textmill/extract --param force=true` rebuilds it.

Each deployment runs one run at a time (more wait their turn) and `max_concurrent_runs` bounds
the runs of all of them. A run that fails or crashes says so in its logs, which the serving
terminal prints too; with `schedules.notify_webhook` set, a Prefect automation also POSTs it
there.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import Flow, flow, serve
from prefect.automations import Automation, CallWebhook, EventTrigger, Posture
from prefect.blocks.webhook import Webhook
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import (
    ConcurrencyLimitConfig,
    ConcurrencyLimitStrategy,
    FlowRun,
    State,
)
from prefect.client.schemas.schedules import CronSchedule
from prefect.deployments.runner import RunnerDeployment
from prefect.logging.loggers import flow_run_logger
from prefect.settings import PREFECT_API_URL
from prefect.types.entrypoint import EntrypointType

from pipeline.config import RunConfig, load_config
from pipeline.stages import STAGES

SCHEDULED = ("crawl_and_train", "crawl", "curate", "train")  # SchedulesConfig names them
RERUNS = tuple(STAGES)  # run on demand, one stage at a time
AUTOMATION = "textmill: failed runs"
WEBHOOK_BLOCK = "textmill-failed-runs"
# The automation's message, in Slack's {"text": ...} shape (Jinja, rendered by the server)
WEBHOOK_PAYLOAD = (
    '{"text": {{ ("textmill: " ~ deployment.name ~ " run " ~ flow_run.name ~ " "'
    ' ~ flow_run.state.name ~ ": " ~ flow_run.state.message ~ " " ~ flow_run|ui_url) | tojson }}}'
)


def log_failure(flow: Flow, flow_run: FlowRun, state: State) -> None:
    """One line in the run's logs, which the terminal of `textmill serve` shows as well."""
    stage = flow_run.parameters.get("stage")
    flow_run_logger(flow_run, flow).error(
        f"textmill: {stage} run {flow_run.name} {state.name}: {state.message}"
    )


@flow(name="textmill", on_failure=[log_failure], on_crashed=[log_failure])
def textmill_flow(
    stage: str, config_path: str, overrides: list[str] | None = None, force: bool = False
) -> Any:
    """Run `stage` (a stage, crawl, curate, train or crawl_and_train) as `textmill run` does."""
    return importlib.import_module(f"flows.{stage}").run(config_path, overrides, force)


def deployment_name(stage: str) -> str:
    return stage.replace("_", "-")


def deployments(cfg: RunConfig, config_path: str, overrides: list[str]) -> list[RunnerDeployment]:
    """One deployment per scheduled flow and per stage, parameterised by the config's absolute
    path and the overrides, each limited to one run at a time (others wait in the queue)."""
    one_at_a_time = ConcurrencyLimitConfig(
        limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE
    )
    found = []
    for stage in (*SCHEDULED, *RERUNS):
        cron = getattr(cfg.schedules, stage) if stage in SCHEDULED else None
        # an empty list removes a schedule that an earlier config had
        schedules = [CronSchedule(cron=cron, timezone=cfg.schedules.timezone)] if cron else []
        found.append(
            textmill_flow.to_deployment(
                deployment_name(stage),
                schedules=schedules,
                parameters={"stage": stage, "config_path": config_path, "overrides": overrides},
                concurrency_limit=one_at_a_time,
                description=f"textmill run {stage} -c {config_path}",
                tags=["textmill"],
                # the run's process imports flows.serve, wherever `textmill serve` started
                entrypoint_type=EntrypointType.MODULE_PATH,
            )
        )
    return found


def notify_failures(deployment_ids: list[UUID], webhook: str | None) -> None:
    """Keep one automation that POSTs to `webhook` when a run of these deployments fails or
    crashes; none without a webhook. Serving again replaces it, so there is never a second."""
    with get_client(sync_client=True) as client:
        for automation in client.read_automations_by_name(AUTOMATION):
            client.delete_automation(automation.id)
    if webhook is None:
        return
    block_id = Webhook(url=webhook, headers={"Content-Type": "application/json"}).save(
        WEBHOOK_BLOCK, overwrite=True
    )
    Automation(
        name=AUTOMATION,
        description="Set by `textmill serve` from schedules.notify_webhook.",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={
                "prefect.resource.id": [f"prefect.deployment.{id_}" for id_ in deployment_ids]
            },
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[CallWebhook(block_document_id=block_id, payload=WEBHOOK_PAYLOAD)],
    ).create()


def register(config_path: str, overrides: list[str]) -> list[RunnerDeployment]:
    """Create or update the deployments and the failure automation on the server."""
    cfg = load_config(config_path, overrides)
    found = deployments(cfg, str(Path(config_path).resolve()), overrides)
    notify_failures([deployment.apply() for deployment in found], cfg.schedules.notify_webhook)
    return found


def serve_until_stopped(
    config_path: str, overrides: list[str], echo: Callable[[str], None] = print
) -> None:
    """Register, then run what the schedules and triggers ask for until Ctrl-C (or SIGTERM);
    the schedules pause when serving stops. Raises ConnectionError when no server answers."""
    cfg = load_config(config_path, overrides)
    with get_client(sync_client=True) as client:
        if client.api_healthcheck() is not None:
            raise ConnectionError(
                f"no Prefect server answers at {PREFECT_API_URL.value()}: start one with "
                "`textmill server -c CONFIG` (in another terminal) or set PREFECT_API_URL"
            )
    found = register(config_path, overrides)
    for stage in SCHEDULED:
        cron = getattr(cfg.schedules, stage)
        when = f"{cron} ({cfg.schedules.timezone})" if cron else "when triggered"
        echo(f"textmill/{deployment_name(stage)}: {when}")
    webhook = cfg.schedules.notify_webhook
    echo(
        f"failed runs: POSTed to {webhook} (automation {AUTOMATION!r})"
        if webhook
        else "failed runs: logged here and in the run's logs (set schedules.notify_webhook to "
        "be called)"
    )
    serve(*found, limit=cfg.schedules.max_concurrent_runs)
