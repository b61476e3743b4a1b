"""Writing a run's results from the store alone: JSONL, Parquet, or a Hugging Face dataset.

    python -m agents.inspect.export --db runs/x.db --out results.jsonl
    python -m agents.inspect.export --db runs/x.db --out results.parquet --max-score 1.5 --clean-ending
    python -m agents.inspect.export --db runs/x.db --out dataset/ --format hf [--push-to-hub USER/NAME]

One row per finished record, in input order: the input's own columns, the thinking, the scores,
the language, where it came from (generator, scorer, reer version, config hash) and an
SFT-ready ``messages`` column. Filters leave records out, each counted by reason. The store is
read a chunk of records at a time and each row written as it comes (``writers``): what is held
is one chunk and one row group, whatever the run's size.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from collections import Counter
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import IO, Any, Iterator

from agents.inspect.curation import Filters
from agents.inspect.stored import add_db_option, open_run
from agents.inspect.writers import ExportError, write_rows
from prompts.tags import THINK_CLOSE, THINK_OPEN
from store import Progress, Record, Run, Store, StoreError

FORMATS = ("jsonl", "parquet", "hf")
MESSAGES_FORMATS = ("think", "reasoning_content", "thinking")
CONFIG_FILE = "reer-config.json"  # beside the card: the run's stored settings, to repeat it
LLAMA_FACTORY_DIR = "llamafactory"  # dataset_info.json and its data: `dataset_dir` for LLaMA-Factory


def reer_version() -> str:
    try:
        return version("reer")
    except PackageNotFoundError:
        return "unknown"


def provenance(run: Run) -> dict[str, Any]:
    return {"generator_model": run.config.get("generator_model"), "scorer_model": run.config.get("scorer_model"),
            "reer_version": reer_version(), "config_hash": run.config_hash}


def messages(rec: Record, thinking: str, fmt: str = "think") -> list[dict[str, str]]:
    """The SFT conversation: the thinking inside ``<think>`` in the assistant's content, or apart
    in ``reasoning_content`` (DeepSeek's name, as the chat templates of current reasoning models
    take it) or ``thinking`` (gpt-oss's)."""
    if fmt in ("reasoning_content", "thinking"):
        assistant = {"role": "assistant", "content": rec.answer, fmt: thinking}
    else:
        assistant = {"role": "assistant", "content": f"{THINK_OPEN}\n{thinking}\n{THINK_CLOSE}\n\n{rec.answer}"}
    return [{"role": "user", "content": rec.question}, assistant]


def result_row(rec: Record, progress: Progress, origin: dict[str, Any] | None = None,
               messages_format: str = "think", prompt_completion: bool = False) -> dict[str, Any]:
    thinking = rec.final_thinking or ""
    row: dict[str, Any] = {
        "id": rec.key,
        "question": rec.question,
        "answer": rec.answer,
        "thinking": thinking,
        "initial_thinking": progress.draft.text if progress.draft else None,
        "initial_score": rec.initial_score,
        "final_score": rec.final_score,
        "steps": len(progress.steps),
        "accepted_steps": sum(1 for s in progress.steps if s.chosen_node_id is not None),
        "lang": rec.lang,
        "messages": messages(rec, thinking, messages_format),
        **(origin or {}),
    }
    if prompt_completion:  # TRL's conversational prompt/completion pairs
        row["prompt"], row["completion"] = row["messages"][:1], row["messages"][1:]
    if "original_thinking" in rec.meta:
        row["original_thinking"] = rec.meta["original_thinking"]
    for name, value in rec.meta.get("extra", {}).items():  # the input's own columns, never over reer's
        row[name if name not in row else f"input_{name}"] = value
    return row


def export_rows(store: Store, run_id: int, filters: Filters = Filters(), messages_format: str = "think",
                dropped: Counter | None = None, worker_id: int | None = None,
                prompt_completion: bool = False) -> Iterator[dict[str, Any]]:
    """The done records' rows that pass ``filters`` (with ``worker_id``, those that worker
    finished); ``dropped`` counts the others by reason."""
    origin = provenance(store.run(run_id))
    for rec, progress in store.finished_records(run_id, worker_id):
        row = result_row(rec, progress, origin, messages_format, prompt_completion)
        reason = filters.reason_out(row)
        if reason is None:
            yield row
        elif dropped is not None:
            dropped[reason] += 1


def write_jsonl(store: Store, run_id: int, out: Path, worker_id: int | None = None) -> int:
    """Every done record as JSONL, or those ``worker_id`` finished (what a run writes to --out)."""
    return write_rows(export_rows(store, run_id, worker_id=worker_id), Path(out), "jsonl")


def _dataset_name(out: Path) -> str:
    """The folder's name as a LLaMA-Factory dataset name (its `dataset` argument)."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in out.resolve().name) or "reer"


def dataset_card(run: Run, scores: dict[str, list[float]], done: int, dropped: Counter, filters: Filters) -> str:
    """A dataset card: where the data came from, with what settings, and what it holds;
    ``scores``: the kept rows' initial_score and final_score."""
    def stats(key: str) -> str:
        xs = scores[key]
        return f"mean {statistics.fmean(xs):.4f}, median {statistics.median(xs):.4f}" if xs else "-"

    origin = provenance(run)
    config = {k: v for k, v in run.config.items() if k != "prompts"}
    left_out = "; ".join(f"{n} {reason}" for reason, n in dropped.most_common()) or "none"
    used = {k: v for k, v in vars(filters).items() if v not in (None, False)}
    return "\n".join([
        "---", "tags:", "- reasoning", "- reer", "- synthetic", "---", "",
        "# REER thinking trajectories", "",
        "Deep-reasoning training data made by reverse-engineered reasoning (REER, arXiv 2509.06160) with reer:",
        "each row's thinking was searched for so that it best explains the given answer.", "",
        f"- records: {len(scores['final_score'])} (of {done} done; left out: {left_out})",
        f"- filters: {json.dumps(used) if used else 'none'}",
        f"- generator: {origin['generator_model']}; scorer: {origin['scorer_model']}",
        f"- reer {origin['reer_version']}, config hash {origin['config_hash']}",
        f"- initial score: {stats('initial_score')}; final score: {stats('final_score')} "
        "(clipped mean NLL of the answer given the thinking; lower is better)", "",
        "## Settings", "", "```json", json.dumps(config, indent=2, ensure_ascii=False), "```", "",
    ])


class HfFiles:
    """What goes beside the data in an hf folder: the card, the run's settings, and a
    LLaMA-Factory dataset (sharegpt; the thinking inside <think>, as its reasoning templates
    take it). datasets' own dataset_info.json is at the top, so LLaMA-Factory's is apart. Noted
    as the rows go by (:meth:`noting`): two scores a row, and LLaMA-Factory's copy of the row in
    ``spool``, a temporary file, so that no row is held."""

    def __init__(self, run: Run, dropped: Counter, filters: Filters, name: str, spool: IO[str]):
        self.run, self.dropped, self.filters, self.name, self.spool = run, dropped, filters, name, spool
        self.scores: dict[str, list[float]] = {"initial_score": [], "final_score": []}

    def noting(self, rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for row in rows:
            for key, xs in self.scores.items():
                if row[key] is not None:
                    xs.append(row[key])
            assistant = f"{THINK_OPEN}\n{row['thinking']}\n{THINK_CLOSE}\n\n{row['answer']}"
            turns = [{"role": "user", "content": row["question"]}, {"role": "assistant", "content": assistant}]
            self.spool.write(json.dumps({"messages": turns}, ensure_ascii=False) + "\n")
            yield row

    def write(self, folder: Path) -> None:
        """Into the dataset's folder, once every row is written."""
        done = len(self.scores["final_score"]) + sum(self.dropped.values())
        entry = {self.name: {"file_name": f"{self.name}.jsonl", "formatting": "sharegpt",
                             "columns": {"messages": "messages"},
                             "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                                      "assistant_tag": "assistant", "system_tag": "system"}}}
        config = {k: v for k, v in self.run.config.items() if k != "prompts"}
        (folder / "README.md").write_text(dataset_card(self.run, self.scores, done, self.dropped, self.filters),
                                          encoding="utf-8")
        (folder / CONFIG_FILE).write_text(json.dumps({"config_hash": self.run.config_hash, **config}, indent=2,
                                                     ensure_ascii=False) + "\n", encoding="utf-8")
        (folder / LLAMA_FACTORY_DIR).mkdir(exist_ok=True)
        (folder / LLAMA_FACTORY_DIR / "dataset_info.json").write_text(json.dumps(entry, indent=2) + "\n",
                                                                      encoding="utf-8")
        self.spool.seek(0)
        with open(folder / LLAMA_FACTORY_DIR / f"{self.name}.jsonl", "w", encoding="utf-8") as f:
            shutil.copyfileobj(self.spool, f)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m agents.inspect.export",
                                description="Write a run's results (done records) from its store.")
    add_db_option(p)
    p.add_argument("--out", required=True, type=Path, help="the file (jsonl, parquet) or folder (hf) to write")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="jsonl, parquet, or hf (a datasets.save_to_disk folder with a dataset card); default: "
                        "from --out's suffix")
    p.add_argument("--messages-format", choices=MESSAGES_FORMATS, default="think",
                   help="the thinking in the messages column: inside <think> in the assistant's content, or apart "
                        "in reasoning_content or thinking (gpt-oss)")
    p.add_argument("--prompt-completion", action="store_true",
                   help="also write prompt and completion columns (the user turn, the assistant turn), as TRL reads "
                        "them")
    p.add_argument("--push-to-hub", metavar="REPO", default=None, help="with --format hf: push the dataset there")
    f = p.add_argument_group("filters (each reported with how many records it left out)")
    f.add_argument("--max-score", type=float, default=None, help="leave out records whose final score is above")
    f.add_argument("--min-improvement", type=float, default=None,
                   help="leave out records whose score improved (initial - final) by less")
    f.add_argument("--lang", choices=["en", "zh"], default=None, help="only records in this language")
    f.add_argument("--min-thinking-chars", type=int, default=None, help="leave out shorter thinking")
    f.add_argument("--max-thinking-chars", type=int, default=None, help="leave out longer thinking")
    f.add_argument("--max-repetition", type=float, default=None,
                   help="leave out thinking whose share of repeated 4-grams is above this (0..1; a looping phrase)")
    f.add_argument("--clean-ending", action="store_true",
                   help="leave out thinking that does not end as a sentence does (cut off mid-way)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    fmt = args.format or {".jsonl": "jsonl", ".parquet": "parquet"}.get(args.out.suffix)
    if fmt is None:
        print(f"reer: error: cannot tell the format from {args.out}: give --format jsonl, parquet or hf",
              file=sys.stderr)
        return 2
    if args.push_to_hub and fmt != "hf":
        print("reer: error: --push-to-hub needs --format hf", file=sys.stderr)
        return 2
    filters = Filters(args.max_score, args.min_improvement, args.lang, args.min_thinking_chars,
                      args.max_thinking_chars, args.max_repetition, args.clean_ending)
    try:
        store, run_id = open_run(args.db)
        dropped: Counter = Counter()
        rows = export_rows(store, run_id, filters, args.messages_format, dropped,
                           prompt_completion=args.prompt_completion)
        if fmt == "hf":
            args.out.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile("w+", encoding="utf-8", dir=args.out.parent) as spool:
                files = HfFiles(store.run(run_id), dropped, filters, _dataset_name(args.out), spool)
                n = write_rows(files.noting(rows), args.out, fmt, files.write)
        else:
            n = write_rows(rows, args.out, fmt)
        done = n + sum(dropped.values())
    except (StoreError, ExportError) as exc:
        print(f"reer: error: {exc}", file=sys.stderr)
        return 2
    left_out = "; ".join(f"{k} x {reason}" for reason, k in dropped.most_common())
    print(f"wrote {n} records to {args.out} ({fmt}; {done} done" + (f"; left out: {left_out})" if left_out else ")"))
    if args.push_to_hub:
        try:
            import datasets

            datasets.load_from_disk(str(args.out)).push_to_hub(args.push_to_hub)
        except Exception as exc:  # no network, no token, no such repo: the local copy is written either way
            print(f"reer: error: push to {args.push_to_hub} failed ({type(exc).__name__}: "
                  f"{' '.join(str(exc).split())[:300]}); the dataset is in {args.out}", file=sys.stderr)
            return 2
        print(f"pushed to https://huggingface.co/datasets/{args.push_to_hub}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
