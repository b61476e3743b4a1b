"""What the store takes and gives back: input records, a run's start, a record's progress, and
the content hashes that tell a changed input or config from the stored one. No database here."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence

from store.models import Node, NodeKind, Record, RecordStatus, Run, Step


def content_hash(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:32]


def config_hash(config: dict[str, Any]) -> str:
    return content_hash(json.dumps(config, sort_keys=True, ensure_ascii=False))


@dataclass(frozen=True)
class RecordIn:
    """A validated input record, as the store keeps it."""

    key: str
    position: int
    question: str
    answer: str
    lang: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        return content_hash(self.question, self.answer)


@dataclass(frozen=True)
class Claim:
    """A record a worker claimed; ``taken_from``: the worker whose lease it outlived, if any."""

    record: Record
    taken_from: str | None = None


@dataclass(frozen=True)
class Waiting:
    """What a worker with nothing to claim waits for (``Store.waiting``)."""

    unfinished: int  # records of the run not finished, held or not
    held_elsewhere: int  # of those, held by other live workers
    lease_ends_s: float | None  # until the first of those workers' leases runs out


@dataclass(frozen=True)
class RunStart:
    """What opening a run found: for the first lines of the log."""

    run_id: int
    resumed: bool
    total: int
    to_run: int
    done: int
    steps_kept: int
    changes: list[str]


@dataclass(frozen=True)
class Overview:
    """A run's numbers at a glance (``Store.overview``); the scores are means over done records."""

    counts: dict[RecordStatus, int]
    steps: int
    accepted: int
    nodes: int
    rejected: int
    prompt_tokens: int
    completion_tokens: int
    mean_initial: float | None
    mean_final: float | None
    updated_at: datetime | None


@dataclass(frozen=True)
class Progress:
    """A record's stored search state: its draft attempts, completed steps, and the candidates
    of every step."""

    drafts: list[Node]
    steps: list[Step]
    candidates: dict[int, list[Node]]

    @property
    def draft(self) -> Node | None:
        """The draft the search uses: the first attempt that was not rejected."""
        return next((d for d in self.drafts if not d.rejected), None)


def progress_of(nodes: Sequence[Node], steps: Sequence[Step]) -> Progress:
    """A record's progress from its nodes (by step, then idx) and its steps (by step)."""
    drafts: list[Node] = []
    candidates: dict[int, list[Node]] = {}
    for n in nodes:
        if n.kind == NodeKind.draft:
            drafts.append(n)
        else:
            candidates.setdefault(n.step, []).append(n)
    return Progress(drafts, list(steps), candidates)


@dataclass(frozen=True)
class Problem:
    """A record that ended without a result: its key, failed or skipped, and why."""

    key: str
    status: RecordStatus
    error: str | None


@dataclass(frozen=True)
class RecordNumbers:
    """A done record's numbers for a report, read without its texts (``Store.record_numbers``)."""

    key: str
    initial: float | None
    final: float | None
    draft_chars: int
    final_chars: int
    tokens: int  # completion tokens of all its generations
    seconds: float  # the sum of their requests' latencies


@dataclass(frozen=True)
class InputChanges:
    """The records of a new input against the stored ones, by key."""

    added: list[str]
    changed: list[str]
    removed: list[str]

    def describe(self, limit: int = 5) -> str:
        parts = [f"{len(keys)} {label}: " + ", ".join(keys[:limit]) + (", …" if len(keys) > limit else "")
                 for label, keys in (("changed", self.changed), ("added", self.added), ("removed", self.removed))
                 if keys]
        return "; ".join(parts) or "the same records in another order"

    def counts(self) -> list[str]:
        return [f"{len(self.added)} records added", f"{len(self.changed)} changed (restarted)",
                f"{len(self.removed)} removed"]


def input_changes(stored: dict[str, str], records: Sequence[RecordIn]) -> InputChanges:
    """``stored``: key -> content hash of the records in the run now (not those removed)."""
    incoming = {r.key: r.content_hash for r in records}
    return InputChanges(added=[k for k in incoming if k not in stored],
                        changed=[k for k, h in incoming.items() if k in stored and stored[k] != h],
                        removed=[k for k in stored if k not in incoming])


def run_differences(run: Run, config: dict[str, Any], chash: str, inputs: InputChanges | None) -> list[str]:
    """What differs between a stored run and the config and input given now, for the refusal;
    ``inputs`` is None when the input is the stored one."""
    out = []
    if run.config_hash != chash:
        old, new = _flatten(run.config), _flatten(config)
        keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        out.append("config (" + ", ".join(f"{k}: {_short(old.get(k))} -> {_short(new.get(k))}" for k in keys) + ")")
    if inputs is not None:
        out.append(f"input ({inputs.describe()})")
    return out


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _short(v: Any, limit: int = 40) -> str:
    s = json.dumps(v, ensure_ascii=False)
    return s if len(s) <= limit else s[: limit - 1] + "…"
