"""Scorer benchmark: reer's scorer against the reference's cost model, on the same inputs.

    .venv/bin/python bench/scorer.py [--model gemma3-270m] [--records 1] [--dtype float32]
    python3 bench/scorer.py --random llama-8b --records 16 --device cuda --dtype bfloat16 [--compile]

Inputs are realistic REER steps: a prompt, a ~1K-token thinking in 7 segments, 2 candidates per
step, a ~600-token answer, for several records searched side by side. reer gets them as the
pipeline sends them: step by step, every record's candidates of a step together. The naive
baseline scores one request at a time with the full ``[T, vocab]`` logits and no prefix reuse
(what vLLM ``prompt_logprobs`` computes).

``--compile`` also measures reer with the model's norms and MLPs compiled (the scorer's
``--compile``). ``--model`` takes a real model (text through its tokenizer). ``--random NAME`` builds a randomly
initialised model of a real size from a built-in config and feeds it token ids of the same
shape: no weights and no tokenizer are needed, which is what a GPU box without a hub needs.

On CPU each variant runs in its own process, so that its peak resident memory is its own. On
CUDA both run in one process (the model is loaded once) and peak memory is the allocator's.
Prints tokens/s, tokens through the model, peak extra memory, the largest score difference and,
on CUDA, the model FLOP utilisation: 2 x (parameters of the matmuls a token goes through) x
tokens through the model, plus the LM head for the logits computed, over time and the GPU's
dense bf16 peak (attention is not counted, so the figure is a lower bound).
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
SEGMENTS, EXPANSIONS = 7, 2
RANDOM_CONFIGS = {
    # Llama 3 8B's shapes
    "llama-8b": dict(model_type="llama", vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                     num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                     max_position_embeddings=8192, rope_theta=500000.0),
    # Qwen3 8B's shapes: the reference's scoring model (Qwen3-8B-Base)
    "qwen3-8b": dict(model_type="qwen3", vocab_size=151936, hidden_size=4096, intermediate_size=12288,
                     num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                     max_position_embeddings=32768, rope_theta=1000000.0, tie_word_embeddings=False),
    # a few MB: to try the benchmark itself quickly
    "llama-tiny": dict(model_type="llama", vocab_size=32000, hidden_size=256, intermediate_size=512,
                       num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                       max_position_embeddings=8192),
    # Gemma 3 270M's shapes: a random stand-in for the demo scorer
    "gemma3-270m": dict(model_type="gemma3_text", vocab_size=262144, hidden_size=640, intermediate_size=2048,
                        num_hidden_layers=18, num_attention_heads=4, num_key_value_heads=1, head_dim=256,
                        sliding_window=512, max_position_embeddings=32768),
}
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "H800": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 70.0}


def paragraph(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def text_steps(n_records: int, seed: int = 0) -> list[list[tuple[str, str, str]]]:
    """For each step, every record's candidates: (question, thinking, answer). The search visits
    the segments in turn, so the prefix a step's candidates share grows."""
    rng = random.Random(seed)
    records = [(f"Write a short story about the sea, number {r}.",
                "\n\n".join(paragraph(rng, 90) for _ in range(5)),  # ~600 tokens
                [paragraph(rng, 110) for _ in range(SEGMENTS)])  # ~1K tokens of thinking
               for r in range(n_records)]
    steps = []
    for step in range(SEGMENTS):
        out = []
        for question, answer, segments in records:
            for _ in range(EXPANSIONS):
                thinking = "\n\n".join([*segments[:step], paragraph(rng, 110), *segments[step + 1:]])
                out.append((question, thinking, answer))
        steps.append(out)
    return steps


def token_steps(n_records: int, vocab: int, seed: int = 0) -> list[list]:
    """The same shape as ``text_steps`` in token ids (no tokenizer), with lengths that vary as
    real ones do: a prompt of 60-120 tokens, 7 segments of 100-200, an answer of 450-750 whose
    first fifth is context (means: 90, 150, 600); each candidate 100-200 tokens."""
    from scorer.encoded import Encoded

    rng = random.Random(seed)
    para = lambda lo, hi: [rng.randrange(10, vocab) for _ in range(rng.randint(lo, hi))]  # noqa: E731
    sep = [5]
    records = [(para(60, 120), para(450, 750), [para(100, 200) for _ in range(SEGMENTS)]) for _ in range(n_records)]
    steps = []
    for step in range(SEGMENTS):
        out = []
        for prompt, answer, segments in records:
            for _ in range(EXPANSIONS):
                ids, breaks = list(prompt), []
                for seg in [*segments[:step], para(100, 200), *segments[step + 1:]]:
                    breaks.append(len(ids))
                    ids += seg + sep
                start = len(ids) + len(answer) // 5
                ids += answer
                out.append(Encoded(ids, list(range(start, len(ids))), tuple(breaks)))
        steps.append(out)
    return steps


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


def load(a) -> tuple[object, list[list]]:
    """The engine and its requests, step by step."""
    import torch

    from scorer.model import ScoringModel, pick_device, pick_dtype

    cache_bytes = None if a.prefix_cache_mb is None else a.prefix_cache_mb << 20
    if a.random:
        from transformers import AutoConfig, AutoModelForCausalLM

        from scorer.engine import Engine

        device = pick_device(a.device)
        cfg = dict(RANDOM_CONFIGS[a.random])
        cfg = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
        torch.manual_seed(0)
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(cfg, dtype=pick_dtype(a.dtype, device)).eval()
        return Engine(model, prefix_cache_bytes=cache_bytes), token_steps(a.records, cfg.vocab_size)
    sm = ScoringModel(a.model, dtype=a.dtype, threads=a.threads, device=a.device, prefix_cache_bytes=cache_bytes)
    return sm.engine, [[sm.encode(q, t, ans, "en") for q, t, ans in step] for step in text_steps(a.records)]


def naive(engine, steps) -> list[float]:
    """The reference's cost model: one request at a time, full logits, nothing reused."""
    import torch

    from scorer.loss import NLL_CLIP

    dev, scores = engine.device, []
    with torch.inference_mode():
        for e in (e for step in steps for e in step):
            logits = engine.model(input_ids=torch.tensor([e.ids], device=dev)).logits[0].float()  # (T, vocab)
            lp = torch.log_softmax(logits, -1)
            pos = torch.tensor(e.positions, device=dev)
            tgt = torch.tensor([e.ids[p] for p in e.positions], device=dev)
            scores.append((-lp[pos - 1].gather(-1, tgt[:, None])[:, 0]).clamp(max=NLL_CLIP).mean().item())
            engine.stats.forwarded += len(e)
            engine.stats.logit_rows += len(e)
    return scores


def reer(engine, steps, max_batch_tokens: int) -> list[float]:
    """As the pipeline sends them: each step's requests of every record together."""
    from scorer.batching import run_batched
    from scorer.devices import is_oom

    scores = []
    for step in steps:
        scores += run_batched(step, [len(e) for e in step], max_batch_tokens, engine.score, is_oom,
                              groups=engine.groups(step))
    return scores


def measure(variant: str, engine, steps, a, batch_tokens: int, rows: str = "packed") -> dict:
    import torch

    cuda = engine.device.type == "cuda"
    engine.packed = engine.merge and rows == "packed"
    run = (lambda: naive(engine, steps)) if variant == "naive" else (lambda: reer(engine, steps, batch_tokens))
    warm = [steps[0][:1]]
    naive(engine, warm) if variant == "naive" else reer(engine, warm, batch_tokens)  # warm-up, not measured
    if engine.cache is not None:
        engine.cache.clear()
    engine.stats.forwarded = engine.stats.logit_rows = engine.stats.padded = engine.stats.forwards = 0
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        t0 = time.perf_counter()
        scores = run()
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated() - base
    else:
        with PeakRSS() as mem:
            rss0 = mem.peak
            t0 = time.perf_counter()
            scores = run()
            elapsed = time.perf_counter() - t0
        peak = mem.peak - rss0
    tokens = sum(len(e) for step in steps for e in step)
    return {"variant": variant, "batch_tokens": batch_tokens if variant == "reer" else None,
            "rows": ("packed" if engine.packed else "padded") if variant == "reer" and engine.merge else None,
            "requests": sum(len(s) for s in steps), "tokens": tokens, "seconds": elapsed,
            "tokens_per_s": tokens / elapsed, "forwarded": engine.stats.forwarded, "padded": engine.stats.padded,
            "forwards": engine.stats.forwards,
            "logit_rows": engine.stats.logit_rows, "peak_extra_bytes": peak, "scores": scores,
            "device": str(engine.device), "dtype": str(engine.dtype).removeprefix("torch."),
            "flops": flops(engine.model, engine.stats.forwarded, engine.stats.logit_rows),
            "prefix_cache": engine.snapshot().get("prefix_cache")}


def ceiling(engine, rows: int = 8, length: int = 2048, reps: int = 5) -> dict:
    """The model's own forward on an unpadded causal batch (no mask, one logit per row): what
    the hardware gives this model at all, to read the scorer's utilisation against."""
    import torch

    x = torch.randint(10, engine.vocab, (rows, length), device=engine.device)
    sync = torch.cuda.synchronize if engine.device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        engine.model(input_ids=x, logits_to_keep=1)
        sync()
        t0 = time.perf_counter()
        for _ in range(reps):
            engine.model(input_ids=x, logits_to_keep=1)
        sync()
        elapsed = time.perf_counter() - t0
    tokens = rows * length * reps
    return {"variant": "ceiling", "batch_tokens": rows * length, "requests": rows * reps, "tokens": tokens,
            "seconds": elapsed, "tokens_per_s": tokens / elapsed, "forwarded": tokens, "logit_rows": rows * reps,
            "peak_extra_bytes": 0, "scores": [], "flops": flops(engine.model, tokens, rows * reps),
            "prefix_cache": None}


def profile(engine, steps, batch_tokens: int) -> None:
    """Where the GPU time of one reer step goes, and how busy the GPU was over its wall time."""
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    sync = torch.cuda.synchronize if engine.device.type == "cuda" else (lambda: None)
    step = steps[len(steps) // 2]
    reer(engine, [step], batch_tokens)  # its prefix caches are in place, as in a real run
    sync()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if engine.device.type == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        t0 = time.perf_counter()
        reer(engine, [steps[len(steps) // 2 + 1]], batch_tokens)
        sync()
        wall = time.perf_counter() - t0
    events = prof.key_averages()
    dev = "device" if hasattr(events[0], "self_device_time_total") else "cuda"
    busy = sum(getattr(e, f"self_{dev}_time_total") for e in events) / 1e6  # microseconds
    key = f"self_{dev}_time_total"
    rows = "packed" if engine.packed else "padded" if engine.merge else "per group"
    print(f"profile of one step ({len(step)} requests, rows {rows}): wall {wall:.3f} s, GPU kernels {busy:.3f} s "
          f"({busy / wall:.0%} busy)")
    print(events.table(sort_by=key, row_limit=14, max_name_column_width=60))


def flops(model, forwarded: int, logit_rows: int) -> float:
    """2 x matmul parameters per token through the body, plus the LM head for each logit row."""
    import torch

    head = model.get_output_embeddings()
    head_params = head.weight.numel()
    body = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not head)
    return 2.0 * body * forwarded + 2.0 * head_params * logit_rows


def peak_tflops(a) -> float | None:
    import torch

    if a.peak_tflops:
        return a.peak_tflops
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def run_here(a) -> list[dict]:
    engine, steps = load(a)
    if a.compiled:  # a CPU run of its own, compiled from the start
        compile_model(engine)
    runs = [lambda: measure("naive", engine, steps, a, 0)] if a.variant in (None, "naive") else []
    if a.variant in (None, "reer"):
        layouts = a.rows if engine.merge else ["per group"]  # sliding-window models: one forward per group
        runs += [lambda bt=bt, rows=rows: measure("reer", engine, steps, a, bt, rows)
                 for rows in layouts for bt in a.max_batch_tokens]
    cuda = engine.device.type == "cuda"
    if a.variant is None:  # every run in this one process (CUDA): the ceiling, then compiled
        runs.append(lambda: ceiling(engine))
        if a.compile:  # then the same model with its blocks compiled: reer in the first layout, and the ceiling
            runs.append("compile")
            runs += [lambda bt=bt: measure("reer", engine, steps, a, bt, a.rows[0]) for bt in a.max_batch_tokens]
            runs.append(lambda: ceiling(engine))
    results, compiled, peak = [], a.compiled, peak_tflops(a) if a.variant is None else None
    for run in runs:
        if run == "compile":
            compile_model(engine)
            compiled = True
            continue
        results.append(r := run() | {"compiled": compiled})
        # as it goes, so that a run cut short by a time limit still says what it measured
        mfu = f", MFU {r['flops'] / r['seconds'] / 1e12 / peak:.1%}" if peak else ""
        print(f"# {label(r)}: {r['seconds']:.2f} s, {r['tokens_per_s']:.0f} tokens/s{mfu}", file=sys.stderr, flush=True)
    if a.profile and cuda:
        engine.packed = engine.merge and a.rows[0] == "packed"  # the first layout asked for
        try:
            profile(engine, steps, a.max_batch_tokens[-1])
        except Exception as exc:  # a profile is a diagnostic: never the reason a benchmark fails
            print(f"profile failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    return results


def compile_model(engine) -> None:
    """Compile the model's blocks in place (``scorer.compiled``); says how long it took."""
    from scorer.compiled import compile_blocks

    t0 = time.perf_counter()
    blocks = compile_blocks(engine.model)
    print(f"# compiled {len(blocks)} blocks in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", default="gemma3-270m", help="a real model: hub id, folder or .gguf")
    src.add_argument("--random", choices=sorted(RANDOM_CONFIGS), help="a random model of this size (token ids only)")
    p.add_argument("--records", type=int, default=1, help="records searched side by side")
    p.add_argument("--dtype", default="float32", choices=["auto", "float32", "bfloat16"])
    p.add_argument("--device", default=None, help="default: cuda when present, else cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--max-batch-tokens", type=int, nargs="+", default=[16384], help="one reer run per value")
    p.add_argument("--rows", nargs="+", choices=["packed", "padded"], default=["packed"],
                   help="full-attention models: one reer run per layout of a forward's rows")
    p.add_argument("--prefix-cache-mb", type=int, default=None)
    p.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak (default: by its name)")
    p.add_argument("--profile", action="store_true", help="CUDA: where one step's GPU time goes")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--compile", action="store_true",
                   help="also measure reer (first layout) with the model's blocks compiled (scorer --compile)")
    p.add_argument("--variant", choices=["naive", "reer"], help=argparse.SUPPRESS)
    p.add_argument("--compiled", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.variant:
        print(json.dumps(run_here(a)))
        return 0
    import torch

    on_cuda = (a.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    if on_cuda:
        results = run_here(a)
    else:  # each run in its own process: peak resident memory is its own
        results = []
        runs = [["--variant", "naive"]] + [["--variant", "reer", "--max-batch-tokens", str(bt), "--rows", rows]
                                           for rows in a.rows for bt in a.max_batch_tokens]
        if a.compile:
            runs += [["--variant", "reer", "--max-batch-tokens", str(bt), "--rows", a.rows[0], "--compiled"]
                     for bt in a.max_batch_tokens]
        for run in runs:
            cmd = [sys.executable, __file__, *sys.argv[1:], *run]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                sys.stderr.write(out.stderr)
                return out.returncode
            results += json.loads(out.stdout.strip().splitlines()[-1])
    report(results, a, peak_tflops(a) if on_cuda else None)
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))
    return 0


def label(r: dict) -> str:
    return (r["variant"] + (f" {r['batch_tokens']}" if r["batch_tokens"] and r["variant"] == "reer" else "")
            + (" padded" if r.get("rows") == "padded" else "") + (" compiled" if r.get("compiled") else ""))


def report(results: list[dict], a, peak: float | None) -> None:
    n = results[0]
    print(f"model {a.random or a.model}{' (random weights)' if a.random else ''} on {n['device']} ({n['dtype']}), "
          f"{a.records} records, {n['requests']} requests, {n['tokens']} tokens")
    head = f"{'':24} {'seconds':>8} {'tokens/s':>9} {'through model':>14} {'peak extra MB':>14}"
    print(head + (f" {'TFLOP/s':>8} {'MFU':>6}" if peak else ""))
    for r in results:
        name = label(r)
        if r["variant"] == "ceiling":  # 8 x 2048 tokens, unpadded, no scoring: the hardware's ceiling
            name = "model forward" + (" compiled" if r.get("compiled") else "")
        line = (f"{name:24} {r['seconds']:8.2f} {r['tokens_per_s']:9.0f} {r['forwarded']:14d} "
                f"{r['peak_extra_bytes'] / 2**20:14.0f}")
        if peak:
            tf = r["flops"] / r["seconds"] / 1e12
            line += f" {tf:8.0f} {tf / peak:6.1%}"
        print(line)
    for r in results[1:]:
        if r["variant"] != "reer":
            continue
        diff = max(abs(x - y) for x, y in zip(n["scores"], r["scores"]))
        print(f"{label(r)}: throughput x{r['tokens_per_s'] / n['tokens_per_s']:.2f}, "
              f"peak extra memory x{r['peak_extra_bytes'] / max(n['peak_extra_bytes'], 1):.2f}, "
              f"max score difference {diff:.2e}, {r['forwards']} forwards, "
              f"padding {r['padded'] / (r['forwarded'] + r['padded']):.1%} of the tokens through the model, "
              f"prefix cache {r['prefix_cache']}")
    if peak:
        print(f"MFU against a dense bf16 peak of {peak:.0f} TFLOP/s")
    if a.random:
        clipped = sum(x == 2.0 for x in n["scores"]) / len(n["scores"])
        print(f"random weights: {clipped:.0%} of the scores sit at the clip (2.0), so the score difference "
              "says little here; the tests check exactness on trained models")


if __name__ == "__main__":
    sys.exit(main())
