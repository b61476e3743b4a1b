"""The local search of one record, as pure decisions (reference section 5). No I/O here.

    best = score(draft); segs = segments(draft); kept = []
    for i in range(min(max_steps, len(segs))):
        before, current, after = "\\n\\n".join(kept), segs[i].strip(), "\\n\\n".join(segs[i+1:] stripped)
        score each candidate c: join_nonempty(before, c, after)
        keep the best candidate if it beats ``best`` (strictly), else keep ``current``
        stop once best < stop_score
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from prompts.segment import join_nonempty


@dataclass(frozen=True)
class StepView:
    """What step ``index`` sees: the text around the segment it rewrites."""

    index: int
    before: str
    segment: str
    after: str

    def thinking_with(self, replacement: str) -> str:
        return join_nonempty(self.before, replacement, self.after)


def step_view(segments: Sequence[str], kept: Sequence[str], index: int) -> StepView:
    return StepView(
        index=index,
        before="\n\n".join(kept),
        segment=segments[index].strip(),
        after="\n\n".join(s.strip() for s in segments[index + 1 :]),
    )


def planned_steps(segments: Sequence[str], max_steps: int) -> int:
    return min(max_steps, len(segments))


def choose(scores: Sequence[float | None], best: float) -> int | None:
    """The candidate to keep: the lowest score if it is strictly below ``best``; rejected
    candidates (``None``) never win. Ties go to the earlier candidate, as ``argmin`` does."""
    valid = [(s, i) for i, s in enumerate(scores) if s is not None]
    if not valid:
        return None
    s, i = min(valid)
    return i if s < best else None


def done(best: float, stop_score: float) -> bool:
    return best < stop_score


def final_thinking(segments: Sequence[str], kept: Sequence[str]) -> str:
    """The kept segments, then the segments the search never visited, all stripped."""
    return "\n\n".join([*kept, *(s.strip() for s in segments[len(kept) :])])
