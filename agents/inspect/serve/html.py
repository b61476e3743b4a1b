"""The pieces every page is built of: escaping, the layout, and tables whose columns the
browser's refresh reads (``data-col``, ``data-fmt``) to fill them again from the page's JSON.

Every text from the store goes through ``esc`` (a record's question can hold ``<script>``);
the page's script writes what it refreshes as ``textContent``, never as markup.
"""

from __future__ import annotations

import html
from typing import Any, Iterable
from urllib.parse import quote, urlencode

Column = tuple[str, str, str]  # (key in the row, heading, format: text, score, int, bar, record, time, yes)


def esc(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def record_url(key: str) -> str:
    return "/records/" + quote(key, safe="")


def query_url(path: str, params: dict[str, Any]) -> str:
    return path + ("?" + urlencode({k: v for k, v in params.items() if v not in (None, "", False)})
                   if any(v not in (None, "", False) for v in params.values()) else "")


def score(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def cell(value: Any, fmt: str, row: dict[str, Any]) -> str:
    """One cell as the page's script writes it (app.js ``cell``): the same formats."""
    if fmt == "score":
        return esc(score(value))
    if fmt == "bar":
        return f"<progress value='{esc(value)}' max='{esc(row.get('max') or 1)}'></progress> {esc(value)}"
    if fmt == "record":
        return f"<a href='{esc(record_url(value))}'>{esc(value)}</a>"
    if fmt == "time":
        return esc((value or "-")[:19].replace("T", " "))
    if fmt == "yes":
        return "yes" if value else "no"
    return esc("-" if value is None else value)


def table(src: str, columns: Iterable[Column], rows: list[dict[str, Any]], empty: str = "none") -> str:
    """A table of ``rows``; ``src`` names the list in the page's JSON that refreshes it."""
    columns = list(columns)
    head = "".join(f"<th data-col='{esc(k)}' data-fmt='{esc(f)}'>{esc(label)}</th>" for k, label, f in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(k), f, r)}</td>" for k, _, f in columns) + "</tr>"
                   for r in rows)
    return (f"<table data-src='{esc(src)}' data-empty='{esc(empty)}'><thead><tr>{head}</tr></thead>"
            f"<tbody>{body or f'<tr><td colspan={len(columns)}>{esc(empty)}</td></tr>'}</tbody></table>")


def layout(title: str, body: str, db: str, refresh_s: float | None = None) -> str:
    """The page: its title, the links between pages, ``body``; ``refresh_s``: the overview's
    figures are fetched again that often (app.js)."""
    refresh = f" data-refresh='{refresh_s}'" if refresh_s else ""
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)} · reer</title>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            "<link rel='stylesheet' href='/static/app.css'><script src='/static/app.js' defer></script></head>"
            f"<body{refresh}><nav><b>reer</b> <a href='/'>overview</a> <a href='/records'>records</a> "
            f"<span class='db'>{esc(db)}</span></nav><main>{body}</main></body></html>")
