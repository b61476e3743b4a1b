"""Writing the results as JSONL, from the store alone.

    python -m agents.export --db runs/x.db --out results.jsonl

One line per finished record, in input order, with an SFT-ready ``messages`` field. The file is
written to a temporary name and renamed, so a reader never sees half of it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from prompts.tags import THINK_CLOSE, THINK_OPEN
from store import Progress, Record, Store, StoreError, shown


def result_row(rec: Record, progress: Progress) -> dict[str, Any]:
    thinking = rec.final_thinking or ""
    return {
        "id": rec.key,
        "question": rec.question,
        "answer": rec.answer,
        "thinking": thinking,
        "initial_thinking": progress.draft.text if progress.draft else None,
        "initial_score": rec.initial_score,
        "final_score": rec.final_score,
        "steps": len(progress.steps),
        "accepted_steps": sum(1 for s in progress.steps if s.chosen_node_id is not None),
        "messages": [
            {"role": "user", "content": rec.question},
            {"role": "assistant", "content": f"{THINK_OPEN}\n{thinking}\n{THINK_CLOSE}\n\n{rec.answer}"},
        ],
        **({"meta": rec.meta} if rec.meta else {}),
    }


def write_jsonl(store: Store, run_id: int, out: Path) -> int:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out.name + ".", suffix=".tmp", dir=out.parent)
    n = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for rec, progress in store.finished_records(run_id):
                f.write(json.dumps(result_row(rec, progress), ensure_ascii=False) + "\n")
                n += 1
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; the file is the user's, as any other
        os.replace(tmp, out)
    except BaseException:
        os.unlink(tmp)
        raise
    return n


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agents.export", description="Write a run's results as JSONL.")
    p.add_argument("--db", required=True, help="the run's database (SQLite path or SQLAlchemy URL)")
    p.add_argument("--out", required=True, type=Path, help="the JSONL file to write")
    args = p.parse_args(argv)
    try:
        store = Store.open(args.db, create=False)
        run_id = store.latest_run_id()
        if run_id is None:
            print(f"reer: error: {shown(args.db)} holds no run", file=sys.stderr)
            return 2
        n = write_jsonl(store, run_id, args.out)
    except StoreError as exc:
        print(f"reer: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {n} records to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
