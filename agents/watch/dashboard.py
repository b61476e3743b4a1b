"""Showing a run: a rich Live dashboard on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from agents.watch.runlog import RunLog
from agents.watch.stats import EndpointCounts, Stats

PLAIN_INTERVAL_S = 10.0


def _fmt_score(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _fmt_eta(s: float | None) -> str:
    if s is None:
        return "-"
    m, s = divmod(int(s), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def phase(st: Stats) -> str:
    return (st.phase + (" · ENDPOINT DOWN, waiting" if st.endpoint_down else "")
            + (" · SCORERS DOWN, waiting" if _scorers_down(st) else "") + _store_down(st)
            + (f" · NO PROGRESS for {st.stalled_s:.0f} s" if st.stalled_s is not None else ""))


def _scorers_down(st: Stats) -> bool:
    return bool(st.scorers) and "up" not in st.scorers.values()


def _scorers(st: Stats) -> str:
    """The scorers not answering, for the plain line (the panel gives each scorer a row)."""
    return "".join(f" | scorer {name} {state}" for name, state in st.scorers.items() if state != "up")


def _store_down(st: Stats) -> str:
    if st.store_down_since is None:
        return ""
    return f" · STORE DOWN, retrying ({time.monotonic() - st.store_down_since:.0f} s of {st.store_wait_s:.0f})"


def _down(st: Stats) -> bool:
    return st.endpoint_down or st.store_down_since is not None or st.stalled_s is not None or _scorers_down(st)


def _score_change(st: Stats, arrow: str = "->") -> str:
    before, after = st.score_change()
    return f"{_fmt_score(before)} {arrow} {_fmt_score(after)}"


def summary_line(st: Stats) -> str:
    el = st.elapsed_s()
    return (
        f"[{phase(st)}] records {st.already_done + st.finished}/{st.total} "
        f"(done {st.done}, failed {st.failed}, skipped {st.skipped}, running {st.running}) | "
        f"steps {st.steps} (accepted {st.accepted}) | "
        f"score {_score_change(st)} | "
        f"{st.requests / el:.2f} req/s, {st.completion_tokens / el:.0f} tok/s{_cost(st)}"
        + (f" (limits: {limits(st)})" if limits(st) else "") + " | "
        f"errors {st.errors}{_last_error(st)}{_wasted(st)} | ETA {_fmt_eta(st.eta_s())}"
        + ("".join(f" | {e.url} {e.state}: {_endpoint(st, e)}" for e in st.endpoints) if len(st.endpoints) > 1 else "")
        + _scorers(st)
    )


def limits(st: Stats) -> str:
    """The spend limits beside what they limit: --rps and --tpm, with the last minute's tokens."""
    parts = [f"--rps {st.rps_limit:g}"] if st.rps_limit else []
    if st.tpm_limit:
        parts.append(f"--tpm {st.tpm_limit} ({st.tokens_last_minute} in the last minute)")
    return ", ".join(parts)


def _endpoint(st: Stats, e: EndpointCounts) -> str:
    """One endpoint's columns: in flight (of its ceiling), its estimates, its share, its errors."""
    total = sum(o.requests for o in st.endpoints) or 1
    ceiling = f"/{e.ceiling}" if e.ceiling else ""
    est = " ".join(f"{kind} {s:.1f}s" for kind, s in e.estimate_s.items()) or "est -"
    return (f"{e.in_flight}{ceiling} in flight, {est}, {e.requests} req ({100 * e.requests / total:.0f}%), "
            f"{e.errors} errors" + (f", {e.moved} moved (no answer)" if e.moved else ""))


def _wasted(st: Stats) -> str:
    return f" | wasted {st.wasted} (held while the store was down, for records taken over)" if st.wasted else ""


def _cost(st: Stats) -> str:
    return f", {st.prices.describe(st.prompt_tokens, st.completion_tokens)}" if st.prices else ""


def _last_error(st: Stats, width: int = 120) -> str:
    if not st.last_errors:
        return ""
    last = " ".join(st.last_errors[-1].split())
    return f" (last: {last if len(last) <= width else last[: width - 1] + '…'})"


def render(st: Stats, title: str) -> Panel:
    el = st.elapsed_s()
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold")
    t.add_column()
    t.add_row("records", f"{st.already_done + st.finished}/{st.total}  done [green]{st.done}[/]  "
                         f"running [cyan]{st.running}[/]  failed [red]{st.failed}[/]  skipped [yellow]{st.skipped}[/]"
                         + (f"  (finished earlier {st.already_done})" if st.already_done else ""))
    t.add_row("steps", f"{st.steps}  accepted {st.accepted}  scorings {st.scored}")
    t.add_row("mean score", f"{_score_change(st, '→')}  (clipped NLL of the answer over the records "
                            "finished; lower is better)")
    t.add_row("generator", f"{st.requests} requests ({st.requests / el:.2f}/s), retries {st.retries}, "
                           f"{st.completion_tokens} tokens ({st.completion_tokens / el:.0f}/s){_cost(st)}")
    if limits(st):
        t.add_row("limits", limits(st))
    if len(st.endpoints) > 1:
        for e in st.endpoints:
            t.add_row(Text(f"  {e.url}", overflow="ellipsis"),
                      f"[{'green' if e.state == 'up' else 'red'}]{e.state}[/]  {_endpoint(st, e)}, "
                      f"{e.completion_tokens / el:.0f} tok/s")
    if len(st.scorers) > 1 or _scorers(st):
        for name, state in st.scorers.items():
            t.add_row(Text(f"  scorer {name}", overflow="ellipsis"), f"[{'green' if state == 'up' else 'red'}]{state}[/]")
    t.add_row("elapsed / ETA", f"{_fmt_eta(el)} / {_fmt_eta(st.eta_s())}")
    t.add_row("errors", Text(str(st.errors), style="red" if st.errors else ""))
    parts: list = [t]
    if st.last_errors:
        parts.append(Text("\n".join(st.last_errors), style="red", overflow="ellipsis", no_wrap=True))
    return Panel(Group(*parts), title=f"reer · {title} · {phase(st)}",
                 border_style="red" if _down(st) else "blue")


class Display:
    """Either a Live panel (terminal) or a line every ``PLAIN_INTERVAL_S`` seconds."""

    def __init__(self, stats: Stats, title: str, live: bool | None = None, stream: TextIO | None = None,
                 runlog: RunLog | None = None):
        self.stats, self.title, self.runlog = stats, title, runlog
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self._live: Live | None = None
        self._last = 0.0

    def __enter__(self) -> "Display":
        if self.live:
            self._live = Live(render(self.stats, self.title), console=Console(file=self.stream),
                              refresh_per_second=4, get_renderable=lambda: render(self.stats, self.title))
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None

    def log(self, message: str, level: str = "INFO") -> None:
        """A line above the dashboard, or in the plain log; and in the run's log file."""
        if self.runlog is not None:
            self.runlog.write(level, message)
        if self._live is not None:
            self._live.console.print(message)
        else:
            print(message, file=self.stream, flush=True)

    def tick(self) -> None:
        """Called periodically: now and then a status line, printed in plain mode, and logged."""
        now = time.monotonic()
        if now - self._last >= PLAIN_INTERVAL_S:
            self._last = now
            if self._live is None:
                self.log(summary_line(self.stats))
            elif self.runlog is not None:  # the dashboard shows it; the log file keeps it
                self.runlog.write("INFO", summary_line(self.stats))
