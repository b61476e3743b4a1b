"""Prompt texts for the three roles of the REER search, and the chat formats that wrap them.

Templates are plain text files, ``prompts/<lang>/<name>.txt``, with named fields in braces
(``{question}``). Any of them can be overridden by a file of the same relative path under a
user's ``--prompts-dir``. Public surface::

    PromptSet(prompts_dir=None).render("segment_edit", "en", question=..., answer=..., ...)
    render_chat(messages, fmt)             # messages -> one prompt string (completions mode)
"""

from prompts.chat import CHAT_FORMATS, ChatFormat, render_chat
from prompts.templates import (
    PROMPT_NAMES,
    SCORING_PROMPTS,
    PromptError,
    PromptSet,
    Lang,
    detect_lang,
)

__all__ = [
    "CHAT_FORMATS",
    "ChatFormat",
    "Lang",
    "PROMPT_NAMES",
    "SCORING_PROMPTS",
    "PromptError",
    "PromptSet",
    "detect_lang",
    "render_chat",
]
