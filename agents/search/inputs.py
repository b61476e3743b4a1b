"""Reading the input: a JSON list, JSONL, Parquet, or a Hugging Face dataset (``hf:NAME[:SPLIT]``
or a ``save_to_disk`` folder, ``agents.search.hub``) of (question, answer) records. A record
without an answer field may carry the conversation instead (``messages``): the last assistant
turn's ``content`` is the answer and its ``thinking`` or ``reasoning_content`` the original
thinking; the user turn before it is the question where there is no ``question``.

Every record is validated before anything runs. A file that cannot be read at all fails at once
with one line naming the file and what to fix, and nothing is written. A bad record (broken JSON
line, missing or empty field, wrong type, duplicate id, bad bytes) is skipped and reported with
its file and line, or, with ``strict``, fails the run the same way.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from agents.errors import InputError
from agents.search.hub import is_dataset, read_dataset
from prompts import detect_lang
from prompts.tags import THINK_CLOSE
from store import RecordIn

ANSWER_FIELDS = ("solution", "answer", "response", "output")  # the first present wins
ID_FIELDS = ("id", "index")  # then extra_info.index, the reference's parquet key
THINKING_FIELDS = ("thinking", "reasoning_content")  # gpt-oss-style datasets, then DeepSeek's name
MAX_ID_CHARS = 256


@dataclass(frozen=True)
class Inputs:
    records: list[RecordIn]
    problems: list[InputError] = field(default_factory=list)  # skipped records, with the reason


def read_records(path: Path, strict: bool = True) -> Inputs:
    path = Path(path)
    if is_dataset(path):
        raw = read_dataset(str(path))
    elif not path.is_file():
        raise InputError(str(path), None, "no such file")
    else:
        raw = _read_file(path)
    return _scan(path, raw, strict)


def _read_file(path: Path) -> Iterator[tuple[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        raw = _read_jsonl(path)
    elif suffix == ".json":
        raw = _read_json(path)
    elif suffix == ".parquet":
        raw = _read_parquet(path)
    else:
        raise InputError(str(path), None, f"unknown file type {suffix!r}: use .json (a list), .jsonl, .parquet, "
                                          "hf:NAME[:SPLIT] or a datasets.save_to_disk folder")
    return raw


def _scan(path: Path, raw: Iterator[tuple[str, Any]], strict: bool) -> Inputs:
    records, problems, seen = [], [], {}
    for position, (where, obj) in enumerate(raw):
        try:
            if isinstance(obj, InputError):
                raise obj
            rec = _to_record(str(path), where, position, obj)
            if rec.key in seen:
                raise InputError(str(path), where, f"duplicate id {rec.key!r} (first at {seen[rec.key]}); "
                                                   "ids must be unique")
        except InputError as exc:
            if strict:
                raise
            problems.append(exc)
            continue
        seen[rec.key] = where
        records.append(rec)
    if not records:
        raise InputError(str(path), None, "no usable records" + (f" (first problem: {problems[0]})" if problems else ""))
    return Inputs(records, problems)


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(str(path), f"line {line}", f"not valid UTF-8 (byte {exc.start}); re-encode the file as UTF-8") from None


def _read_jsonl(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, object) per non-blank line; a line that cannot be read yields its InputError. Read
    a line at a time: a worker's peak memory is then the input's records, not three copies of
    its file (bytes, lines, records)."""
    with path.open("rb") as f:
        for n, raw in enumerate(f, start=1):
            yield from _jsonl_line(path, n, raw.removeprefix(b"\xef\xbb\xbf") if n == 1 else raw)


def _jsonl_line(path: Path, n: int, raw: bytes) -> Iterator[tuple[str, Any]]:
    where = f"line {n}"
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        yield where, InputError(str(path), where, f"not valid UTF-8 (byte {exc.start} of the line); "
                                                  "re-encode the file as UTF-8")
        return
    if not line.strip():
        return
    try:
        yield where, _loads(str(path), where, line)
    except InputError as exc:
        yield where, exc


def _read_json(path: Path) -> Iterator[tuple[str, Any]]:
    data = _loads(str(path), None, _decode(path))
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise InputError(str(path), None, "a .json input must hold a list of records (use .jsonl for one per line)")
    for n, obj in enumerate(data):
        yield f"record {n}", obj


def _read_parquet(path: Path) -> Iterator[tuple[str, Any]]:
    import pyarrow.parquet as pq  # only for Parquet inputs

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a broken file
        raise InputError(str(path), None, f"not a readable Parquet file ({exc})") from None
    for n, obj in enumerate(table.to_pylist()):
        yield f"row {n}", obj


def _loads(path: str, where: str | None, text: str) -> Any:
    """JSON, or the ``InputError`` that says what is wrong with it: broken, nested deeper than
    the parser goes (about a thousand levels), or holding a number too long to read."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = where if where is not None else f"line {exc.lineno}"
        raise InputError(path, where, f"broken JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise InputError(path, where, "JSON nested too deeply to read (over ~1000 levels)") from None
    except ValueError as exc:  # an integer of more digits than Python converts (4300)
        raise InputError(path, where, f"a number too long to read ({str(exc).split(';')[0]})") from None


def _text_problem(value: str) -> str | None:
    """What in a text no supported store can keep: PostgreSQL refuses NUL, and a lone surrogate
    is not text at all (it cannot be encoded)."""
    if "\x00" in value:
        return "holds a NUL character (\\u0000), which PostgreSQL cannot store: remove it"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"holds a lone surrogate (\\u{ord(value[exc.start]):04x}), which is not text: fix the encoding"
    return None


def _jsonable(value: Any) -> Any:
    """``value`` as any store's JSON column takes it: NaN and infinities (a Parquet column's
    missing values) as null, anything else JSON has no type for (timestamps, bytes) as text."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def _texts(value: Any, name: str = "") -> Iterator[tuple[str, str]]:
    """Every string in a JSON value (keys too), with the top-level column it is in."""
    if isinstance(value, str):
        yield name, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield name or k, k
            yield from _texts(v, name or k)
    elif isinstance(value, list):
        for v in value:
            yield from _texts(v, name)


def _from_messages(obj: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """A record that carries its conversation (``messages``) and no answer field: the question,
    the answer and the original thinking from its turns; and that thinking (None if none)."""
    turns = obj.get("messages")
    if not isinstance(turns, list) or any(obj.get(f) is not None for f in ANSWER_FIELDS):
        return obj, None
    turns = [t for t in turns if isinstance(t, dict)]
    last = next((i for i in range(len(turns) - 1, -1, -1) if turns[i].get("role") == "assistant"), None)
    if last is None:
        return obj, None
    out = {**obj, "answer": turns[last].get("content")}
    if out.get("question") is None:
        user = next((t for t in reversed(turns[:last]) if t.get("role") == "user"), {})
        out["question"] = user.get("content")
    return out, next((turns[last][f] for f in THINKING_FIELDS if turns[last].get(f) is not None), None)


def _key(path: str, where: str, position: int, obj: dict[str, Any]) -> str | int:
    extra_info = obj.get("extra_info")
    index = extra_info.get("index") if isinstance(extra_info, dict) else None
    key = next((obj[f] for f in ID_FIELDS if obj.get(f) is not None), index if index is not None else position)
    if not isinstance(key, (str, int)) or isinstance(key, bool):
        raise InputError(path, where, f"id must be a string or an integer, got {type(key).__name__}")
    if len(str(key)) > MAX_ID_CHARS:
        raise InputError(path, where, f"id of {len(str(key))} characters; ids are at most {MAX_ID_CHARS}")
    if isinstance(key, str) and (problem := _text_problem(key)):
        raise InputError(path, where, f"id {problem}")
    return key


def _to_record(path: str, where: str, position: int, obj: Any) -> RecordIn:
    if not isinstance(obj, dict):
        raise InputError(path, where, f"expected an object with 'question' and 'solution', got {type(obj).__name__}")
    obj, thinking = _from_messages(obj)
    if thinking is not None and not isinstance(thinking, str):
        raise InputError(path, where, f"the assistant turn's thinking must be a string, got {type(thinking).__name__}")
    question = obj.get("question")
    if not isinstance(question, str) or not question.strip():
        raise InputError(path, where, "missing or empty 'question' (a non-empty string is required)")
    field = next((f for f in ANSWER_FIELDS if obj.get(f) is not None), None)
    if field is None:
        raise InputError(path, where, f"no answer: give one of {', '.join(repr(f) for f in ANSWER_FIELDS)}, or "
                                      "'messages' ending in an assistant turn")
    solution = obj[field]
    if not isinstance(solution, str):
        raise InputError(path, where, f"{field!r} must be a string, got {type(solution).__name__}")
    for name, value in (("question", question), (field, solution), ("thinking", thinking or "")):
        if problem := _text_problem(value):
            raise InputError(path, where, f"{name!r} {problem}")
    meta: dict[str, Any] = {}
    answer = solution
    if THINK_CLOSE in solution:
        # The solution carries an old thinking trace: the answer is what follows the last one.
        cut = solution.rfind(THINK_CLOSE)
        answer = solution[cut + len(THINK_CLOSE) :]
        meta["original_thinking"] = solution[:cut]
    if thinking and thinking.strip():
        meta["original_thinking"] = thinking
    answer = answer.strip()
    if not answer:
        raise InputError(path, where, f"empty answer in {field!r}")
    key = _key(path, where, position, obj)
    extra = {k: v for k, v in obj.items() if k not in ("question", field, *ID_FIELDS)}
    if extra:
        # The input's own columns, kept for the export; made JSON (a Parquet timestamp or bytes
        # as text) so that any store can hold them.
        meta["extra"] = _jsonable(extra)
        for name, text in _texts(meta["extra"]):
            if problem := _text_problem(text):
                raise InputError(path, where, f"column {name!r} {problem}")
    return RecordIn(key=str(key), position=position, question=question, answer=answer,
                    lang=detect_lang(question), meta=meta)
