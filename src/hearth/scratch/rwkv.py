"""RWKV from scratch: a language model that trains like a Transformer and decodes like an RNN (Peng et al., 2023, RWKV-4).

Each layer is ``x + TimeMix(LayerNorm(x))`` then ``x + ChannelMix(LayerNorm(x))``; with the paper's names
(B = batch, T = time, C = hidden_size):

Token shift. Every projection reads a per-channel blend of this token and the previous one,
``mix(x_t, x_{t-1}) = μ ⊙ x_t + (1 - μ) ⊙ x_{t-1}``, with learned ``time_mix_k / time_mix_v / time_mix_r`` (μ).

Time-mix (the attention replacement). ``key``, ``value``, ``receptance`` (C → C) make k, v and r; ``time_decay``
(C,) gives w = -exp(time_decay) ≤ 0, how fast each channel forgets, and ``time_first`` (C,) gives u, the
bonus the current token gets. Then per channel

    wkv_t = (Σ_{i<t} e^{(t-1-i)·w + k_i} v_i + e^{u + k_t} v_t) / (Σ_{i<t} e^{(t-1-i)·w + k_i} + e^{u + k_t})
    out_t = output(σ(r_t) ⊙ wkv_t)

an average of past values weighted by a fixed exponential decay and the key: no T×T matrix, and the two
sums are a recurrence ``S_t = e^w · S_{t-1} + e^{k_t} v_t`` (and the same with 1 for the denominator).

Channel-mix (the feed-forward replacement): ``out = σ(receptance(x_r)) ⊙ value(relu(key(x_k))²)``, key: C → ffn,
value: ffn → C.

The recurrent decode carries, per layer, the previous token's input to each mix (for the token shift) and
the two sums with their common exponent (so e^k never overflows): ``forward(..., use_cache=True)`` returns
them as ``.cache`` and a call with ``cache=`` continues from them, a constant cost per token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hearth.scratch.model import LanguageModel, LMOutput, ModelConfig, lm_loss
from hearth.scratch.scan import RecurrentCache, linear_scan


@dataclass
class RWKVState:
    """One layer's recurrent state."""

    time_x: torch.Tensor  # (B, C): the previous token's input to time-mix (token shift)
    num: torch.Tensor  # (B, C): Σ e^{decay + k_i - p} v_i, the numerator sum scaled by e^-p
    den: torch.Tensor  # (B, C): Σ e^{decay + k_i - p}, the denominator sum scaled the same way
    p: torch.Tensor  # (B, C): the common exponent: the true sums are num·e^p and den·e^p
    channel_x: torch.Tensor  # (B, C): the previous token's input to channel-mix


def token_shift(x: torch.Tensor, previous: torch.Tensor | None) -> torch.Tensor:
    """x: (B, T, C) → the input one step earlier at every position; ``previous`` (B, C) fills position 0 (zeros if None)."""
    first = previous.unsqueeze(1) if previous is not None else torch.zeros_like(x[:, :1])
    return torch.cat([first, x[:, :-1]], dim=1)


class TimeMix(nn.Module):
    """RWKV's attention replacement: token shift → k, v, r → the decayed weighted average wkv → output(σ(r) · wkv)."""

    def __init__(self, cfg: ModelConfig, layer_id: int) -> None:
        super().__init__()
        C = cfg.hidden_size
        # The paper's initialisation: lower layers mix more of the previous token, and channels span
        # decay speeds from very slow (w ≈ -e^-5: long memory) to fast (w ≈ -e^3: only the last few tokens).
        ratio_0_to_1 = layer_id / max(1, cfg.num_layers - 1)
        ratio_1_to_0 = 1.0 - layer_id / cfg.num_layers
        position = torch.arange(C, dtype=torch.float32) / C
        speed = torch.arange(C, dtype=torch.float32) / max(1, C - 1)
        self.time_decay = nn.Parameter(-5 + 8 * speed ** (0.7 + 1.3 * ratio_0_to_1))
        zigzag = ((torch.arange(C) + 1) % 3 - 1).float() * 0.5
        self.time_first = nn.Parameter(torch.full((C,), math.log(0.3)) + zigzag)
        self.time_mix_k = nn.Parameter(position**ratio_1_to_0)
        self.time_mix_v = nn.Parameter(position**ratio_1_to_0 + 0.3 * ratio_0_to_1)
        self.time_mix_r = nn.Parameter(position ** (0.5 * ratio_1_to_0))
        self.key = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(C, C, bias=False)
        self.receptance = nn.Linear(C, C, bias=False)
        self.output = nn.Linear(C, C, bias=False)

    def forward(
        self, x: torch.Tensor, state: RWKVState | None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """x: (B, T, C) → (B, T, C), and (last input, num, den, p) for the state."""
        xx = token_shift(x, state.time_x if state is not None else None)
        k = self.key(x * self.time_mix_k + xx * (1 - self.time_mix_k))
        v = self.value(x * self.time_mix_v + xx * (1 - self.time_mix_v))
        r = self.receptance(x * self.time_mix_r + xx * (1 - self.time_mix_r))
        w, u = -torch.exp(self.time_decay), self.time_first

        # Shift every exponent by one per-channel constant p ≥ all of them, so each e^{·} is ≤ 1 (no
        # overflow); numerator and denominator share the shift, so wkv is unchanged. (Chosen from the
        # values, not learned: no gradient through it.)
        p_prev = state.p if state is not None else torch.full_like(x[:, 0], -1e30)
        p = torch.maximum(p_prev, k.detach().amax(dim=1))  # (B, C)
        ek = torch.exp(k - p.unsqueeze(1))  # (B, T, C)
        carry = torch.exp(p_prev - p)  # rescales the carried sums to the new exponent
        num0 = state.num * carry if state is not None else None
        den0 = state.den * carry if state is not None else None
        decay = torch.exp(w)  # (C,): the same factor every step
        num, num_last = linear_scan(decay, ek * v, num0)  # S_t, including token t
        den, den_last = linear_scan(decay, ek, den0)
        # wkv_t reads the sums *before* token t, plus token t with its bonus e^u.
        num_before = token_shift(num, num0)
        den_before = token_shift(den, den0)
        bonus = torch.exp(u) * ek
        wkv = (num_before + bonus * v) / (den_before + bonus).clamp_min(1e-30)
        out = self.output(torch.sigmoid(r) * wkv)
        # Renormalise what is carried: den becomes 1 and its size moves into p, so repeated one-token
        # steps never underflow however long the context grows.
        scale = den_last.clamp_min(1e-30)
        return out, (x[:, -1], num_last / scale, torch.ones_like(scale), p + torch.log(scale))


class ChannelMix(nn.Module):
    """RWKV's feed-forward: token shift → σ(receptance(x_r)) ⊙ value(relu(key(x_k))²)."""

    def __init__(self, cfg: ModelConfig, layer_id: int) -> None:
        super().__init__()
        C = cfg.hidden_size
        ratio_1_to_0 = 1.0 - layer_id / cfg.num_layers
        position = torch.arange(C, dtype=torch.float32) / C
        self.time_mix_k = nn.Parameter(position**ratio_1_to_0)
        self.time_mix_r = nn.Parameter(position**ratio_1_to_0)
        self.key = nn.Linear(C, cfg.ffn_width, bias=False)
        self.value = nn.Linear(cfg.ffn_width, C, bias=False)
        self.receptance = nn.Linear(C, C, bias=False)

    def forward(self, x: torch.Tensor, previous: torch.Tensor | None) -> torch.Tensor:
        xx = token_shift(x, previous)
        k = torch.square(F.relu(self.key(x * self.time_mix_k + xx * (1 - self.time_mix_k))))
        r = torch.sigmoid(self.receptance(x * self.time_mix_r + xx * (1 - self.time_mix_r)))
        return r * self.value(k)


class RWKVLayer(nn.Module):
    """x + time_mix(ln1(x)), then x + channel_mix(ln2(x))."""

    def __init__(self, cfg: ModelConfig, layer_id: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.hidden_size, bias=cfg.bias)
        self.time_mix = TimeMix(cfg, layer_id)
        self.ln2 = nn.LayerNorm(cfg.hidden_size, bias=cfg.bias)
        self.channel_mix = ChannelMix(cfg, layer_id)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, state: RWKVState | None) -> tuple[torch.Tensor, RWKVState]:
        h = self.ln1(x)
        a, (time_x, num, den, p) = self.time_mix(h, state)
        x = x + self.dropout(a)
        h = self.ln2(x)
        x = x + self.dropout(self.channel_mix(h, state.channel_x if state is not None else None))
        new = RWKVState(time_x.detach(), num.detach(), den.detach(), p.detach(), h[:, -1].detach())
        return x, new


class RWKVLanguageModel(LanguageModel):
    """Embeddings → LayerNorm (ln0) → N RWKV layers → LayerNorm → head. No position embeddings."""

    supports_kv_cache = True  # the generation path carries the recurrent state instead of re-reading the context
    recurrent = True  # the state has the same size after any number of tokens: no context limit

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        c = config
        self.token_embedding = nn.Embedding(c.vocab_size, c.hidden_size)
        self.ln0 = nn.LayerNorm(c.hidden_size, bias=c.bias)
        self.layers = nn.ModuleList(RWKVLayer(c, i) for i in range(c.num_layers))
        self.ln_f = nn.LayerNorm(c.hidden_size, bias=c.bias)
        self.head = nn.Linear(c.hidden_size, c.vocab_size, bias=False)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * c.num_layers) if name.endswith(("output.weight", "value.weight")) else 0.02
                nn.init.normal_(p, std=std)
        if c.tie_embeddings:
            self.head.weight = self.token_embedding.weight

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        num_items_in_batch: torch.Tensor | int | None = None,
        cache: RecurrentCache | None = None,
        use_cache: bool = False,
        logits_to_keep: int = 0,
        **_: object,
    ) -> LMOutput:
        """input_ids (B, T) → logits (B, T, vocab); with ``cache``, the tokens continue that state (any length)."""
        x = self.ln0(self.token_embedding(input_ids))
        states = []
        for i, layer in enumerate(self.layers):
            x, s = layer(x, cache.layers[i] if cache is not None else None)
            states.append(s)
        if logits_to_keep:
            x = x[:, -logits_to_keep:]
        logits = self.head(self.ln_f(x))
        loss = lm_loss(logits, labels, num_items_in_batch) if labels is not None else None
        seen = (cache.seen if cache is not None else 0) + input_ids.size(1)
        new_cache = RecurrentCache(states, seen) if use_cache or cache is not None else None
        return LMOutput(logits=logits, loss=loss, cache=new_cache)
