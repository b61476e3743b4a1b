"""Text to tokens for scoring, with no model: the scoring text of (question, thinking, answer)
as the reference builds it, its token ids, the scored positions and the paragraph breaks.

One encoder serves every backend: reer's own engine (``scorer.model``) and a vLLM server
scoring through ``prompt_logprobs`` (``scorer.vllm``), so both score the same tokens.
"""

from __future__ import annotations

from pathlib import Path

from prompts import SCORING_PROMPTS, PromptSet, render_chat
from prompts.tags import SYSTEM_PROMPT
from scorer.encoded import Encoded
from scorer.errors import ScoringInputError
from scorer.span import scored_positions, scoring_text, token_starts


def default_chat_format(tokenizer, model_type: str | None) -> str | None:
    """The chat format for a tokenizer: its own template (None) if it has one, else a built-in
    format fitting the model's family."""
    if tokenizer.chat_template:
        return None
    return "gemma" if (model_type or "").startswith("gemma") else "plain"


class Encoder:
    def __init__(self, tokenizer, *, chat_format: str | None = None, prompts_dir: Path | str | None = None,
                 max_context: int | None = None, scoring_prompt: str = "brief", single_segment_answer: str = "whole"):
        """``chat_format``: a built-in format for a tokenizer without a chat template (None: the
        tokenizer's own template). ``max_context``: the longest scoring text in tokens."""
        self.tokenizer = tokenizer
        self.prompts = PromptSet(prompts_dir)
        self.prompt_name = SCORING_PROMPTS[scoring_prompt]
        self.single_segment_answer = single_segment_answer
        self.chat_format = chat_format
        self.max_context = max_context
        # No token stands for more characters than its vocabulary entry has (byte-level and
        # SentencePiece alike), so a text longer than this cannot fit the context whatever it
        # says: refused without tokenizing it, which for a hostile multi-megabyte text costs
        # seconds and gigabytes.
        self.max_token_chars = max(map(len, tokenizer.get_vocab()), default=1)

    @property
    def prompt_id(self) -> str:
        """The scoring prompt's identity (``PromptSet.identity``), as ``/health`` reports it."""
        return self.prompts.identity(self.prompt_name)

    def prompt(self, question: str, lang: str) -> str:
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": self.prompts.render(self.prompt_name, lang, question=question)},
        ]
        if self.chat_format is None:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return (self.tokenizer.bos_token or "") + render_chat(messages, self.chat_format)

    def encode(self, question: str, thinking: str, answer: str, lang: str) -> Encoded:
        st = scoring_text(self.prompt(question, lang), thinking, answer, self.single_segment_answer)
        if self.max_context and len(st.text) > self.max_context * self.max_token_chars:
            raise ScoringInputError(f"scoring text is {len(st.text)} characters: over the scorer's context of "
                                    f"{self.max_context} tokens however it is tokenized")
        # The chat template already holds any BOS, so no special tokens are added here.
        enc = self.tokenizer(st.text, add_special_tokens=False, return_offsets_mapping=True)
        ids = enc["input_ids"]
        if self.max_context and len(ids) > self.max_context:
            raise ScoringInputError(f"scoring text is {len(ids)} tokens, over the scorer's context of {self.max_context}")
        positions = scored_positions(enc["offset_mapping"], st.span)
        if not positions:
            raise ScoringInputError("the answer's scored span holds no tokens")
        return Encoded(ids, positions, token_starts(enc["offset_mapping"], st.breaks))
