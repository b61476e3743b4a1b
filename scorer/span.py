"""The text that is scored and which of its tokens count (reference section 4). Pure logic.

    prompt    = chat template(system, standard-inference prompt) with the generation prompt
    assistant = "<think>\\n" + thinking + "\\n</think>\\n<answer>\\n" + answer + "\\n</answer>"

The answer is segmented; its first segment is context only and the rest is the scored span.
A one-segment answer leaves that span empty. ``single_segment`` says what is scored then:
"whole" (reer's default) scores the whole answer; "reference" does what the reference's code
does, whose span then covers only the newline before ``</answer>``: one token, which a
model predicts almost surely, so such a record scores near 0 and stops at once.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Sequence

from prompts.segment import segment_text
from prompts.tags import ANSWER_CLOSE, ANSWER_OPEN, THINK_CLOSE, THINK_OPEN
SINGLE_SEGMENT_MODES = ("whole", "reference")


@dataclass(frozen=True)
class ScoringText:
    text: str
    span: tuple[int, int]  # [start, end) characters of ``text`` whose tokens are scored
    breaks: tuple[int, ...] = ()  # characters where the thinking and each of its paragraphs start


def assistant_turn(thinking: str, answer: str) -> tuple[str, int]:
    """The assistant text and where the answer starts in it."""
    head = f"{THINK_OPEN}\n{thinking}\n{THINK_CLOSE}\n{ANSWER_OPEN}\n"
    return f"{head}{answer}\n{ANSWER_CLOSE}", len(head)


def scoring_text(prompt: str, thinking: str, answer: str, single_segment: str = "whole") -> ScoringText:
    assistant, answer_at = assistant_turn(thinking, answer)
    segments = segment_text(answer)
    start = len(prompt) + answer_at
    end = start + len(answer)
    if len(segments) > 1:
        span = (start + len(segments[0]), end)
    elif single_segment == "reference":
        span = (end, end + 1)  # the "\n" of "\n</answer>"
    else:
        span = (start, end)
    think_at = len(prompt) + len(THINK_OPEN) + 1  # after "<think>\n"
    breaks = (think_at, *(think_at + m.end() for m in re.finditer(r"\n\n+", thinking)))
    return ScoringText(prompt + assistant, span, breaks)


def scored_positions(offsets: Sequence[tuple[int, int]], span: tuple[int, int]) -> list[int]:
    """Token positions whose characters overlap the span (a token straddling the boundary
    counts: it carries answer text). Position 0 is never scored: nothing predicts it."""
    s, e = span
    return [i for i, (a, b) in enumerate(offsets) if i > 0 and a < e and b > s and b > a]


def token_starts(offsets: Sequence[tuple[int, int]], chars: Sequence[int]) -> tuple[int, ...]:
    """For each character position, the first token that starts at or after it (a token
    straddling the position is left to the part before it). Positions past the end are dropped."""
    starts = [a for a, _ in offsets]
    out = []
    for c in chars:
        i = bisect.bisect_left(starts, c)
        if i < len(starts):
            out.append(i)
    return tuple(sorted(set(out)))
