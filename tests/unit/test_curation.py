"""The curator's filters: each leaves a record out for one named reason."""

from agents.inspect.curation import Filters, ends_cleanly, repetition

ROW = {"thinking": "I will open with the sea. Then the gulls come.", "lang": "en", "initial_score": 1.5,
       "final_score": 1.2}


def test_repetition_tells_a_loop_from_prose():
    assert repetition("one two three four five six seven eight") == 0.0
    loop = "Alright, the user wants " * 20
    assert repetition(loop) > 0.8 > repetition(ROW["thinking"] * 1)
    assert repetition("落叶铺满小路" * 10) > 0.8 and repetition("落叶铺满小路，风把夏天轻轻收起。") == 0.0


def test_a_clean_ending_is_a_sentences_or_an_outline_items():
    assert ends_cleanly("It ends here.") and ends_cleanly("结尾。") and ends_cleanly("Outline:\n- the sea\n- gulls")
    assert not ends_cleanly("and then the wa") and not ends_cleanly("   ")


def test_each_filter_names_its_reason():
    assert Filters().reason_out(ROW) is None
    cases = [(Filters(max_score=1.0), "final score over 1"),
             (Filters(min_improvement=0.5), "improved by less than 0.5"),
             (Filters(lang="zh"), "language not zh"),
             (Filters(min_thinking_chars=100), "thinking under 100 characters"),
             (Filters(max_thinking_chars=10), "thinking over 10 characters"),
             (Filters(max_repetition=0.5), None),
             (Filters(clean_ending=True), None)]
    for filters, reason in cases:
        assert filters.reason_out(ROW) == reason, filters
    looping = {**ROW, "thinking": "Alright, the user " * 30 + "and then"}
    assert Filters(max_repetition=0.5).reason_out(looping).startswith("thinking repeats itself")
    assert Filters(clean_ending=True).reason_out(looping) == "thinking does not end cleanly"
