"""Hugging Face datasets as input: ``hf:NAME[:SPLIT]`` (the Hub, or a local folder of data files
as ``datasets.load_dataset`` takes it) or a ``datasets.save_to_disk`` folder.

Rows come out as ``(where, object)``, as from any input file, so they get the same validation
and the same bad-record reports (``agents.search.inputs``). ``datasets`` is an optional
dependency (``reer[hf]``), imported only here and only for such an input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from agents.errors import InputError

HF_PREFIX = "hf:"
DEFAULT_SPLIT = "train"
SAVED_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")  # what save_to_disk writes


def is_dataset(path: Path | str) -> bool:
    """``hf:NAME[:SPLIT]``, or a folder that ``save_to_disk`` wrote."""
    text = str(path)
    return text.startswith(HF_PREFIX) or (Path(text).is_dir() and any((Path(text) / m).is_file() for m in SAVED_MARKERS))


def split_spec(spec: str) -> tuple[str, str]:
    """``hf:NAME[:SPLIT]`` as (NAME, SPLIT)."""
    rest = spec.removeprefix(HF_PREFIX)
    name, sep, split = rest.rpartition(":")
    return (name, split or DEFAULT_SPLIT) if sep else (rest, DEFAULT_SPLIT)


def read_dataset(spec: str) -> Iterator[tuple[str, Any]]:
    datasets = _datasets(spec)
    if spec.startswith(HF_PREFIX):
        name, split = split_spec(spec)
        if not name:
            raise InputError(spec, None, "give the dataset's name: hf:NAME or hf:NAME:SPLIT")
        try:
            ds = datasets.load_dataset(name, split=split)
        except Exception as exc:  # the Hub, the network, a missing split: many unrelated types
            raise InputError(spec, None, f"cannot load the dataset ({_short(exc)}); check the name and the split "
                                         "(and HF_TOKEN for a private one)") from None
    else:
        try:
            ds = datasets.load_from_disk(spec)
        except Exception as exc:
            raise InputError(spec, None, f"not a readable datasets.save_to_disk folder ({_short(exc)})") from None
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[_one_split(spec, list(ds))]
    for n, row in enumerate(ds):
        yield f"row {n}", row


def _one_split(spec: str, splits: list[str]) -> str:
    if DEFAULT_SPLIT in splits:
        return DEFAULT_SPLIT
    if len(splits) == 1:
        return splits[0]
    raise InputError(spec, None, f"the folder holds the splits {', '.join(splits)} and no '{DEFAULT_SPLIT}': "
                                 "save the one to use alone")


def _datasets(spec: str) -> Any:
    try:
        import datasets
    except ImportError:
        raise InputError(spec, None, "reading a Hugging Face dataset needs the datasets package: "
                                     "pip install 'reer[hf]'") from None
    datasets.disable_progress_bars()  # the run says what it read in its own lines
    return datasets


def _short(exc: BaseException, limit: int = 300) -> str:
    text = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    return text if len(text) <= limit else text[:limit] + "…"
