"""What each page shows, as plain data: the page renders it, and ``/api/...`` returns it as
JSON. Each figure comes from the store's queries (``store.reading``, ``store.browse``) and the
other reading commands' data (``status.snapshot``, ``show.tree_data``): nothing is counted twice.
"""

from __future__ import annotations

from typing import Any

from agents.config import Prices
from agents.inspect import show, status
from agents.inspect.serve.diff import diff_data
from store import SORTS, RecordQuery, RecordStatus, Store

BINS = 20  # of the score histograms
PER_PAGE = 50  # records a table page lists unless asked
# What the run stored of its generator endpoint and its scorer (``RunConfig.fingerprint``): the
# models and what shapes their outputs; addresses and keys are transport, never stored.
GENERATOR_KEYS = {"sampling", "extra_body", "edit_prefill", "prefill"}
SCORER_KEYS = {"max_context", "scoring_prompt", "single_segment_answer"}


class BadQuery(ValueError):
    """A page's query string that cannot be read: the message says which parameter and why."""


def overview(store: Store, run_id: int, prices: Prices | None) -> dict[str, Any]:
    """``reer status``'s snapshot, with the figures of ``reer report`` that aggregate queries
    give (scores before and after, acceptance by step), every worker and the languages."""
    snap = status.snapshot(store, run_id, prices)
    snap["workers"] = store.all_workers(run_id)
    snap["by_step"] = store.step_summary(run_id)
    snap["scores"] = histogram(store.score_pairs(run_id))
    snap["languages"] = store.languages(run_id)
    config = snap["config"]
    snap["generator"] = {k: v for k, v in config.items() if k in GENERATOR_KEYS or k.startswith("generator_")}
    snap["scorer"] = {k: v for k, v in config.items() if k in SCORER_KEYS or k.startswith("scorer_")}
    return snap


def histogram(pairs: list[tuple[float, float]], bins: int = BINS) -> dict[str, Any]:
    """Initial and final scores of the done records counted in ``bins`` equal bins over their
    common range: the report's first plot, as numbers."""
    if not pairs:
        return {"edges": [], "initial": [], "final": [], "improved": 0, "records": 0}
    lo = min(min(p) for p in pairs)
    hi = max(max(p) for p in pairs)
    width = (hi - lo) / bins or 1.0

    def counts(values: list[float]) -> list[int]:
        out = [0] * bins
        for v in values:
            out[min(int((v - lo) / width), bins - 1)] += 1
        return out

    return {"edges": [round(lo + i * width, 6) for i in range(bins + 1)],
            "initial": counts([a for a, _ in pairs]), "final": counts([b for _, b in pairs]),
            "improved": sum(1 for a, b in pairs if b < a), "records": len(pairs)}


def record_query(params: dict[str, str]) -> RecordQuery:
    """The records page's query string (status, lang, reason, q, sort, desc, page, per) as a
    RecordQuery; BadQuery names a value that is not one."""
    st = params.get("status") or None
    if st is not None and st not in RecordStatus.__members__:
        raise BadQuery(f"status must be one of {', '.join(RecordStatus.__members__)}, not {st!r}")
    sort = params.get("sort") or "position"
    if sort not in SORTS:
        raise BadQuery(f"sort must be one of {', '.join(SORTS)}, not {sort!r}")
    try:
        page, per = int(params.get("page") or 1), int(params.get("per") or PER_PAGE)
    except ValueError as exc:
        raise BadQuery("page and per are whole numbers") from exc
    if page < 1 or not 1 <= per <= 500:
        raise BadQuery("page counts from 1, and per is 1 to 500")
    return RecordQuery(status=RecordStatus(st) if st else None, lang=params.get("lang") or None,
                       reason=params.get("reason") or None, search=params.get("q") or None, sort=sort,
                       desc=params.get("desc") in ("1", "true", "yes"), offset=(page - 1) * per, limit=per)


def records(store: Store, run_id: int, q: RecordQuery) -> dict[str, Any]:
    total, rows = store.record_page(run_id, q)
    return {"total": total, "page": q.offset // q.limit + 1, "per": q.limit,
            "pages": max(1, -(-total // q.limit)), "sort": q.sort, "desc": q.desc,
            "filters": {"status": q.status.value if q.status else None, "lang": q.lang, "reason": q.reason,
                        "q": q.search},
            "records": [{**vars(r), "updated_at": r.updated_at.isoformat() if r.updated_at else None} for r in rows]}


def record(store: Store, run_id: int, key: str) -> dict[str, Any] | None:
    """``reer show``'s tree of the record, with its diff; None if the run has no such record."""
    rec = store.record_by_key(run_id, key)
    if rec is None:
        return None
    progress = store.load_progress(rec.id)
    data = show.tree_data(rec, progress)
    data["lang"] = rec.lang
    draft = progress.draft
    data["diff"] = diff_data(draft.text if draft else None, rec.final_thinking)
    return data
