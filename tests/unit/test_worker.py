"""The per-record search against scripted generator/scorer seams and a real SQLite store."""

import random

import pytest

from agents.config import SearchConfig
from agents.generation.generator import Generation
from agents.generation.parse import parse_refine
from agents.generation.prefill import draft_prefill
from agents.search.record import RecordSearch, _node
from agents.watch.stats import Stats
from prompts import PromptSet
from scorer import ScoringInputError
from store import NodeKind, RecordIn, RecordStatus, Store

P = "x" * 110  # a paragraph long enough to be a segment of its own


def is_edit(messages) -> bool:
    return "<replace>" in messages[-1]["content"]


class ScriptedGenerator:
    def __init__(self, drafts, edits):
        self.drafts, self.edits, self.calls, self.requests = list(drafts), list(edits), [], []

    async def generate(self, messages, prefill, n, stop, kind="edit"):
        kind = "edit" if is_edit(messages) else "draft"
        self.calls.append((kind, n))
        self.requests.append((kind, prefill, list(stop)))
        source = self.drafts if kind == "draft" else self.edits
        return [Generation(source.pop(0), "stop", "m", 10, 200, 0.01) for _ in range(n)]


class LengthScorer:
    """Shorter thinking scores lower: deterministic and easy to reason about."""

    def __init__(self):
        self.calls = 0

    async def score_many(self, question, thinkings, answer, lang):
        self.calls += len(thinkings)
        return [ScoringInputError("over the context") if len(t) > 5000 else len(t) / 1000 for t in thinkings]

    async def check_many(self, items):
        return [ScoringInputError("over the context") if len(a) > 5000 else len(a) for _, a, _ in items]


def make(tmp_path, gen, cfg=SearchConfig(max_steps=10, stop_score=0.0), answer="answer", **kw):
    store = Store.open(str(tmp_path / "w.db"))
    run = store.begin_run({}, "in", [RecordIn("r", 0, "q", answer, "en")]).run_id
    [rec] = store.records_to_run(run)
    return RecordSearch(cfg, gen, LengthScorer(), store, PromptSet(), Stats(), random.Random(0),
                        **{"prefill_supported": False, **kw}), store, rec


async def test_accepts_only_better_candidates_and_records_every_step(tmp_path):
    draft = f"<think>\n{P}A\n\n{P}B\n\n{P}C"
    edits = ["<refine>short</refine>", "no tag at all", f"<refine>{P}{P}</refine>", "<refine>s2</refine>",
             "<refine>" + P * 3 + "</refine>", "<refine>" + P * 4 + "</refine>"]
    s, store, rec = make(tmp_path, ScriptedGenerator([draft], edits))
    assert await s.run(rec) == RecordStatus.done
    p = store.load_progress(rec.id)
    assert [st.kept for st in p.steps] == ["short", "s2", f"{P}C"]  # step 3: neither candidate is better
    assert [st.chosen_node_id is not None for st in p.steps] == [True, True, False]
    rejected = [n for n in p.candidates[0] if n.rejected]
    assert len(rejected) == 1 and rejected[0].raw == "no tag at all" and rejected[0].score is None
    bests = [st.best_after for st in p.steps]
    assert bests == sorted(bests, reverse=True) and bests[-1] < p.draft.score


async def test_stops_once_below_the_threshold(tmp_path):
    draft = f"<think>\n{P}A\n\n{P}B\n\n{P}C"
    gen = ScriptedGenerator([draft], ["<refine>a</refine>", "<refine>b</refine>"])
    s, store, rec = make(tmp_path, gen, SearchConfig(max_steps=10, stop_score=0.25))
    assert await s.run(rec) == RecordStatus.done
    assert len(store.load_progress(rec.id).steps) == 1 and gen.calls == [("draft", 1), ("edit", 2)]


async def test_rejected_drafts_are_retried_and_kept_then_the_record_is_skipped(tmp_path):
    gen = ScriptedGenerator(["no think tag", "<think>\none short segment"], [])
    s, store, rec = make(tmp_path, gen, SearchConfig(draft_attempts=2))
    assert await s.run(rec) == RecordStatus.skipped
    drafts = store.load_progress(rec.id).drafts
    assert [d.rejected for d in drafts] == ["no <think> block in the output", "draft thinking is a single segment"]
    assert store.records_to_run(1) == []


async def test_resume_scores_stored_candidates_and_generates_only_missing_ones(tmp_path):
    draft = f"<think>\n{P}A\n\n{P}B"
    gen = ScriptedGenerator([draft], [])
    s, store, rec = make(tmp_path, gen, SearchConfig(max_steps=1, stop_score=0.0, expansions=2))
    original = gen.generate

    async def one_candidate_then_crash(messages, prefill, n, stop, kind="edit"):
        if not is_edit(messages):
            return await original(messages, prefill, n, stop, kind)
        # The first of two candidates reaches the store, then the process dies.
        [out] = [Generation("<refine>a</refine>", "stop", "m", 10, 20, 0.01)]
        store.add_node(_node(rec, NodeKind.candidate, 0, 0, prefill, out, parse_refine(out.text)))
        raise RuntimeError("killed mid-step")

    gen.generate = one_candidate_then_crash
    with pytest.raises(RuntimeError):
        await s.run(rec)
    gen.generate, gen.edits = original, ["<refine>b</refine>"]
    gen.calls.clear()
    assert await s.run(rec) == RecordStatus.done
    assert gen.calls == [("edit", 1)]  # the draft and the stored candidate were not regenerated
    cands = store.load_progress(rec.id).candidates[0]
    assert [c.text for c in cands] == ["a", "b"] and all(c.score is not None for c in cands)


async def test_an_answer_too_long_for_the_scorer_is_skipped_before_any_generation(tmp_path):
    gen = ScriptedGenerator([], [])
    s, store, rec = make(tmp_path, gen, answer="a" * 6000)
    assert await s.precheck([rec]) == []
    assert gen.calls == [] and "cannot be scored" in store.unfinished_problems(1)[0].error
    assert store.records_to_run(1) == []


async def test_a_candidate_too_long_to_score_is_rejected_not_fatal(tmp_path):
    draft = f"<think>\n{P}A\n\n{P}B"
    gen = ScriptedGenerator([draft], ["<refine>" + "z" * 6000 + "</refine>", "<refine>ok</refine>"])
    s, store, rec = make(tmp_path, gen, SearchConfig(max_steps=1, stop_score=0.0))
    assert await s.run(rec) == RecordStatus.done
    [long, ok] = store.load_progress(rec.id).candidates[0]
    assert long.rejected.startswith("cannot be scored") and long.score is None and ok.score is not None


async def test_stop_strings_and_empty_refinements_follow_the_acceptance_policy(tmp_path):
    draft = f"<think>\n{P}A\n\n{P}B"
    gen = ScriptedGenerator([draft], ["<refine>\n</refine>", f"<refine>{P}{P}</refine>"])
    s, store, rec = make(tmp_path, gen, SearchConfig(max_steps=1, stop_score=0.0))
    assert await s.run(rec) == RecordStatus.done
    assert [stop for _, _, stop in gen.requests] == [[], []]  # the reference sends no stop strings
    [empty, long] = store.load_progress(rec.id).candidates[0]
    assert empty.text == "" and empty.score is not None and not empty.rejected  # scored, as the reference does
    assert store.load_progress(rec.id).steps[0].kept == ""  # and, scoring lowest here, kept

    gen = ScriptedGenerator([draft], ["<refine>\n</refine>", f"<refine>{P}{P}</refine>"])
    s, store, rec = make(tmp_path / "strict", gen, SearchConfig(max_steps=1, stop_score=0.0, acceptance="strict"))
    assert await s.run(rec) == RecordStatus.done
    assert [stop for _, _, stop in gen.requests] == [["</think>"], ["</refine>"]]
    [empty, _] = store.load_progress(rec.id).candidates[0]
    assert empty.rejected == "empty <refine> block" and empty.score is None


async def test_a_seeded_draft_prefill_depends_on_the_record_not_on_the_order_of_work(tmp_path):
    draft = f" the user.\n\n{P}A\n\n{P}B"
    gen = ScriptedGenerator([draft], [])
    s, store, rec = make(tmp_path, gen, SearchConfig(max_steps=0), prefill_supported=True, seed=7)
    s.rng.random()  # whatever else drew from the shared stream meanwhile
    assert await s.run(rec) == RecordStatus.done
    [(_, prefill, _)] = gen.requests
    assert prefill == draft_prefill("en", random.Random("7/r/0"))
    assert store.load_progress(rec.id).draft.text.startswith(prefill.removeprefix("<think>\n"))
