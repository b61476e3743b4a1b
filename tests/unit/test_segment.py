import random

import pytest

from prompts.segment import MIN_SEGMENT_CHARS, join_nonempty, segment_text

LONG = "x" * MIN_SEGMENT_CHARS


def test_partition_property_on_random_texts():
    rng = random.Random(0)
    alphabet = ["a", "b ", "\n", "\n\n", "  ", "\\[", "\\]", "word " * 30, "中文", "\t"]
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        segs = segment_text(text)
        assert "".join(segs) == text
        assert all(segs)


def test_blank_lines_split_and_separators_go_to_the_next_segment():
    text = f"{LONG}A\n\n{LONG}B\n\n  \n{LONG}C"
    assert segment_text(text) == [f"{LONG}A", f"\n\n{LONG}B", f"\n\n  \n{LONG}C"]


def test_short_pieces_are_held_for_the_next_long_one():
    text = f"Short intro.\n\n{LONG}B\n\nTiny.\n\n{LONG}D"
    assert segment_text(text) == [f"Short intro.\n\n{LONG}B", f"\n\nTiny.\n\n{LONG}D"]


def test_trailing_short_pieces_join_the_last_segment():
    text = f"{LONG}A\n\n{LONG}B\n\nThe end."
    assert segment_text(text) == [f"{LONG}A", f"\n\n{LONG}B\n\nThe end."]


def test_never_splits_inside_a_latex_display_block():
    block = "\\[\n" + "a + b" * 30 + "\n\n" + "= c" * 40 + "\n\\]"
    text = f"{LONG}A\n\n{block}\n\n{LONG}C"
    segs = segment_text(text)
    assert "".join(segs) == text
    assert any(block in s for s in segs)
    assert len(segs) == 3


def test_an_unclosed_latex_block_keeps_everything_after_it_in_one_piece():
    text = f"{LONG}A\n\n\\[ x + y\n\n{LONG}B\n\n{LONG}C"
    segs = segment_text(text)
    assert segs == [f"{LONG}A", f"\n\n\\[ x + y\n\n{LONG}B\n\n{LONG}C"]
    # a closed block before it still splits as usual
    closed = f"\\[ a \\]{LONG}A\n\n{LONG}B\n\n\\[ open {LONG}\n\n{LONG}C"
    assert segment_text(closed) == [f"\\[ a \\]{LONG}A", f"\n\n{LONG}B", f"\n\n\\[ open {LONG}\n\n{LONG}C"]


def test_falls_back_to_single_newlines():
    text = f"{LONG}A\n{LONG}B\n{LONG}C"
    assert segment_text(text) == [f"{LONG}A", f"\n{LONG}B", f"\n{LONG}C"]


@pytest.mark.parametrize("text", ["", "short", "   \n\n  "])
def test_short_or_empty_texts_give_one_segment_or_none(text):
    segs = segment_text(text)
    assert len(segs) <= 1 and "".join(segs) == text


def test_join_nonempty_skips_empty_parts():
    assert join_nonempty("a", "", "b") == "a\n\nb"
    assert join_nonempty("", "c", "") == "c"
