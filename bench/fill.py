"""A store of DeepWriting shape, filled fast (not in CI): rows inserted in bulk rather than
through a run, so the reading commands can be measured at 20,000 records in minutes.

Each record: a ~3,000-character answer, a draft of ``draft_chars`` (its text and raw output),
``steps`` steps of two candidates (one rejected now and then, as long as a draft's segment), a
final thinking as long as the draft. The last three records are failed, skipped and running, as
in tests/support/shaped.py (whose store, written through the Store's API, the tests use).
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import insert, select

from store import Node, Record, RecordIn, Step, Store

BATCH = 200  # records per insert: a few tens of MB of text


def _texts(draft_chars: int, answer_chars: int) -> tuple[str, str, str]:
    para = "I weigh the reader, the image and the turn of the scene before I write the next line of it. "
    body = "\n\n".join(para * 6 for _ in range(draft_chars // (len(para) * 6) + 1))
    return body[:draft_chars], body[:answer_chars], body[: max(1, draft_chars // 30)]


def fill(db: str, records: int, steps: int = 10, draft_chars: int = 30_000, answer_chars: int = 3000) -> tuple[Store, int]:
    """The store and its run, every record but the last three done."""
    draft, answer, segment = _texts(draft_chars, answer_chars)
    st = Store.open(db)
    start = st.begin_run({"search": {"max_steps": steps}, "generator_model": "fake"}, "in.jsonl",
                         [RecordIn(key="r0", position=0, question="q", answer=answer, lang="en")])
    run = start.run_id
    now = datetime.now(timezone.utc)
    with st.engine.begin() as c:
        c.execute(Record.__table__.delete().where(Record.__table__.c.run_id == run))
    for lo in range(0, records, BATCH):
        ids = range(lo, min(records, lo + BATCH))
        with st.engine.begin() as c:
            c.execute(insert(Record.__table__), [_record(run, i, records, answer, draft, now) for i in ids])
            rows = c.execute(select(Record.__table__.c.id, Record.__table__.c.position)
                             .where(Record.__table__.c.run_id == run, Record.__table__.c.position.between(lo, ids[-1])))
            by_pos = {p: rid for rid, p in rows}
            nodes, stepped = [], []
            for i in ids:
                left = records - i
                if left == 1:
                    continue
                nodes.append(_node(by_pos[i], -1, 0, draft, now, 900))
                if left > 3:
                    for s in range(steps):
                        for k in range(2):
                            nodes.append(_node(by_pos[i], s, k, segment, now, 1200 if k == 0 else None,
                                               "no <refine>" if k and s % 4 == 0 else None))
            c.execute(insert(Node.__table__), nodes)
            node_ids = {(r, s, k): nid for nid, r, s, k in c.execute(
                select(Node.__table__.c.id, Node.__table__.c.record_id, Node.__table__.c.step, Node.__table__.c.idx)
                .where(Node.__table__.c.record_id.in_(list(by_pos.values()))))}
            for i in ids:
                if records - i > 3:
                    stepped += [{"record_id": by_pos[i], "step": s, "segment": segment, "kept": segment,
                                 "chosen_node_id": node_ids[(by_pos[i], s, 0)] if s % 2 else None,
                                 "best_after": 1.5 - 0.01 * s, "created_at": now} for s in range(steps)]
            if stepped:
                c.execute(insert(Step.__table__), stepped)
    return st, run


def _record(run: int, i: int, records: int, answer: str, draft: str, now: datetime) -> dict:
    left = records - i
    status = {1: "running", 2: "skipped", 3: "failed"}.get(left, "done")
    return {"run_id": run, "key": f"r{i}", "position": i, "question": f"Write piece {i}.", "answer": answer,
            "lang": "en", "meta": {}, "content_hash": f"h{i}", "status": status,
            "error": {2: "draft thinking is a single segment", 3: "3 requests failed for good; last: HTTP 500"}.get(left),
            "initial_score": None if left == 1 else 1.5, "final_score": 1.4 if status == "done" else None,
            "final_thinking": draft if status == "done" else None, "steps_done": 10 if status == "done" else 0,
            "updated_at": now}


def _node(record_id: int, step: int, idx: int, text: str, now: datetime, prompt: int | None,
          rejected: str | None = None) -> dict:
    return {"record_id": record_id, "kind": "draft" if step < 0 else "candidate", "step": step, "idx": idx,
            "text": text, "raw": text, "rejected": rejected, "score": 1.5, "model": "fake", "finish_reason": "stop",
            "prompt_tokens": prompt, "completion_tokens": len(text) // 4, "latency_s": 1.0, "created_at": now}
