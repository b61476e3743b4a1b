from scorer.span import assistant_turn, scored_positions, scoring_text, token_starts

LONG = "y" * 120


def test_scored_span_is_the_answer_after_its_first_segment():
    answer = f"{LONG}first\n\n{LONG}second"
    st = scoring_text("PROMPT", "thinking", answer)
    assert st.text == "PROMPT<think>\nthinking\n</think>\n<answer>\n" + answer + "\n</answer>"
    assert st.text[st.span[0] : st.span[1]] == f"\n\n{LONG}second"


def test_one_segment_answer_is_scored_whole():
    st = scoring_text("P", "t", "just one line")
    assert st.text[st.span[0] : st.span[1]] == "just one line"


def test_one_segment_answer_as_the_reference_scores_the_newline_before_the_closing_tag():
    st = scoring_text("P", "t", "just one line", single_segment="reference")
    assert st.text[st.span[0] : st.span[1]] == "\n"
    assert st.text[st.span[1]:] == "</answer>"
    # answers of several segments are the same either way
    answer = f"{LONG}first\n\n{LONG}second"
    assert scoring_text("P", "t", answer, "reference") == scoring_text("P", "t", answer)


def test_answer_with_tags_inside_does_not_move_the_span():
    answer = f"{LONG} </think> <refine>\n\n{LONG} </answer>"
    st = scoring_text("P", "t", answer)
    _, at = assistant_turn("t", answer)
    assert st.span[1] == len("P") + at + len(answer)


def test_tokens_overlapping_the_span_are_scored():
    offsets = [(0, 0), (0, 3), (3, 5), (5, 9), (9, 12), (12, 12)]
    assert scored_positions(offsets, (4, 10)) == [2, 3, 4]  # (3,5) straddles the start
    assert scored_positions(offsets, (0, 3)) == [1]  # position 0 is never scored


def test_breaks_mark_the_thinking_and_each_paragraph():
    st = scoring_text("P", "one\n\ntwo\n\n\nthree", "answer")
    assert [st.text[b:b + 3] for b in st.breaks] == ["one", "two", "thr"]


def test_token_starts_take_the_first_token_at_or_after_each_break():
    offsets = [(0, 2), (2, 4), (4, 7), (7, 9)]
    assert token_starts(offsets, [0, 4, 5, 9]) == (0, 2, 3)  # 5 falls inside token 2; 9 is past the end
