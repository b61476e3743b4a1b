"""The scorer's numbers: equal to a direct computation, and identical batched or alone."""

import math

import pytest
import torch

from scorer.model import Encoded, ScoringModel
from scorer.span import scoring_text

THINKING = "Alright, the user wants a short poem about the sea.\n\nHmm, maybe I should open with the dawn light. " * 3
ANSWER = ("The sea at dawn is a held breath,\nsilver on silver, waiting.\n\n"
          "Then the gulls come, and the boats, and the long day opens like a door. " * 2)
ONE_SEGMENT_ANSWER = "A single short line of answer."


@pytest.fixture(scope="module", params=["llama", "gemma3"])
def scorer(request, tiny_model_dirs):
    return ScoringModel(str(tiny_model_dirs[request.param]), threads=2)


def direct_score(sm: ScoringModel, question: str, thinking: str, answer: str, lang: str = "en") -> float:
    """Reference path: full logits over the whole text, no padding, no logits_to_keep."""
    st = scoring_text(sm.prompt(question, lang), thinking, answer)
    enc = sm.tokenizer(st.text, add_special_tokens=False, return_offsets_mapping=True)
    ids = torch.tensor([enc["input_ids"]])
    with torch.no_grad():
        logits = sm.model(input_ids=ids).logits[0].float()  # (T, vocab)
    logprobs = torch.log_softmax(logits, -1)
    s, e = st.span
    nll = []
    for i, (a, b) in enumerate(enc["offset_mapping"]):
        if i > 0 and a < e and b > s and b > a:
            lp = logprobs[i - 1, enc["input_ids"][i]].item()
            nll.append(-min(max(lp, -2.0), 0.0))
    return sum(nll) / len(nll)


def test_score_equals_direct_computation(scorer):
    enc = scorer.encode("Write a poem about the sea.", THINKING, ANSWER, "en")
    [got] = scorer.score([enc])
    assert got == pytest.approx(direct_score(scorer, "Write a poem about the sea.", THINKING, ANSWER), abs=1e-5)
    assert 0.0 < got < 1.9  # not the clip's constant 2.0: the numbers really move


def test_one_segment_answer_is_scored_whole(scorer):
    enc = scorer.encode("q", THINKING, ONE_SEGMENT_ANSWER, "en")
    text = scoring_text(scorer.prompt("q", "en"), THINKING, ONE_SEGMENT_ANSWER).text
    first = text.index(ONE_SEGMENT_ANSWER)
    offsets = scorer.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    assert offsets[enc.positions[0]][0] <= first < offsets[enc.positions[0]][1]
    [got] = scorer.score([enc])
    assert got == pytest.approx(direct_score(scorer, "q", THINKING, ONE_SEGMENT_ANSWER), abs=1e-5)


def test_batched_equals_unbatched(scorer):
    cases = [
        ("Write a poem about the sea.", THINKING, ANSWER),
        ("q", THINKING[:120], ANSWER),  # much shorter: heavy left padding
        ("写一首关于秋天的诗。", "好的，" + THINKING, ANSWER[:200] + "\n\n" + ANSWER),
        ("q", THINKING, ONE_SEGMENT_ANSWER),
    ]
    encs = [scorer.encode(q, t, a, "en") for q, t, a in cases]
    assert len({len(e) for e in encs}) > 2
    alone = [scorer.score([e])[0] for e in encs]
    together = scorer.score(encs)
    for a, b in zip(alone, together):
        assert b == pytest.approx(a, abs=1e-5)
    assert not any(math.isnan(x) for x in together)


def test_thinking_changes_the_score(scorer):
    a = scorer.score([scorer.encode("q", THINKING, ANSWER, "en")])[0]
    b = scorer.score([scorer.encode("q", "Something else entirely. " * 10, ANSWER, "en")])[0]
    assert a != b


def test_only_tail_logits_are_computed(scorer, monkeypatch):
    seen = {}
    forward = scorer.model.forward

    def spy(*args, **kwargs):
        out = forward(*args, **kwargs)
        seen["shape"] = tuple(out.logits.shape)
        seen["T"] = kwargs["input_ids"].shape[1]
        return out

    monkeypatch.setattr(scorer.model, "forward", spy)
    enc = scorer.encode("q", THINKING, ANSWER, "en")
    scorer.model(input_ids=torch.tensor([enc.ids]))  # noqa: warm path unaffected
    scorer.score([enc])
    assert seen["shape"][1] < seen["T"] / 2  # the thinking and prompt positions get no logits
    assert seen["shape"][1] >= len(enc.positions)


def test_shared_prefix_reuse_equals_full_recomputation(scorer):
    """Candidates of one step share prompt + kept segments: scored against one cached prefix,
    they must give what each gives alone (the gemma3 model's window of 16 is far exceeded)."""
    kept = THINKING
    cands = ["Wait, let me think about the gulls first.", "Alternatively, the boats; the boats are the point here.",
             "Hmm, maybe the light on the water."]
    after = "\n\nThen I will close on the door image, quietly."
    encs = [scorer.encode("Write a poem about the sea.", f"{kept}\n\n{c}{after}", ANSWER, "en") for c in cands]
    from scorer.batching import common_prefix_len, prefix_groups

    [(plen, members)] = prefix_groups([e.ids for e in encs], [e.positions[0] - 1 for e in encs], 64)
    assert sorted(members) == [0, 1, 2] and plen >= common_prefix_len(encs[0].ids, encs[1].ids) - 1 > 64
    shared = scorer.score(encs)
    alone = [scorer._score_padded([e])[0] for e in encs]
    assert shared == pytest.approx(alone, abs=1e-5)
    mixed = scorer.score([encs[0], scorer.encode("q", "other thinking " * 5, ANSWER, "en"), encs[2]])
    assert [mixed[0], mixed[2]] == pytest.approx([alone[0], alone[2]], abs=1e-5)


def test_prefix_reuse_can_be_turned_off(tiny_model_dirs):
    sm = ScoringModel(str(tiny_model_dirs["llama"]), threads=1, reuse_prefix=False)
    encs = [sm.encode("q", THINKING + c, ANSWER, "en") for c in ("\n\nOne.", "\n\nTwo.")]
    called = []
    sm._score_shared = lambda *a: called.append(a)
    sm.score(encs)
    assert not called
