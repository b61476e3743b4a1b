from agents.errors import EndpointError
from agents.generation.endpoint import EndpointInfo, continuation, refusal_message, refused_field

SENT = {"model": "m", "messages": [], "temperature": 0.8, "top_p": 0.85, "max_tokens": 16, "n": 1, "top_k": 40,
        "min_p": 0.05}


def test_the_refused_field_is_the_errors_param_else_one_of_ours_named_in_the_message():
    assert refused_field(EndpointError("x", 400, param="temperature"), SENT) == "temperature"
    assert refused_field(EndpointError("x", 400, param="messages[2].content"), SENT) == "messages"
    assert refused_field(EndpointError("Unrecognized request argument supplied: top_k", 400), SENT) == "top_k"
    assert refused_field(EndpointError("Unrecognized request arguments supplied: add_generation_prompt, "
                                       "continue_final_message", 400), SENT) == "continue_final_message"
    # short or generic names are never guessed from prose
    assert refused_field(EndpointError("This model's maximum context length is 4096 tokens", 400), SENT) is None
    assert refused_field(EndpointError("top_p_extra is unknown", 400), SENT) is None


def test_the_refusal_names_the_flag_that_changes_the_field_or_how_to_leave_it_out():
    msg = refusal_message("http://h/v1", EndpointError("HTTP 400: Unrecognized request argument supplied: top_k", 400),
                          SENT, {})
    assert msg.endswith("the field 'top_k' is refused; change it with --top-k, or leave it out with "
                        "--extra-body '{\"top_k\": null}'")
    msg = refusal_message("http://h/v1", EndpointError("bad min_p", 400), SENT, {"min_p": 0.05})
    assert msg.endswith("the field 'min_p' is refused; leave it out with --extra-body '{\"min_p\": null}'")
    msg = refusal_message("http://h/v1", EndpointError("new turn", 400, param="messages"), SENT, {})
    assert msg.endswith("change it with --chat-prefill off (or --mode completions)")
    assert refusal_message("http://h/v1", EndpointError("no idea", 400), SENT, {}).endswith(
        "check --model, the sampling options and --extra-body")


def test_an_echoed_prefill_is_taken_off_whichever_way_it_comes_back():
    prefill = "<think>\nAlright, the user"
    assert continuation(" wants a poem.", prefill) == " wants a poem."  # vLLM: the continuation alone
    assert continuation(prefill + " wants a poem.", prefill) == " wants a poem."  # llama.cpp: content whole
    assert continuation("Alright, the user wants a poem.", prefill) == " wants a poem."  # reasoning, opener parsed off
    assert continuation("Hello.", "") == "Hello."


def test_the_startup_line_says_how_the_prefill_goes():
    info = EndpointInfo("off", True, "max_completion_tokens", "reasoning", "HTTP 400 ...")
    assert not info.prefills
    assert info.describe() == "NO prefill; n supported; length as max_completion_tokens; thinking read from 'reasoning'"
    assert EndpointInfo("continue", False, "max_tokens", None).describe() == \
        "prefill continued via continue_final_message; n=1 requests in parallel; length as max_tokens"
