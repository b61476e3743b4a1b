"""--config FILE and --dump-config: file < environment < flag, and a dumped config reproduces the
run's config exactly."""

import json
from pathlib import Path

import pytest

from agents.errors import ConfigError
from agents.options import config_from_args, dump_config, parse_args

FLAGS = ["--input", "data.jsonl", "--endpoint", "http://gen:8000/v1", "--max-steps", "4", "--expansions", "3",
         "--temperature", "0.6", "--acceptance", "strict", "--extra-body", '{"top_p": null, "min_p": 0.05}',
         "--scorer-model", "/models/qwen3-8b", "--prompts-dir", "prompts", "--seed", "7", "--no-dashboard"]


def resolved(argv):
    a = parse_args(argv)
    return a, config_from_args(a)


@pytest.mark.parametrize("suffix", [".toml", ".yaml", ".json"])
def test_file_then_environment_then_flag(tmp_path, monkeypatch, suffix):
    values = {"input": "data.jsonl", "endpoint": "http://file:1/v1", "max-steps": 3, "scorer_model": "/m",
              "no-dashboard": True, "cut-drafts": "trim"}
    f = tmp_path / f"run{suffix}"
    if suffix == ".toml":
        f.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    else:  # JSON is YAML too
        f.write_text(json.dumps(values))
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    _, cfg = resolved(["--config", str(f)])
    assert (cfg.generator.endpoint, cfg.search.max_steps, cfg.scorer.settings.model) == ("http://file:1/v1", 3, "/m")
    assert cfg.search.cut_drafts == "trim" and not cfg.dashboard and cfg.input == Path("data.jsonl")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://env:2/v1")
    _, cfg = resolved(["--config", str(f), "--max-steps", "5"])
    assert (cfg.generator.endpoint, cfg.search.max_steps) == ("http://env:2/v1", 5)
    _, cfg = resolved(["--config", str(f), "--endpoint", "http://flag:3/v1"])
    assert cfg.generator.endpoint == "http://flag:3/v1"


def test_a_dumped_config_reproduces_the_run(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    a, cfg = resolved([*FLAGS, "--api-key", "sk-secret-123"])
    text = dump_config(a)
    assert "sk-secret" not in text and "api-key" not in text
    (tmp_path / "run.toml").write_text(text)
    a2, again = resolved(["--config", str(tmp_path / "run.toml")])
    assert again.fingerprint({}) == cfg.fingerprint({})
    assert again == type(cfg)(**{**cfg.__dict__, "generator": again.generator}) and again.generator.api_key is None
    assert dump_config(a2) == text


@pytest.mark.parametrize("content, message", [
    ("max-stepz = 3\n", "unknown option 'max-stepz'"),
    ("max-steps = \"three\"\n", "max-steps: must be a number, not 'three'"),
    ("max-steps = 2.5\n", "must be a whole number"),
    ("acceptance = \"loose\"\n", "must be one of reference, strict"),
    ("no-dashboard = 1\n", "must be true or false"),
    ("extra-body = 3\n", "must be a table or a JSON object string"),
    ("max-steps = \n", "not valid TOML"),
])
def test_a_bad_config_file_is_one_clear_error(tmp_path, content, message):
    f = tmp_path / "run.toml"
    f.write_text('input = "data.jsonl"\n' + content)
    with pytest.raises(ConfigError, match=message):
        parse_args(["--config", str(f)])


def test_a_config_file_that_is_missing_or_of_another_kind(tmp_path):
    with pytest.raises(ConfigError, match="cannot be read"):
        parse_args(["--config", str(tmp_path / "none.toml")])
    (tmp_path / "run.ini").write_text("[x]")
    with pytest.raises(ConfigError, match="not .toml, .yaml, .yml or .json"):
        parse_args(["--config", str(tmp_path / "run.ini")])


def test_several_endpoints_with_a_model_each_or_one_for_all(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    _, cfg = resolved(["--input", "x.jsonl", "--endpoint", "http://a:1/v1", "--endpoint", "http://b:2/v1",
                       "--model", "qa", "--model", "qb", "--api-key", "k"])
    assert [(g.endpoint, g.model, g.api_key) for g in cfg.generators] == [("http://a:1/v1", "qa", "k"),
                                                                          ("http://b:2/v1", "qb", "k")]
    assert cfg.others[0].sampling == cfg.generator.sampling and cfg.others[0].retry == cfg.generator.retry
    f = tmp_path / "run.toml"
    f.write_text('input = "x.jsonl"\nendpoint = ["http://a:1/v1", "http://b:2/v1", "http://c:3/v1"]\n')
    a, cfg = resolved(["--config", str(f)])
    assert len(cfg.generators) == 3 and 'endpoint = ["http://a:1/v1", "http://b:2/v1", "http://c:3/v1"]' in dump_config(a)
    _, cfg = resolved(["--config", str(f), "--endpoint", "http://d:4/v1"])  # a flag replaces the file's list
    assert [g.endpoint for g in cfg.generators] == ["http://d:4/v1"]
    with pytest.raises(ConfigError, match="--model is given 2 times for 3 endpoints: give it once for all, or once"):
        resolved(["--config", str(f), "--model", "x", "--model", "y"])
    with pytest.raises(ConfigError, match="--endpoint local is the demo server alone"):
        resolved(["--input", "x.jsonl", "--endpoint", "local", "--endpoint", "http://a:1/v1"])
    with pytest.raises(ConfigError, match="an --endpoint is given twice"):
        resolved(["--input", "x.jsonl", "--endpoint", "http://a:1/v1", "--endpoint", "http://a:1/v1"])
    f.write_text('input = "x.jsonl"\nendpoint = [1]\n')
    with pytest.raises(ConfigError, match="endpoint: must be a string or a list of strings"):
        parse_args(["--config", str(f)])
