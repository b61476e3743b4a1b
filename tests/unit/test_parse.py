from agents.generation.parse import merge_reasoning, parse_refine, parse_thinking


def test_thinking_from_a_prefilled_completion_stopped_at_close_tag():
    p = parse_thinking("<think>\nAlright, the user wants a poem.\n\nHmm.", "stop")
    assert p.ok and p.text == "Alright, the user wants a poem.\n\nHmm."


def test_the_first_think_block_is_the_thinking_and_its_closing_tag_ends_it():
    # what follows is the answer, which may show the tags itself
    p = parse_thinking("<think>\nplan\n</think>\nThen <think> blocks open and </think> close.", "stop")
    assert p.text == "plan"
    assert parse_thinking("plan\n</think>\nanswer with <think> in it", "stop").text == "plan"


def test_a_model_left_to_run_on_keeps_only_its_thinking():
    p = parse_thinking("<think>\nAlright, plan.\n\nMore plan.\n</think>\n\nThe poem itself.", "stop")
    assert p.text == "Alright, plan.\n\nMore plan."


def test_an_output_that_closes_without_opening_is_thinking_up_to_the_tag():
    # The opener came from the server's chat template (DeepSeek-R1 / Qwen3 style).
    p = parse_thinking("I need a plan first.\n\nThen a draft.\n</think>\n\nThe answer.", "stop")
    assert p.ok and p.text == "I need a plan first.\n\nThen a draft."


def test_output_without_think_is_rejected():
    p = parse_thinking("Here is the answer.", "stop")
    assert not p.ok and "<think>" in p.reason
    assert not parse_thinking("<think>\n   ", "stop").ok


def test_cut_drafts_are_kept_whole_by_default_as_the_reference_does():
    full = "<think>\nAlright, first paragraph.\n\nSecond one.\n\nAnd a third that was cut mid"
    assert parse_thinking(full, "length").text == full.removeprefix("<think>\n")


def test_cut_drafts_can_be_rejected():
    p = parse_thinking("<think>\nAlright, and then", "length", "reject")
    assert not p.ok and "max_tokens" in p.reason


def test_cut_drafts_can_be_trimmed_to_their_last_complete_paragraph():
    full = "<think>\nAlright, first paragraph.\n\nSecond one.\n\nAnd a third that was cut mid"
    assert parse_thinking(full, "length", "trim").text == "Alright, first paragraph.\n\nSecond one."
    assert parse_thinking("<think>\nAlright, one line\nand cut", "length", "trim").text == "Alright, one line"
    assert not parse_thinking("<think>\nAlright, cut", "length", "trim").ok
    # a draft that did close its block before the limit is kept whole
    assert parse_thinking("<think>\nA\n\nB</think>tail", "length", "trim").text == "A\n\nB"


def test_refine_takes_the_text_after_the_last_open_tag_to_the_last_close_tag():
    out = "<analyze>x <refine>mentioned</refine></analyze>\n<refine>\nThe real one.\n</refine> trailing"
    assert parse_refine(out).text == "The real one."
    # an analysis that quotes the tags does not cut the candidate short
    quoted = "<analyze>it goes in <refine></refine> below</analyze>\n<refine>\nA </refine> B\n</refine> done"
    assert parse_refine(quoted).text == "A </refine> B"


def test_refine_without_end_tag_runs_to_the_end():
    assert parse_refine("Lead.\n<refine>\nOkay, I will open").text == "Okay, I will open"


def test_output_without_refine_is_rejected_not_lost():
    p = parse_refine("<analyze>only analysis</analyze>")
    assert not p.ok and "<refine>" in p.reason


def test_an_empty_refinement_is_a_candidate_unless_strict():
    p = parse_refine("<refine>  </refine>")
    assert p.ok and p.text == ""
    strict = parse_refine("<refine>  </refine>", allow_empty=False)
    assert not strict.ok and "empty" in strict.reason


def test_thinking_returned_apart_is_merged_back_with_its_closing_tag():
    assert merge_reasoning("The answer.", None, "stop") == "The answer."
    merged = merge_reasoning("The answer.", " the user wants a poem.", "stop")
    assert parse_thinking("<think>\nAlright," + merged, "stop").text == "Alright, the user wants a poem."
    # stopped at </think>: nothing but thinking came back
    assert parse_thinking(merge_reasoning("", "Plan.\n\nMore.", "stop"), "stop").text == "Plan.\n\nMore."
    # cut inside the thinking: no closing tag is made up
    assert merge_reasoning("", "Plan and cut", "length") == "Plan and cut"
