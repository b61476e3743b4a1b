"""Which finished records go into a dataset: the filters a curator applies, as pure functions.

Each filter names the reason a record is left out, so an export can say how many each one
dropped. The trajectory checks look for what goes wrong with generated thinking: a trace that
stops mid-sentence (cut off at the token limit), a phrase that loops, a trace too short to
teach anything or too long to train on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CLEAN_ENDINGS = tuple('.!?…:;)]}"\'”’»。！？；：）」』')


def repetition(text: str, n: int = 4) -> float:
    """Share of the text's word n-grams that repeat an earlier one: 0 for none, toward 1 for a
    loop. Words for space-separated scripts, characters for Chinese and Japanese."""
    tokens = text.split() if len(text.split()) * 4 > len(text) / 2 else [c for c in text if not c.isspace()]
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def ends_cleanly(text: str) -> bool:
    """The thinking's last line ends as a sentence or an outline item does, not mid-word."""
    last = text.rstrip()
    return bool(last) and (last.endswith(CLEAN_ENDINGS) or last.splitlines()[-1].lstrip().startswith(("-", "*")))


@dataclass(frozen=True)
class Filters:
    max_score: float | None = None  # final score above it: out
    min_improvement: float | None = None  # initial minus final score below it: out
    lang: str | None = None
    min_thinking_chars: int | None = None
    max_thinking_chars: int | None = None
    max_repetition: float | None = None  # repetition() above it: out
    clean_ending: bool = False  # thinking that does not end cleanly: out

    def reason_out(self, row: dict[str, Any]) -> str | None:
        """Why an exported row is left out, or None to keep it."""
        thinking = row["thinking"] or ""
        if self.lang is not None and row["lang"] != self.lang:
            return f"language not {self.lang}"
        if self.max_score is not None and row["final_score"] > self.max_score:
            return f"final score over {self.max_score:g}"
        if self.min_improvement is not None and row["initial_score"] - row["final_score"] < self.min_improvement:
            return f"improved by less than {self.min_improvement:g}"
        if self.min_thinking_chars is not None and len(thinking) < self.min_thinking_chars:
            return f"thinking under {self.min_thinking_chars} characters"
        if self.max_thinking_chars is not None and len(thinking) > self.max_thinking_chars:
            return f"thinking over {self.max_thinking_chars} characters"
        if self.max_repetition is not None and repetition(thinking) > self.max_repetition:
            return f"thinking repeats itself (over {self.max_repetition:g} of its 4-grams)"
        if self.clean_ending and not ends_cleanly(thinking):
            return "thinking does not end cleanly"
        return None
