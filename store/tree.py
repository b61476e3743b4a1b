"""One record's search tree: its status, scores, nodes and steps, written as the search goes, read to resume."""

from __future__ import annotations

from typing import Any, Sequence

from sqlalchemy import bindparam, insert, or_, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from store.errors import StoreStateError
from store.models import Node, Record, RecordStatus, Step, Worker, utcnow
from store.sql import UNFINISHED, db_now, set_row, write_scores
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

    def add_nodes(self, nodes: Sequence[Node], again: bool = False) -> list[Node]:
        """Store the outputs of one request (they arrive together) in one transaction.
        ``again``: a retry after the connection was lost, when the first try may have committed
        unseen: slots already filled keep what they hold (it is this very write)."""
        try:
            with self.engine.begin() as conn:
                for record_id in {n.record_id for n in nodes}:
                    self._fence(conn, record_id)
                filled = _filled_slots(conn, nodes) if again else {}
                missing = [n for n in nodes if (n.record_id, n.step, n.idx) not in filled]
                ids = conn.execute(_INSERT_NODES, [n.model_dump(exclude={"id"}) for n in missing]).scalars().all() \
                    if missing else []
                _count_nodes(conn, missing)
        except IntegrityError as exc:  # UNIQUE (record_id, step, idx): a slot is filled once
            slots = ", ".join(f"(record {n.record_id}, step {n.step}, idx {n.idx})" for n in nodes)
            raise StoreStateError(f"a node is already stored in one of the slots {slots}") from exc
        for n, i in zip(missing, ids):
            n.id = i
        for n in nodes:
            n.id = filled.get((n.record_id, n.step, n.idx), n.id)
        return list(nodes)

    def restore_nodes(self, nodes: Sequence[Node], lease: int | None) -> int:
        """Store generations kept outside the store while it was down (held by worker ``lease``),
        as far as nothing has moved past them: only into a record still unfinished and held by
        that worker, by none, or by one whose lease has run out; a draft only while the record
        has none scored, a candidate only for a step not yet completed, a slot only if empty.
        Returns how many were stored; running it again stores nothing more."""
        stored = 0
        by_record: dict[int, list[Node]] = {}
        for n in nodes:
            by_record.setdefault(n.record_id, []).append(n)
        for record_id, group in by_record.items():
            with self.engine.begin() as conn:
                if conn.execute(_RESTORE_FENCE, {"record_id": record_id, "lease": lease, "now": utcnow(),
                                                 "db_now": db_now(conn)}).rowcount != 1:
                    continue  # finished, or another live worker has it: it resumes from the store
                steps_done, initial = conn.execute(select(Record.steps_done, Record.initial_score)
                                                   .where(col(Record.id) == record_id)).one()
                filled = _filled_slots(conn, group)
                fits = [n for n in group if (n.record_id, n.step, n.idx) not in filled
                        and (n.step >= steps_done if n.step >= 0 else initial is None)]
                if fits:
                    conn.execute(_INSERT_NODES, [n.model_dump(exclude={"id"}) for n in fits])
                    _count_nodes(conn, fits)
                stored += len(fits)
        return stored

    def reject_node(self, node: Node, reason: str) -> None:
        """Mark a stored node unusable; its record counts it rejected once, however often this
        is retried."""
        with self.engine.begin() as conn:
            self._fence(conn, node.record_id)
            if conn.execute(_REJECT_NEW, {"row_id": node.id, "reason": reason}).rowcount == 1:
                conn.execute(_COUNT_NODES, {"record_id": node.record_id, "nodes": 0, "rejected": 1, "prompt": 0,
                                            "completion": 0})
            else:
                set_row(conn, Node, node.id, rejected=reason)

    def complete_step(self, record_id: int, step: Step, scores: dict[int, float] | None = None,
                      again: bool = False) -> None:
        """Record a step's candidate scores, its choice and the record's progress in one
        transaction. The progress moves only from the step before (a compare-and-set), so a
        step is never recorded twice. ``again``: a retry after the connection was lost, when
        the first try may have committed unseen: a step found stored is that try's."""
        values = step.model_dump(exclude={"id"})
        values["record_id"] = record_id
        with self.engine.begin() as conn:
            self._fence(conn, record_id)
            moved = conn.execute(_ADVANCE_STEP, {"record_id": record_id, "done": step.step, "next": step.step + 1,
                                                 "accepted": int(step.chosen_node_id is not None), "now": utcnow()})
            if moved.rowcount != 1:
                if again and conn.execute(_STEP_STORED, {"record_id": record_id, "step": step.step}).first():
                    return
                done = conn.execute(select(Record.steps_done).where(col(Record.id) == record_id)).scalar()
                raise StoreStateError(f"record {record_id}: step {step.step} completed out of order (done {done})")
            conn.execute(_INSERT_STEP, values)
            if scores:
                write_scores(conn, scores)


# The hot writes of a search, built once: constructing a statement costs more than running it.
_ADVANCE_STEP = (update(Record).where(col(Record.id) == bindparam("record_id"), col(Record.steps_done) == bindparam("done"))
                 .values(steps_done=bindparam("next"), accepted_steps=Record.accepted_steps + bindparam("accepted"),
                         updated_at=bindparam("now")))
# A record's counters of its tree (models.TREE_COUNTERS), moved in the transaction that writes it.
_COUNT_NODES = (update(Record).where(col(Record.id) == bindparam("record_id"))
                .values(nodes=Record.nodes + bindparam("nodes"), rejected_nodes=Record.rejected_nodes + bindparam("rejected"),
                        prompt_tokens=Record.prompt_tokens + bindparam("prompt"),
                        completion_tokens=Record.completion_tokens + bindparam("completion")))
_REJECT_NEW = (update(Node).where(col(Node.id) == bindparam("row_id"), col(Node.rejected).is_(None))
               .values(rejected=bindparam("reason")))
_INSERT_STEP = insert(Step)
_NODES_OF = (select(Node.__table__).where(Node.__table__.c.record_id == bindparam("record_id"))
             .order_by(Node.__table__.c.step, Node.__table__.c.idx))
_STEPS_OF = (select(Step.__table__).where(Step.__table__.c.record_id == bindparam("record_id"))
             .order_by(Step.__table__.c.step))
_STEP_STORED = select(Step.id).where(col(Step.record_id) == bindparam("record_id"), col(Step.step) == bindparam("step"))
_live = select(Worker.id).where(col(Worker.ended_at).is_(None), Worker.expires_at > bindparam("db_now"))
_RESTORE_FENCE = (update(Record).where(col(Record.id) == bindparam("record_id"), col(Record.status).in_(UNFINISHED),
                                       or_(col(Record.worker_id).is_(None), col(Record.worker_id) == bindparam("lease"),
                                           col(Record.worker_id).not_in(_live)))
                  .values(updated_at=bindparam("now")))
_INSERT_NODES = insert(Node).returning(col(Node.id), sort_by_parameter_order=True)


def _count_nodes(conn, nodes: Sequence[Node]) -> None:
    by_record: dict[int, list[Node]] = {}
    for n in nodes:
        by_record.setdefault(n.record_id, []).append(n)
    for record_id, group in by_record.items():
        conn.execute(_COUNT_NODES, {"record_id": record_id, "nodes": len(group),
                                    "rejected": sum(n.rejected is not None for n in group),
                                    "prompt": sum(n.prompt_tokens or 0 for n in group),
                                    "completion": sum(n.completion_tokens or 0 for n in group)})


def _filled_slots(conn, nodes: Sequence[Node]) -> dict[tuple[int, int, int], int]:
    """The ids of the nodes already stored in the slots of ``nodes``."""
    table = Node.__table__
    rows = conn.execute(select(table.c.record_id, table.c.step, table.c.idx, table.c.id).where(
        table.c.record_id.in_({n.record_id for n in nodes}), table.c.step.in_({n.step for n in nodes})))
    return {(r, st, i): node_id for r, st, i, node_id in rows}
