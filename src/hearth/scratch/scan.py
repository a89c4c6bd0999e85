"""The linear recurrence under Mamba and RWKV: ``h_t = a_t · h_{t-1} + b_t``, run left to right.

Both models reduce their sequence mixing to this one elementwise recurrence (Mamba: a = exp(Δ·A),
b = Δ·B·x; RWKV: a = the per-channel decay, b = exp(k)·v). A sequential loop over time is the plainest
correct form on a CPU: the work per step is a couple of elementwise ops on (batch, …) tensors, and the
same arithmetic *is* the O(1)-per-token recurrent decode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


def linear_scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Every state ``h_t = a_t * h_{t-1} + b_t`` for t = 0 … T-1, and the last one.

    a: (B, T, …) or broadcastable to ``b`` (a per-channel constant decay is fine).
    b: (B, T, …).   h0: (B, …) the state before the first token (zeros when None).
    Returns (h of shape (B, T, …), h_{T-1} of shape (B, …)).
    """
    h = torch.zeros_like(b[:, 0]) if h0 is None else h0
    # unbind, not a[:, t]: indexing's backward writes a full-size zero gradient per step (T² memory traffic).
    steps_a = a.expand_as(b).unbind(1)
    states = []
    for a_t, b_t in zip(steps_a, b.unbind(1), strict=True):
        h = a_t * h + b_t
        states.append(h)
    return torch.stack(states, dim=1), h


@dataclass
class RecurrentCache:
    """The state of every layer after the tokens read so far (``LMOutput.cache`` of Mamba and RWKV)."""

    layers: list[Any]  # one state object per layer (its tensors are what is carried)
    seen: int = 0  # tokens read so far

    def get_seq_length(self) -> int:
        return self.seen

    def nbytes(self) -> int:
        """Bytes of state carried from one token to the next (the same for every context length)."""
        total = 0
        for layer in self.layers:
            for value in vars(layer).values():
                if torch.is_tensor(value):
                    total += value.numel() * value.element_size()
        return total
