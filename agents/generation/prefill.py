"""Assistant-turn prefills: how the reference steers the generator (completions mode).

A draft starts with ``<think>\\n`` and a trigger phrase drawn at the reference's rates. An edit
starts with a one-line lead-in and ``<analyze>`` (instruct models), or, for base models that
cannot follow the three-step instruction, goes straight to ``<refine>`` with the segment's first
words, so the model only has to continue the passage.
"""

from __future__ import annotations

import random

from agents.config import EditPrefill
from prompts.tags import ANALYZE_OPEN, REFINE_OPEN, THINK_OPEN

# (phrase, probability), reference section 2.
DRAFT_TRIGGERS: dict[str, list[tuple[str, float]]] = {
    "en": [("Okay, I am given", 0.2), ("Alright, the user", 0.48), ("Alright", 0.32)],
    "zh": [("好的", 0.5), ("嗯", 0.5)],
}
EDIT_FIRST_WORDS = 6  # words of the segment carried into a "refine" prefill (CJK: characters x2)


def draft_prefill(lang: str, rng: random.Random) -> str:
    phrases, weights = zip(*DRAFT_TRIGGERS.get(lang, DRAFT_TRIGGERS["en"]))
    return f"{THINK_OPEN}\n" + rng.choices(phrases, weights=weights)[0]


def first_words(segment: str, lang: str, n: int = EDIT_FIRST_WORDS) -> str:
    text = segment.strip()
    if lang == "zh":
        return text[: 2 * n]
    return " ".join(text.split(" ")[:n])


def edit_prefill(mode: EditPrefill, lead_in: str, segment: str, lang: str) -> str:
    if mode == "refine":
        return f"{lead_in}\n{REFINE_OPEN}\n{first_words(segment, lang)}"
    return f"{lead_in}\n{ANALYZE_OPEN}\n"
