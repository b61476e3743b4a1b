"""Browsing a run (``reer serve``): a page of its records sorted and filtered in SQL, the figures
of its overview by aggregate queries, and every worker it has had.

Each query names the index that serves it (``store.models``). What a page lists is found first
as record ids (sorting and paging on indexes where the sort allows it), and only the page's rows
are then read: a record's row holds its long texts, and a run of 20,000 records holds gigabytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from store.models import Record, RecordStatus, Step, Worker
from store.leases import worker_counts
from store.sql import db_now

Sort = Literal["position", "gain", "final", "initial", "steps", "updated"]
SORTS: tuple[str, ...] = ("position", "gain", "final", "initial", "steps", "updated")
QUESTION_CHARS = 240  # of a question, in a table's row
MAX_PAGE = 500  # rows a page may ask for


@dataclass(frozen=True)
class RecordQuery:
    """Which records a page lists, in which order. ``reason``: a failure reason as ``status``
    groups them (numbers folded to N); ``search``: text the question contains (any case)."""

    status: RecordStatus | None = None
    lang: str | None = None
    reason: str | None = None
    search: str | None = None
    sort: Sort = "position"
    desc: bool = False
    offset: int = 0
    limit: int = 50


@dataclass(frozen=True)
class RecordRow:
    key: str
    position: int
    status: str
    lang: str
    question: str  # its first QUESTION_CHARS characters
    initial_score: float | None
    final_score: float | None
    gain: float | None  # initial - final: the score is a loss, so a gain is positive
    steps: int
    accepted: int
    error: str | None
    updated_at: datetime | None


def reason_pattern(reason: str) -> str:
    """A folded reason (``HTTP N from ...``, as ``reer status`` groups them) as a LIKE pattern
    matching the errors it folds: each N any text. ``\\`` escapes LIKE's own wildcards."""
    escaped = reason.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return re.sub(r"N", "%", escaped)


def _like_text(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class RunBrowsing:
    """Store's reads for the browser view of a run."""

    engine: Engine

    def record_page(self, run_id: int, q: RecordQuery) -> tuple[int, list[RecordRow]]:
        """How many records match ``q``, and the page of them it asks for. Without filters on
        the text columns (language, reason, search), the match, the count and the order are
        read from ix_record_run_status (run_id, status, position, initial_score, final_score,
        updated_at) alone; each record's steps (to sort by, and on the page) are counted in ix_step_choice. The
        text filters read the matching rows' leading columns. Then the page's rows by id."""
        n_steps = select(func.count()).where(Step.record_id == Record.id).scalar_subquery()
        n_kept = select(func.count(col(Step.chosen_node_id))).where(Step.record_id == Record.id).scalar_subquery()
        match = select(Record.id).where(Record.run_id == run_id)
        if q.status is not None:
            match = match.where(Record.status == q.status)
        if q.lang:
            match = match.where(Record.lang == q.lang)
        if q.reason:
            match = match.where(col(Record.error).like(reason_pattern(q.reason), escape="\\"))
        if q.search:
            match = match.where(col(Record.question).ilike(_like_text(q.search), escape="\\"))
        gain = Record.initial_score - Record.final_score
        key = {"position": Record.position, "gain": gain, "final": Record.final_score, "initial": Record.initial_score,
               "steps": n_steps, "updated": Record.updated_at}[q.sort]
        order = [key.desc().nulls_last() if q.desc else key.asc().nulls_last(), Record.position]
        paged = match.order_by(*order).offset(max(q.offset, 0)).limit(min(max(q.limit, 1), MAX_PAGE))
        with self.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(match.subquery())).scalar_one()
            ids = list(conn.execute(paged).scalars())
            if not ids:
                return total, []
            rows = conn.execute(
                select(Record.id, Record.key, Record.position, Record.status, Record.lang,
                       func.substr(Record.question, 1, QUESTION_CHARS), Record.initial_score, Record.final_score,
                       Record.error, Record.updated_at, n_steps, n_kept).where(col(Record.id).in_(ids))).all()
        by_id = {r[0]: r for r in rows}
        return total, [_row(by_id[i]) for i in ids]

    def score_pairs(self, run_id: int) -> list[tuple[float, float]]:
        """(initial, final) score of every done record: ix_record_run_status, index only."""
        q = select(Record.initial_score, Record.final_score).where(Record.run_id == run_id,
                                                                 Record.status == RecordStatus.done)
        with self.engine.connect() as conn:
            return [(a, b) for a, b in conn.execute(q) if a is not None and b is not None]

    def step_summary(self, run_id: int) -> list[dict[str, Any]]:
        """Per step index, over the done records: how many reached it, how many kept a candidate,
        the mean best score after it; ix_step_choice (record_id, step, best_after,
        chosen_node_id) joined to ix_record_run_status, index only."""
        q = (select(Step.step, func.count(), func.count(col(Step.chosen_node_id)), func.avg(Step.best_after))
             .join(Record, Record.id == Step.record_id)
             .where(Record.run_id == run_id, Record.status == RecordStatus.done)
             .group_by(Step.step).order_by(Step.step))
        with self.engine.connect() as conn:
            return [{"step": s, "records": n, "accepted": a, "mean_best": b} for s, n, a, b in conn.execute(q)]

    def languages(self, run_id: int) -> dict[str, int]:
        """Records by language; reads each row's leading columns (no index holds the language)."""
        q = select(Record.lang, func.count()).where(Record.run_id == run_id).group_by(Record.lang)
        with self.engine.connect() as conn:
            return dict(sorted(conn.execute(q).all()))

    def all_workers(self, run_id: int) -> list[dict[str, Any]]:
        """Every worker the run has had, newest first: its name, when it started, the end of its
        lease (its last heartbeat renewed it to then), when it ended, whether it is live, the
        unfinished records it holds and those it finished (ix_record_worker_status)."""
        with self.engine.connect() as conn:
            now = db_now(conn)
            held, done = worker_counts()
            rows = conn.execute(select(Worker.id, Worker.name, Worker.started_at, Worker.expires_at, Worker.ended_at,
                                       held, done).where(Worker.run_id == run_id).order_by(col(Worker.id).desc())).all()
        return [{"id": i, "name": name, "started_at": _iso(start), "lease_until": _iso(until), "ended_at": _iso(end),
                 "live": end is None and _aware(until) > _aware(now),
                 "lease_left_s": round((_aware(until) - _aware(now)).total_seconds(), 1) if end is None else None,
                 "holds": h if end is None else 0, "finished": d}
                for i, name, start, until, end, h, d in rows]


def _row(r) -> RecordRow:
    _, key, position, status, lang, question, initial, final, error, updated, n, kept = r
    gain = initial - final if initial is not None and final is not None else None
    return RecordRow(key, position, RecordStatus(status).value, lang, question, initial, final, gain, n or 0,
                     kept or 0, error, updated)


def _aware(t: datetime) -> datetime:
    """SQLite gives back naive datetimes (UTC as written); PostgreSQL aware ones."""
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _iso(t: datetime | None) -> str | None:
    return _aware(t).isoformat() if t is not None else None
