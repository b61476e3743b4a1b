from agents.parse import parse_refine, parse_thinking


def test_thinking_from_a_prefilled_completion_stopped_at_close_tag():
    p = parse_thinking("<think>\nAlright, the user wants a poem.\n\nHmm.", "stop")
    assert p.ok and p.text == "Alright, the user wants a poem.\n\nHmm."


def test_last_think_block_wins_and_closing_tag_ends_it():
    p = parse_thinking("<think>old</think> text <think>\nnew thoughts\n</think>\nanswer", "stop")
    assert p.text == "new thoughts"


def test_cut_off_draft_is_rejected_with_a_reason():
    p = parse_thinking("<think>\nAlright, and then", "length")
    assert not p.ok and "max_tokens" in p.reason


def test_output_without_think_is_rejected():
    p = parse_thinking("Here is the answer.", "stop")
    assert not p.ok and "<think>" in p.reason
    assert not parse_thinking("<think>\n   ", "stop").ok


def test_refine_takes_the_last_block_to_its_end_tag():
    out = "<analyze>x <refine>mentioned</refine></analyze>\n<refine>\nThe real one.\n</refine> trailing"
    assert parse_refine(out).text == "The real one."


def test_refine_without_end_tag_runs_to_the_end():
    assert parse_refine("Lead.\n<refine>\nOkay, I will open").text == "Okay, I will open"


def test_output_without_refine_is_rejected_not_lost():
    p = parse_refine("<analyze>only analysis</analyze>")
    assert not p.ok and "<refine>" in p.reason
    assert not parse_refine("<refine>  </refine>").ok


def test_cut_off_draft_can_be_kept_up_to_its_last_complete_paragraph():
    full = "<think>\nAlright, first paragraph.\n\nSecond one.\n\nAnd a third that was cut mid"
    p = parse_thinking(full, "length", accept_cut=True)
    assert p.text == "Alright, first paragraph.\n\nSecond one."
    assert parse_thinking("<think>\nAlright, one line\nand cut", "length", accept_cut=True).text == "Alright, one line"
    assert not parse_thinking("<think>\nAlright, cut", "length", accept_cut=True).ok
    # a draft that did close its block before the limit is kept whole
    assert parse_thinking("<think>\nA\n\nB</think>tail", "length", accept_cut=True).text == "A\n\nB"
