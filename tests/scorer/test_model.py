"""The scorer's numbers: equal to a direct computation, and identical batched or alone.

``REER_TEST_DEVICE=cuda`` runs them on a GPU (bench/gpu.sh does), in float32 as here.
"""

import math
import os

import pytest
import torch

from scorer.encoded import Encoded
from scorer.engine import Engine
from scorer.errors import ScoringInputError
from scorer.model import ScoringModel
from scorer.span import scoring_text

THINKING = "Alright, the user wants a short poem about the sea.\n\nHmm, maybe I should open with the dawn light. " * 3
ANSWER = ("The sea at dawn is a held breath,\nsilver on silver, waiting.\n\n"
          "Then the gulls come, and the boats, and the long day opens like a door. " * 2)
ONE_SEGMENT_ANSWER = "A single short line of answer."


DEVICE = os.environ.get("REER_TEST_DEVICE", "cpu")


def load(path, **kw) -> ScoringModel:
    return ScoringModel(str(path), threads=2, device=DEVICE, dtype="float32", **kw)


@pytest.fixture(scope="module", params=["llama", "gemma3"])
def scorer(request, tiny_model_dirs):
    return load(tiny_model_dirs[request.param])


def direct_score(sm: ScoringModel, question: str, thinking: str, answer: str, lang: str = "en") -> float:
    """Reference path: full logits over the whole text, no padding, no logits_to_keep."""
    st = scoring_text(sm.encoder.prompt(question, lang), thinking, answer)
    enc = sm.tokenizer(st.text, add_special_tokens=False, return_offsets_mapping=True)
    ids = torch.tensor([enc["input_ids"]], device=DEVICE)
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
    text = scoring_text(scorer.encoder.prompt("q", "en"), THINKING, ONE_SEGMENT_ANSWER).text
    first = text.index(ONE_SEGMENT_ANSWER)
    offsets = scorer.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    assert offsets[enc.positions[0]][0] <= first < offsets[enc.positions[0]][1]
    [got] = scorer.score([enc])
    assert got == pytest.approx(direct_score(scorer, "q", THINKING, ONE_SEGMENT_ANSWER), abs=1e-5)


def test_a_text_no_context_could_hold_is_refused_without_tokenizing(scorer, monkeypatch):
    limit = scorer.max_context * scorer.encoder.max_token_chars
    longest = max(scorer.tokenizer.get_vocab(), key=len)
    assert len(longest) == scorer.encoder.max_token_chars
    calls = []
    real = scorer.tokenizer.__class__.__call__
    monkeypatch.setattr(scorer.tokenizer.__class__, "__call__", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    with pytest.raises(ScoringInputError, match=r"characters: over the scorer's context of \d+ tokens however"):
        scorer.encode("q", "word " * (limit // 5 + 1), ANSWER, "en")
    assert not calls
    with pytest.raises(ScoringInputError, match=r"tokens, over the scorer's context"):  # near it: counted
        scorer.encode("q", "word " * scorer.max_context, ANSWER, "en")
    assert calls


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
        return out

    monkeypatch.setattr(scorer.model, "forward", spy)
    enc = scorer.encode("q", THINKING, ANSWER, "en")
    scorer.score([enc])
    # from the first predicting position on: the thinking and prompt positions get no logits
    assert seen["shape"][1] == len(enc) - enc.limit < len(enc) / 2


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
    alone = [scorer.engine._score_padded([e]).item() for e in encs]
    assert shared == pytest.approx(alone, abs=1e-5)
    mixed = scorer.score([encs[0], scorer.encode("q", "other thinking " * 5, ANSWER, "en"), encs[2]])
    assert [mixed[0], mixed[2]] == pytest.approx([alone[0], alone[2]], abs=1e-5)


@pytest.mark.parametrize("kind", ["llama", "llama-padded", "gemma3"])
def test_prefix_reuse_can_be_turned_off(tiny_model_dirs, kind):
    """Off, every token of every request goes through the model; on (the control), the prefix
    two candidates share goes through once. The scores are the same either way."""
    scores = {}
    for reuse in (False, True):
        sm = load_kind(tiny_model_dirs, kind, reuse_prefix=reuse)
        encs = [sm.encode("q", THINKING + c, ANSWER, "en") for c in ("\n\nOne.", "\n\nTwo.")]
        scores[reuse] = sm.score(encs)
        s = sm.engine.stats
        assert (s.forwarded == s.tokens) is not reuse, (reuse, s)
    assert scores[False] == pytest.approx(scores[True], abs=1e-5)


SEGMENTS = ["Alright, the user wants a short poem about the sea, so I should first decide who reads it.",
            "Hmm, maybe I should open with the dawn light on the water and the held breath of the morning.",
            "Wait, let me think about the gulls and the boats, and how the long day opens like a door.",
            "Alternatively, the ending could return to the first image, quietly, with a new meaning.",
            "Then I will check the rhythm of each line before I write the final version of the poem."]


def load_kind(dirs, kind: str, **kw) -> ScoringModel:
    """``llama`` packs its rows (the default for full attention), ``llama-padded`` pads them."""
    sm = load(dirs[kind.removesuffix("-padded")], **kw)
    if kind.endswith("-padded"):
        sm.engine.packed = False
    return sm


MERGED = ["llama", "llama-padded", "gemma3"]


@pytest.mark.parametrize("kind", MERGED)
def test_a_records_steps_reuse_the_prefix_of_the_step_before(tiny_model_dirs, kind):
    """The search visits segments in order: each step's shared prefix extends the last one's,
    which the scorer keeps. Scores must equal full recomputation at every step (the gemma3
    model's window of 16 is crossed by every extension), repeated use must not corrupt the
    stored cache, and exactly the reused tokens are saved."""
    sm = load_kind(tiny_model_dirs, kind)
    plain = Engine(sm.model, pad_id=sm.engine.pad_id, prefix_cache_bytes=0)  # prefix sharing within a step only
    full = Engine(sm.model, pad_id=sm.engine.pad_id, reuse_prefix=False)  # every request computed whole
    kept: list[str] = []
    for step in range(len(SEGMENTS) - 1):
        cands = [f"Step {step}: maybe the boats first, then the light.", f"Step {step}: hmm, the quiet shore."]
        encs = [sm.encode("Write a poem about the sea.", "\n\n".join([*kept, c, *SEGMENTS[step + 1:]]), ANSWER, "en")
                for c in cands]
        got = sm.score(encs)
        assert got == pytest.approx([full.score([e])[0] for e in encs], abs=1e-5)
        assert plain.score(encs) == pytest.approx(got, abs=1e-5)
        assert sm.score(encs) == pytest.approx(got, abs=1e-6)  # the stored cache is intact
        plain.score(encs)
        kept.append(cands[step % 2] if step % 3 else SEGMENTS[step])  # accepted, or the original kept
    stats = sm.engine.cache.stats
    assert stats.hits == 2 * (len(SEGMENTS) - 1) - 1 and stats.misses == 1  # only the very first call misses
    assert sm.engine.stats.forwarded + stats.tokens_reused == plain.stats.forwarded
    assert stats.tokens_reused > 0.1 * plain.stats.forwarded


def test_a_prefix_cache_too_small_for_any_entry_changes_nothing(tiny_model_dirs):
    sm = load(tiny_model_dirs["gemma3"], prefix_cache_bytes=1)
    encs = [sm.encode("q", "\n\n".join([*SEGMENTS[:3], c]), ANSWER, "en") for c in ("One more.", "Another one.")]
    assert sm.score(encs) == pytest.approx([sm.engine._score_padded([e]).item() for e in encs], abs=1e-5)
    assert len(sm.engine.cache) == 0


@pytest.mark.parametrize("kind", MERGED)
def test_steps_of_several_records_scored_together(tiny_model_dirs, kind):
    """Concurrent searches send their steps together: groups with prefixes of different
    lengths, some stored and some not, and a lone candidate, in one call (llama: merged into
    one forward, rows packed or padded; gemma3, whose sliding layers cannot be merged: a
    forward per group)."""
    sm = load_kind(tiny_model_dirs, kind)
    assert sm.engine.merge == kind.startswith("llama") and sm.engine.packed == (kind == "llama")
    full = Engine(sm.model, pad_id=sm.engine.pad_id, reuse_prefix=False)

    def step(question: str, step: int, n: int = 2) -> list[Encoded]:
        cands = [f"Rewrite {k} of step {step}: the boats, then the light." for k in range(n)]
        return [sm.encode(question, "\n\n".join([*SEGMENTS[:step], c, *SEGMENTS[step + 1:]]), ANSWER, "en")
                for c in cands]

    questions = ["Write a poem about the sea.", "Write a poem about the rain, please.", "A poem: the harbour.",
                 "Something new: a poem about a lighthouse."]
    for call, steps in enumerate([(0, 2, 1), (1, 3, 2, 1)]):  # the fourth record joins with nothing stored
        encs = [e for q, k in zip(questions, steps) for e in step(q, k)]
        if call:
            encs += step(questions[0], 2, n=1)  # a lone candidate whose prefix is stored
        got = sm.score(encs)
        assert got == pytest.approx([full.score([e])[0] for e in encs], abs=1e-5)
    assert sm.engine.cache.stats.hits >= 3


@pytest.mark.skipif(DEVICE != "cuda", reason="flash attention over variable-length rows runs on CUDA only")
def test_flash_attention_over_packed_rows_matches_attention_row_by_row(tiny_model_dirs, monkeypatch):
    """In half precision on CUDA the packed rows go through one ``varlen_attn`` call per layer:
    it must give what attention row by row gives (bf16: to rounding)."""
    from scorer import packed

    if packed.varlen_attn is None:
        pytest.skip("this torch has no torch.nn.attention.varlen")
    sm = ScoringModel(str(tiny_model_dirs["llama"]), device="cuda", dtype="bfloat16")
    encs = [sm.encode(q, "\n\n".join([*SEGMENTS[:k], f"Rewrite {i}: the boats.", *SEGMENTS[k + 1:]]), ANSWER, "en")
            for q, k in [("A poem about the sea.", 1), ("A poem about the rain, please.", 3)] for i in range(2)]
    calls = []
    real = packed.varlen_attn
    monkeypatch.setattr(packed, "varlen_attn", lambda *a, **k: calls.append(1) or real(*a, **k))
    flash = sm.score(encs)
    assert calls  # the flash path really ran
    monkeypatch.setattr(packed, "varlen_options", lambda *a: None)  # row by row, same packing
    row_by_row = Engine(sm.model, pad_id=sm.engine.pad_id, prefix_cache_bytes=0).score(encs)
    assert flash == pytest.approx(row_by_row, abs=3e-2)
    assert 0.0 < min(flash) and max(flash) < 1.95


def test_packed_rows_fall_back_to_attention_row_by_row_when_flash_fails(tiny_model_dirs, monkeypatch):
    """An unverified torch/GPU pairing must not stop scoring: a failing ``varlen_attn`` is
    reported once and not tried again; an out-of-memory still reaches the batch halving."""
    from scorer import packed

    sm = load(tiny_model_dirs["llama"])
    encs = [sm.encode("q", "\n\n".join([*SEGMENTS[:2], c]), ANSWER, "en") for c in ("One more.", "Another one.")]
    expected = Engine(sm.model, pad_id=sm.engine.pad_id, prefix_cache_bytes=0, packed_rows=True).score(encs)
    monkeypatch.setattr(packed, "varlen_options", lambda *a: {})  # as if on CUDA in bf16
    calls = []

    def oom(*a, **k):
        calls.append("oom")
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(packed, "varlen_attn", oom)
    with pytest.raises(torch.OutOfMemoryError):
        Engine(sm.model, pad_id=sm.engine.pad_id, prefix_cache_bytes=0, packed_rows=True).score(encs)

    def broken(*a, **k):
        calls.append("broken")
        raise RuntimeError("FlashAttention only supports Ampere GPUs or newer.")

    monkeypatch.setattr(packed, "varlen_attn", broken)
    monkeypatch.setattr(packed, "varlen_failed", None)
    engine = Engine(sm.model, pad_id=sm.engine.pad_id, prefix_cache_bytes=0, packed_rows=True)
    assert engine.score(encs) == pytest.approx(expected, abs=1e-6)
    assert engine.score(encs) == pytest.approx(expected, abs=1e-6)
    assert calls == ["oom", "broken"] and "Ampere" in packed.varlen_failed


def test_packed_rows_only_where_the_model_attends_through_the_interface(tiny_model_dirs, monkeypatch):
    """A model whose attention ignores transformers' attention interface would let packed rows
    see each other without an error: the engine's probe must catch it and pad instead."""
    import contextlib

    from scorer import packed

    sm = load(tiny_model_dirs["llama"])
    assert sm.engine.packed and not load(tiny_model_dirs["gemma3"]).engine.packed
    monkeypatch.setattr(packed, "attention", lambda model: contextlib.nullcontext())  # the model keeps SDPA
    engine = Engine(sm.model, pad_id=sm.engine.pad_id)
    assert engine.merge and not engine.packed and engine.stats.forwards == 0


@pytest.mark.parametrize("kind", MERGED)
def test_compiled_blocks_score_as_the_eager_model(tiny_model_dirs, kind):
    """``--compile`` fuses each layer's norms and MLP: every path (packed, padded, a forward per
    group, stored prefixes extended) must still give the eager model's scores, and new batch
    shapes must not compile again (the blocks were compiled at load, with dynamic shapes)."""
    from torch._dynamo.utils import counters

    from scorer.compiled import decoder_layers, is_attention

    eager = load_kind(tiny_model_dirs, kind)
    torch._dynamo.reset()  # nothing compiled before: what this load compiles counts
    graphs = counters["stats"]["unique_graphs"]
    sm = load_kind(tiny_model_dirs, kind, compile=True)
    blocks = [b for layer in decoder_layers(sm.model) for b in layer.children() if not is_attention(b)]
    assert blocks and all(b._compiled_call_impl is not None for b in blocks)
    assert not any(b._compiled_call_impl is not None for layer in decoder_layers(sm.model)
                   for b in layer.children() if is_attention(b))
    assert counters["stats"]["unique_graphs"] > graphs  # really compiled, at load
    graphs = counters["stats"]["unique_graphs"]
    questions = ["Write a poem about the sea.", "A poem about the rain, please.", "The harbour."]
    for step in range(3):
        encs = [sm.encode(q, "\n\n".join([*SEGMENTS[:step], f"Rewrite {i}: the boats.", *SEGMENTS[step + 1:]]),
                          ANSWER, "en") for q in questions[: step + 1] for i in range(2)]
        assert sm.score(encs) == pytest.approx(eager.score(encs), abs=1e-5)
    assert sm.score(encs[:1]) == pytest.approx(eager.score(encs[:1]), abs=1e-5)
    assert counters["stats"]["unique_graphs"] == graphs
    assert sm.engine.cache.stats.hits > 0


def test_a_model_that_cannot_be_compiled_fails_to_load_with_the_reason(tiny_model_dirs, monkeypatch):
    import scorer.model
    from scorer.errors import ModelLoadError

    def broken(model):
        raise RuntimeError("InductorError: no working C++ compiler found")

    monkeypatch.setattr(scorer.model, "compile_blocks", broken)
    with pytest.raises(ModelLoadError, match="--compile.*C\\+\\+ compiler"):
        load(tiny_model_dirs["llama"], compile=True)


@pytest.mark.parametrize("kind", MERGED)
def test_the_rows_of_a_forward_are_cut_by_the_logit_budget(tiny_model_dirs, kind):
    """A forward's kept logits (rows x kept positions x vocab, as fp32) stay within the engine's
    budget: a budget of two rows runs a step of six candidates in three suffix forwards, the
    default in one, with the same scores. The default is 1 GiB in host memory; on CUDA a
    sixteenth of the GPU (1 GiB would cut a step of an 8B model into forwards too small for it)."""
    from scorer.devices import default_max_logit_bytes

    sm = load_kind(tiny_model_dirs, kind)
    encs = [sm.encode(q, "\n\n".join([*SEGMENTS[:2], f"Rewrite {i}: the boats.", *SEGMENTS[3:]]), ANSWER, "en")
            for q in ("A poem about the sea.", "A poem about the rain.", "The harbour, please.") for i in range(2)]
    row = max(len(e) - e.limit for e in encs) * sm.engine.vocab * 4
    runs = {}
    for budget in (2 * row, None):
        engine = Engine(sm.model, pad_id=sm.engine.pad_id, packed_rows=sm.engine.packed, max_logit_bytes=budget)
        runs[budget] = (engine.score(encs), engine.stats.forwards)
    (cut, forwards_cut), (whole, forwards_whole) = runs[2 * row], runs[None]
    assert cut == pytest.approx(whole, abs=1e-5)
    per_group = 3 if not sm.engine.merge else 1  # gemma3: a suffix forward per prefix group anyway
    assert forwards_cut - forwards_whole == 3 - per_group
    assert default_max_logit_bytes(torch.device("cpu")) == 1 << 30 >= 6 * row


@pytest.mark.parametrize("kind", MERGED)
def test_nothing_waits_for_the_device_until_a_calls_scores_are_read(tiny_model_dirs, kind):
    """On CUDA the host queues a call's forwards and reads its scores back once, at the end. A
    host read of a device value in between (``.item()``, ``bool(t)``, a boolean-mask index)
    would stall the GPU between forwards. The only other reads allowed are transformers' own, at
    the start of a forward with no cache, where it reads the padding mask (or, with none, the
    position ids) to decide how to mask: gemma3's lone rows (a record's first scoring) and
    llama's padded fallback. On packed rows lone requests join the packed forward, whose cache
    spares it that read: nothing but the read-back waits."""
    from tests.support.host_sync import HostSyncs

    sm = load_kind(tiny_model_dirs, kind)
    questions = ["Write a poem about the sea.", "A poem about the rain, please, in four lines."]
    first = [sm.encode(q, "\n\n".join(SEGMENTS), ANSWER, "en") for q in questions]  # lone, different lengths
    steps = [[sm.encode(q, "\n\n".join([*SEGMENTS[:k], f"Rewrite {i}: the boats.", *SEGMENTS[k + 1:]]), ANSWER, "en")
              for q in questions for i in range(2)] for k in range(3)]
    calls = [first[:1], first, steps[0], steps[1][:2] + steps[2][2:3], steps[2]]  # a lone one on a stored prefix
    syncs = []
    with HostSyncs().watch(sm.engine) as spy:
        for batch in calls:
            sm.score(batch)
            syncs.append(spy.syncs[:])
            spy.syncs.clear()
    for call in syncs:
        *others, last = call
        assert last.call == "TensorBase.tolist" and last.where[0].startswith("engine.py") and last.where[0].endswith(" score")
        assert all(s.where[0].startswith("masking_utils.py") for s in others), "\n".join(map(str, others))
    transformers_reads = [len(call) > 1 for call in syncs]
    assert transformers_reads == [kind != "llama", kind != "llama", kind == "llama-padded", False, False]
