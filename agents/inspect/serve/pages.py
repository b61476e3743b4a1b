"""The overview and records pages as HTML, from the data of ``data`` (the same dicts
``/api/overview`` and ``/api/records`` return). Every store text is escaped (``html.esc``)."""

from __future__ import annotations

import json
from typing import Any

from agents.inspect.serve.html import Column, cell, esc, layout, query_url, record_url, score, table
from store import SORTS, RecordStatus

WORKERS: list[Column] = [("name", "worker", "text"), ("live", "live", "yes"), ("holds", "holds", "int"),
                         ("finished", "finished", "int"), ("lease_until", "lease renewed to", "time"),
                         ("lease_left_s", "lease left (s)", "text"), ("started_at", "started", "time"),
                         ("ended_at", "ended", "time")]
BY_STEP: list[Column] = [("step", "step", "int"), ("records", "records", "int"), ("accepted", "improved", "bar"),
                         ("mean_best", "mean best after", "score")]
SCORES: list[Column] = [("range", "score", "text"), ("initial", "initial", "bar"), ("final", "final", "bar")]
RECORDS: list[Column] = [("key", "record", "record"), ("status", "status", "text"), ("lang", "lang", "text"),
                         ("question", "question", "text"), ("initial_score", "initial", "score"),
                         ("final_score", "final", "score"), ("gain", "gain", "score"), ("steps", "steps", "int"),
                         ("accepted", "improved", "int"), ("error", "why not done", "text")]
SORT_OF = {"initial_score": "initial", "final_score": "final", "gain": "gain", "steps": "steps", "key": "position"}


def overview_view(snap: dict[str, Any]) -> dict[str, Any]:
    """What the overview shows, formatted: ``shown`` (each figure's text, by its ``data-k``)
    and ``tables`` (each table's rows, by its ``data-src``). The page is rendered from it, and
    its refresh fetches it again (``/api/overview`` carries it)."""
    r, acc, h = snap["records"], snap["acceptance"], snap["scores"]
    shown = {f"records.{k}": v for k, v in r.items()}
    shown.update({
        "steps": snap["steps"], "accepted_steps": snap["accepted_steps"],
        "acceptance": f"{acc:.0%}" if acc is not None else "-",
        "mean_initial": score(snap["mean_score"]["initial"]), "mean_final": score(snap["mean_score"]["final"]),
        "improved": h["improved"], "stored": snap["generations"]["stored"],
        "rejected": snap["generations"]["rejected"], "prompt_tokens": snap["tokens"]["prompt"],
        "completion_tokens": snap["tokens"]["completion"],
        "cost": f"{snap['cost_usd']:,.2f}" if snap["cost_usd"] is not None else "-",
        "updated_at": (snap["updated_at"] or "-")[:19].replace("T", " "),
        "workers_live": sum(1 for w in snap["workers"] if w["live"])})
    top = max(h["initial"] + h["final"], default=1)
    scores = [{"range": f"{h['edges'][i]:.3f}–{h['edges'][i + 1]:.3f}", "initial": a, "final": b, "max": top}
              for i, (a, b) in enumerate(zip(h["initial"], h["final"]))]
    tables = {"workers": snap["workers"], "by_step": [{**s, "max": s["records"]} for s in snap["by_step"]],
              "scores": scores}
    return {"shown": {k: str(v) for k, v in shown.items()}, "tables": tables}


FIGURES = [("records.total", "records"), *((f"records.{s.value}", s.value) for s in RecordStatus),
           ("steps", "steps"), ("accepted_steps", "improved"), ("acceptance", "share improved"),
           ("mean_initial", "mean score before"), ("mean_final", "after"), ("improved", "records improved"),
           ("stored", "generations"), ("rejected", "rejected"), ("prompt_tokens", "prompt tokens"),
           ("completion_tokens", "completion tokens"), ("cost", "cost (USD)"), ("workers_live", "live workers")]


def _figure(key: str, label: str, value: str) -> str:
    shown = f"<b data-k='{esc(key)}'>{esc(value)}</b>"
    if key.startswith("records."):
        status = key.split(".", 1)[1]
        href = query_url("/records", {"status": status if status != "total" else None})
        return f"<div class='fig'><a href='{esc(href)}'>{esc(label)}</a> {shown}</div>"
    return f"<div class='fig'>{esc(label)} {shown}</div>"


def overview_page(snap: dict[str, Any], db: str, refresh_s: float) -> str:
    view = overview_view(snap)
    shown, rows = view["shown"], view["tables"]
    figures = "".join(_figure(k, label, shown[k]) for k, label in FIGURES
                      if k != "records.removed" or shown[k] != "0")
    langs = ", ".join(f"<a href='{esc(query_url('/records', {'lang': k}))}'>{esc(k)}</a> {n}"
                      for k, n in snap["languages"].items())
    body = f"""<h1>Run {esc(snap['run'])}</h1>
<p>input {esc(snap['input'])} · started {esc(snap['created_at'][:19])} · last write
<span data-k='updated_at'>{esc(shown['updated_at'])}</span> · languages {langs or '-'} ·
<span id='refreshed'>refreshes every {esc(refresh_s)} s</span></p>
<div class='figs'>{figures}</div>
<h2>Workers</h2>{table('workers', WORKERS, rows['workers'], 'no worker has joined')}
<h2>Without a result, by reason</h2>{_problems(snap['problems'])}
<div class='cols'><section><h2>Score per done record (lower is better)</h2>
{table('scores', SCORES, rows['scores'], 'no done record yet')}</section>
<section><h2>Steps that improved, by step</h2>{table('by_step', BY_STEP, rows['by_step'], 'no step yet')}</section></div>
<h2>Generator and scorer, as the run stored them</h2>
<div class='cols'><pre>{esc(json.dumps(snap['generator'], indent=2, ensure_ascii=False))}</pre>
<pre>{esc(json.dumps(snap['scorer'], indent=2, ensure_ascii=False))}</pre></div>
<details><summary>the run's whole config</summary><pre>{esc(json.dumps(snap['config'], indent=2, ensure_ascii=False))}</pre>
</details>"""
    return layout(f"run {snap['run']}", body, db, refresh_s)


def _problems(problems: list[dict[str, Any]]) -> str:
    """Each reason links to its records (the table's reason filter takes the folded reason)."""
    if not problems:
        return "<p data-src='problems'>every record ended with a result, or has not ended yet</p>"
    items = "".join(
        f"<li>{esc(p['count'])} × <a href='{esc(query_url('/records', _reason_filter(p['reason'])))}'>"
        f"{esc(p['reason'])}</a> (e.g. <a href='{esc(record_url(p['example']))}'>{esc(p['example'])}</a>)</li>"
        for p in problems)
    return f"<ul class='problems'>{items}</ul>"


def _reason_filter(reason: str) -> dict[str, str]:
    status, _, text = reason.partition(": ")
    return {"status": status, "reason": text}


def records_page(data: dict[str, Any], db: str, languages: dict[str, int]) -> str:
    f = data["filters"]
    here = {**f, "sort": data["sort"], "desc": "1" if data["desc"] else "", "per": data["per"]}
    statuses = "".join(f"<option{' selected' if f['status'] == s.value else ''}>{esc(s.value)}</option>"
                       for s in RecordStatus)
    langs = "".join(f"<option{' selected' if f['lang'] == k else ''}>{esc(k)}</option>" for k in languages)
    sorts = "".join(f"<option{' selected' if data['sort'] == s else ''}>{esc(s)}</option>" for s in SORTS)
    form = f"""<form method='get' action='/records' id='filters'>
<label>status <select name='status'><option value=''>any</option>{statuses}</select></label>
<label>language <select name='lang'><option value=''>any</option>{langs}</select></label>
<label>reason <input name='reason' value='{esc(f['reason'])}' placeholder='HTTP N from the endpoint'></label>
<label>question holds <input name='q' value='{esc(f['q'])}'></label>
<label>sort <select name='sort'>{sorts}</select></label>
<label><input type='checkbox' name='desc' value='1'{' checked' if data['desc'] else ''}> descending</label>
<input type='hidden' name='per' value='{esc(data['per'])}'><button>show</button></form>"""
    heads = "".join(_sort_head(k, label, here) for k, label, _ in RECORDS)
    rows = "".join("<tr>" + "".join(f"<td class='{esc(k)}'>{_cell(r, k, fmt)}</td>" for k, _, fmt in RECORDS)
                   + "</tr>" for r in data["records"])
    pager = _pager(data, here)
    body = (f"<h1>Records</h1>{form}<p id='count'>{esc(data['total'])} records match · page {esc(data['page'])} "
            f"of {esc(data['pages'])}</p><table id='records'><thead><tr>{heads}</tr></thead><tbody>"
            f"{rows or '<tr><td colspan=10>no record matches</td></tr>'}</tbody></table>{pager}")
    return layout("records", body, db)


def _cell(r: dict[str, Any], key: str, fmt: str) -> str:
    return cell(r[key], fmt, r)


def _sort_head(key: str, label: str, here: dict[str, Any]) -> str:
    sort = SORT_OF.get(key)
    if sort is None:
        return f"<th>{esc(label)}</th>"
    # a click on the sorted column turns the order round; on another, the most interesting
    # first: the largest gain and the most steps, the lowest (best) score
    desc = ("" if here["desc"] else "1") if here["sort"] == sort else ("1" if sort in ("gain", "steps") else "")
    mark = (" ▼" if here["desc"] else " ▲") if here["sort"] == sort else ""
    return f"<th><a data-sort='{esc(sort)}' href='{esc(query_url('/records', {**here, 'sort': sort, 'desc': desc}))}'>" \
           f"{esc(label)}{mark}</a></th>"


def _pager(data: dict[str, Any], here: dict[str, Any]) -> str:
    links = []
    if data["page"] > 1:
        links.append(f"<a rel='prev' href='{esc(query_url('/records', {**here, 'page': data['page'] - 1}))}'>← previous</a>")
    if data["page"] < data["pages"]:
        links.append(f"<a rel='next' href='{esc(query_url('/records', {**here, 'page': data['page'] + 1}))}'>next →</a>")
    return f"<p class='pager'>{' · '.join(links)}</p>"
