from agents.search import decisions as search

SEGS = ["First part.", "\n\nSecond part.", "\n\nThird part.", "\n\nFourth."]


def test_step_view_uses_kept_text_before_and_stripped_segments_after():
    v = search.step_view(SEGS, ["First, rewritten."], 1)
    assert v.before == "First, rewritten."
    assert v.segment == "Second part."
    assert v.after == "Third part.\n\nFourth."
    assert v.thinking_with("NEW") == "First, rewritten.\n\nNEW\n\nThird part.\n\nFourth."


def test_first_and_last_step_join_without_empty_parts():
    assert search.step_view(SEGS, [], 0).thinking_with("N") == "N\n\nSecond part.\n\nThird part.\n\nFourth."
    v = search.step_view(SEGS, ["a", "b", "c"], 3)
    assert v.thinking_with("N") == "a\n\nb\n\nc\n\nN"


def test_choose_takes_the_lowest_only_if_strictly_better():
    assert search.choose([0.9, 0.7], best=0.8) == 1
    assert search.choose([0.9, 0.85], best=0.8) is None
    assert search.choose([0.8], best=0.8) is None  # equal is not better


def test_choose_ignores_rejected_candidates_and_ties_go_first():
    assert search.choose([None, 0.5], best=1.0) == 1
    assert search.choose([None, None], best=1.0) is None
    assert search.choose([0.5, 0.5], best=1.0) == 0


def test_planned_steps_and_stop():
    assert search.planned_steps(SEGS, 10) == 4
    assert search.planned_steps(SEGS, 2) == 2
    assert search.done(0.2, 0.25) and not search.done(0.25, 0.25)


def test_final_thinking_appends_unvisited_segments_stripped():
    assert search.final_thinking(SEGS, ["A", "B"]) == "A\n\nB\n\nThird part.\n\nFourth."
