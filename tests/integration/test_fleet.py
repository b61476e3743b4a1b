"""A fleet of unequal endpoints over real loopback servers: requests go where they would finish
first, a ceiling holds, and an endpoint dead from the start, dying mid-run or coming back never
stalls the others."""

import asyncio
import socket
import subprocess
import sys

from agents.errors import FatalEndpointError
from agents.generation.breaker import CircuitBreaker
from tests.integration.test_faults import many_records
from tests.integration.test_generator import MSGS
from tests.integration.test_router import router
from tests.support import runner as R
from tests.support.fake_openai import FakeOpenAI
from tests.support.fake_scorer import FakeScorer

QUICK_BREAKER = dict(threshold=2, cooldown_s=0.05, max_cooldown_s=0.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_process(port: int, delay_s: float, model: str) -> tuple[subprocess.Popen, str]:
    """A fake endpoint in a process of its own, so that killing it closes every connection."""
    p = subprocess.Popen([sys.executable, "-m", "tests.support.fake_openai", "--port", str(port), "--delay-s",
                          str(delay_s), "--model", model], cwd=R.ROOT, env=R.env(None), stdout=subprocess.PIPE,
                         text=True)
    return p, p.stdout.readline().strip().removeprefix("REER_URL=")


async def requests(r, n: int, at_once: int, kind: str = "edit") -> list:
    gate = asyncio.Semaphore(at_once)

    async def one():
        async with gate:
            return await r.generate(MSGS, "", 1, [], kind=kind)

    return await asyncio.gather(*(one() for _ in range(n)))


async def test_a_ten_times_slower_endpoint_takes_work_only_when_it_would_finish_sooner():
    with FakeOpenAI(delay_s=0.05) as fast, FakeOpenAI(delay_s=1.0) as slow:
        r = router(fast.url, slow.url)
        await r.start()
        await requests(r, 60, at_once=8)
        # fewest-in-flight routing sent the slow one half of them
        assert fast.count("draft") >= 55 and slow.count("draft") <= 5, (fast.count("draft"), slow.count("draft"))
        assert [e.state for e in r.stats.endpoints] == ["up", "up"]
        assert "edit" in r.stats.endpoints[0].estimate_s and r.stats.endpoints[0].in_flight == 0
        await r.aclose()


async def test_an_endpoint_never_has_more_in_flight_than_its_ceiling():
    with FakeOpenAI(delay_s=0.1) as a, FakeOpenAI(delay_s=0.1) as b:
        r = router(a.url, b.url, ceilings=(2, None))
        seen = {0}

        async def watch():
            while True:
                seen.add(r.endpoints[0].in_flight)
                await asyncio.sleep(0.002)

        watcher = asyncio.create_task(watch())
        await requests(r, 30, at_once=10)
        watcher.cancel()
        assert max(seen) == 2 and a.count("draft") + b.count("draft") == 30
        await r.aclose()


async def test_with_every_endpoint_at_its_ceiling_requests_wait_for_a_free_one():
    with FakeOpenAI(delay_s=0.05) as a:
        r = router(a.url, ceilings=(1,))
        out = await requests(r, 6, at_once=6)
        assert len(out) == 6 and a.count("draft") == 6 and r.endpoints[0].in_flight == 0
        await r.aclose()


async def test_an_endpoint_dead_from_the_start_is_left_out_then_joins_when_it_answers():
    port = free_port()
    dead = f"http://127.0.0.1:{port}/v1"
    lines = []
    with FakeOpenAI(delay_s=0.2) as slow:
        r = router(dead, slow.url, breaker=lambda: CircuitBreaker(**QUICK_BREAKER), log=lines.append)
        info = await r.start()  # returns: the live endpoint is enough to start
        assert info.prefills and r.waiting == {r.endpoints[0]}
        assert r.stats.endpoints[0].state == "waiting" and not r.stats.endpoint_down
        await requests(r, 6, at_once=3)
        assert slow.count("draft") == 6
        with FakeOpenAI(delay_s=0.01, port=port) as back:  # the dead one comes up, and is fast
            while r.waiting:
                await asyncio.sleep(0.05)
            await requests(r, 30, at_once=4)
            assert back.count("draft") > 20, (back.count("draft"), slow.count("draft"))
        assert any(f"the endpoint {dead} answered its preflight" in line for line in lines), lines
        await r.aclose()


async def test_no_endpoint_answering_the_start_waits_until_one_does():
    port = free_port()
    lines = []
    r = router(f"http://127.0.0.1:{port}/v1", breaker=lambda: CircuitBreaker(**QUICK_BREAKER), log=lines.append)
    start = asyncio.create_task(r.start())
    while not r.stats.endpoint_down:  # requests would wait: the dashboard says so
        await asyncio.sleep(0.02)
    assert not start.done()
    assert sum("looks down" in line for line in lines) == 1 and "every request waits" in lines[0]
    with FakeOpenAI(port=port) as late:
        info = await start
        assert info.prefills and not r.waiting
        await requests(r, 2, at_once=2)
        assert late.count("draft") == 2
    await r.aclose()


async def test_all_endpoints_dead_from_the_start_stop_once_the_breakers_give_up():
    r = router(f"http://127.0.0.1:{free_port()}/v1", f"http://127.0.0.1:{free_port()}/v1",
               breaker=lambda: CircuitBreaker(**QUICK_BREAKER, max_down_s=0.3))
    try:
        await r.start()
        raise AssertionError("started without any endpoint")
    except FatalEndpointError as exc:
        assert "has failed every request" in str(exc)
    await r.aclose()


async def test_the_fast_endpoint_dying_mid_run_moves_work_to_the_slow_one_and_takes_it_back_on_return():
    port = free_port()
    proc, fast_url = fake_process(port, 0.02, "fast")
    lines = []
    try:
        with FakeOpenAI(delay_s=0.3, model="slow") as slow:
            r = router(fast_url, slow.url, retries=4, breaker=lambda: CircuitBreaker(**QUICK_BREAKER),
                       log=lines.append)
            await r.start()
            done = {"fast": 0, "slow": 0}
            stop = asyncio.Event()

            async def worker():
                while not stop.is_set():
                    [g] = await r.generate(MSGS, "", 1, [], kind="edit")
                    done[g.model] += 1

            async def until(pred):
                while not pred():
                    await asyncio.sleep(0.02)

            workers = [asyncio.create_task(worker()) for _ in range(4)]
            await until(lambda: done["fast"] >= 20)  # up: the fast one does the work
            assert done["slow"] <= 2, done
            proc.kill()
            proc.wait()
            slow_before = done["slow"]
            await until(lambda: done["slow"] >= slow_before + 6)  # dead: the slow one takes it all
            proc, _ = fake_process(port, 0.02, "fast")
            fast_back = done["fast"]
            await until(lambda: done["fast"] >= fast_back + 20)  # back: the fast one takes it again
            stop.set()
            await asyncio.gather(*workers)  # no request failed for good
            assert any(f"the endpoint {fast_url} looks down" in line for line in lines), lines
            assert any(f"the endpoint {fast_url} is back after" in line for line in lines), lines
            await r.aclose()
    finally:
        proc.kill()
        proc.wait()


def test_a_run_starts_with_the_live_endpoint_while_the_other_is_dead(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    inp = R.write_input(tmp_path / "in.jsonl", many_records(6))
    db, out = tmp_path / "run.db", tmp_path / "out.jsonl"
    with FakeOpenAI() as good, FakeScorer() as scorer:
        cmd = R.run_cmd(good.url, inp, db, out, "fake", "--endpoint", dead, "--scorer-url", scorer.url,
                        "--max-steps", "1", "--concurrency", "3", "--endpoint-concurrency", "2")
        p = R.run(cmd, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert R.query(db, "select distinct status from record") == [("done",)]
    assert f"generator: {dead} has not answered its preflight; the run starts without it" in p.stdout
    assert (f"the fleet: 3 records in flight over 2 endpoints, each request where it would finish first "
            f"({good.url} at most 2, {dead} at most 2)") in p.stdout
    assert "ENDPOINT DOWN" not in p.stdout
