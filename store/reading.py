"""Reading a run: its records by status, its finished records with their trees in bounded
chunks, and its overview numbers from aggregate queries.

Each query names the index that serves it (``store.models``): a database of 20,000 DeepWriting
records holds gigabytes of text, and a query that reads a table's rows instead of an index
reads that text too (SQLite keeps a row's long texts in its overflow pages).
"""

from __future__ import annotations

from datetime import datetime
from typing import Iterator

from sqlalchemy import func
from sqlmodel import Session, col, select

from store.models import Node, NodeKind, Record, RecordStatus, Run, Step
from store.sql import UNFINISHED
from store.values import Overview, Problem, Progress, RecordNumbers, progress_of

FINISHED_CHUNK = 64  # done records (with their trees) read per query: a few MB at DeepWriting size


class RunReading:
    """Store's reads of a run."""

    def records_to_run(self, run_id: int) -> list[Record]:
        with self._session() as s:
            q = select(Record).where(Record.run_id == run_id, col(Record.status).in_(UNFINISHED))
            return list(s.exec(q.order_by(col(Record.position))))

    def unfinished_count(self, run_id: int) -> int:
        """How many records are pending or running; served by ix_record_run_status's (run_id,
        status) prefix, one range per status, index only: no record row, no text is read."""
        q = select(func.count()).select_from(Record).where(Record.run_id == run_id, col(Record.status).in_(UNFINISHED))
        with self.engine.connect() as conn:
            return conn.execute(q).scalar_one()

    def status_counts(self, run_id: int) -> dict[RecordStatus, int]:
        with self._session() as s:
            return self._status_counts(s, run_id)

    @staticmethod
    def _status_counts(s: Session, run_id: int) -> dict[RecordStatus, int]:
        """Served by ix_record_run_status alone (an index-only scan)."""
        q = select(Record.status, func.count()).where(Record.run_id == run_id).group_by(Record.status)
        return {RecordStatus(st): n for st, n in s.exec(q)}

    def finished_records(self, run_id: int, worker_id: int | None = None,
                         chunk: int | None = None) -> Iterator[tuple[Record, Progress]]:
        """Done records in input order, each with its search tree; with ``worker_id``, only
        those that worker finished. Read ``chunk`` records at a time (three queries a chunk:
        the records from ix_record_run_status's (run_id, status, position) prefix, after the
        last position seen; their nodes from ix_node_record_id; their steps from
        uq step (record_id, step)), so what is held is one chunk, whatever the run's size."""
        chunk = chunk or FINISHED_CHUNK
        after = -1
        while True:
            with self._session() as s:
                q = select(Record).where(Record.run_id == run_id, Record.status == RecordStatus.done,
                                         col(Record.position) > after)
                if worker_id is not None:
                    q = q.where(Record.worker_id == worker_id)
                records = list(s.exec(q.order_by(col(Record.position)).limit(chunk)))
                if not records:
                    return
                ids = [r.id for r in records]
                nodes = list(s.exec(select(Node).where(col(Node.record_id).in_(ids))
                                    .order_by(col(Node.record_id), col(Node.step), col(Node.idx))))
                steps = list(s.exec(select(Step).where(col(Step.record_id).in_(ids))
                                    .order_by(col(Step.record_id), col(Step.step))))
            for rec in records:
                yield rec, progress_of([n for n in nodes if n.record_id == rec.id],
                                       [st for st in steps if st.record_id == rec.id])
            after = records[-1].position
            del records, nodes, steps

    def record_numbers(self, run_id: int) -> Iterator[RecordNumbers]:
        """Per done record, in input order, the numbers a report plots, without reading a text:
        the lengths come from the database. Records from ix_record_run_status; each record's
        nodes from ix_node_usage (record_id, kind, ...), which covers the sums."""
        draft = (select(func.length(Node.text)).where(Node.record_id == Record.id, Node.kind == NodeKind.draft,
                                                     col(Node.rejected).is_(None))
                 .order_by(col(Node.idx)).limit(1).scalar_subquery())
        usage = (select(Node.record_id, func.sum(Node.completion_tokens).label("tokens"),
                        func.sum(Node.latency_s).label("seconds")).group_by(Node.record_id).subquery())
        q = (select(Record.key, Record.initial_score, Record.final_score, draft,
                    func.length(Record.final_thinking), usage.c.tokens, usage.c.seconds)
             .outerjoin(usage, usage.c.record_id == Record.id)
             .where(Record.run_id == run_id, Record.status == RecordStatus.done).order_by(col(Record.position)))
        with self.engine.connect() as conn:
            for key, initial, final, draft_chars, final_chars, tokens, seconds in conn.execute(q):
                yield RecordNumbers(key, initial, final, draft_chars or 0, final_chars or 0, int(tokens or 0),
                                    float(seconds or 0.0))

    def step_numbers(self, run_id: int) -> Iterator[tuple[int, float, bool]]:
        """(step, best score after it, a candidate was kept) of every step of a done record;
        served by ix_step_choice (record_id, step, best_after, chosen_node_id), index only."""
        q = (select(Step.step, Step.best_after, col(Step.chosen_node_id).is_not(None))
             .join(Record, Record.id == Step.record_id)
             .where(Record.run_id == run_id, Record.status == RecordStatus.done))
        with self.engine.connect() as conn:
            yield from conn.execute(q)

    def run(self, run_id: int) -> Run | None:
        with self._session() as s:
            return s.get(Run, run_id)

    def record_by_key(self, run_id: int, key: str) -> Record | None:
        """Served by the unique (run_id, key) index."""
        with self._session() as s:
            return s.exec(select(Record).where(Record.run_id == run_id, Record.key == key)).first()

    def overview(self, run_id: int) -> Overview:
        """The run's numbers, from the store alone: what the dashboard shows, for any run. One
        query of the records alone, grouped by status: their counters of their trees (kept by
        the writers, models.TREE_COUNTERS), so no node or step is read. Served by
        ix_record_run_status (run_id, status, position, scores, updated_at, the counters), which
        covers it: an index-only scan on SQLite; on PostgreSQL an index-only scan once vacuumed,
        or a bitmap scan of record's narrow rows (its long texts are TOASTed out of them)."""
        r = Record.__table__.c
        q = (select(r.status, func.count(), func.sum(r.steps_done), func.sum(r.accepted_steps), func.sum(r.nodes),
                    func.sum(r.rejected_nodes), func.sum(r.prompt_tokens), func.sum(r.completion_tokens),
                    func.avg(r.initial_score), func.avg(r.final_score), func.max(r.updated_at))
             .where(r.run_id == run_id).group_by(r.status))
        with self.engine.connect() as conn:
            rows = {RecordStatus(row[0]): row[1:] for row in conn.execute(q)}
        total = [sum(int(row[i] or 0) for row in rows.values()) for i in range(1, 7)]
        done = rows.get(RecordStatus.done)
        updated = max((row[9] for row in rows.values() if row[9] is not None), default=None)
        if isinstance(updated, str):  # SQLite's max() of a datetime column is its text
            updated = datetime.fromisoformat(updated)
        return Overview(counts={st: row[0] for st, row in rows.items()}, steps=total[0], accepted=total[1],
                        nodes=total[2], rejected=total[3], prompt_tokens=total[4], completion_tokens=total[5],
                        mean_initial=done[7] if done else None, mean_final=done[8] if done else None,
                        updated_at=updated)

    def latest_run_id(self) -> int | None:
        with self._session() as s:
            return s.exec(select(Run.id).order_by(col(Run.id).desc())).first()

    def unfinished_problems(self, run_id: int) -> list[Problem]:
        """The records that ended failed or skipped, in input order, for the closing account;
        found in ix_record_run_status, then each such row's error and key (not its texts)."""
        q = (select(Record.status, Record.error, Record.key)
             .where(Record.run_id == run_id, col(Record.status).in_((RecordStatus.failed, RecordStatus.skipped)))
             .order_by(col(Record.position)))
        with self.engine.connect() as conn:
            return [Problem(key, RecordStatus(st), err) for st, err, key in conn.execute(q)]


