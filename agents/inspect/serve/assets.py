"""The pages' style sheet and script, served from /static/ (the pages allow no inline script
or style: Content-Security-Policy in ``app``).

The script refreshes the overview: every ``data-refresh`` seconds it fetches /api/overview and
writes each figure (``data-k``) and each table's rows (``data-src``, the columns read from the
table's head) as ``textContent``: what the store holds is never parsed as markup.
"""

CSS = """
body{font-family:system-ui,sans-serif;margin:0;color:#222;background:#fff}
nav{background:#223;color:#eee;padding:.5em 1em}nav a{color:#cde;margin-left:1em}nav .db{float:right;color:#99a}
main{max-width:1300px;margin:1em auto;padding:0 1em}
.figs{display:flex;flex-wrap:wrap;gap:.4em}.fig{border:1px solid #ddd;border-radius:4px;padding:.3em .6em}
.cols{display:flex;gap:2em;flex-wrap:wrap}.cols>*{flex:1;min-width:400px}
table{border-collapse:collapse;font-size:14px}td,th{border:1px solid #ddd;padding:.2em .5em;text-align:left;
vertical-align:top}td.question{max-width:480px}td.error{max-width:300px;color:#a33}
pre{white-space:pre-wrap;background:#f7f7f7;padding:.5em;font-size:13px;max-height:30em;overflow:auto}
form label{margin-right:1em}.pager a{margin-right:1em}
.node{border-left:3px solid #ccc;padding-left:.5em;margin:.3em 0}.node.winner{border-color:#2a2}
.node.rejected{border-color:#c33}.winner{color:#2a2;font-weight:bold}.rejected{color:#c33}
.step{border:1px solid #eee;margin:.6em 0;padding:.3em .6em}.error{color:#a33}
#diff .seg{white-space:pre-wrap;padding:.4em;margin:.2em 0;font-size:13px;border-left:3px solid #eee}
#diff .replaced{border-color:#e90;background:#fffaf0}#diff .added{border-color:#2a2}#diff .removed{border-color:#c33}
del{background:#fdd;color:#900}ins{background:#dfd;color:#060;text-decoration:none}
"""

JS = r"""
"use strict";
(function () {
  const every = parseFloat(document.body.dataset.refresh || "0");
  if (!every) return;
  function cell(value, fmt, row) {
    const td = document.createElement("td");
    if (fmt === "bar") {
      const bar = document.createElement("progress");
      bar.max = row.max || 1;
      bar.value = value || 0;
      td.append(bar, " " + value);
    } else if (fmt === "record") {
      const a = document.createElement("a");
      a.href = "/records/" + encodeURIComponent(value);
      a.textContent = value;
      td.append(a);
    } else if (fmt === "score") {
      td.textContent = value == null ? "-" : Number(value).toFixed(4);
    } else if (fmt === "time") {
      td.textContent = value ? String(value).slice(0, 19).replace("T", " ") : "-";
    } else if (fmt === "yes") {
      td.textContent = value ? "yes" : "no";
    } else {
      td.textContent = value == null ? "-" : String(value);
    }
    return td;
  }
  function fill(table, rows) {
    const cols = Array.from(table.querySelectorAll("thead th")).map(th => [th.dataset.col, th.dataset.fmt]);
    const body = document.createElement("tbody");
    for (const row of rows) {
      const tr = document.createElement("tr");
      for (const [key, fmt] of cols) tr.append(cell(row[key], fmt, row));
      body.append(tr);
    }
    if (!rows.length) {
      const tr = document.createElement("tr"), td = document.createElement("td");
      td.colSpan = cols.length;
      td.textContent = table.dataset.empty || "none";
      tr.append(td);
      body.append(tr);
    }
    table.tBodies[0].replaceWith(body);
  }
  async function refresh() {
    const note = document.getElementById("refreshed");
    try {
      const r = await fetch("/api/overview", {credentials: "same-origin"});
      if (!r.ok) throw new Error("HTTP " + r.status);
      const snap = await r.json();
      document.querySelectorAll("[data-k]").forEach(el => {
        const v = snap.shown[el.dataset.k];
        if (v !== undefined) el.textContent = v;
      });
      document.querySelectorAll("table[data-src]").forEach(t => {
        const rows = snap.tables[t.dataset.src];
        if (rows) fill(t, rows);
      });
      if (note) note.textContent = "refreshed " + new Date().toLocaleTimeString();
      document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
    } catch (e) {
      if (note) note.textContent = "refresh failed (" + e.message + "); trying again";
    }
  }
  setInterval(refresh, every * 1000);
})();
"""
