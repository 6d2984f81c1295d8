"""Config files: validated, with errors that name the file, the key and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import ConfigError, load_config

CONFIGS = Path(__file__).parents[1] / "configs"


@pytest.mark.parametrize("name", ["demo.yaml", "test.yaml"])
def test_shipped_configs_are_valid(name):
    cfg = load_config(CONFIGS / name)
    assert cfg.sources and Path(cfg.workspace_root).is_absolute()


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "run.yaml"
    path.write_text("workspace: ws\nsources: [{name: s, warc: ['in/*.warc']}]\n")
    cfg = load_config(path)
    assert cfg.workspace_root == str(tmp_path / "sub" / "ws")
    assert cfg.resolve("in/*.warc") == str(tmp_path / "sub" / "in" / "*.warc")


def test_overrides_are_validated_like_the_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("workspace: ws\n")
    cfg = load_config(path, ["extract.timeout_s=2", "runner.workers=4", "extract.fast=true"])
    assert cfg.extract.timeout_s == 2 and cfg.runner.workers == 4 and cfg.extract.fast is True
    with pytest.raises(
        ConfigError, match=r"run.yaml: invalid config: extract.timeout_s: .*greater"
    ):
        load_config(path, ["extract.timeout_s=-1"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(path, ["extract.timeout_s"])


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "workspace: ws\nextract: {timeout: 3}\n",
            r"extract.timeout: unknown key \(did you mean timeout_s\?\)",
        ),
        ("workspace: ws\nsources: [{name: a, warcs: []}]\n", r"sources.0.warcs: unknown key \(did"),
        ("workspace: ws\nfliter: {}\n", r"fliter: unknown key \(did you mean filter\?\)"),
        ("workspace: ws\nfilter: {language: {nope: 1}}\n", r"language.nope: unknown key$"),
        (
            "workspace: ws\nextract: {timeout_s: soon}\n",
            r"extract.timeout_s: Input should be a valid number",
        ),
        ("sources: []\n", r"workspace: Field required"),
        (
            "workspace: ws\nsources: [{name: a}, {name: a}]\n",
            r"source names must be unique, repeated: a",
        ),
        ("workspace: ws\nsources: [{name: a, kind: video}]\n", r"sources.0.kind: Input should be"),
        ("workspace: [unclosed\n", r"not valid YAML"),
        ("- just\n- a list\n", r"expected a mapping"),
    ],
)
def test_bad_configs_name_file_key_and_problem(tmp_path, text, problem):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=problem) as err:
        load_config(path)
    assert str(err.value).startswith(str(path))
    assert "\n" not in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
