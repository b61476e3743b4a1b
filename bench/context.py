"""Long records against a server's context window (not in CI).

    .venv/bin/python bench/record.py context -- .venv/bin/python bench/context.py

DeepWriting-size records (a ~3,000-character answer; the fake generator's ``draft_chars``
writes ~30,000-character drafts, about 7,500 tokens) through real ``python -m agents.run``
processes with default flags, against fake servers (tests/support/fake_openai.py,
fake_sglang.py) whose context is 8K, 16K and 32K tokens: vLLM, SGLang and llama.cpp listing it,
and vLLM saying nothing beforehand (learned from its first refusal). For each: records done,
failed, skipped; requests refused for length (target: 0 where the server lists its context, at
most 1 where it does not); steps skipped because their prompt cannot fit; records failed
(target 0). The baseline, in the same run, is the same server with a context as large as the
records need (128K): what the smaller ones cost in steps. Written to bench/results/context.json
by bench/record.py.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.config import PREFLIGHT_MAX_TOKENS  # noqa: E402
from bench.deepwriting import DRAFT_CHARS, answer  # noqa: E402
from tests.support import runner as R  # noqa: E402
from tests.support.fake_openai import FakeOpenAI  # noqa: E402
from tests.support.fake_scorer import FakeScorer  # noqa: E402
from tests.support.fake_sglang import FakeSGLang  # noqa: E402

SERVERS = [("vllm, listed", FakeOpenAI, dict(flavor="vllm")),
           ("sglang, listed", FakeSGLang, {}),
           ("llama.cpp, listed", FakeOpenAI, dict(flavor="llamacpp")),
           ("vllm, not listed", FakeOpenAI, dict(flavor="vllm", lists_context=False))]
CONTEXTS = [8192, 16384, 32768]
BASELINE_CONTEXT = 131072


def one(tmp: Path, records: int, context: int, make, kind: dict) -> dict:
    recs = [{"id": f"r{i}", "question": f"Write essay {i} about the harbour.", "solution": answer(i)}
            for i in range(records)]
    inp = R.write_input(tmp / f"in-{context}.jsonl", recs)
    db, out = tmp / f"run-{context}-{len(list(tmp.iterdir()))}.db", tmp / "out.jsonl"
    with make(context_length=context, draft_chars=DRAFT_CHARS, keep_prompts=False, **kind) as fake, \
            FakeScorer() as scorer:
        p = R.run(R.run_cmd(fake.url, inp, db, out, "fake", "--scorer-url", scorer.url), timeout=1800)
        refused = sum(1 for b in fake.refused if fake.length_limit(b) != PREFLIGHT_MAX_TOKENS)
    if p.returncode not in (0, 3):
        raise SystemExit(f"the run failed ({p.returncode}): {p.stdout[-2000:]}{p.stderr[-2000:]}")
    status = dict(R.query(db, "select status, count(*) from record group by status"))
    skipped = R.query(db, "select count(*) from node where rejected like 'step skipped, request not sent: %'")[0][0]
    steps = R.query(db, "select count(*) from step")[0][0]
    return {"done": status.get("done", 0), "failed": status.get("failed", 0), "skipped": status.get("skipped", 0),
            "refused_for_length": refused, "steps": steps, "steps_skipped": skipped}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=10)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        base = one(tmp, a.records, BASELINE_CONTEXT, FakeOpenAI, {})
        print(f"baseline: vllm with a {BASELINE_CONTEXT}-token context: {base}")
        for context in CONTEXTS:
            for name, make, kind in SERVERS:
                r = one(tmp, a.records, context, make, kind)
                target = 0 if "not listed" not in name else 1
                ok = r["failed"] == 0 and r["refused_for_length"] <= target
                print(f"context {context:>6}, {name:<18}: {r['done']}/{a.records} done, {r['failed']} failed "
                      f"(target 0), {r['skipped']} skipped; {r['refused_for_length']} refused for length "
                      f"(target <= {target}); {r['steps_skipped']} of {r['steps']} steps skipped, their prompt "
                      f"too long: {(r['steps'] - r['steps_skipped']) / max(1, base['steps']):.2f}x the baseline's "
                      "steps searched "
                      f"{'OK' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
