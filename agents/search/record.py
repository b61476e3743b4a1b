"""One record's REER search, run against the generator, the scorer and the store.

Every generation is stored the moment it arrives and every score the moment it is computed;
a step is marked complete in one transaction. So a resumed record continues exactly where it
stopped: completed steps are replayed from the store, stored candidates are scored (not
regenerated), and only the missing candidates of the open step are generated.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence, TypeVar

from agents.config import Acceptance, EditPrefill, SearchConfig
from agents.errors import EndpointError, FatalEndpointError, PromptTooLong
from agents.generation.generator import Generation
from agents.generation.routing import RequestKind
from agents.generation.parse import Parsed, parse_refine, parse_thinking
from agents.generation.prefill import draft_prefill, edit_prefill
from agents.search import decisions
from agents.search.outage import StoreOutage, off_loop
from agents.services.scorers import Scorer
from agents.watch.stats import Stats
from prompts import PromptSet
from prompts.segment import segment_text
from prompts.tags import REFINE_CLOSE, SYSTEM_PROMPT, THINK_CLOSE
from scorer.errors import ScoringInputError
from store import LeaseLost, Node, NodeKind, Record, RecordStatus, Step, Store

CHECK_CHUNK = 256  # records per /check request
T = TypeVar("T")


def draft_stop(acceptance: Acceptance) -> list[str]:
    """A draft's stop strings. The reference sends none: the model may write past its thinking,
    and those tokens count toward the draft's minimum. "strict" stops at the thinking's end."""
    return [THINK_CLOSE] if acceptance == "strict" else []


class GeneratorLike(Protocol):
    async def generate(self, messages: list[dict[str, str]], prefill: str, n: int, stop: list[str],
                       kind: RequestKind = "edit") -> list[Generation]: ...


@dataclass
class RecordSearch:
    cfg: SearchConfig
    generator: GeneratorLike
    scorer: Scorer
    store: Store
    prompts: PromptSet
    stats: Stats
    rng: random.Random
    edit_prefill: EditPrefill = "analyze"
    prefill_supported: bool = True  # False where the endpoint cannot continue a prefilled turn
    failure_budget: int = 3  # requests that may fail for good (after their retries) per record
    seed: int | None = None  # set: each draft's trigger phrase is a function of (seed, record, attempt)
    outage: StoreOutage | None = None  # set: store calls ride out a store that went away

    async def run(self, rec: Record) -> RecordStatus | None:
        """Search one record to the end; returns its final status (None: another worker took
        it over). A record-level failure is recorded, not raised; errors that no record can
        survive (a dead endpoint or scorer) propagate and stop the run, leaving the record
        resumable."""
        try:
            return await self._run(rec)
        finally:
            self.stats.record_ended(rec.id)  # no-op once done: a finished record keeps no state here

    async def _run(self, rec: Record) -> RecordStatus | None:
        failures = 0
        while True:
            try:
                return await self._search(rec)
            except LeaseLost:
                self.stats.error(f"record {rec.key}: another worker took it over, as this worker's lease ran out "
                                 "(its heartbeat was late: a longer --lease-s avoids that)")
                return None
            except FatalEndpointError:
                raise
            except EndpointError as exc:
                failures += 1
                self.stats.error(f"record {rec.key}: {exc}")
                if failures < self.failure_budget:
                    continue  # the search resumes from the store: nothing is redone
                reason = f"{failures} requests failed for good; last: {exc}"
            await self._saved(lambda again: self.store.end_record(rec.id, RecordStatus.failed, reason))
            self.stats.failed += 1
            return RecordStatus.failed

    async def precheck(self, records: list[Record], chunk: int = CHECK_CHUNK) -> list[Record]:
        """Before paying for any draft: can the scorer hold each record's question and answer at
        all? Asked in a few requests for the whole run; the records that cannot fit are skipped
        with the reason, the others returned."""
        ok: list[Record] = []
        for i in range(0, len(records), chunk):
            part = records[i : i + chunk]
            results = await self.scorer.check_many([(r.question, r.answer, r.lang) for r in part])
            for rec, result in zip(part, results):
                if isinstance(result, ScoringInputError):
                    await self._skip(rec, f"answer cannot be scored: {result}")
                else:
                    ok.append(rec)
        return ok

    async def _search(self, rec: Record) -> RecordStatus:
        progress = await self._saved(lambda again: self.store.load_progress(rec.id))
        draft, attempts = progress.draft, list(progress.drafts)
        while True:
            while draft is None and len(attempts) < self.cfg.draft_attempts:
                try:
                    attempts.append(await self._new_draft(rec, len(attempts)))
                except PromptTooLong as exc:
                    return await self._skip(rec, f"draft not sent: {exc}")
                draft = None if attempts[-1].rejected else attempts[-1]
            if draft is None:
                return await self._skip(rec, f"draft rejected: {attempts[-1].rejected}"
                                  + (f" ({len(attempts)} attempts)" if len(attempts) > 1 else ""))
            if draft.score is not None or await self._score_nodes(rec, [(draft.text, draft)]):
                break
            draft = None  # too long for the scorer: rejected like any unusable draft
        await self._saved(lambda again: self.store.set_initial_score(rec.id, draft.id, draft.score))
        segments = segment_text(draft.text)
        self.stats.draft_scored(rec.id, draft.score)

        kept = [st.kept for st in progress.steps]
        best = progress.steps[-1].best_after if progress.steps else draft.score
        for i in range(len(kept), decisions.planned_steps(segments, self.cfg.max_steps)):
            if decisions.done(best, self.cfg.stop_score):
                break
            view = decisions.step_view(segments, kept, i)
            nodes = await self._candidates(rec, view, progress.candidates.get(i, []))
            scores = await self._score_nodes(rec, [(view.thinking_with(n.text), n) for n in nodes
                                                   if n.score is None and not n.rejected])
            pick = decisions.choose([n.score for n in nodes], best)
            chosen = nodes[pick] if pick is not None else None
            if chosen is not None:
                best = chosen.score
                self.stats.accepted += 1
            kept.append(chosen.text if chosen else view.segment)
            step = Step(step=i, segment=view.segment, kept=kept[-1], chosen_node_id=chosen.id if chosen else None,
                        best_after=best, record_id=rec.id)
            await self._saved(lambda again: self.store.complete_step(rec.id, step, scores, again=again))
            self.stats.steps += 1
        thinking = decisions.final_thinking(segments, kept)
        await self._saved(lambda again: self.store.finish_record(rec.id, thinking, best))
        self.stats.record_ended(rec.id, best)
        self.stats.done += 1
        return RecordStatus.done

    async def _saved(self, write: Callable[[bool], T], held: Sequence[Node] = ()) -> T:
        """A store call (``write(again)``) in a thread, riding out a store that went away where the
        run does."""
        if self.outage is None:
            return await off_loop(write, False)
        return await self.outage.call(write, held, in_thread=True)

    async def _skip(self, rec: Record, reason: str) -> RecordStatus:
        await self._saved(lambda again: self.store.end_record(rec.id, RecordStatus.skipped, reason))
        self.stats.skipped += 1
        return RecordStatus.skipped

    async def _score_nodes(self, rec: Record, items: list[tuple[str, Node]]) -> dict[int, float]:
        """Score stored nodes (thinking, node) in one request; a node the scorer cannot take
        (too long) is marked rejected at once. Returns the scores by node id, for the caller to
        store with what it decides from them, in the same transaction."""
        if not items:
            return {}
        results = await self.scorer.score_many(rec.question, [t for t, _ in items], rec.answer, rec.lang)
        self.stats.scored += len(items)
        scores: dict[int, float] = {}
        for (_, node), result in zip(items, results):
            if isinstance(result, ScoringInputError):
                node.rejected = f"cannot be scored: {result}"
                await self._saved(lambda again, node=node: self.store.reject_node(node, node.rejected))
            else:
                node.score = scores[node.id] = result
        return scores

    # --- generation -----------------------------------------------------------------------

    def _messages(self, user: str) -> list[dict[str, str]]:
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]

    async def _new_draft(self, rec: Record, attempt: int) -> Node:
        user = self.prompts.render("initial_thinking", rec.lang, question=rec.question, answer=rec.answer)
        # Seeded per record, not from the shared stream: the phrase does not depend on which
        # records happen to run concurrently, nor on resuming.
        rng = random.Random(f"{self.seed}/{rec.key}/{attempt}") if self.seed is not None else self.rng
        prefill = draft_prefill(rec.lang, rng) if self.prefill_supported else ""
        [gen] = await self.generator.generate(self._messages(user), prefill, 1, draft_stop(self.cfg.acceptance),
                                             kind="draft")
        parsed = parse_thinking(prefill + gen.text, gen.finish_reason, self.cfg.cut_drafts)
        if parsed.ok and gen.completion_tokens is not None and gen.completion_tokens < self.cfg.min_draft_tokens:
            parsed = Parsed(None, f"draft has {gen.completion_tokens} generated tokens, under {self.cfg.min_draft_tokens}")
        if parsed.ok and len(segment_text(parsed.text)) <= 1:
            parsed = Parsed(None, "draft thinking is a single segment")
        node = _node(rec, NodeKind.draft, -1, attempt, prefill, gen, parsed)
        [node] = await self._saved(lambda again: self.store.add_nodes([node], again=again), held=[node])
        return node

    async def _candidates(self, rec: Record, view: decisions.StepView, stored: list[Node]) -> list[Node]:
        """The step's candidates: those already stored, plus the missing ones generated now."""
        missing = self.cfg.expansions - len(stored)
        if missing <= 0:
            return stored
        user = self.prompts.render("segment_edit", rec.lang, question=rec.question, answer=rec.answer,
                                   before=view.before, segment=view.segment, after=view.after)
        lead_in = self.prompts.render("edit_lead_in", rec.lang)
        prefill = edit_prefill(self.edit_prefill, lead_in, view.segment, rec.lang) if self.prefill_supported else ""
        strict = self.cfg.acceptance == "strict"
        if prefill and self.edit_prefill == "refine":
            # A base model continuing a prefilled <refine> writes one passage, then rambles on:
            # a blank line ends its rewrite.
            stop = [REFINE_CLOSE, "\n\n"]
        else:
            stop = [REFINE_CLOSE] if strict else []  # the reference's edits run to their end
        try:
            gens = await self.generator.generate(self._messages(user), prefill, missing, stop)
        except PromptTooLong as exc:
            # The step is skipped: its segment stays as it is, the reason kept in the candidate's place.
            nodes = [Node(record_id=rec.id, kind=NodeKind.candidate, step=view.index, idx=len(stored), raw="",
                          rejected=f"step skipped, request not sent: {exc}")]
            self.stats.error(f"record {rec.key}: step {view.index} skipped: {exc}")
            return list(stored) + await self._saved(lambda again: self.store.add_nodes(nodes, again=again),
                                                    held=nodes)
        nodes = [_node(rec, NodeKind.candidate, view.index, len(stored) + k, prefill, gen,
                       parse_refine(prefill + gen.text, allow_empty=not strict))
                 for k, gen in enumerate(gens)]
        return list(stored) + await self._saved(lambda again: self.store.add_nodes(nodes, again=again), held=nodes)


def _node(rec: Record, kind: NodeKind, step: int, idx: int, prefill: str, gen: Generation, parsed: Parsed) -> Node:
    return Node(record_id=rec.id, kind=kind, step=step, idx=idx, text=parsed.text, raw=prefill + gen.text,
                rejected=parsed.reason, model=gen.model, finish_reason=gen.finish_reason,
                prompt_tokens=gen.prompt_tokens, completion_tokens=gen.completion_tokens, latency_s=gen.latency_s)
