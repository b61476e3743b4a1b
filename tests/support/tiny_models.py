"""Tiny random causal LMs with an offline byte-level BPE tokenizer, built in a second or two.

No weights in the repo and no hub: the tokenizer is trained on the fly with ``tokenizers``,
the model is initialised from a small config (seeded), and both are saved to a folder that the
scorer process loads like any other model.
"""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "The sea at dawn is a held breath,\nsilver on silver, waiting.\n\nThen the gulls come, and the boats, "
    "and the long day opens like a door.",
    "Alright, the user wants a short poem about the sea.\n\nHmm, maybe I should open with the dawn light.",
    "Okay, I am given a writing task. Hmm, maybe I should start with the reader. Wait, let me think.",
    "The story opens at dawn; the lighthouse keeper counts the ships. Alternatively, begin at night.",
    "\\[ E = mc^2 \\] and the answer is forty-two.\n\nA poem about the sea, in four short lines.",
    "<think>\n</think>\n<answer>\n</answer>\n<refine></refine><analyze></analyze>",
    "写一首关于秋天的诗。好的，我先想想读者是谁。嗯，也许应该从落叶开始。",
    "You are a helpful assistant. Think the task through step by step before you answer.",
]
SPECIAL = ["<pad>", "<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>", "<|im_start|>", "<|im_end|>"]
CHATML_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tokenizer(vocab_size: int = 600):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")


def build_model(kind: str, vocab_size: int, seed: int = 0):
    import torch
    from transformers import AutoModelForCausalLM, Gemma3TextConfig, LlamaConfig

    torch.manual_seed(seed)
    if kind == "llama":
        cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                          bos_token_id=1, eos_token_id=2, pad_token_id=0)
    elif kind == "gemma3":
        # A small sliding window so that test texts cross it; two sliding layers then one full.
        cfg = Gemma3TextConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                               num_attention_heads=4, num_key_value_heads=1, head_dim=16, sliding_window=16,
                               layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                               max_position_embeddings=4096, final_logit_softcapping=30.0,
                               bos_token_id=1, eos_token_id=2, pad_token_id=0)
    else:
        raise ValueError(kind)
    cfg._attn_implementation = "sdpa"
    return AutoModelForCausalLM.from_config(cfg).eval()


def train_briefly(model, tok, steps: int = 300, seed: int = 0) -> None:
    """A few optimizer steps on the corpus, so that the model predicts some tokens well.

    A random model gives every token log-prob ~ -log(vocab) < -2, which the clip turns into a
    constant score of 2.0: the scores would not move and the tests could not fail.
    """
    import torch

    torch.manual_seed(seed)
    ids = [torch.tensor([tok.bos_token_id] + tok(t, add_special_tokens=False)["input_ids"]) for t in CORPUS]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for step in range(steps):
        x = ids[step % len(ids)][None]
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()


def save_tiny(kind: str, path: Path) -> Path:
    """A loadable folder: ``from_pretrained(path)`` gives the model and its tokenizer."""
    tok = build_tokenizer()
    if kind == "llama":
        tok.chat_template = CHATML_TEMPLATE  # gemma3 keeps none: the scorer's fallback is tested
    model = build_model(kind, len(tok))
    train_briefly(model, tok)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
