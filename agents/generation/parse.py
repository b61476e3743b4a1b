"""Reading the generator's outputs: the draft's thinking and an edit's ``<refine>`` block.

Both parsers take the *full* assistant text (prefill + generation), so that prefilled tags
count. What they accept follows the reference by default; the stricter choices are options
(``CutDrafts``, ``Acceptance`` in ``agents.config``).
"""

from __future__ import annotations

from dataclasses import dataclass

from agents.config import CutDrafts
from prompts.tags import REFINE_CLOSE, REFINE_OPEN, THINK_CLOSE, THINK_OPEN


@dataclass(frozen=True)
class Parsed:
    """A parsed output: the text, or ``None`` with the reason it was rejected."""

    text: str | None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.text is not None


def parse_thinking(full: str, finish_reason: str | None, cut_drafts: CutDrafts = "keep") -> Parsed:
    """The thinking of a draft: after the first ``<think>``, up to the next ``</think>`` or the end.

    The first block, as the reference cuts at the first ``</think>``: a model left to run on
    writes its answer after it, and an answer may show the tags itself. An output that closes
    ``</think>`` without opening it is thinking up to that tag: the opener came from the
    server's chat template (DeepSeek-R1 and Qwen3 styles). A draft cut off
    at ``max_tokens`` (``finish_reason == "length"``) whose block never closed is, by
    ``cut_drafts``: kept whole (the reference), trimmed to its last complete paragraph (base
    models, which ramble), or rejected.
    """
    cut = finish_reason == "length"
    if cut and cut_drafts == "reject":
        return Parsed(None, "draft cut off at max_tokens (finish_reason=length)")
    start, close = full.find(THINK_OPEN), full.find(THINK_CLOSE)
    if start >= 0 and (close < 0 or start < close):
        body = full[start + len(THINK_OPEN) :]
    elif close >= 0:
        body = full
    else:
        return Parsed(None, "no <think> block in the output")
    end = body.find(THINK_CLOSE)
    text = (body if end < 0 else body[:end]).strip()
    if cut and end < 0 and cut_drafts == "trim":
        last = max(text.rfind("\n\n"), 0) or max(text.rfind("\n"), 0)
        text = text[:last].strip()
    if not text:
        return Parsed(None, "empty <think> block" if not cut else "cut-off draft has no complete paragraph")
    return Parsed(text)


def parse_refine(full: str, allow_empty: bool = True) -> Parsed:
    """An edit candidate: the text after the last ``<refine>``, up to the last ``</refine>``
    after it, or to the end. An empty refinement is a candidate like any other, as in the
    reference (it scores the thinking without the segment), unless ``allow_empty`` is off."""
    start = full.rfind(REFINE_OPEN)
    if start < 0:
        return Parsed(None, "no <refine> block in the output")
    body = full[start + len(REFINE_OPEN) :]
    end = body.rfind(REFINE_CLOSE)
    text = (body if end < 0 else body[:end]).strip()
    if not text and not allow_empty:
        return Parsed(None, "empty <refine> block")
    return Parsed(text)


def merge_reasoning(content: str, reasoning: str | None, finish_reason: str | None) -> str:
    """One assistant text from a server that returns the thinking apart (vLLM's ``reasoning``,
    DeepSeek's ``reasoning_content``): the thinking, its closing tag (unless the output was cut
    inside it), then the content. The opener is the prefill's or the template's."""
    if not reasoning:
        return content
    if content or finish_reason != "length":
        return f"{reasoning}\n{THINK_CLOSE}\n{content}"
    return reasoning
