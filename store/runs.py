"""The run: creating it, resuming it, and checking (or, with --force, changing) it against its config and input."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

from sqlalchemy import func, insert
from sqlmodel import Session, col, delete, select

from store.errors import RunMismatch, StoreStateError
from store.holder import lock_schema
from store.models import Node, Record, RecordStatus, Run, Step, utcnow
from store.sql import UNFINISHED, db_now
from store.values import RecordIn, RunStart, config_hash, content_hash, input_changes, run_differences


CREATE_BATCH = 500  # records inserted per statement when a run is created


class RunQueries:
    """Store's run methods; they join workers (LeaseQueries) and count records (RunReading)."""

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
            now = db_now(s.connection())
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
        # Core inserts a batch at a time: ORM objects for every record of a 20,000-record input
        # made the worker's peak memory twice the input's.
        for lo in range(0, len(records), CREATE_BATCH):
            s.connection().execute(insert(Record), [_new_record(run.id, r).model_dump(exclude={"id"})
                                                    for r in records[lo:lo + CREATE_BATCH]])
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
        rec.accepted_steps = rec.nodes = rec.rejected_nodes = rec.prompt_tokens = rec.completion_tokens = 0
        rec.initial_score = rec.final_score = rec.final_thinking = None
        rec.updated_at = utcnow()
        s.add(rec)

    def reset_failed(self, run_id: int) -> int:
        """Put failed records back in the queue; their stored search tree is kept and resumed."""
        with self._session() as s:
            failed = list(s.exec(select(Record).where(Record.run_id == run_id, Record.status == RecordStatus.failed)))
            for rec in failed:
                rec.status, rec.error, rec.updated_at = RecordStatus.pending, None, utcnow()
                s.add(rec)
            s.commit()
            return len(failed)


def _new_record(run_id: int, r: RecordIn) -> Record:
    return Record(
        run_id=run_id, key=r.key, position=r.position, question=r.question, answer=r.answer,
        lang=r.lang, meta=r.meta, content_hash=r.content_hash,
    )
