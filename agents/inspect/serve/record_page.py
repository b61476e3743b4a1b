"""One record's page as HTML, from ``data.record`` (what ``/api/records/KEY`` returns): the
question and answer, the diff of the final thinking against the draft, then the search tree
step by step. Every text is escaped (``html.esc``)."""

from __future__ import annotations

from typing import Any

from agents.inspect.serve.html import esc, layout, record_url, score

SEP = "\n\n"  # between the segments of a block, as the final thinking joins them


def _text(s: str | None, cls: str = "text") -> str:
    return f"<pre class='{cls}'>{esc(s if s is not None else '-')}</pre>"


def _cost(n: dict[str, Any]) -> str:
    return f"{n['completion_tokens'] or 0} tokens, {n['latency_s'] or 0:.1f} s"


def _node(n: dict[str, Any], label: str, winner: bool = False) -> str:
    """A draft or candidate: its score, or why it was rejected; the winner marked."""
    if n["rejected"]:
        verdict = f"<span class='rejected'>rejected: {esc(n['rejected'])}</span>"
        cls = "node rejected"
    else:
        verdict = f"score <b>{esc(score(n['score']))}</b>" + (" <span class='winner'>✓ winner</span>" if winner else "")
        cls = "node winner" if winner else "node"
    body = n["text"] if n["text"] is not None else n["raw"]
    return (f"<details class='{cls}' data-idx='{esc(n['idx'])}'{' open' if winner else ''}><summary>{esc(label)}: "
            f"{verdict} <small>({esc(_cost(n))})</small></summary>{_text(body)}</details>")


def _diff(diff: dict[str, Any] | None) -> str:
    if diff is None:
        return "<p>no diff: the record has no final thinking yet</p>"
    parts = []
    for b in diff["blocks"]:
        if b["kind"] == "same":
            parts.append(f"<div class='seg same'>{esc(SEP.join(b['old']))}</div>")
        elif b["kind"] == "replaced":
            words = "".join(f"<del>{esc(t)}</del>" if tag == "del" else f"<ins>{esc(t)}</ins>" if tag == "ins"
                            else esc(t) for tag, t in b["words"])
            parts.append(f"<div class='seg replaced'>{words}</div>")
        elif b["kind"] == "removed":
            parts.append(f"<div class='seg removed'><del>{esc(SEP.join(b['old']))}</del></div>")
        else:
            parts.append(f"<div class='seg added'><ins>{esc(SEP.join(b['new']))}</ins></div>")
    head = (f"<p>{esc(diff['replaced'])} of {esc(diff['segments']['draft'])} draft segments changed "
            f"(<del>dropped</del> <ins>written</ins>); the final thinking has {esc(diff['segments']['final'])}.</p>")
    return head + f"<div id='diff'>{''.join(parts)}</div>"


def _steps(data: dict[str, Any]) -> str:
    out = []
    for st in data["steps"]:
        kept = "kept a candidate" if st["chosen_node_id"] is not None else "kept the segment as it was"
        cands = "".join(_node(c, f"candidate {c['idx']}", c["id"] == st["chosen_node_id"]) for c in st["candidates"])
        out.append(f"<section class='step' id='step-{esc(st['step'])}'><h3>step {esc(st['step'])} · {kept} · best "
                   f"after {esc(score(st['best_after']))}</h3><details><summary>the segment it rewrote</summary>"
                   f"{_text(st['segment'])}</details>{cands}</section>")
    for st in data["open_steps"]:
        cands = "".join(_node(c, f"candidate {c['idx']}") for c in st["candidates"])
        out.append(f"<section class='step open'><h3>step {esc(st['step'])} · not completed</h3>{cands}</section>")
    return "".join(out) or "<p>no step yet</p>"


def record_page(data: dict[str, Any], db: str) -> str:
    accepted = sum(1 for s in data["steps"] if s["chosen_node_id"] is not None)
    error = f"<p class='error'>{esc(data['error'])}</p>" if data["error"] else ""
    drafts = "".join(_node(d, f"draft, attempt {i + 1}", not d["rejected"]) for i, d in enumerate(data["drafts"]))
    final = data["final_thinking"]
    body = f"""<h1>Record <span id='key'>{esc(data['id'])}</span></h1>
<p><b>{esc(data['status'])}</b> · {esc(data['lang'])} · score {esc(score(data['initial_score']))} →
{esc(score(data['final_score']))} · {len(data['steps'])} steps ({accepted} improved) ·
<a href='{esc('/api' + record_url(data['id']))}' id='json'>JSON</a></p>{error}
<h2>Question</h2>{_text(data['question'], 'text question')}
<details><summary>Answer</summary>{_text(data['answer'])}</details>
<h2>Final thinking against the draft</h2>{_diff(data['diff'])}
<h2>Search</h2>{drafts or '<p>no draft yet</p>'}{_steps(data)}
<details><summary>Final thinking ({len(final) if final is not None else 0} characters)</summary>{_text(final)}</details>"""
    return layout(f"record {data['id']}", body, db)
