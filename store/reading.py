"""Reading a run: its records by status, its finished records with their trees, and its overview numbers."""

from __future__ import annotations

from typing import Iterator

from sqlalchemy import func
from sqlmodel import Session, col, select

from store.models import Node, Record, RecordStatus, Run, Step
from store.sql import UNFINISHED
from store.values import Overview, Progress


class RunReading:
    """Store's reads of a run; finished_records loads each tree with TreeWrites.load_progress."""

    def records_to_run(self, run_id: int) -> list[Record]:
        with self._session() as s:
            q = select(Record).where(Record.run_id == run_id, col(Record.status).in_(UNFINISHED))
            return list(s.exec(q.order_by(col(Record.position))))

    def status_counts(self, run_id: int) -> dict[RecordStatus, int]:
        with self._session() as s:
            return self._status_counts(s, run_id)

    @staticmethod
    def _status_counts(s: Session, run_id: int) -> dict[RecordStatus, int]:
        q = select(Record.status, func.count()).where(Record.run_id == run_id).group_by(Record.status)
        return {RecordStatus(st): n for st, n in s.exec(q)}

    def finished_records(self, run_id: int, worker_id: int | None = None) -> Iterator[tuple[Record, Progress]]:
        """Done records in input order, each with its search tree; with ``worker_id``, only
        those that worker finished."""
        with self._session() as s:
            q = select(Record).where(Record.run_id == run_id, Record.status == RecordStatus.done)
            if worker_id is not None:
                q = q.where(Record.worker_id == worker_id)
            records = list(s.exec(q.order_by(col(Record.position))))
        for rec in records:
            yield rec, self.load_progress(rec.id)

    def run(self, run_id: int) -> Run | None:
        with self._session() as s:
            return s.get(Run, run_id)

    def record_by_key(self, run_id: int, key: str) -> Record | None:
        with self._session() as s:
            return s.exec(select(Record).where(Record.run_id == run_id, Record.key == key)).first()

    def overview(self, run_id: int) -> Overview:
        """The run's numbers, from the store alone: what the dashboard shows, for any run."""
        with self._session() as s:
            of_run = col(Node.record_id).in_(select(Record.id).where(Record.run_id == run_id))
            steps, accepted = s.exec(select(func.count(col(Step.id)), func.count(col(Step.chosen_node_id)))
                                     .join(Record).where(Record.run_id == run_id)).one()
            nodes, rejected, prompt, completion = s.exec(select(
                func.count(col(Node.id)), func.count(col(Node.rejected)),
                func.coalesce(func.sum(Node.prompt_tokens), 0), func.coalesce(func.sum(Node.completion_tokens), 0),
            ).where(of_run)).one()
            initial, final = s.exec(select(func.avg(Record.initial_score), func.avg(Record.final_score))
                                    .where(Record.run_id == run_id, Record.status == RecordStatus.done)).one()
            updated = s.exec(select(func.max(Record.updated_at)).where(Record.run_id == run_id)).one()
            return Overview(counts=self._status_counts(s, run_id), steps=steps, accepted=accepted, nodes=nodes,
                            rejected=rejected, prompt_tokens=int(prompt), completion_tokens=int(completion),
                            mean_initial=initial, mean_final=final, updated_at=updated)

    def latest_run_id(self) -> int | None:
        with self._session() as s:
            return s.exec(select(Run.id).order_by(col(Run.id).desc())).first()

    def unfinished_problems(self, run_id: int) -> list[Record]:
        """Records that ended failed or skipped, for the closing account."""
        with self._session() as s:
            q = select(Record).where(
                Record.run_id == run_id, col(Record.status).in_((RecordStatus.failed, RecordStatus.skipped))
            )
            return list(s.exec(q.order_by(col(Record.position))))
