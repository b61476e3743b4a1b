"""The search tree in SQLModel: runs, records, nodes, steps. All store access lives here."""

from store.browse import SORTS, RecordQuery, RecordRow
from store.database import shown
from store.errors import LeaseLost, RunMismatch, StoreBusy, StoreError, StoreStateError, StoreUnavailable
from store.models import Node, NodeKind, Record, RecordStatus, Run, Step, Worker
from store.store import Store
from store.values import Claim, Overview, Problem, Progress, RecordIn, RecordNumbers, RunStart, content_hash

__all__ = [
    "Claim", "LeaseLost", "Problem", "RecordNumbers", "Worker", "Node", "NodeKind", "Overview", "Progress", "Record", "RecordIn", "RecordStatus", "Run", "RunMismatch",
    "RunStart", "Step", "Store", "StoreBusy", "StoreError", "StoreStateError", "StoreUnavailable",
    "content_hash", "shown", "RecordQuery", "RecordRow", "SORTS",
]
