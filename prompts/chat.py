"""Chat formats: turning a list of messages into one prompt string.

Used where reer must build the prompt text itself: the generator's ``completions`` mode (so the
assistant turn can be prefilled, as the reference does) and the scorer, for models whose
tokenizer carries no chat template (e.g. the Gemma 3 GGUF). A tokenizer's own template always
wins when there is one; these are the fallbacks, named so users can pick one.

The formats write no BOS token: a server adds its own when it tokenizes a prompt (llama.cpp,
vLLM), and the scorer prepends its tokenizer's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

Message = Mapping[str, str]


@dataclass(frozen=True)
class ChatFormat:
    """How one family of models writes its turns."""

    name: str
    render: Callable[[Sequence[Message]], str]  # messages -> text ending with the open assistant turn


def _gemma(messages: Sequence[Message]) -> str:
    # Gemma has no system role: its official template prepends the system text to the first
    # user turn, separated by a blank line.
    out, system = [], ""
    for m in messages:
        if m["role"] == "system":
            system = m["content"]
            continue
        role = "model" if m["role"] == "assistant" else "user"
        content = m["content"]
        if system and role == "user":
            content, system = f"{system}\n\n{content}", ""
        out.append(f"<start_of_turn>{role}\n{content}<end_of_turn>\n")
    out.append("<start_of_turn>model\n")
    return "".join(out)


def _chatml(messages: Sequence[Message]) -> str:
    turns = [f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages]
    return "".join(turns) + "<|im_start|>assistant\n"


def _plain(messages: Sequence[Message]) -> str:
    # For models with no chat training at all: role-labelled paragraphs.
    turns = [f"{m['role'].capitalize()}: {m['content']}\n\n" for m in messages]
    return "".join(turns) + "Assistant: "


CHAT_FORMATS: dict[str, ChatFormat] = {
    f.name: f for f in (ChatFormat("gemma", _gemma), ChatFormat("chatml", _chatml), ChatFormat("plain", _plain))
}


def render_chat(messages: Sequence[Message], fmt: str) -> str:
    try:
        return CHAT_FORMATS[fmt].render(messages)
    except KeyError:
        raise ValueError(f"unknown chat format {fmt!r}; known: {', '.join(CHAT_FORMATS)}") from None
