"""One record's search tree: its status, scores, nodes and steps, written as the search goes, read to resume."""

from __future__ import annotations

from typing import Any, Sequence

from sqlalchemy import bindparam, insert, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from store.errors import StoreStateError
from store.models import Node, Record, RecordStatus, Step, utcnow
from store.sql import set_row, write_scores
from store.values import Progress, progress_of


class TreeWrites:
    """Store's writes to a record and its search tree, each fenced on the lease (LeaseQueries._fence)."""

    engine: Engine

    def mark_running(self, record_id: int) -> None:
        self._update_record(record_id, status=RecordStatus.running)

    def set_initial_score(self, record_id: int, draft_id: int, score: float) -> None:
        """The draft's score, on the draft and on its record, in one transaction."""
        with self.engine.begin() as conn:
            self._fence(conn, record_id)
            write_scores(conn, {draft_id: score})
            set_row(conn, Record, record_id, initial_score=score, updated_at=utcnow())

    def finish_record(self, record_id: int, final_thinking: str, final_score: float) -> None:
        self._update_record(
            record_id, status=RecordStatus.done, final_thinking=final_thinking, final_score=final_score, error=None
        )

    def end_record(self, record_id: int, status: RecordStatus, reason: str) -> None:
        """Close a record that did not finish: ``failed`` or ``skipped``, with the reason."""
        if status not in (RecordStatus.failed, RecordStatus.skipped):
            raise StoreStateError(f"end_record takes failed or skipped, not {status}")
        self._update_record(record_id, status=status, error=reason)

    def _update_record(self, record_id: int, **values: Any) -> None:
        self._update(record_id, Record, record_id, updated_at=utcnow(), **values)

    def _update(self, record_id: int, table: type, row_id: int, **values: Any) -> None:
        """One UPDATE of a row of ``record_id``'s, no ORM round trip: these are the hot writes."""
        with self.engine.begin() as conn:
            self._fence(conn, record_id)
            set_row(conn, table, row_id, **values)

    def load_progress(self, record_id: int) -> Progress:
        # Core, not an ORM session: a record starting fresh (the common case) costs two empty
        # SELECTs and nothing else.
        with self.engine.connect() as conn:
            nodes = [Node.model_validate(r._mapping) for r in conn.execute(_NODES_OF, {"record_id": record_id})]
            steps = [Step.model_validate(r._mapping) for r in conn.execute(_STEPS_OF, {"record_id": record_id})]
        return progress_of(nodes, steps)

    def add_node(self, node: Node) -> Node:
        """Store one generation as soon as it arrives: a paid-for output is never lost."""
        return self.add_nodes([node])[0]

    def add_nodes(self, nodes: Sequence[Node]) -> list[Node]:
        """Store the outputs of one request (they arrive together) in one transaction."""
        rows = [n.model_dump(exclude={"id"}) for n in nodes]
        try:
            with self.engine.begin() as conn:
                for record_id in {n.record_id for n in nodes}:
                    self._fence(conn, record_id)
                ids = conn.execute(_INSERT_NODES, rows).scalars().all()
        except IntegrityError as exc:  # UNIQUE (record_id, step, idx): a slot is filled once
            slots = ", ".join(f"(record {n.record_id}, step {n.step}, idx {n.idx})" for n in nodes)
            raise StoreStateError(f"a node is already stored in one of the slots {slots}") from exc
        for n, i in zip(nodes, ids):
            n.id = i
        return list(nodes)

    def reject_node(self, node: Node, reason: str) -> None:
        self._update(node.record_id, Node, node.id, rejected=reason)

    def complete_step(self, record_id: int, step: Step, scores: dict[int, float] | None = None) -> None:
        """Record a step's candidate scores, its choice and the record's progress in one
        transaction. The progress moves only from the step before (a compare-and-set), so a
        step is never recorded twice."""
        values = step.model_dump(exclude={"id"})
        values["record_id"] = record_id
        with self.engine.begin() as conn:
            self._fence(conn, record_id)
            moved = conn.execute(_ADVANCE_STEP, {"record_id": record_id, "done": step.step, "next": step.step + 1,
                                                 "now": utcnow()})
            if moved.rowcount != 1:
                done = conn.execute(select(Record.steps_done).where(col(Record.id) == record_id)).scalar()
                raise StoreStateError(f"record {record_id}: step {step.step} completed out of order (done {done})")
            conn.execute(_INSERT_STEP, values)
            if scores:
                write_scores(conn, scores)


# The hot writes of a search, built once: constructing a statement costs more than running it.
_ADVANCE_STEP = (update(Record).where(col(Record.id) == bindparam("record_id"), col(Record.steps_done) == bindparam("done"))
                 .values(steps_done=bindparam("next"), updated_at=bindparam("now")))
_INSERT_STEP = insert(Step)
_NODES_OF = (select(Node.__table__).where(Node.__table__.c.record_id == bindparam("record_id"))
             .order_by(Node.__table__.c.step, Node.__table__.c.idx))
_STEPS_OF = (select(Step.__table__).where(Step.__table__.c.record_id == bindparam("record_id"))
             .order_by(Step.__table__.c.step))
_INSERT_NODES = insert(Node).returning(col(Node.id), sort_by_parameter_order=True)
