"""A run's store of DeepWriting shape, written through the Store as a worker writes it: each
record a draft, ``steps`` steps of two candidates (one rejected now and then), a final thinking;
the last records failed, skipped or still running. For the reading commands' tests."""

from __future__ import annotations

from store import Node, NodeKind, RecordIn, RecordStatus, Step, Store


def _text(i: int, chars: int) -> str:
    para = f"Paragraph of record {i}: I weigh the reader, the image and the turn before I write. "
    return "\n\n".join(para * max(1, 1000 // len(para)) for _ in range(max(1, chars // 1000)))[:chars].ljust(chars, ".")


def shaped_run(db: str, records: int, steps: int = 10, draft_chars: int = 3000, answer_chars: int = 300,
               unfinished: int = 3) -> tuple[Store, int]:
    """The store and its run: ``records`` records, all but the last ``unfinished`` done (the last
    three: failed, skipped, still running)."""
    st = Store.open(db)
    ins = [RecordIn(key=f"r{i}", position=i, question=f"Write piece {i}.", answer=_text(i, answer_chars), lang="en",
                    meta={"extra": {"source": f"s{i % 7}"}}) for i in range(records)]
    run = st.begin_run({"search": {"max_steps": steps}, "generator_model": "fake"}, "in.jsonl", ins,
                       lease_s=600).run_id
    claims = st.claim(run, records)
    for n, claim in enumerate(claims):
        rec = claim.record
        left = records - n
        if left == 1:
            continue  # held, still running
        draft = _text(n, draft_chars)
        [d] = st.add_nodes([Node(record_id=rec.id, kind=NodeKind.draft, step=-1, idx=0, text=draft, raw=draft,
                                 prompt_tokens=900, completion_tokens=len(draft) // 4, latency_s=2.0)])
        st.set_initial_score(rec.id, d.id, 1.5)
        if left == 2:
            st.end_record(rec.id, RecordStatus.skipped, "draft thinking is a single segment")
            continue
        if left == 3:
            st.end_record(rec.id, RecordStatus.failed, f"3 requests failed for good; last: HTTP {500 + n % 3}")
            continue
        best = 1.5
        for s in range(steps):
            cands = st.add_nodes([Node(record_id=rec.id, kind=NodeKind.candidate, step=s, idx=k, text=f"rewrite {k}",
                                       raw=f"<refine>rewrite {k}</refine>", rejected="no <refine>" if k and s % 4 == 0
                                       else None, prompt_tokens=1200 if k == 0 else None, completion_tokens=300,
                                       latency_s=1.0) for k in range(2)])
            best = best - 0.01 * (s % 2)
            st.complete_step(rec.id, Step(record_id=rec.id, step=s, segment="seg", kept="kept",
                                          chosen_node_id=cands[0].id if s % 2 else None, best_after=best),
                             {cands[0].id: best})
        st.finish_record(rec.id, draft, best)
    return st, run
