"""``reer serve`` in a real browser (headless Chromium from the system's packages): the pages of
a small real run, built by ``reer run`` on the fake generator and the fake scorer. One server
and one browser for the module."""

import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.support import runner as R
from tests.support.fake_openai import FakeOpenAI
from tests.support.fake_scorer import FakeScorer

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
XSS = "Write about <img src=x onerror=\"window.__xss = 1\"> and <script>window.__xss = 2</script> markup."

if CHROMIUM is None and not os.environ.get("CI"):  # in CI a missing browser fails below, loudly
    pytest.skip("no chromium on this machine (apt-get install chromium; `make browser`)", allow_module_level=True)


@pytest.fixture(scope="module")
def run_db(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    records = [*R.RECORDS, {"id": "xss", "question": XSS, "solution": R.RECORDS[0]["solution"]}]
    inp = R.write_input(tmp / "in.jsonl", records)
    db = tmp / "run.db"
    with FakeOpenAI(faults=["400"]) as fake, FakeScorer() as scorer:  # a 400 is not retried: one record fails
        p = R.run(R.run_cmd(fake.url, inp, db, tmp / "out.jsonl", "fake", "--scorer-url", scorer.url,
                            "--max-steps", "3", "--record-failures", "1", "--concurrency", "2"))
    assert p.returncode == 1, p.stdout + p.stderr
    return db


@pytest.fixture(scope="module")
def server(run_db):
    proc = subprocess.Popen([sys.executable, "-m", "agents.inspect.serve", "--db", str(run_db), "--port", "0",
                             "--refresh", "0.3"], cwd=R.ROOT, env=R.env(None), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("REER_URL="), line + proc.stderr.read()
    yield line.split("=", 1)[1].strip()
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def browser():
    assert CHROMIUM, "the browser tests need chromium (make browser installs it)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    # The pages' Content-Security-Policy would also stop an inline handler: set aside here, so
    # that what keeps markup in a question from running is shown to be its escaping.
    context = browser.new_context(bypass_csp=True)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert not errors, errors  # no script error on any page


def keys_shown(page) -> list[str]:
    return page.locator("#records tbody td.key").all_text_contents()


def test_the_overview_shows_the_stores_counts_and_refreshes_them(page, server, run_db):
    counts = dict(R.query(run_db, "select status, count(*) from record group by status"))
    assert counts["failed"] == 1 and counts["done"] >= 3
    page.goto(server + "/")
    for st in ("done", "failed", "skipped", "pending", "running"):
        assert page.text_content(f"[data-k='records.{st}']") == str(counts.get(st, 0)), st
    assert page.text_content("[data-k='records.total']") == str(sum(counts.values()))
    [(steps, kept)] = R.query(run_db, "select count(*), count(chosen_node_id) from step")
    assert page.text_content("[data-k='steps']") == str(steps)
    assert page.text_content("[data-k='accepted_steps']") == str(kept)
    [(worker,)] = R.query(run_db, "select name from worker")
    assert worker in page.text_content("table[data-src='workers']")
    # the refresh writes the figures again from /api/overview: a figure spoilt here comes back
    page.evaluate("document.querySelector(\"[data-k='records.done']\").textContent = 'stale'")
    page.wait_for_function("document.querySelector(\"[data-k='records.done']\").textContent !== 'stale'")
    assert page.text_content("[data-k='records.done']") == str(counts["done"])
    assert worker in page.text_content("table[data-src='workers']")  # the table rebuilt from JSON


def test_the_table_sorts_and_filters(page, server, run_db):
    page.goto(server + "/records")
    assert keys_shown(page) == [k for (k,) in R.query(run_db, "select key from record order by position")]
    page.click("th a[data-sort='gain']")  # the largest gain first
    page.wait_for_url("**sort=gain**")
    by_gain = R.query(run_db, "select key from record order by (initial_score - final_score) is null, "
                              "initial_score - final_score desc, position")
    assert keys_shown(page) == [k for (k,) in by_gain]
    page.click("th a[data-sort='gain']")  # again: turned round
    page.wait_for_url("**sort=gain**")
    assert "desc" not in page.url
    page.click("th a[data-sort='final']")
    page.wait_for_url("**sort=final**")
    by_final = R.query(run_db, "select key from record order by final_score is null, final_score, position")
    assert keys_shown(page) == [k for (k,) in by_final]

    page.goto(server + "/records")
    page.select_option("select[name='status']", "failed")
    page.click("#filters button")
    page.wait_for_url("**status=failed**")
    assert keys_shown(page) == [k for (k,) in R.query(run_db, "select key from record where status = 'failed'")]
    page.goto(server + "/records")
    page.fill("input[name='q']", "BAKERY")  # any case
    page.click("#filters button")
    page.wait_for_url("**q=BAKERY**")
    assert keys_shown(page) == ["shop"]
    page.goto(server + "/records?lang=zh")
    assert keys_shown(page) == ["autumn"]


def test_a_records_page_shows_the_search_and_its_diff(page, server, run_db):
    rows = R.query(run_db, "select r.key, n.text from record r join step s on s.record_id = r.id "
                           "join node n on n.id = s.chosen_node_id where r.status = 'done' order by r.position")
    assert rows, "the run kept no candidate: nothing to diff"
    key = rows[0][0]
    # a later step may rewrite what an earlier one wrote: the final thinking's words are its winners'
    winners_words = {word for k, text in rows if k == key for word in text.split()}
    page.goto(server + "/records")
    page.click(f"#records a[href='/records/{key}']")  # a record's URL, followed from the table
    page.wait_for_url(f"**/records/{key}")
    assert page.text_content("#key") == key
    replaced = page.locator("#diff .seg.replaced")
    assert replaced.count() >= 1
    written = " ".join(replaced.locator("ins").all_text_contents())
    assert written and set(written.split()) <= winners_words  # what it wrote is the winners'
    assert page.locator(".node.winner").count() >= 1 and "✓ winner" in page.text_content(".step .node.winner")
    scores = R.query(run_db, "select count(*) from node n join record r on r.id = n.record_id "
                             f"where r.key = '{key}' and n.kind = 'candidate'")[0][0]
    assert page.locator(".step .node").count() == scores  # every candidate shown
    page.goto(server + f"/api/records/{key}")
    assert f'"id":"{key}"' in page.text_content("body").replace(" ", "")  # its JSON, at its URL


def test_markup_in_a_question_is_shown_as_text_and_never_runs(page, server, run_db):
    for path in ("/records", "/records?q=markup", "/records/xss", "/"):
        page.goto(server + path)
        time.sleep(0.4)  # a refresh of the overview runs in between
        assert page.evaluate("window.__xss") is None, path
    page.goto(server + "/records/xss")
    assert page.text_content("pre.question") == XSS  # shown as the text it is
    page.goto(server + "/records?q=markup")
    assert page.locator("#records td.question").all_text_contents() == [XSS]
