"""``reer serve`` without a browser: the store's paging queries (SQLite and PostgreSQL), the
diff, the read-only store, and the application's rules: GET only, the token, escaping."""

import pytest
from starlette.testclient import TestClient

from agents.inspect.serve import data, server
from agents.inspect.serve.app import HEADERS, Served, make_app
from agents.inspect.serve.diff import segment_diff, words
from store import RecordQuery, RecordStatus, Store, StoreUnavailable
from store.browse import reason_pattern
from tests.support.shaped import shaped_run


def keys(st, run, **q) -> list[str]:
    return [r.key for r in st.record_page(run, RecordQuery(**q))[1]]


@pytest.fixture
def shaped(db):
    st, run = shaped_run(db, records=9, steps=3)  # r0..r5 done, r6 failed, r7 skipped, r8 running
    return st, run


def test_a_page_is_sorted_filtered_and_cut_in_sql(shaped):
    st, run = shaped
    assert keys(st, run) == [f"r{i}" for i in range(9)]
    assert st.record_page(run, RecordQuery(limit=4, offset=4)) [0] == 9
    assert keys(st, run, limit=4, offset=4) == ["r4", "r5", "r6", "r7"]
    assert keys(st, run, status=RecordStatus.done) == [f"r{i}" for i in range(6)]
    assert keys(st, run, status=RecordStatus.failed) == ["r6"]
    # the shaped run's final scores: 1.49 after 3 steps (one kept), all alike: ties go by position
    total, rows = st.record_page(run, RecordQuery(sort="gain", desc=True))
    gains = [r.gain for r in rows]
    assert gains[:6] == sorted(gains[:6], reverse=True) and gains[6:] == [None] * 3  # no final: last
    assert [r.steps for r in rows] == [3] * 6 + [0] * 3 and rows[0].accepted == 1
    assert keys(st, run, sort="steps", desc=True)[:6] == [f"r{i}" for i in range(6)]
    assert keys(st, run, sort="steps")[:3] == ["r6", "r7", "r8"]
    assert keys(st, run, search="PIECE 3") == ["r3"]  # any case
    assert keys(st, run, search="%") == [] and keys(st, run, search="_") == []  # LIKE's wildcards are text
    assert keys(st, run, lang="en") == [f"r{i}" for i in range(9)] and keys(st, run, lang="zh") == []
    assert keys(st, run, reason="3 requests failed for good; last: HTTP N") == ["r6"]
    assert keys(st, run, reason="HTTP N from") == []


def test_a_folded_reason_matches_the_errors_it_folds():
    assert reason_pattern("HTTP N: 50%_x") == "HTTP %: 50\\%\\_x"


def test_the_overview_figures_are_the_stores(shaped):
    st, run = shaped
    snap = data.overview(st, run, None)
    assert snap["records"]["done"] == 6 and snap["steps"] == 18
    assert [s["step"] for s in snap["by_step"]] == [0, 1, 2]
    assert [s["accepted"] for s in snap["by_step"]] == [0, 6, 0] and snap["by_step"][0]["records"] == 6
    assert snap["scores"]["records"] == 6 and sum(snap["scores"]["initial"]) == 6 == sum(snap["scores"]["final"])
    assert snap["scores"]["improved"] == 6
    [w] = snap["workers"]
    assert w["live"] and w["holds"] == 1 and w["finished"] == 6
    assert snap["generator"] == {"generator_model": "fake"} and snap["languages"] == {"en": 9}


def test_the_diff_marks_the_segments_replaced_and_their_words():
    a, b, c = ("First paragraph, long enough to stand alone as a segment of its own. " * 2,
               "Second paragraph: the one the search rewrote, also long enough to stand alone. " * 2,
               "Third paragraph, which the search never touched, long enough as well to stand alone. " * 2)
    b2 = b.replace("rewrote", "made better")
    blocks = segment_diff(f"{a}\n\n{b}\n\n{c}", f"{a.strip()}\n\n{b2.strip()}\n\n{c.strip()}")
    assert [x.kind for x in blocks] == ["same", "replaced", "same"]
    assert blocks[1].old == [b.strip()] and blocks[1].new == [b2.strip()]
    changed = [(t, w) for t, w in words(b, b2) if t != "same"]
    assert changed == [("del", "rewrote,"), ("ins", "made better,")] * 2
    assert [x.kind for x in segment_diff(a, a)] == ["same"]


def test_the_served_store_refuses_every_write(shaped, db):
    st, run = shaped
    ro = Store.open_read_only(db)
    assert ro.latest_run_id() == run
    with pytest.raises(StoreUnavailable):
        ro.reset_failed(run)
    assert st.status_counts(run)[RecordStatus.failed] == 1
    ro.close()


def test_the_served_store_sees_what_a_worker_writes_while_it_serves(shaped, db):
    st, run = shaped
    ro = Store.open_read_only(db)
    assert ro.status_counts(run)[RecordStatus.done] == 6
    running = st.record_by_key(run, "r8")
    st.finish_record(running.id, "final", 1.2)  # the worker, still holding it, finishes it
    assert ro.status_counts(run)[RecordStatus.done] == 7
    assert keys(ro, run, status=RecordStatus.running) == []
    ro.close()


def test_the_served_store_is_never_created(tmp_path):
    with pytest.raises(StoreUnavailable, match="no such database"):
        Store.open_read_only(str(tmp_path / "none.db"))
    assert not (tmp_path / "none.db").exists()


def _client(db: str, run: int, token: str | None = None) -> TestClient:
    return TestClient(make_app(Served(Store.open_read_only(db), run, db, token=token)))


def test_only_get_is_served_and_every_page_has_its_json(tmp_path):
    db = str(tmp_path / "x.db")
    _, run = shaped_run(db, records=4, steps=2)
    c = _client(db, run)
    for path in ("/", "/records", "/records/r0"):
        r = c.get(path)
        assert r.status_code == 200 and r.headers["content-security-policy"] == HEADERS["Content-Security-Policy"]
        assert c.get("/api" + path if path != "/" else "/api/overview").status_code == 200
        for method in ("post", "put", "delete", "patch"):
            assert getattr(c, method)(path).status_code == 405
    assert c.get("/api/records?sort=gain&desc=1&per=2").json()["pages"] == 2
    assert c.get("/api/records?sort=nope").status_code == 400 and c.get("/records?page=0").status_code == 400
    assert c.get("/records/none").status_code == 404 and "error" in c.get("/api/records/none").json()


def test_a_token_is_asked_for_and_compared(tmp_path):
    db = str(tmp_path / "x.db")
    _, run = shaped_run(db, records=4, steps=2)
    c = _client(db, run, token="s3cret")
    assert c.get("/").status_code == 401 and c.get("/api/overview").status_code == 401
    assert c.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/api/overview", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    r = c.get("/records?token=s3cret&status=done", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith("/records?status=done")
    assert c.get("/records?status=done").status_code == 200  # the cookie the first visit set
    assert _client(db, run, token="s3cret").get("/?token=nope").status_code == 401


def test_another_host_needs_a_token(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("REER_SERVE_TOKEN", raising=False)
    with pytest.raises(SystemExit):
        server.main(["--db", str(tmp_path / "x.db"), "--host", "0.0.0.0"])
    assert "set --token" in capsys.readouterr().err
    assert server.main(["--db", str(tmp_path / "none.db")]) == 2
    assert "no such database" in capsys.readouterr().err


def test_record_text_is_escaped_on_every_page(tmp_path):
    from store import RecordIn

    db = str(tmp_path / "x.db")
    st = Store.open(db)
    evil = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    run = st.begin_run({"generator_model": evil}, "in.jsonl", [RecordIn(key=evil, position=0, question=evil,
                                                                       answer=evil, lang=evil)]).run_id
    c = _client(db, run)
    for path in ("/", "/records", "/records?q=script", "/records/" + evil.replace("/", "%2F")):
        text = c.get(path).text
        assert "<script>alert" not in text and "<img src=x" not in text, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text, path
