import pytest

from prompts import PROMPT_NAMES, PromptError, PromptSet, detect_lang, render_chat


def test_every_prompt_exists_in_both_languages_and_renders():
    ps = PromptSet()
    for name, fields in PROMPT_NAMES.items():
        for lang in ("en", "zh"):
            text = ps.render(name, lang, **{f: f"<<{f}>>" for f in fields})
            for f in fields:
                assert f"<<{f}>>" in text


def test_braces_in_values_are_not_interpreted():
    text = PromptSet().render("standard_inference", "en", question="f(x) = {y} and {answer}")
    assert "f(x) = {y} and {answer}" in text


def test_override_dir_wins_and_must_keep_fields(tmp_path):
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "standard_inference.txt").write_text("Q: {question}")
    assert PromptSet(tmp_path).render("standard_inference", "en", question="hi") == "Q: hi"
    (tmp_path / "en" / "initial_thinking.txt").write_text("no fields")
    with pytest.raises(PromptError, match="answer"):
        PromptSet(tmp_path).template("initial_thinking", "en")


def test_language_detection_follows_cjk_ideographs():
    assert detect_lang("写一首诗") == "zh"
    assert detect_lang("Write a poem. ありがとう") == "en"  # kana alone is not CJK unified


def test_gemma_format_merges_system_into_first_user_turn():
    text = render_chat([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}], "gemma")
    assert text == "<start_of_turn>user\nS\n\nU<end_of_turn>\n<start_of_turn>model\n"
    with pytest.raises(ValueError):
        render_chat([], "nope")


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "nope", "does not exist"),
    (lambda d: (d / "file.txt").write_text("x") and d / "file.txt", "is not a directory"),
    (lambda d: (d / "en").mkdir() or (d / "en" / "other.txt").write_text("x") and d, "holds no prompt file"),
    (lambda d: (d / "en").mkdir() or (d / "en" / "standard_inference.txt").write_bytes(b"\xff{question}") and d,
     r"is not UTF-8 \(byte 0\)"),
    (lambda d: (d / "zh").mkdir() or (d / "zh" / "segment_edit.txt").write_text("{question}") and d,
     r"must use the field\(s\)"),
])
def test_a_prompts_dir_that_would_change_nothing_or_cannot_be_read_is_refused_at_once(tmp_path, make, message):
    with pytest.raises(PromptError, match=message):
        PromptSet(make(tmp_path))
