"""Writing rows as they come: JSONL line by line, Parquet a row group at a time, a Hugging Face
dataset a batch at a time (agents.inspect.hf). What is held is one row group, whatever the number
of rows.

Each file is written under a temporary name and renamed, so a reader never sees half of one,
with the mode the umask gives any new file.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

ROW_GROUP = 128  # rows per Parquet row group (and HF writer batch): ~15 MB at DeepWriting size


class ExportError(Exception):
    """An export that cannot be written as asked (one line for the user)."""


def write_rows(rows: Iterable[dict[str, Any]], out: Path, fmt: str,
               beside: Callable[[Path], None] | None = None) -> int:
    """Write the rows atomically in ``fmt`` as they come; how many. ``beside``, for ``hf``:
    writes what goes beside the data (a dataset card, ...) into the dataset's folder, called
    once every row is written."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "hf":
        return _write_hf(rows, out, beside)
    fd, tmp = tempfile.mkstemp(prefix=out.name + ".", suffix=".tmp", dir=out.parent)
    try:
        if fmt == "jsonl":
            n = 0
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                for row in rows:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
                    n += 1
        else:
            os.close(fd)
            n = _write_parquet(rows, Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; the file is the user's, as any other
        os.replace(tmp, out)
    except BaseException:
        os.unlink(tmp)
        raise
    return n


def _batches(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    it = iter(rows)
    while batch := list(itertools.islice(it, size)):
        yield batch


def _write_parquet(rows: Iterable[dict[str, Any]], path: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer, n = None, 0
    try:
        for batch in _batches(rows, ROW_GROUP):
            try:
                # The first row group sets the file's schema; a later one is cast to it.
                table = pa.Table.from_pylist(batch, schema=writer.schema if writer else None)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise ExportError(f"the rows do not make one Parquet table ({exc}); an input column of mixed "
                                  "types? Use --format jsonl") from None
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
            n += len(batch)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        pq.write_table(pa.table({}), path)
    return n


def _write_hf(rows: Iterable[dict[str, Any]], out: Path, beside: Callable[[Path], None] | None) -> int:
    try:
        import datasets
    except ImportError:
        raise ExportError("--format hf needs the datasets package: pip install 'reer[hf]'") from None
    import pyarrow as pa

    from agents.inspect.hf import write_dataset

    datasets.disable_progress_bars()  # the export says what it wrote in one line
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", suffix=".tmp", dir=out.parent))
    try:
        try:
            n = write_dataset(_batches(rows, ROW_GROUP), tmp / "data")
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
            raise ExportError(f"the rows do not make one dataset ({exc}); an input column of mixed types? "
                              "Use --format jsonl") from None
        if beside is not None:
            beside(tmp / "data")
        os.chmod(tmp / "data", 0o777 & ~_umask())
        if out.exists():
            old = out.with_name(out.name + ".old")
            os.replace(out, old)
            os.replace(tmp / "data", out)
            shutil.rmtree(old)
        else:
            os.replace(tmp / "data", out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return n


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
