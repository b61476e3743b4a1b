"""The run's scorer options reach the scorer process it starts: the command line that
``agents.run`` builds is parsed by the scorer's own parser, option by option."""

from agents.run import build_parser, config_from_args, scorer_args
from scorer.server import build_parser as scorer_parser


def scorer_namespace(*argv: str):
    run = config_from_args(build_parser().parse_args(["--input", "data.jsonl", *argv]))
    return scorer_parser().parse_args(scorer_args(run))


def test_every_scorer_option_reaches_the_scorer_process(tmp_path):
    got = scorer_namespace("--scorer-model", "/models/qwen3-8b", "--scorer-threads", "3", "--scorer-dtype", "bfloat16",
                           "--scorer-device", "cuda:1", "--scorer-chat-format", "chatml", "--scorer-max-batch-tokens",
                           "4096", "--scorer-prefix-cache-mb", "64", "--max-context", "2048", "--scorer-compile",
                           "--prompts-dir", str(tmp_path), "--scoring-prompt", "short",
                           "--single-segment-answer", "reference")
    assert (got.model, got.threads, got.dtype, got.device, got.chat_format) == (
        "/models/qwen3-8b", 3, "bfloat16", "cuda:1", "chatml")
    assert (got.max_batch_tokens, got.prefix_cache_mb, got.max_context, got.compile, got.prompts_dir) == (
        4096, 64, 2048, True, tmp_path)
    assert (got.scoring_prompt, got.single_segment_answer) == ("short", "reference")


def test_the_scorer_defaults_are_left_to_the_scorer():
    got = scorer_namespace()
    defaults = scorer_parser().parse_args(["--model", got.model])
    assert vars(got) == vars(defaults) and got.dtype == "auto" and not got.compile
    assert (got.scoring_prompt, got.single_segment_answer) == ("brief", "whole")
