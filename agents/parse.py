"""Reading the generator's outputs: the draft's thinking and an edit's ``<refine>`` block.

Both parsers take the *full* assistant text (prefill + generation), so that prefilled tags
count, and take the last block when a model writes several.
"""

from __future__ import annotations

from dataclasses import dataclass

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
REFINE_OPEN, REFINE_CLOSE = "<refine>", "</refine>"


@dataclass(frozen=True)
class Parsed:
    """A parsed output: the text, or ``None`` with the reason it was rejected."""

    text: str | None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.text is not None


def _last_block(full: str, open_tag: str, close_tag: str) -> str | None:
    start = full.rfind(open_tag)
    if start < 0:
        return None
    body = full[start + len(open_tag) :]
    end = body.find(close_tag)
    return (body if end < 0 else body[:end]).strip()


def parse_thinking(full: str, finish_reason: str | None, accept_cut: bool = False) -> Parsed:
    """The thinking of a draft: the last ``<think>`` block, up to ``</think>`` or the end.

    Generation stops at ``</think>`` (a stop sequence), so a complete draft usually has no closing
    tag. A draft cut off by ``max_tokens`` is incomplete and rejected, unless ``accept_cut``
    (for base models, which rarely close the block): then it is cut back to its last complete
    paragraph.
    """
    cut = finish_reason == "length"
    if cut and not accept_cut:
        return Parsed(None, "draft cut off at max_tokens (finish_reason=length)")
    text = _last_block(full, THINK_OPEN, THINK_CLOSE)
    if text is None:
        return Parsed(None, "no <think> block in the output")
    if cut and THINK_CLOSE not in full[full.rfind(THINK_OPEN) :]:
        end = max(text.rfind("\n\n"), 0) or max(text.rfind("\n"), 0)
        text = text[:end].strip()
    if not text:
        return Parsed(None, "empty <think> block" if not cut else "cut-off draft has no complete paragraph")
    return Parsed(text)


def parse_refine(full: str) -> Parsed:
    """An edit candidate: the text after the last ``<refine>``, to ``</refine>`` or the end."""
    text = _last_block(full, REFINE_OPEN, REFINE_CLOSE)
    if text is None:
        return Parsed(None, "no <refine> block in the output")
    if not text:
        return Parsed(None, "empty <refine> block")
    return Parsed(text)
