"""The text that is scored and which of its tokens count (reference section 4). Pure logic.

    prompt    = chat template(system, standard-inference prompt) with the generation prompt
    assistant = "<think>\\n" + thinking + "\\n</think>\\n<answer>\\n" + answer + "\\n</answer>"

The answer is segmented; its first segment is context only and the rest is the scored span.
A one-segment answer is scored whole (the reference scores it 1000, i.e. unusable).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from agents.segment import segment_text

SYSTEM_PROMPT = "You are a helpful assistant."


@dataclass(frozen=True)
class ScoringText:
    text: str
    span: tuple[int, int]  # [start, end) characters of ``text`` whose tokens are scored


def assistant_turn(thinking: str, answer: str) -> tuple[str, int]:
    """The assistant text and where the answer starts in it."""
    head = f"<think>\n{thinking}\n</think>\n<answer>\n"
    return f"{head}{answer}\n</answer>", len(head)


def scoring_text(prompt: str, thinking: str, answer: str) -> ScoringText:
    assistant, answer_at = assistant_turn(thinking, answer)
    segments = segment_text(answer)
    context = len(segments[0]) if len(segments) > 1 else 0
    start = len(prompt) + answer_at
    return ScoringText(prompt + assistant, (start + context, start + len(answer)))


def scored_positions(offsets: Sequence[tuple[int, int]], span: tuple[int, int]) -> list[int]:
    """Token positions whose characters overlap the span (a token straddling the boundary
    counts: it carries answer text). Position 0 is never scored: nothing predicts it."""
    s, e = span
    return [i for i, (a, b) in enumerate(offsets) if i > 0 and a < e and b > s and b > a]
