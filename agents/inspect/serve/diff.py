"""The final thinking against the draft, segment by segment: which segments the search kept,
which it replaced and with what. Pure: texts in, blocks out.

Both texts are cut into segments as the search cuts a draft (``prompts.segment``), and the two
lists are aligned by ``difflib`` on the segments' stripped texts; the search rewrites a segment
in place, so a replaced segment is a ``replace`` block of one old and one new segment (a
rewrite that holds a blank line reads as one old segment and two new ones). Within a replaced
block the words that changed are marked (``words``).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import asdict, dataclass
from typing import Any, Literal

from prompts.segment import segment_text

Kind = Literal["same", "replaced", "added", "removed"]
_WORDS = re.compile(r"\s+|[^\s]+")


@dataclass(frozen=True)
class Block:
    """A run of segments: ``old`` in the draft, ``new`` in the final thinking."""

    kind: Kind
    old: list[str]
    new: list[str]


def segments(text: str) -> list[str]:
    return [s.strip() for s in segment_text(text) if s.strip()]


def segment_diff(draft: str, final: str) -> list[Block]:
    """The blocks that turn ``draft`` into ``final``, in order; the segments of their ``old``
    sides are the draft's, those of their ``new`` sides the final thinking's."""
    old, new = segments(draft), segments(final)
    blocks: list[Block] = []
    for op, a0, a1, b0, b1 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        kind: Kind = {"equal": "same", "replace": "replaced", "insert": "added", "delete": "removed"}[op]
        blocks.append(Block(kind, old[a0:a1], new[b0:b1]))
    return blocks


def words(old: str, new: str) -> list[tuple[str, str]]:
    """``old`` and ``new`` as one run of (tag, text) pieces, tag ``same``, ``del`` or ``ins``:
    the words of a replaced segment that the rewrite dropped and those it wrote."""
    a, b = _WORDS.findall(old), _WORDS.findall(new)
    out: list[tuple[str, str]] = []
    for op, a0, a1, b0, b1 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(("same", "".join(a[a0:a1])))
            continue
        if a1 > a0:
            out.append(("del", "".join(a[a0:a1])))
        if b1 > b0:
            out.append(("ins", "".join(b[b0:b1])))
    return out


def diff_data(draft: str | None, final: str | None) -> dict[str, Any] | None:
    """The diff as plain data for the page and its JSON; None until the record has both texts."""
    if draft is None or final is None:
        return None
    blocks = segment_diff(draft, final)
    return {"segments": {"draft": sum(len(b.old) for b in blocks), "final": sum(len(b.new) for b in blocks)},
            "replaced": sum(1 for b in blocks if b.kind != "same"),
            "blocks": [{**asdict(b), "words": words("\n\n".join(b.old), "\n\n".join(b.new))
                        if b.kind == "replaced" else None} for b in blocks]}
