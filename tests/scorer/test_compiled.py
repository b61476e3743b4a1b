"""``scorer.compiled`` finds the blocks to compile in the architectures scorers are made of: the
decoder stack (``layers``, or GPT-2's ``h``), every block with weights but the attention."""

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from scorer.compiled import compile_blocks, decoder_layers, is_attention

SMALL = dict(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=512)
CONFIGS = {
    "qwen3": dict(SMALL, head_dim=16),
    "qwen3_moe": dict(SMALL, head_dim=16, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32),
    "phi3": dict(SMALL, pad_token_id=0),  # dropout in its layers
    "gpt2": dict(vocab_size=300, n_embd=64, n_layer=2, n_head=4, n_positions=512),  # layers named h
}


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_every_block_but_attention_is_compiled_and_the_logits_stay(kind):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(kind, **CONFIGS[kind])).eval()
    inputs = [torch.randint(3, 300, shape) for shape in ((1, 37), (3, 21))]
    with torch.inference_mode():
        expected = [model(input_ids=x).logits for x in inputs]
    blocks = compile_blocks(model)
    layers = decoder_layers(model)
    assert len(layers) == 2 and len(blocks) >= 2 * 2  # a norm and an MLP per layer at least
    for layer in layers:
        assert [c for c in layer.children() if c._compiled_call_impl is not None] == [b for b in blocks if b in
                                                                                       list(layer.children())]
        assert sum(is_attention(c) for c in layer.children()) == 1
    kinds = {type(b).__name__ for b in blocks}
    assert any("Norm" in k for k in kinds) and any("MLP" in k or "Moe" in k for k in kinds)
    assert not any("Attention" in k or "Dropout" in k for k in kinds)
    with torch.inference_mode():
        for x, want in zip(inputs, expected):
            assert torch.allclose(model(input_ids=x).logits, want, atol=1e-5)
