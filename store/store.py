"""Every read and write of the search tree, named for what it does. The search never writes SQL.

SQLite by default (a path), any SQLAlchemy URL otherwise. Each method is one short transaction,
so a crash between two calls loses at most the call in flight.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from typing import Any, Iterator, Sequence

from sqlalchemy import bindparam, func, insert, or_, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, delete, select

from store.database import check, open_engine, prepare
from store.errors import LeaseLost, RunMismatch, StoreStateError
from store.holder import Holder, lock_schema, me
from store.migrations import migrate
from store.models import QUEUE, Node, NodeKind, Record, RecordStatus, Run, Step, Worker, utcnow
from store.values import (Claim, Overview, Progress, RecordIn, RunStart, Waiting, config_hash, content_hash,
                          input_changes, run_differences)

UNFINISHED = (RecordStatus.pending, RecordStatus.running)


class Store:
    def __init__(self, engine: Engine):
        self.engine = engine
        # Set once this process has joined a run as a worker: every write to a record is then
        # fenced on holding it, so a worker whose lease ran out cannot write over its successor.
        self.worker_id: int | None = None
        self.lease_s = 0.0

    @staticmethod
    def check(db: str) -> None:
        """StoreUnavailable unless ``db`` can be opened and written; creates nothing."""
        check(db)

    @staticmethod
    def hold(db: str) -> Holder:
        """The right to run on ``db`` (``release`` it at the end); StoreBusy, naming the holder,
        while another run process has it."""
        return Holder(db)

    @classmethod
    def open(cls, db: str, create: bool = True) -> "Store":
        """The store in ``db``, its tables created (``create``) or required to exist already;
        StoreUnavailable (one line: the database, the cause, what to do) if it cannot be
        opened, and later if a write fails."""
        prepare(db, create)
        migrate(db, create)
        return cls(open_engine(db))

    def close(self) -> None:
        self.engine.dispose()

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    # --- the run --------------------------------------------------------------------------

    def begin_run(
        self, config: dict[str, Any], input_path: str, records: Sequence[RecordIn], force: bool = False,
        lease_s: float | None = None, alone: bool = False,
    ) -> RunStart:
        """Create the run, or resume the one in this database.

        A resumed run must have the same config and input; with ``force`` the new ones replace
        them: unchanged records keep their progress, changed ones restart, new ones are added,
        and records gone from the input are marked ``removed``. The change is kept in the run's
        history. ``force`` is refused while other workers are live on the run.

        With ``lease_s``, this process joins the run as a worker in the same transaction (see
        ``claim``); ``alone``: no other process can be working on the database (it holds the
        SQLite file's lock), so the workers still marked live died and their records are freed.
        Workers starting at once on a fresh database queue for the schema lock: one creates
        the run, the others resume it.
        """
        chash = config_hash(config)
        ihash = content_hash(*(f"{r.key}:{r.content_hash}" for r in records))
        with self._session() as s:
            lock_schema(s.connection())
            now = _now(s.connection())
            run = s.exec(select(Run).order_by(col(Run.id))).first()
            if run is None:
                start = self._create_run(s, Run(config=config, config_hash=chash, input_path=input_path,
                                                input_hash=ihash), records)
            else:
                if alone:
                    self._end_workers(s.connection(), run.id, now)
                start = self._resume_run(s, run, config, chash, input_path, ihash, records, force, now)
            if lease_s is not None:
                self._join(s.connection(), start.run_id, lease_s, now)
            s.commit()
        return start

    def _create_run(self, s: Session, run: Run, records: Sequence[RecordIn]) -> RunStart:
        s.add(run)
        s.flush()
        s.add_all(_new_record(run.id, r) for r in records)
        s.flush()
        return RunStart(run.id, False, len(records), len(records), 0, 0, [])

    def _resume_run(self, s: Session, run: Run, config: dict[str, Any], chash: str, input_path: str, ihash: str,
                    records: Sequence[RecordIn], force: bool, now: datetime) -> RunStart:
        stored, inputs = {}, None
        if run.input_hash != ihash:
            stored = {r.key: r for r in s.exec(select(Record).where(Record.run_id == run.id))}
            inputs = input_changes({k: r.content_hash for k, r in stored.items() if r.status != RecordStatus.removed},
                                   records)
        differences = run_differences(run, config, chash, inputs)
        if differences and not force:
            raise RunMismatch(differences)
        changes = inputs.counts() if inputs else []  # inputs: set only when the input differs
        if differences:
            live = self._live_workers(s.connection(), run.id, now)
            if live:
                raise StoreStateError(f"--force would change the run under {len(live)} live workers "
                                      f"({', '.join(live)}): stop them first, or wait for them to end")
            if inputs:
                self._sync_records(s, run, stored, records)
            run.history = [*run.history, {"at": utcnow().isoformat(), "old_config": run.config,
                                          "old_input_hash": run.input_hash, "changes": changes}]
            run.config, run.config_hash, run.input_hash = config, chash, ihash
            run.input_path = input_path
        run.updated_at = utcnow()
        s.add(run)
        s.flush()
        counts = self._status_counts(s, run.id)
        steps_kept = s.exec(
            select(func.count(col(Step.id))).join(Record).where(
                Record.run_id == run.id, col(Record.status).in_(UNFINISHED)
            )
        ).one()
        return RunStart(run_id=run.id, resumed=True,
                        total=sum(n for st, n in counts.items() if st != RecordStatus.removed),
                        to_run=sum(counts.get(st, 0) for st in UNFINISHED), done=counts.get(RecordStatus.done, 0),
                        steps_kept=steps_kept, changes=changes)

    def _sync_records(self, s: Session, run: Run, stored: dict[str, Record], records: Sequence[RecordIn]) -> None:
        """The input given with --force becomes the run's: new records added, changed ones
        restarted, missing ones marked removed. A removed record that comes back unchanged keeps
        its search tree: done if it had finished, else resumed from what is stored."""
        incoming = {r.key: r for r in records}
        for key, r in incoming.items():
            old = stored.get(key)
            if old is None:
                s.add(_new_record(run.id, r))
                continue
            if old.content_hash != r.content_hash:
                self._reset_record(s, old)
                old.question, old.answer, old.lang, old.meta = r.question, r.answer, r.lang, r.meta
                old.content_hash = r.content_hash
            elif old.status == RecordStatus.removed:
                old.status = RecordStatus.done if old.final_thinking is not None else RecordStatus.pending
                old.updated_at = utcnow()
            old.position = r.position
            s.add(old)
        for key, old in stored.items():
            if key not in incoming and old.status != RecordStatus.removed:
                old.status = RecordStatus.removed
                s.add(old)

    @staticmethod
    def _reset_record(s: Session, rec: Record) -> None:
        s.exec(delete(Step).where(Step.record_id == rec.id))
        s.exec(delete(Node).where(Node.record_id == rec.id))
        rec.status, rec.error, rec.steps_done = RecordStatus.pending, None, 0
        rec.initial_score = rec.final_score = rec.final_thinking = None
        rec.updated_at = utcnow()
        s.add(rec)

    # --- workers and their leases -----------------------------------------------------------

    def _join(self, conn: Connection, run_id: int, lease_s: float, now: datetime) -> None:
        self.lease_s = lease_s
        self.worker_id = conn.execute(insert(Worker).returning(col(Worker.id)), {
            "run_id": run_id, "name": me(), "started_at": now,
            "expires_at": now + timedelta(seconds=lease_s)}).scalar_one()

    @staticmethod
    def _live_workers(conn: Connection, run_id: int, now: datetime) -> list[str]:
        q = select(Worker.name).where(Worker.run_id == run_id, col(Worker.ended_at).is_(None), Worker.expires_at > now)
        return list(conn.execute(q).scalars())

    @staticmethod
    def _end_workers(conn: Connection, run_id: int, now: datetime) -> None:
        conn.execute(update(Record).where(Record.run_id == run_id, col(Record.status).in_(UNFINISHED))
                     .values(worker_id=None))
        conn.execute(update(Worker).where(Worker.run_id == run_id, col(Worker.ended_at).is_(None))
                     .values(ended_at=now, expires_at=now))

    def heartbeat(self) -> None:
        """Renew this worker's lease on every record it holds: one row written."""
        with self.engine.begin() as conn:
            now = _now(conn)
            conn.execute(update(Worker).where(col(Worker.id) == self.worker_id)
                         .values(expires_at=now + timedelta(seconds=self.lease_s)))

    def claim(self, run_id: int, n: int) -> list[Claim]:
        """Up to ``n`` unfinished records for this worker: free ones, and those of workers whose
        lease has run out or that have ended, in input order. Concurrent claims never take the
        same record (``FOR UPDATE SKIP LOCKED``); a taken-over record resumes from its stored
        steps and candidates."""
        with self.engine.begin() as conn:
            now = _now(conn)
            live = select(Worker.id).where(col(Worker.ended_at).is_(None), Worker.expires_at > now)
            table = Record.__table__
            # The status as literals, as the queue's partial index states it: a bound parameter
            # would keep the planner from proving that the index covers the query.
            free = (select(table).where(table.c.run_id == run_id, QUEUE,
                                        or_(table.c.worker_id.is_(None), table.c.worker_id.not_in(live)))
                    .order_by(table.c.position).limit(n).with_for_update(skip_locked=True))
            found = [Record.model_validate(r._mapping) for r in conn.execute(free)]
            if not found:
                return []
            conn.execute(update(Record).where(col(Record.id).in_([r.id for r in found]))
                         .values(worker_id=self.worker_id, status=RecordStatus.running, updated_at=now))
            previous = {r.worker_id for r in found if r.worker_id is not None}
            names = dict(conn.execute(select(Worker.id, Worker.name).where(col(Worker.id).in_(previous))).all()
                         ) if previous else {}
            claims = [Claim(r, names.get(r.worker_id)) for r in found]
            for r in found:
                r.worker_id, r.status = self.worker_id, RecordStatus.running
            return claims

    def waiting(self, run_id: int) -> Waiting:
        """What is left that this worker cannot claim now: unfinished records held by other live
        workers, and the seconds until the first of their leases would run out."""
        with self.engine.connect() as conn:
            now = _now(conn)
            held, until = conn.execute(
                select(func.count(col(Record.id)), func.min(Worker.expires_at)).join(Worker, Record.worker_id == Worker.id)
                .where(Record.run_id == run_id, col(Record.status).in_(UNFINISHED), col(Worker.ended_at).is_(None),
                       Worker.expires_at > now, Worker.id != self.worker_id)).one()
            unfinished = conn.execute(select(func.count(col(Record.id))).where(
                Record.run_id == run_id, col(Record.status).in_(UNFINISHED))).scalar_one()
        return Waiting(unfinished=unfinished, held_elsewhere=held,
                       lease_ends_s=(until - now).total_seconds() if until is not None else None)

    def leave(self) -> None:
        """This worker stops: its unfinished records are free at once for the others (a worker
        that dies instead frees them when its lease runs out)."""
        if self.worker_id is None:
            return
        with self.engine.begin() as conn:
            now = _now(conn)
            conn.execute(update(Record).where(col(Record.worker_id) == self.worker_id,
                                              col(Record.status).in_(UNFINISHED)).values(worker_id=None))
            conn.execute(update(Worker).where(col(Worker.id) == self.worker_id).values(ended_at=now, expires_at=now))
        self.worker_id = None

    def shared(self, run_id: int) -> bool:
        """Whether another worker has been live on the run while this one was."""
        with self.engine.connect() as conn:
            mine = conn.execute(select(Worker.started_at).where(col(Worker.id) == self.worker_id)).scalar_one()
            return conn.execute(select(func.count(col(Worker.id))).where(
                Worker.run_id == run_id, Worker.id != self.worker_id,
                or_(col(Worker.ended_at).is_(None), col(Worker.ended_at) > mine))).scalar_one() > 0

    def live_workers(self, run_id: int) -> list[dict[str, Any]]:
        """The workers live on the run now: each one's name, the unfinished records it holds,
        the records it finished and the seconds left on its lease."""
        with self.engine.connect() as conn:
            now = _now(conn)
            held = (select(func.count(col(Record.id))).where(Record.worker_id == Worker.id,
                                                             col(Record.status).in_(UNFINISHED)).scalar_subquery())
            done = (select(func.count(col(Record.id))).where(Record.worker_id == Worker.id,
                                                             Record.status == RecordStatus.done).scalar_subquery())
            rows = conn.execute(select(Worker.name, held, done, Worker.expires_at)
                                .where(Worker.run_id == run_id, col(Worker.ended_at).is_(None), Worker.expires_at > now)
                                .order_by(col(Worker.id))).all()
        return [{"name": name, "holds": h, "finished": d, "lease_left_s": round((until - now).total_seconds(), 1)}
                for name, h, d, until in rows]

    def _fence(self, conn: Connection, record_id: int) -> None:
        """LeaseLost unless this worker still holds the record (no-op outside a worker). The
        UPDATE locks the record's row until the write commits: no claim can slip in between."""
        if self.worker_id is None:
            return
        held = conn.execute(_FENCE, {"record_id": record_id, "worker": self.worker_id, "now": utcnow()})
        if held.rowcount != 1:
            raise LeaseLost(record_id)

    # --- records --------------------------------------------------------------------------

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

    def reset_failed(self, run_id: int) -> int:
        """Put failed records back in the queue; their stored search tree is kept and resumed."""
        with self._session() as s:
            failed = list(s.exec(select(Record).where(Record.run_id == run_id, Record.status == RecordStatus.failed)))
            for rec in failed:
                rec.status, rec.error, rec.updated_at = RecordStatus.pending, None, utcnow()
                s.add(rec)
            s.commit()
            return len(failed)

    def mark_running(self, record_id: int) -> None:
        self._update_record(record_id, status=RecordStatus.running)

    def set_initial_score(self, record_id: int, draft_id: int, score: float) -> None:
        """The draft's score, on the draft and on its record, in one transaction."""
        with self.engine.begin() as conn:
            self._fence(conn, record_id)
            _write_scores(conn, {draft_id: score})
            _set(conn, Record, record_id, initial_score=score, updated_at=utcnow())

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
            _set(conn, table, row_id, **values)

    # --- the search tree ------------------------------------------------------------------

    def load_progress(self, record_id: int) -> Progress:
        # Core, not an ORM session: a record starting fresh (the common case) costs two empty
        # SELECTs and nothing else.
        with self.engine.connect() as conn:
            nodes = [Node.model_validate(r._mapping) for r in conn.execute(_NODES_OF, {"record_id": record_id})]
            steps = [Step.model_validate(r._mapping) for r in conn.execute(_STEPS_OF, {"record_id": record_id})]
        drafts, candidates = [], {}
        for n in nodes:
            if n.kind == NodeKind.draft:
                drafts.append(n)
            else:
                candidates.setdefault(n.step, []).append(n)
        return Progress(drafts, steps, candidates)

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
                _write_scores(conn, scores)

    # --- reading results ------------------------------------------------------------------

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


def _new_record(run_id: int, r: RecordIn) -> Record:
    return Record(
        run_id=run_id, key=r.key, position=r.position, question=r.question, answer=r.answer,
        lang=r.lang, meta=r.meta, content_hash=r.content_hash,
    )


# The hot writes of a search, built once: constructing a statement costs more than running it.
_ADVANCE_STEP = (update(Record).where(col(Record.id) == bindparam("record_id"), col(Record.steps_done) == bindparam("done"))
                 .values(steps_done=bindparam("next"), updated_at=bindparam("now")))
_INSERT_STEP = insert(Step)
_FENCE = (update(Record).where(col(Record.id) == bindparam("record_id"), col(Record.worker_id) == bindparam("worker"))
          .values(updated_at=bindparam("now")))
_NODES_OF = (select(Node.__table__).where(Node.__table__.c.record_id == bindparam("record_id"))
             .order_by(Node.__table__.c.step, Node.__table__.c.idx))
_STEPS_OF = (select(Step.__table__).where(Step.__table__.c.record_id == bindparam("record_id"))
             .order_by(Step.__table__.c.step))
_INSERT_NODES = insert(Node).returning(col(Node.id), sort_by_parameter_order=True)


def _now(conn: Connection) -> datetime:
    """The database's clock: every worker's leases are measured on it, whatever the clocks of
    their machines say. SQLite is one machine's file: its clock is this one."""
    if conn.dialect.name == "postgresql":
        return conn.execute(text("select now()")).scalar_one()
    return utcnow()


@functools.cache
def _update_statement(table: type, columns: tuple[str, ...]):
    return update(table).where(table.id == bindparam("row_id")).values({c: bindparam(c) for c in columns})


def _set(conn, table: type, row_id: int, **values: Any) -> None:
    conn.execute(_update_statement(table, tuple(sorted(values))), {"row_id": row_id, **values})


def _write_scores(conn, scores: dict[int, float]) -> None:
    conn.execute(_update_statement(Node, ("score",)), [{"row_id": k, "score": v} for k, v in scores.items()])
