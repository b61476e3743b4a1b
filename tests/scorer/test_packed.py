"""The packing plan and the arguments of flash attention over packed rows: pure, no model."""

import pytest

from scorer.packed import VARLEN_PARAMS, plan, varlen_arguments

# varlen_attn's keyword parameters in torch releases, oldest first (the positional ones never changed)
CAUSAL_FLAG = frozenset({"is_causal", "return_aux"})
WINDOWED = frozenset({"return_aux", "scale", "window_size", "k_cache", "v_cache", "seqused_k"})
WINDOWED_GQA = frozenset({"return_aux", "scale", "window_size", "enable_gqa", "seqused_k", "block_table", "num_splits"})


def test_a_plan_lays_rows_end_to_end_with_each_rows_past_before_its_new_tokens():
    q, k, slots, positions = plan([(3, 2), (0, 1), (2, 2)])
    assert q == [(0, 2), (2, 3), (3, 5)]
    assert k == [(0, 5), (5, 6), (6, 10)]
    assert slots == [3, 4, 5, 8, 9]  # each new token's key goes after its row's past
    assert positions == [3, 4, 0, 2, 3]


@pytest.mark.parametrize("params, causal", [(CAUSAL_FLAG, {"is_causal": True}), (WINDOWED, {"window_size": (-1, 0)}),
                                            (WINDOWED_GQA, {"window_size": (-1, 0)})])
def test_causal_attention_is_asked_for_as_each_torch_names_it(params, causal):
    got = varlen_arguments(params, 32, 32, 128, 128 ** -0.5)
    assert got is not None and got.items() >= causal.items()


def test_grouped_key_heads_go_through_flash_attention_on_every_torch():
    """Llama/Qwen 8B: 32 query heads, 8 key heads. A torch whose varlen_attn has no
    ``enable_gqa`` (older releases; the lent GPUs' torch 2.11 may be one) must still get the flash
    path, not attention row by row."""
    assert varlen_arguments(WINDOWED_GQA, 32, 8, 128, None)["enable_gqa"] is True
    assert "enable_gqa" not in varlen_arguments(WINDOWED, 32, 8, 128, None)
    assert "enable_gqa" not in varlen_arguments(CAUSAL_FLAG, 32, 8, 128, None)
    assert varlen_arguments(WINDOWED_GQA, 32, 6, 128, None) is None  # heads not in whole groups


def test_a_scale_other_than_the_default_needs_a_torch_that_takes_one():
    scale = 168 ** -0.5  # Gemma 3 27B: query_pre_attn_scalar 168, head_dim 128
    assert varlen_arguments(WINDOWED, 8, 8, 128, scale)["scale"] == scale
    assert varlen_arguments(CAUSAL_FLAG, 8, 8, 128, scale) is None
    assert varlen_arguments(CAUSAL_FLAG, 8, 8, 128, 128 ** -0.5) == {"is_causal": True}
    assert varlen_arguments(frozenset({"return_aux"}), 8, 8, 64, None) is None  # no way to ask for causal


def test_this_torchs_varlen_attn_takes_an_8b_models_attention():
    if not VARLEN_PARAMS:
        pytest.skip("this torch has no torch.nn.attention.varlen")
    assert varlen_arguments(VARLEN_PARAMS, 32, 8, 128, 128 ** -0.5) is not None
