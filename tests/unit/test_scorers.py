"""Which scorer a record goes to, and whether a scorer scores as the run is configured to."""

from agents.services.scorers import identity_problems, rank
from prompts import SCORING_PROMPTS, PromptSet
from scorer.protocol import Health, Limits
from scorer.settings import ScorerSettings


def test_a_record_keeps_its_scorer_and_only_a_gone_scorers_records_move():
    names = ["http://s0", "http://s1", "http://s2"]
    keys = [f"question {i}\x00answer {i}" for i in range(300)]
    first = {k: rank(k, names)[0] for k in keys}
    assert first == {k: rank(k, names)[0] for k in keys}  # stable
    assert all(60 <= sum(1 for v in first.values() if v == i) <= 140 for i in range(3)), "spread over all three"
    # s1 gone: its records go to their next choice, every other record stays where it was
    for k in keys:
        order = rank(k, names)
        after = [i for i in order if i != 1][0]
        assert after == first[k] or first[k] == 1


def health(**extra) -> Health:
    same = {"scoring_prompt": "brief", "single_segment_answer": "whole",
            "scoring_prompt_id": PromptSet().identity(SCORING_PROMPTS["brief"]), "dtype": "bfloat16"}
    return Health(status="ok", model=extra.pop("model", "Qwen/Qwen3-8B-Base"), limits=Limits(), **{**same, **extra})


def test_a_scorer_with_another_model_prompt_or_dtype_is_named_with_the_flag_that_differs():
    st = ScorerSettings(model="Qwen/Qwen3-8B-Base")
    assert identity_problems(health(), st) == []
    assert identity_problems(health(model="gemma3-270m"), st) == [
        "its model is 'gemma3-270m', this run's --scorer-model gives 'Qwen/Qwen3-8B-Base'"]
    assert identity_problems(health(scoring_prompt="short"), st)[0].startswith("its scoring prompt is 'short'")
    assert "--prompts-dir" in identity_problems(health(scoring_prompt_id="0" * 16), st)[0]
    assert identity_problems(health(), ScorerSettings(model="Qwen/Qwen3-8B-Base", dtype="float32")) == [
        "its dtype is 'bfloat16', this run's --scorer-dtype gives 'float32'"]
    assert identity_problems(health(single_segment_answer="reference"), st)[0].startswith("its single segment answer")


async def test_one_scorer_counted_shows_its_requests_out_until_each_is_answered():
    """The run's own scorer process, alone: no pool, but the watchdog still sees its requests."""
    import asyncio

    from agents.services.scorers import Counted

    class Held:
        def __init__(self):
            self.release = asyncio.Event()

        async def score_many(self, question, thinkings, answer, lang):
            await self.release.wait()
            return [1.0] * len(thinkings)

    held = Held()
    one = Counted("cuda:0", held)  # type: ignore[arg-type]
    calls = [asyncio.create_task(one.score_many(f"q{i}", ["t"], "a", "en")) for i in range(3)]
    await asyncio.sleep(0.01)
    assert len(one.sent["cuda:0"]) == 3 and one.answers == 0 and one.states() == {}
    held.release.set()
    assert await asyncio.gather(*calls) == [[1.0]] * 3
    assert one.sent["cuda:0"] == [] and one.answers == 3
