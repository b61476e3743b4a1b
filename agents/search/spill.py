"""The spill file: generations held while the store was down, kept on disk when the wait for it
runs out (or the run is stopped during it), and stored by the next start before it claims work.

One JSON object a line, one line per generation: its record, step and slot, the worker whose
lease it was generated under, and the node itself. It sits beside the run's log: ``<db>.spill.jsonl``
for a SQLite file; ``runs/spill-<database>-w<worker>.jsonl`` for a server database, one per
worker, since several workers may share one folder. It is written whole or not at all (a
temporary file renamed over it), and replaying it twice stores nothing twice
(``Store.restore_nodes``: the same fence as a write after the store came back).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Sequence

from agents.services.fleet import log_path
from store import Node, Store, shown


def spill_file(db: str, worker: int | None) -> Path:
    """Where this worker's held generations go if it must stop while the store is down."""
    if "://" not in db:
        return Path(f"{db}.spill.jsonl")
    return log_path(db, "run").parent / f"spill-{_database(db)}-w{worker}.jsonl"


def spill_files(db: str) -> list[Path]:
    """Every spill file left for ``db`` by a worker that stopped."""
    if "://" not in db:
        return [p for p in [spill_file(db, None)] if p.exists()]
    return sorted(log_path(db, "run").parent.glob(f"spill-{_database(db)}-w*.jsonl"))


def _database(db: str) -> str:
    return hashlib.sha256(shown(db).encode()).hexdigest()[:12]


def write_spill(path: Path, nodes: Sequence[Node], lease: int | None) -> None:
    """Add ``nodes`` to the spill file at ``path``, atomically: a crash leaves the old file or
    the new one, never half of it."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True) if path.exists() else []
    lines += [json.dumps({"record": n.record_id, "step": n.step, "idx": n.idx, "lease": lease,
                          "node": n.model_dump(mode="json", exclude={"id"})}, ensure_ascii=False) + "\n"
              for n in nodes]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(lines)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a power cut
    finally:
        os.close(dir_fd)


def read_spill(path: Path) -> dict[int | None, list[Node]]:
    """The generations of a spill file, by the lease they were generated under."""
    by_lease: dict[int | None, list[Node]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            by_lease.setdefault(row["lease"], []).append(Node.model_validate(row["node"]))
    return by_lease


def replay(store: Store, db: str, log: Callable[[str], None]) -> int:
    """Store what the spill files of ``db`` hold, then remove them; how many generations were
    stored. The workers that left them are gone: they are marked ended, so that their records
    are free at once."""
    recovered = 0
    for path in spill_files(db):
        by_lease = read_spill(path)
        found = sum(len(nodes) for nodes in by_lease.values())
        stored = 0
        for lease, nodes in by_lease.items():
            stored += store.restore_nodes(nodes, lease)
            if lease is not None and lease != store.worker_id:
                store.end_worker(lease)
        path.unlink()
        recovered += stored
        dropped = f"; {found - stored} not, their records having moved on without them" if stored < found else ""
        log(f"recovered {stored} generations held while the store was down, from {path}{dropped}")
    return recovered
