"""Workers and their leases: joining a run, heartbeats, claiming records, leaving, and the fence on every write."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Collection

from sqlalchemy import and_, bindparam, func, insert, or_, update
from sqlalchemy.engine import Connection, Engine
from sqlmodel import col, select

from store.errors import LeaseLost
from store.holder import me
from store.models import QUEUE, Record, RecordStatus, Worker, utcnow
from store.sql import UNFINISHED, db_now
from store.values import Claim, Waiting


class LeaseQueries:
    """Store's worker and lease methods, on the Store's engine and this process's worker."""

    engine: Engine
    worker_id: int | None
    lease_s: float

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
            now = db_now(conn)
            conn.execute(update(Worker).where(col(Worker.id) == self.worker_id)
                         .values(expires_at=now + timedelta(seconds=self.lease_s)))

    def claim(self, run_id: int, n: int, running: Collection[int] | None = None) -> list[Claim]:
        """Up to ``n`` unfinished records for this worker: free ones, and those of workers whose
        lease has run out or that have ended, in input order. Concurrent claims never take the
        same record (``FOR UPDATE SKIP LOCKED``); a taken-over record resumes from its stored
        steps and candidates. Given what this worker is ``running``, the records marked its own that
        it is not are taken again: a claim whose commit it never heard of (the connection cut)
        left them so."""
        with self.engine.begin() as conn:
            now = db_now(conn)
            live = select(Worker.id).where(col(Worker.ended_at).is_(None), Worker.expires_at > now)
            table = Record.__table__
            # The status as literals, as the queue's partial index states it: a bound parameter
            # would keep the planner from proving that the index covers the query.
            # Never its own records through its own lease running out (a heartbeat late, the store
            # away a while): they are still being searched here.
            claimable = [table.c.worker_id.is_(None),
                         and_(table.c.worker_id.not_in(live), table.c.worker_id != self.worker_id)]
            if running is not None:
                claimable.append(and_(table.c.worker_id == self.worker_id, table.c.id.not_in(list(running))))
            free = (select(table).where(table.c.run_id == run_id, QUEUE, or_(*claimable))
                    .order_by(table.c.position).limit(n).with_for_update(skip_locked=True))
            found = [Record.model_validate(r._mapping) for r in conn.execute(free)]
            if not found:
                return []
            conn.execute(update(Record).where(col(Record.id).in_([r.id for r in found]))
                         .values(worker_id=self.worker_id, status=RecordStatus.running, updated_at=now))
            previous = {r.worker_id for r in found if r.worker_id not in (None, self.worker_id)}
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
            now = db_now(conn)
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
        self.end_worker(self.worker_id)
        self.worker_id = None

    def end_worker(self, worker_id: int) -> None:
        """Mark worker ``worker_id`` ended and free its unfinished records: this one leaving, or
        one known to be gone (it left generations to replay as it stopped)."""
        with self.engine.begin() as conn:
            now = db_now(conn)
            conn.execute(update(Record).where(col(Record.worker_id) == worker_id,
                                              col(Record.status).in_(UNFINISHED)).values(worker_id=None))
            conn.execute(update(Worker).where(col(Worker.id) == worker_id, col(Worker.ended_at).is_(None))
                         .values(ended_at=now, expires_at=now))

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
            now = db_now(conn)
            held, done = worker_counts()
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


def worker_counts():
    """Per worker row: the unfinished records it holds and the records it finished, as scalar
    subqueries (ix_record_worker_status)."""
    held = (select(func.count(col(Record.id))).where(Record.worker_id == Worker.id,
                                                     col(Record.status).in_(UNFINISHED)).scalar_subquery())
    done = (select(func.count(col(Record.id))).where(Record.worker_id == Worker.id,
                                                     Record.status == RecordStatus.done).scalar_subquery())
    return held, done


# Run before every write to a record, built once: constructing a statement costs more than running it.
_FENCE = (update(Record).where(col(Record.id) == bindparam("record_id"), col(Record.worker_id) == bindparam("worker"))
          .values(updated_at=bindparam("now")))
