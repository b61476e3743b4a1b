"""Unequal endpoints benchmark (not in CI): the router over real loopback servers of unequal speed.

    .venv/bin/python bench/record.py unequal -- .venv/bin/python bench/unequal.py

A record here is what a search sends: a draft, then ``--steps`` edit requests of two choices,
one after the other, ``--concurrency`` records in flight, through the run's own ``Router`` and
``Generator`` to fake OpenAI-compatible servers on 127.0.0.1 that answer after a set delay (the
scorer and the store are left out: what is measured is where the requests go). Ratios, each
against a baseline measured in the same run:

- the fast endpoint alone, then with a ten times slower one added (target: at most 1.1x);
- one of two equal endpoints, then both at twice the concurrency (target: at least 1.7x faster);
- two equal endpoints, one of which slows down ten times mid-run: its share of the requests
  before, and how long after the slowdown its share over the last seconds falls below half that
  (target: within a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.config import GeneratorConfig, RetryPolicy  # noqa: E402
from agents.generation.generator import Generator  # noqa: E402
from agents.generation.router import Router  # noqa: E402
from agents.watch.stats import Stats  # noqa: E402
from tests.support.fake_openai import FakeOpenAI  # noqa: E402

DRAFT = [{"role": "user", "content": "<task>\nq\n</task>\n<answer>\nA note on the sea.\n</answer>"}]
EDIT = [{"role": "user", "content": "<answer>\nA note.\n</answer>\n<replace>\nThe sea.\n</replace>"}]


def router(urls: list[str], concurrency: int) -> Router:
    stats, rng = Stats(), random.Random(0)
    policy = RetryPolicy(max_retries=3, base_s=0.05, max_s=0.5)
    gens = [Generator(GeneratorConfig(endpoint=u, model="m", retry=policy), stats, rng,
                      max_connections=4 * concurrency) for u in urls]
    return Router(gens, policy, stats, rng, log=lambda line: None)


async def run(urls: list[str], records: int, concurrency: int, steps: int, until=None) -> tuple[float, Router]:
    """Seconds from the first record to the last (after each endpoint's preflight)."""
    r = router(urls, concurrency)
    await r.start(2)
    gate = asyncio.Semaphore(concurrency)

    async def record() -> None:
        async with gate:
            await r.generate(DRAFT, "", 1, [], kind="draft")
            for _ in range(steps):
                await r.generate(EDIT, "", 2, [], kind="edit")

    t0 = time.monotonic()
    jobs = [asyncio.create_task(record()) for _ in range(records)]
    if until is not None:
        await until(r, t0)
    await asyncio.gather(*jobs)
    wall = time.monotonic() - t0
    await r.aclose()
    return wall, r


async def added_slow(a) -> None:
    with FakeOpenAI(delay_s=a.fast_s) as fast, FakeOpenAI(delay_s=10 * a.fast_s) as slow:
        alone, _ = await run([fast.url], a.records, a.concurrency, a.steps)
        both, r = await run([fast.url, slow.url], a.records, a.concurrency, a.steps)
    share = r.stats.endpoints[1].requests / max(1, sum(e.requests for e in r.stats.endpoints))
    print(f"fast endpoint ({a.fast_s} s a request) alone:        {alone:6.1f} s")
    print(f"fast + a 10x slower endpoint:                {both:6.1f} s   {both / alone:.2f}x the fast one alone "
          f"(target <= 1.10x); the slow one sent {100 * share:.1f}% of the requests")


async def equal_pair(a) -> None:
    with FakeOpenAI(delay_s=a.equal_s) as one, FakeOpenAI(delay_s=a.equal_s) as two:
        single, _ = await run([one.url], a.records, a.concurrency, a.steps)
        pair, _ = await run([one.url, two.url], a.records, 2 * a.concurrency, a.steps)
    print(f"one equal endpoint ({a.equal_s} s), concurrency {a.concurrency}:  {single:6.1f} s")
    print(f"both, concurrency {2 * a.concurrency}:                      {pair:6.1f} s   "
          f"{single / pair:.2f}x faster (target >= 1.70x)")


async def slowing(a) -> None:
    with FakeOpenAI(delay_s=a.fast_s) as steady, FakeOpenAI(delay_s=a.fast_s) as slowed:
        result: dict[str, float] = {}

        async def watch(r: Router, t0: float) -> None:
            samples = []  # (time, requests to the slowed one, all requests)
            while time.monotonic() - t0 < a.slow_after_s + 60:
                e = r.stats.endpoints
                samples.append((time.monotonic() - t0, e[1].requests, e[0].requests + e[1].requests))
                if "before" not in result and samples[-1][0] >= a.slow_after_s:
                    result["before"] = samples[-1][1] / max(1, samples[-1][2])
                    slowed.delay_s = 10 * a.fast_s
                elif "before" in result and len(samples) > a.window:
                    t, mine, total = samples[-1]
                    t_w, mine_w, total_w = samples[-1 - a.window]
                    if t_w >= a.slow_after_s and (mine - mine_w) / max(1, total - total_w) < result["before"] / 2:
                        result["fell_after"] = t_w - a.slow_after_s
                        return
                await asyncio.sleep(1.0)

        await run([steady.url, slowed.url], a.records * 4, a.concurrency, a.steps, until=watch)
    fell = result.get("fell_after")
    print(f"two equal endpoints ({a.fast_s} s), one 10x slower after {a.slow_after_s:.0f} s: its share "
          f"{100 * result.get('before', 0):.0f}% before; over {a.window} s windows it fell below half "
          + (f"{fell:.0f} s after the slowdown (target: within 60 s)" if fell is not None else "NOT within 60 s"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--steps", type=int, default=3, help="edit requests per record after its draft")
    p.add_argument("--fast-s", type=float, default=0.1, help="the fast endpoint's time per request")
    p.add_argument("--equal-s", type=float, default=0.3, help="each equal endpoint's time per request")
    p.add_argument("--slow-after-s", type=float, default=10.0)
    p.add_argument("--window", type=int, default=5, help="seconds over which the share is counted")
    a = p.parse_args()
    print(f"{a.records} records of 1 draft + {a.steps} edits (n=2), concurrency {a.concurrency}, fake endpoints "
          "on 127.0.0.1 (each answers after its delay, at any load), the run's Router and Generator")
    asyncio.run(added_slow(a))
    asyncio.run(equal_pair(a))
    asyncio.run(slowing(a))


if __name__ == "__main__":
    main()
