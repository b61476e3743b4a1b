"""The run's options: the scorer's reach the scorer process it starts (as JSON, read by the
scorer's own parser), with the same defaults on both sides; the rest are validated once."""

from agents.options import build_parser, config_from_args
from agents.services.fleet import scorer_args
from scorer.server import build_parser as scorer_parser
from scorer.settings import ScorerSettings, from_namespace


def settings_of(*argv: str):
    """The run's config, and the settings its scorer child reads from the command line it gets."""
    run = config_from_args(build_parser().parse_args(["--input", "data.jsonl", *argv]))
    return run, ScorerSettings.from_json(scorer_parser().parse_args(scorer_args(run)).settings_json)


def test_every_scorer_option_reaches_the_scorer_process(tmp_path):
    run, got = settings_of("--scorer-model", "/models/qwen3-8b", "--scorer-threads", "3", "--scorer-dtype", "bfloat16",
                           "--scorer-device", "cuda:1", "--scorer-chat-format", "chatml", "--scorer-max-batch-tokens",
                           "4096", "--scorer-prefix-cache-mb", "64", "--max-context", "2048", "--scorer-compile",
                           "--prompts-dir", str(tmp_path), "--scoring-prompt", "short",
                           "--single-segment-answer", "reference")
    assert got == run.scorer.settings
    assert (got.model, got.threads, got.dtype, got.device, got.chat_format) == (
        "/models/qwen3-8b", 3, "bfloat16", "cuda:1", "chatml")
    assert (got.max_batch_tokens, got.prefix_cache_mb, got.max_context, got.compile, got.prompts_dir) == (
        4096, 64, 2048, True, str(tmp_path))
    assert (got.scoring_prompt, got.single_segment_answer) == ("short", "reference")


def test_the_run_and_the_scorer_have_the_same_defaults():
    _, got = settings_of()
    assert got == from_namespace(scorer_parser().parse_args([])) == ScorerSettings()
    assert (got.dtype, got.compile, got.scoring_prompt, got.single_segment_answer) == ("auto", False, "brief", "whole")


def test_a_trailing_slash_does_not_make_another_scorer_model():
    with_slash, without = settings_of("--scorer-model", "/models/qwen3-8b/")[0], settings_of("--scorer-model",
                                                                                             "/models/qwen3-8b")[0]
    assert with_slash.scorer.settings.model == "/models/qwen3-8b"
    assert with_slash.fingerprint({}) == without.fingerprint({})


def test_a_bad_scorer_option_is_one_clear_error():
    import pytest

    from agents.errors import ConfigError

    with pytest.raises(ConfigError, match="max_context must be at least 1"):
        settings_of("--max-context", "0")


def test_the_stop_score_keeps_its_old_name_and_is_validated():
    import pytest

    from agents.errors import ConfigError

    parse = build_parser().parse_args
    assert config_from_args(parse(["--input", "x.jsonl", "--stop-score", "0.3"])).search.stop_score == 0.3
    assert config_from_args(parse(["--input", "x.jsonl", "--stop-ppl", "0.4"])).search.stop_score == 0.4
    for bad in ("-0.1", "2.5"):
        with pytest.raises(ConfigError, match="--stop-score .* outside 0..2"):
            config_from_args(parse(["--input", "x.jsonl", "--stop-score", bad]))


def test_options_left_unset_take_the_profile_of_the_endpoint():
    from agents import config as C

    local = config_from_args(build_parser().parse_args(["--input", "x.jsonl", "--endpoint", "local"]))
    remote = config_from_args(build_parser().parse_args(["--input", "x.jsonl", "--endpoint", "http://h:8000/v1"]))
    assert local.search == C.LOCAL_PROFILE.search and remote.search == C.REFERENCE_PROFILE.search
    assert remote.search == C.SearchConfig() and remote.generator.sampling == C.Sampling()
    assert (local.generator.mode, local.generator.sampling.max_tokens, local.concurrency) == ("completions", 200, 5)
    # a value given on the command line wins over the profile's
    set_ = config_from_args(build_parser().parse_args(["--input", "x.jsonl", "--max-steps", "7", "--cut-drafts", "keep"]))
    assert (set_.search.max_steps, set_.search.cut_drafts, set_.search.acceptance) == (7, "keep", "strict")


def test_endpoint_concurrency_is_a_ceiling_per_endpoint_given_once_or_per_endpoint():
    import pytest

    from agents.errors import ConfigError

    parse = build_parser().parse_args
    two = ["--input", "x.jsonl", "--endpoint", "http://a:8000/v1", "--endpoint", "http://b:8000/v1"]
    each = config_from_args(parse([*two, "--endpoint-concurrency", "0", "--endpoint-concurrency", "4"]))
    assert [g.max_in_flight for g in each.generators] == [None, 4]
    once = config_from_args(parse([*two, "--endpoint-concurrency", "3"]))
    assert [g.max_in_flight for g in once.generators] == [3, 3]
    assert [g.max_in_flight for g in config_from_args(parse(two)).generators] == [None, None]
    assert "max_in_flight" not in str(each.fingerprint({}))  # transport: a resume may change it
    for bad in (["-1"], ["1", "2", "3"]):
        with pytest.raises(ConfigError, match="--endpoint-concurrency"):
            config_from_args(parse([*two, *[x for v in bad for x in ("--endpoint-concurrency", v)]]))
