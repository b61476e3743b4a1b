"""The score of a row: the clipped mean negative log-likelihood of its scored tokens.

    lse[c]   = logsumexp(logits[c])                   over the vocabulary, in fp32 chunks
    nll[c]   = min(lse[c] - logits[c][target[c]], 2)  = -clip(logprob, -2, 0)
    score    = mean over the valid columns c of nll[c]
"""

from __future__ import annotations

import torch

NLL_CLIP = 2.0  # reference: logprobs are clipped to [-2, 0]
LSE_CHUNK_BYTES = 256 << 20  # fp32 logits upcast at a time for the log-sum-exp


def clipped_nll(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B, K, vocab) logits, (B, K) targets and validity -> (B,) scores; stays on the device."""
    B, K, V = logits.shape
    flat = logits.reshape(B * K, V)
    step = max(1, LSE_CHUNK_BYTES // (V * 4))
    lse = torch.cat([torch.logsumexp(flat[i : i + step].float(), dim=-1) for i in range(0, B * K, step)])
    picked = flat.gather(-1, targets.reshape(-1, 1))[:, 0].float()
    nll = (lse - picked).clamp(max=NLL_CLIP).reshape(B, K)
    return torch.where(valid, nll, 0.0).sum(-1) / valid.sum(-1)  # padding columns may hold NaN
