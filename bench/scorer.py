"""Scorer benchmark: reer's scorer against the reference's cost model, same inputs, same process.

    .venv/bin/python bench/scorer.py [--model gemma3-270m] [--records 2] [--dtype float32]

Inputs are realistic REER steps: a prompt, a ~1K-token thinking split into segments, 2
candidates per step, a ~600-token answer, several records. The naive baseline scores one
request at a time with the full ``[T, vocab]`` logits and no prefix reuse (what vLLM
``prompt_logprobs`` computes); reer scores all requests together (answer-only logits, the
step's shared prefix computed once, batching). Each variant runs in its own process so that
peak memory is its own. Prints tokens/s, peak extra memory and the largest score difference.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORDS = ("the light river morning quiet stone open long door gull boat wait think maybe perhaps first then "
         "reader plan image turn close small story sea shore window city rain walk voice letter hand slowly").split()


def paragraph(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def requests(n_records: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """(question, thinking, answer) of every candidate of every step of each record: the search
    visits each of the 7 segments in turn, so the prefix a step's candidates share grows."""
    rng = random.Random(seed)
    out = []
    for r in range(n_records):
        question = f"Write a short story about the sea, number {r}."
        answer = "\n\n".join(paragraph(rng, 90) for _ in range(5))  # ~600 tokens
        segments = [paragraph(rng, 110) for _ in range(7)]  # ~1K tokens of thinking
        kept: list[str] = []
        for step in range(len(segments)):
            after = segments[step + 1 :]
            for _ in range(2):  # expansions
                cand = paragraph(rng, 110)
                out.append((question, "\n\n".join([*kept, cand, *after]), answer))
            kept.append(segments[step])
    return out


class PeakRSS:
    """Samples this process's resident memory every 5 ms; ``peak`` in bytes."""

    def __init__(self):
        import psutil

        self.proc, self.peak, self._stop = psutil.Process(), 0, threading.Event()

    def __enter__(self):
        self.peak = self.proc.memory_info().rss
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def run_variant(variant: str, model: str, n_records: int, dtype: str, threads: int | None) -> dict:
    import torch

    from scorer.batching import run_batched
    from scorer.model import NLL_CLIP, ScoringModel, is_oom

    sm = ScoringModel(model, dtype=dtype, threads=threads)
    encs = [sm.encode(q, t, a, "en") for q, t, a in requests(n_records)]
    tokens = sum(len(e) for e in encs)
    sm.score([encs[0]]) if variant == "reer" else None  # warm-up outside the measurement
    base = sm.model.device
    with PeakRSS() as mem:
        rss0 = mem.peak
        t0 = time.perf_counter()
        if variant == "naive":
            scores = []
            with torch.inference_mode():
                for e in encs:
                    logits = sm.model(input_ids=torch.tensor([e.ids], device=base)).logits[0].float()  # (T, vocab)
                    lp = torch.log_softmax(logits, -1)
                    pos = torch.tensor(e.positions, device=base)
                    tgt = torch.tensor([e.ids[p] for p in e.positions], device=base)
                    scores.append((-lp[pos - 1].gather(-1, tgt[:, None])[:, 0]).clamp(max=NLL_CLIP).mean().item())
        else:
            scores = run_batched(encs, [len(e) for e in encs], 16384, sm.score, is_oom, groups=sm.groups(encs))
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - t0
    return {"variant": variant, "requests": len(encs), "tokens": tokens, "seconds": elapsed,
            "tokens_per_s": tokens / elapsed, "peak_extra_bytes": mem.peak - rss0, "scores": scores,
            "device": str(base), "dtype": str(sm.dtype).removeprefix("torch.")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="gemma3-270m")
    p.add_argument("--records", type=int, default=1)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--variant", choices=["naive", "reer"], help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.variant:
        print(json.dumps(run_variant(a.variant, a.model, a.records, a.dtype, a.threads)))
        return 0
    results = {}
    for variant in ("naive", "reer"):
        cmd = [sys.executable, __file__, "--variant", variant, "--model", a.model, "--records", str(a.records),
               "--dtype", a.dtype] + (["--threads", str(a.threads)] if a.threads else [])
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    n, r = results["naive"], results["reer"]
    diff = max(abs(x - y) for x, y in zip(n["scores"], r["scores"]))
    print(f"model {a.model} on {r['device']} ({r['dtype']}), {r['requests']} requests, {r['tokens']} tokens")
    print(f"{'':8} {'seconds':>8} {'tokens/s':>9} {'peak extra MB':>14}")
    for v in (n, r):
        print(f"{v['variant']:8} {v['seconds']:8.1f} {v['tokens_per_s']:9.0f} {v['peak_extra_bytes'] / 2**20:14.0f}")
    print(f"throughput x{r['tokens_per_s'] / n['tokens_per_s']:.2f}, "
          f"peak extra memory x{r['peak_extra_bytes'] / max(n['peak_extra_bytes'], 1):.2f}, "
          f"max score difference {diff:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
