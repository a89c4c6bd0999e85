"""QLoRA's 4-bit base without CUDA: the frozen linear layers stored as torchao's NF4 tensors.

bitsandbytes' 4-bit layers have no backward pass on CPU, so on a host without CUDA Hearth quantizes the
base itself with torchao's ``NF4Tensor`` (what torchtune's QLoRA uses): each weight becomes 4-bit
NormalFloat codes with one scale per block of 64 values and double-quantized scales, and ``linear_nf4``
dequantizes on the fly in the forward pass and gives the input its gradient in the backward pass. The
weights never get gradients themselves; LoRA trains beside them as usual.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

BLOCK = 64  # values per NF4 scale, as in the QLoRA paper
SKIP = ("lm_head",)  # the output head stays in 16 bits (it is tied to the embeddings in small models)


def _nf4_module() -> Any:
    """torchao's NF4 module (its import warnings are silenced in ``hearth/__init__.py``)."""
    from torchao.quantization.quantize_.workflows.nf4 import nf4_tensor

    return nf4_tensor


class FrozenNF4Linear(nn.Linear):
    """A linear layer whose weight is a frozen ``NF4Tensor`` (its bias, if any, stays in 16 bits)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = _nf4_module().linear_nf4(x, self.weight)
        return out if self.bias is None else out + self.bias


def to_nf4(weight: torch.Tensor) -> Any:
    scalers = weight.numel() // BLOCK
    # torchao double-quantizes the scales in groups that must divide their count (256 by default);
    # SmolLM2's 576-wide layers give 5,184 scales, so take the largest group up to 256 that divides it.
    group = max(d for d in range(1, 257) if scalers % d == 0)
    return _nf4_module().to_nf4(weight.to(torch.bfloat16), BLOCK, group)


def quantize(model: nn.Module) -> int:
    """Replace the model's linear layers (all but the head) by NF4 ones, in place; returns how many."""
    count = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is not nn.Linear or name in SKIP:
                continue
            if child.weight.numel() % BLOCK:
                continue  # not a whole number of blocks: stays in 16 bits
            layer = FrozenNF4Linear(child.in_features, child.out_features, bias=False, device="meta")
            layer.weight = nn.Parameter(to_nf4(child.weight.data), requires_grad=False)
            if child.bias is not None:
                layer.bias = nn.Parameter(child.bias.data.to(torch.bfloat16), requires_grad=False)
            setattr(module, name, layer)
            count += 1
    return count


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torchao") is not None
