import random
from collections import Counter

from agents.generation.prefill import DRAFT_TRIGGERS, draft_prefill, edit_prefill


def test_trigger_phrases_are_drawn_at_the_reference_rates():
    for lang in ("en", "zh"):
        rng = random.Random(0)
        draws = Counter(draft_prefill(lang, rng) for _ in range(20_000))
        for phrase, p in DRAFT_TRIGGERS[lang]:
            assert abs(draws[f"<think>\n{phrase}"] / 20_000 - p) < 0.015, (lang, phrase)
        assert sum(draws.values()) == 20_000 and len(draws) == len(DRAFT_TRIGGERS[lang])


def test_edit_prefills():
    assert edit_prefill("analyze", "Lead.", "Some segment here", "en") == "Lead.\n<analyze>\n"
    assert edit_prefill("refine", "Lead.", "one two three four five six seven", "en") == \
        "Lead.\n<refine>\none two three four five six"
