"""Writing the results file: atomically, with the mode the user's umask gives any new file."""

import os
import stat

import pytest

from agents.inspect.export import write_jsonl
from store import Store


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_the_results_file_follows_the_umask(tmp_path, umask, mode):
    st = Store.open(str(tmp_path / "x.db"))
    run = st.begin_run({}, "in", []).run_id
    old = os.umask(umask)
    try:
        assert write_jsonl(st, run, tmp_path / "out" / "r.jsonl") == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out" / "r.jsonl").stat().st_mode) == mode
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["r.jsonl"]  # no temporary file left


def test_reading_a_database_without_a_run_is_one_line(tmp_path, capsys):
    from agents.inspect import export, report, show, status

    Store.open(str(tmp_path / "x.db")).close()  # tables, no run
    for main, extra in [(status.main, []), (show.main, ["--record", "a"]), (report.main, ["--out", str(tmp_path)]),
                        (export.main, ["--out", str(tmp_path / "o.jsonl")])]:
        assert main(["--db", str(tmp_path / "x.db"), *extra]) == 2
        assert capsys.readouterr().err == (f"reer: error: database {tmp_path / 'x.db'}: it holds no run yet. "
                                           "To go on: give the --db of a run\n")
