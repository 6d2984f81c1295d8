"""Scale-out: the same stage code on a Dask cluster, and a workspace on S3 (moto's server)."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml

from pipeline.config import load_config
from pipeline.datasets import Dataset
from pipeline.runner import make_map
from pipeline.stage import run
from pipeline.stages import STAGES, pipeline_order
from pipeline.workspace import Workspace
from tests import test_curate
from tests.conftest import SHARED_DATA, needs_shared_data

CURATE = ("clean", "dedup", "filter")


def _documents(ws: Workspace, stage: str) -> list[dict]:
    """A stage's kept and dropped documents, each set sorted by id."""
    dataset = Dataset.current(ws, stage)
    return [
        sorted(dataset.read(rejected=rejected).to_pylist(), key=lambda doc: doc["id"])
        for rejected in (False, True)
    ]


@needs_shared_data
@pytest.mark.prefect
def test_curate_flow_on_a_dask_cluster_matches_a_local_runner(prefect_server, tmp_path):
    from distributed import Client, LocalCluster, get_task_stream

    import flows.curate

    # Dolma's two sample WARC files, split into 6 units (so clean, dedup and filter map over
    # 6 parts), extracted once and copied into a second workspace, where curate runs on the
    # default runner (a pool of 2 worker processes).
    config = {
        "workspace": str(tmp_path / "dask"),
        "sources": [{"name": "dolma", "warc": [str(SHARED_DATA / "warc/dolma/*.warc.gz")]}],
        "runner": {"chunk_mb": 0.1},
    }
    dask_config, default_config = tmp_path / "dask.yaml", tmp_path / "default.yaml"
    dask_config.write_text(yaml.safe_dump(config))
    default_config.write_text(yaml.safe_dump({**config, "workspace": str(tmp_path / "default")}))
    cfg = load_config(dask_config, ["runner.task_runner=serial"])
    extracted = run(STAGES["extract"], cfg, Workspace(cfg.workspace_root), make_map(cfg.runner))
    assert extracted["stage"] == "extract" and extracted["units_run"] >= 4
    shutil.copytree(tmp_path / "dask", tmp_path / "default")

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        worker_pids = client.run(os.getpid)  # worker address -> pid
        overrides = [
            "runner.task_runner=dask",
            f"runner.dask_scheduler={cluster.scheduler_address}",
        ]
        with get_task_stream(client) as stream:
            on_dask = flows.curate.run(str(dask_config), overrides)
        # The plain runner (`--no-prefect`) maps over the same cluster.
        plain_map = make_map(load_config(dask_config, overrides).runner)
        assert set(plain_map(os.getpid, [()] * 4)) <= set(worker_pids.values())
    on_default = flows.curate.run(str(default_config))
    assert all(r["built"] for r in on_default)

    units = extracted["units_run"]
    assert [(r["stage"], r["built"], r["units_run"]) for r in on_dask] == [
        (stage, True, units) for stage in CURATE
    ]
    # Every unit ran as a task on a worker of the cluster, not in this process, and both
    # workers took some. Dask names a task after its function: clean_part-<token>.
    tasks = Counter(task["key"].split("-")[0] for task in stream.data)
    assert tasks == {"clean_part": units, "signature_part": units, "filter_part": units}
    assert {task["worker"] for task in stream.data} == set(worker_pids)
    assert os.getpid() not in worker_pids.values()

    dask_ws, default_ws = Workspace(str(tmp_path / "dask")), Workspace(str(tmp_path / "default"))
    for stage in CURATE:
        assert dask_ws.current_version(stage) == default_ws.current_version(stage)
        kept, dropped = _documents(dask_ws, stage)
        assert kept and (kept, dropped) == tuple(_documents(default_ws, stage))
    assert Dataset.current(dask_ws, "dedup").manifest.dropped  # across parts, across workers


@pytest.fixture
def s3_bucket(monkeypatch):
    """A bucket on moto's S3 server on 127.0.0.1, reached the way a real store is: through the
    AWS_* environment variables."""
    import boto3
    import s3fs
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    boto3.client("s3").create_bucket(Bucket="textmill")
    yield "textmill"
    s3fs.S3FileSystem.clear_instance_cache()  # its clients know this server only
    server.stop()


TINY_TRAIN = {
    "context": 16,
    "n_layer": 1,
    "n_head": 2,
    "n_embd": 16,
    "batch_size": 2,
    "max_steps": 3,
    "eval_interval": 3,
    "eval_windows": 2,
    "sample_tokens": 4,
}


def _pipeline_config(documents: Path, workspace: str, path: Path) -> Path:
    """From extract to a tiny model."""
    data = {
        "workspace": workspace,
        "sources": [{"name": "docs", "kind": "web", "documents": [str(documents)]}],
        "runner": {"task_runner": "serial"},
        "tokenizer": {"vocab_size": 300, "val_fraction": 0.3},  # a0, a1: train; a2: val
        "shards": {"row_tokens": 16, "shard_mb": 0.001},
        "train": TINY_TRAIN,
    }
    path.write_text(yaml.safe_dump(data))
    return path


def _build_everything(config: Path, *overrides: str) -> tuple[Workspace, dict]:
    from model.train import train

    cfg = load_config(config, list(overrides))
    ws = Workspace(cfg.workspace_root)
    for stage in pipeline_order(cfg):
        run(stage, cfg, ws, make_map(cfg.runner))
    return ws, train(cfg, ws, log=lambda message: None)


def _metrics(ws: Workspace) -> list[dict]:
    """The training metrics without the timings."""
    rows = [
        json.loads(line) for line in ws.storage.read_text("runs/main/metrics.jsonl").splitlines()
    ]
    return [
        {k: v for k, v in row.items() if k not in ("tokens_per_s", "elapsed_s")} for row in rows
    ]


def test_a_workspace_on_s3_gets_the_same_outputs_as_one_on_local_disk(s3_bucket, tmp_path):
    from model.runs import run_status
    from pipeline.shards import token_stream

    # test_curate's documents: every curate stage drops one for its own reason
    documents = test_curate._documents(tmp_path)
    local_config = _pipeline_config(documents, str(tmp_path / "ws"), tmp_path / "local.yaml")
    local, _ = _build_everything(local_config)
    s3_config = _pipeline_config(documents, f"s3://{s3_bucket}/team/ws", tmp_path / "s3.yaml")
    remote, trained = _build_everything(s3_config)

    assert not remote.storage.is_local and remote.storage.exists("datasets/filter/CURRENT")
    assert remote.lock_holder() is None  # each stage took and gave back the lock on S3
    for stage in pipeline_order(load_config(s3_config)):
        assert remote.current_version(stage.name) == local.current_version(stage.name)
    for stage in ("extract", *CURATE):
        assert _documents(remote, stage) == _documents(local, stage)
    tokenizer = f"tokenizer/{local.current_version('tokenizer')}/tokenizer.json"
    assert remote.storage.read_bytes(tokenizer) == local.storage.read_bytes(tokenizer)
    for split in ("train", "val"):
        remote_tokens, local_tokens = token_stream(remote, split), token_stream(local, split)
        assert len(local_tokens) and (remote_tokens == local_tokens).all()

    # The training run lives on S3 too, complete: same losses, its checkpoint, its figures;
    # a longer run resumes from that checkpoint.
    assert trained["step"] == 3 and _metrics(remote) == _metrics(local)
    for name in ("run.json", "loss.png", "samples.txt", "checkpoint/state.pt"):
        assert remote.storage.exists(f"runs/main/{name}"), name
    cfg = load_config(s3_config)
    assert run_status(cfg, remote)["state"] == "up to date"
    _, resumed = _build_everything(s3_config, "train.max_steps=5")
    assert resumed["step"] == 5 and resumed["steps_run"] == 2
    assert [row["step"] for row in _metrics(remote)] == [1, 2, 3, 4, 5]


def test_a_scheduler_address_needs_the_dask_runner(tmp_path):
    from pipeline.config import ConfigError

    path = tmp_path / "run.yaml"
    path.write_text("workspace: ws\nrunner: {dask_scheduler: 'tcp://10.0.0.5:8786'}\n")
    with pytest.raises(ConfigError, match=r"run.yaml: invalid config: runner: .*task_runner: dask"):
        load_config(path)
    cfg = load_config(path, ["runner.task_runner=dask"])
    assert cfg.runner.parallel and cfg.runner.dask_scheduler == "tcp://10.0.0.5:8786"
