"""The tables: a run, its records, and the nodes and steps of each record's search tree.

    Run 1──* Record 1──* Node   (the draft, step = -1; each candidate of step i, step = i)
                    1──* Step   (one per completed step: the choice and the best score after it)
        1──* Worker 1──* Record (the process that holds it, or last held it)

A record's progress is fully described by these rows, which is what makes resumption exact:
completed steps are never redone, stored candidates are never regenerated.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class RecordStatus(str, Enum):
    pending = "pending"  # not started
    running = "running"  # draft or steps under way
    done = "done"  # search finished, final thinking stored
    failed = "failed"  # could not finish; `error` says why
    skipped = "skipped"  # rejected by the algorithm (short or one-segment draft)
    removed = "removed"  # no longer in the input (after a forced resume)


class NodeKind(str, Enum):
    draft = "draft"
    candidate = "candidate"


class Run(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    config: dict = Field(sa_column=Column(JSON, nullable=False))  # what shapes the results
    config_hash: str
    input_path: str
    input_hash: str
    history: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))  # forced changes


class Worker(SQLModel, table=True):
    """A run process working on a run. It holds the records it claimed while its lease lasts:
    its heartbeat moves ``expires_at`` forward; once that has passed, or the worker has ended,
    any other worker may take its unfinished records over. Times are the database's clock (UTC),
    so workers on machines whose clocks differ agree on them."""

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", index=True)
    name: str  # "pid N on HOST"
    started_at: datetime
    expires_at: datetime
    ended_at: datetime | None = None


QUEUE = text("record.status IN ('pending', 'running')")  # unfinished: what workers claim from
_UNFINISHED = text("status IN ('pending', 'running')")
TREE_COUNTERS = ("steps_done", "accepted_steps", "nodes", "rejected_nodes", "prompt_tokens", "completion_tokens")


class Record(SQLModel, table=True):
    # The queue a worker claims from: unfinished records in input order, found without walking
    # past the finished ones. The others cover what `status`, `export` and `report` read, so that
    # they read no row: a record's row holds its long texts (store/reading.py says who uses each).
    __table_args__ = (UniqueConstraint("run_id", "key"),
                      Index("ix_record_queue", "run_id", "position", postgresql_where=_UNFINISHED,
                            sqlite_where=_UNFINISHED),
                      Index("ix_record_run_status", "run_id", "status", "position", "initial_score", "final_score",
                            "updated_at", *TREE_COUNTERS),
                      Index("ix_record_worker_status", "worker_id", "status"))

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", index=True)
    key: str  # the input's id/index, or its position
    position: int
    question: str = Field(sa_column=Column(Text, nullable=False))
    answer: str = Field(sa_column=Column(Text, nullable=False))
    lang: str
    meta: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    content_hash: str
    status: RecordStatus = Field(default=RecordStatus.pending, index=True)
    error: str | None = None
    initial_score: float | None = None
    final_score: float | None = None
    final_thinking: str | None = Field(default=None, sa_column=Column(Text))
    steps_done: int = 0  # the Step rows stored: the steps completed
    # What its search tree holds, kept by the writers of the tree (store.tree) in the transaction
    # that writes it, so that ``status`` sums a run from the records alone and reads no node.
    accepted_steps: int = Field(default=0, sa_column_kwargs={"server_default": "0"})  # chose a candidate
    nodes: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    rejected_nodes: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    prompt_tokens: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    completion_tokens: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    updated_at: datetime = Field(default_factory=utcnow)
    # The worker holding it while unfinished; once finished, the one that finished it.
    worker_id: int | None = Field(default=None, foreign_key="worker.id", index=True)


class Node(SQLModel, table=True):
    """One generation: the draft (step -1) or a candidate rewrite of step ``step``'s segment."""

    # ix_node_usage covers the sums of `status` and `report`: they read no generated text.
    __table_args__ = (UniqueConstraint("record_id", "step", "idx"),
                      Index("ix_node_usage", "record_id", "kind", "idx", "rejected", "prompt_tokens",
                            "completion_tokens", "latency_s"))

    id: int | None = Field(default=None, primary_key=True)
    record_id: int = Field(foreign_key="record.id", index=True)
    kind: NodeKind
    step: int  # -1 for the draft
    idx: int  # 0..expansions-1 within a step
    text: str | None = Field(default=None, sa_column=Column(Text))  # parsed thinking / rewrite
    raw: str = Field(sa_column=Column(Text, nullable=False))  # the generator's full output
    rejected: str | None = None  # why the output was unusable (no <refine>, cut off, ...)
    score: float | None = None  # None until scored
    model: str = ""
    finish_reason: str | None = None
    # A request's usage counted once: its prompt tokens on its first output (idx) only, its
    # completion tokens shared out among its outputs, so that sums are what was billed.
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Step(SQLModel, table=True):
    """A completed step of the local search; its existence is what marks the step done."""

    __table_args__ = (UniqueConstraint("record_id", "step"),
                      Index("ix_step_choice", "record_id", "step", "best_after", "chosen_node_id"))

    id: int | None = Field(default=None, primary_key=True)
    record_id: int = Field(foreign_key="record.id", index=True)
    step: int
    segment: str = Field(sa_column=Column(Text, nullable=False))  # the segment before the step
    kept: str = Field(sa_column=Column(Text, nullable=False))  # what the thinking keeps
    chosen_node_id: int | None = Field(default=None, foreign_key="node.id")  # None: kept original
    best_after: float
    created_at: datetime = Field(default_factory=utcnow)
