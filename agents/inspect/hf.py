"""A Hugging Face dataset folder written as the rows come, in ``datasets.save_to_disk``'s layout:
Arrow stream shards ``data-0000i-of-0000N.arrow``, ``dataset_info.json`` (the features) and
``state.json`` (the shards), which ``datasets.load_from_disk`` reads back.

datasets' own way (a dataset built from a generator, then saved) writes every row twice and
maps the whole first copy while it writes the second: at 20,000 DeepWriting records that was
2.2 GB resident. Here each batch of rows is written to the current shard by datasets' own
``ArrowWriter`` and dropped; what is held is one batch, whatever the number of rows.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

SHARD_BYTES = 500 << 20  # a new shard past this much Arrow data (save_to_disk's default)


def write_dataset(batches: Iterable[list[dict[str, Any]]], folder: Path, shard_bytes: int | None = None) -> int:
    """Write the batches of rows as a dataset into ``folder`` (made, and empty); how many rows.
    ValueError (pyarrow's, or datasets') if a batch does not fit the first one's columns."""
    import datasets
    from datasets.arrow_writer import ArrowWriter

    limit = shard_bytes or SHARD_BYTES
    folder.mkdir(parents=True, exist_ok=True)
    shards: list[Path] = []
    writer, features, n = None, None, 0
    for batch in batches:
        if writer is None:
            shards.append(folder / f"shard-{len(shards)}.tmp")
            writer = ArrowWriter(features=features, path=str(shards[-1]), writer_batch_size=len(batch))
        writer.write_batch(_columns(batch, features))
        features = features or writer._features
        n += len(batch)
        if writer._num_bytes >= limit:
            writer.finalize()
            writer = None
    if features is None:  # no rows: one empty shard (save_to_disk would write none, which does not load)
        import pyarrow as pa

        shards.append(folder / "shard-0.tmp")
        features = datasets.Features()
        writer = ArrowWriter(features=features, path=str(shards[-1]))
        writer.write_table(pa.table({}))
    if writer is not None:
        writer.finalize()
    names = [f"data-{i:05d}-of-{len(shards):05d}.arrow" for i in range(len(shards))]
    for shard, name in zip(shards, names):
        os.replace(shard, folder / name)
    datasets.DatasetInfo(features=features).write_to_directory(str(folder), pretty_print=True)
    state = {"_data_files": [{"filename": name} for name in names], "_fingerprint": os.urandom(8).hex(),
             "_format_columns": None, "_format_kwargs": {}, "_format_type": None, "_output_all_columns": False,
             "_split": None}
    (folder / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")
    return n


def _columns(batch: list[dict[str, Any]], features: Any) -> dict[str, list[Any]]:
    """The batch by column, in the first batch's columns (a row without one: None)."""
    names: Iterator[str] = iter(features) if features is not None else iter(dict.fromkeys(k for r in batch for k in r))
    return {name: [row.get(name) for row in batch] for name in names}
