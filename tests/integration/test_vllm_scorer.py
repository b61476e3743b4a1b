"""vLLM as the scorer, against a loopback server in vLLM's shape whose prompt_logprobs come from
the tiny model: the scores equal reer's own scorer's on the same model."""

import pytest

from scorer.errors import ScorerError, ScoringInputError
from scorer.model import ScoringModel
from scorer.settings import ScorerSettings
from scorer.vllm import VLLMScorer
from tests.support import runner as R
from tests.support.fake_openai import FakeOpenAI
from tests.support.fake_vllm import FakeVLLM

THINK = "Alright, the user wants a short poem about the sea.\n\nHmm, maybe I should open with the dawn light."
ANSWER = ("The sea at dawn is a held breath,\nsilver on silver, waiting.\n\nThen the gulls come, and the boats, "
          "and the long day opens like a door.")


async def test_scores_equal_the_local_scorers(tiny_model_dirs):
    model = str(tiny_model_dirs["gemma3"])
    local = ScoringModel(model, threads=2, device="cpu", dtype="float32")
    thinkings = [THINK, THINK * 3, "Okay, I am given a writing task.\n\nWait, let me think.", ""]
    with FakeVLLM(model) as server:
        vllm = VLLMScorer(server.url, ScorerSettings(model=model))
        entry = await vllm.start()
        assert entry["max_model_len"] == 4096
        got = await vllm.score_many("Write a poem about the sea.", thinkings, ANSWER, "en")
        want = local.score([local.encode("Write a poem about the sea.", t, ANSWER, "en") for t in thinkings])
        assert got == pytest.approx(want, abs=1e-5)
        assert len(set(round(x, 4) for x in got)) > 1
        # a step's candidates go in one request, one prompt each, one throw-away token asked for
        [body] = server.requests
        assert len(body["prompt"]) == 4 and body["max_tokens"] == 1 and body["prompt_logprobs"] == 0
        # too long for the served context: that item's error, the others still scored
        mixed = await vllm.score_many("q", [THINK, THINK * 400], ANSWER, "en")
        assert isinstance(mixed[1], ScoringInputError) and isinstance(mixed[0], float)
        checked = await vllm.check_many([("q", ANSWER, "en"), ("q", ANSWER * 300, "en")])
        assert checked[0] == len(local.encode("q", "", ANSWER, "en")) and isinstance(checked[1], ScoringInputError)
        await vllm.aclose()


async def test_a_vllm_server_serving_another_model_is_refused(tiny_model_dirs):
    with FakeVLLM(str(tiny_model_dirs["gemma3"]), served_name="other") as server:
        vllm = VLLMScorer(server.url, ScorerSettings(model="Qwen/Qwen3-8B-Base"))
        with pytest.raises(ScorerError, match=r"serves 'other', not this run's --scorer-model 'Qwen/Qwen3-8B-Base'"):
            await vllm.start()
        await vllm.aclose()


def test_a_run_scores_with_vllm(tmp_path, tiny_model_dirs):
    model = str(tiny_model_dirs["gemma3"])
    inp = R.write_input(tmp_path / "in.jsonl", R.RECORDS[:2])
    db = tmp_path / "run.db"
    with FakeOpenAI() as fake, FakeVLLM(model) as server:
        p = R.run(R.run_cmd(fake.url, inp, db, tmp_path / "out.jsonl", model, "--scorer-url", server.url,
                            "--max-steps", "1"))
    assert p.returncode == 0, p.stderr
    assert f"scorer: {model} at {server.url} (vLLM" in p.stdout
    assert R.query(db, "select count(*) from node where score is not null")[0][0] >= 4
    assert len(server.requests) >= 4
