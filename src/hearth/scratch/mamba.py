"""Mamba from scratch: a language model built from selective state-space blocks (Gu & Dao, 2023).

Each layer is ``x + Mamba(RMSNorm(x))``; one Mamba block, with the paper's names (B = batch, T = time,
D = d_model = hidden_size, E = expand · D, N = d_state, R = dt_rank):

    in_proj    (D → 2E)     splits into the SSM branch x and the gate z
    conv1d     depthwise causal convolution over time, width d_conv, on x       then SiLU
    x_proj     (E → R + 2N) makes the *input-dependent* Δ (rank R), B and C for every token
    dt_proj    (R → E)      Δ = softplus(dt_proj(Δ_low) + bias): a step size per channel and token
    A_log      (E, N)       A = -exp(A_log): per channel, N decay rates (negative, so the state fades)
    D          (E,)         the skip connection y += D · x
    out_proj   (E → D)      after gating y · SiLU(z)

The selective scan discretises the continuous SSM per token (zero-order hold on A, Euler on B) and runs

    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t x_t        h_t: (B, E, N)
    y_t = h_t · C_t + D ⊙ x_t

Because Δ, B and C depend on the token, the block chooses what to keep and what to forget — the
"selective" in the title, and what a convolution-style SSM (S4) cannot do. The recurrent decode carries
two tensors per layer, the last d_conv - 1 conv inputs and h, so each new token costs the same whatever
the context length: ``forward(..., use_cache=True)`` returns them as ``.cache`` and a call with
``cache=`` steps from them one token at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hearth.scratch.model import LanguageModel, LMOutput, ModelConfig, lm_loss
from hearth.scratch.scan import RecurrentCache


@dataclass
class MambaState:
    """One layer's recurrent state: what the next token needs from all the tokens before it."""

    conv: torch.Tensor  # (B, E, d_conv - 1): the last inputs of the causal convolution
    ssm: torch.Tensor  # (B, E, N): the SSM state h


def selective_scan(
    x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, h: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The SSM over time: x, Δ (B, T, E); A (E, N); B, C (B, T, N); h (B, E, N) or None → y (B, T, E), last h.

    Per token: discretise (exp(Δ A) is how much of h survives, Δ B x is what is written), update h, read
    it out with C. Done one token at a time so the (B, E, N) state stays in the CPU cache: building the
    (B, T, E, N) tensors for all tokens at once is memory-bound and several times slower (what the paper's
    fused "hardware-aware" kernel avoids on GPUs)."""
    if h is None:
        h = x.new_zeros(x.size(0), x.size(2), A.size(1))
    ys = []
    for x_t, dt_t, B_t, C_t in zip(x.unbind(1), dt.unbind(1), B.unbind(1), C.unbind(1), strict=True):
        h = torch.exp(dt_t.unsqueeze(-1) * A) * h + (dt_t * x_t).unsqueeze(-1) * B_t.unsqueeze(1)
        ys.append(torch.bmm(h, C_t.unsqueeze(-1)).squeeze(-1))
    return torch.stack(ys, dim=1), h


class MambaBlock(nn.Module):
    """The selective SSM mixer: in_proj → conv1d → SiLU → selective scan (Δ, B, C from x_proj) → gate → out_proj."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        D, E, N = cfg.hidden_size, cfg.expand * cfg.hidden_size, cfg.d_state
        self.d_inner, self.d_state, self.d_conv = E, N, cfg.d_conv
        self.dt_rank = math.ceil(D / 16)  # the paper's default: Δ is made through a rank-D/16 bottleneck
        self.in_proj = nn.Linear(D, 2 * E, bias=False)
        # groups=E: one small filter per channel (depthwise), padded on the left only so it is causal.
        self.conv1d = nn.Conv1d(E, E, cfg.d_conv, groups=E, bias=True)
        self.x_proj = nn.Linear(E, self.dt_rank + 2 * N, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, E, bias=True)
        # S4D-real initialisation: A_n = -(n + 1), the same N decay rates in every channel.
        self.A_log = nn.Parameter(torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(E, 1))
        self.D = nn.Parameter(torch.ones(E))
        self.out_proj = nn.Linear(E, D, bias=False)
        self.dropout = nn.Dropout(cfg.dropout)
        # Start Δ log-uniform in [0.001, 0.1] (the paper's range): softplus(bias) = Δ, so bias = Δ + log(1 - e^-Δ).
        dt = torch.exp(torch.rand(E) * (math.log(0.1) - math.log(0.001)) + math.log(0.001))
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        nn.init.uniform_(self.dt_proj.weight, -(self.dt_rank**-0.5), self.dt_rank**-0.5)

    def _ssm_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: (B, T, E) → the input-dependent Δ (B, T, E), B (B, T, N) and C (B, T, N)."""
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        return F.softplus(self.dt_proj(dt)), B, C

    def forward(self, u: torch.Tensor, state: MambaState | None = None) -> tuple[torch.Tensor, MambaState]:
        """u: (B, T, D) → (B, T, D), and the state after the last token. With ``state``, continue from it."""
        batch = u.size(0)
        x, z = self.in_proj(u).chunk(2, dim=-1)  # (B, T, E) each
        x = x.transpose(1, 2)  # Conv1d wants (B, E, T)
        past = state.conv if state is not None else x.new_zeros(batch, self.d_inner, self.d_conv - 1)
        window = torch.cat([past, x], dim=-1)  # the zeros (or the remembered inputs) make the conv causal
        x = F.silu(self.conv1d(window)).transpose(1, 2)  # (B, T, E)
        dt, B, C = self._ssm_inputs(x)
        y, last = selective_scan(x, dt, -torch.exp(self.A_log), B, C, state.ssm if state is not None else None)
        y = y + self.D * x  # D skips the SSM
        y = y * F.silu(z)  # the gate
        new_state = MambaState(conv=window[:, :, -(self.d_conv - 1) :].detach(), ssm=last.detach())
        return self.dropout(self.out_proj(y)), new_state


class MambaLayer(nn.Module):
    """Pre-norm residual: x + mixer(norm(x)). (Mamba has no separate MLP: the gated block is both.)"""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(cfg.hidden_size)
        self.mixer = MambaBlock(cfg)

    def forward(self, x: torch.Tensor, state: MambaState | None) -> tuple[torch.Tensor, MambaState]:
        y, state = self.mixer(self.norm(x), state)
        return x + y, state


class MambaLanguageModel(LanguageModel):
    """Embeddings → N Mamba layers → RMSNorm → head. No position embeddings: the recurrence orders tokens."""

    supports_kv_cache = True  # the generation path carries the recurrent state instead of re-reading the context
    recurrent = True  # the state has the same size after any number of tokens: no context limit

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        c = config
        self.token_embedding = nn.Embedding(c.vocab_size, c.hidden_size)
        self.dropout = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList(MambaLayer(c) for _ in range(c.num_layers))
        self.norm_f = nn.RMSNorm(c.hidden_size)
        self.head = nn.Linear(c.hidden_size, c.vocab_size, bias=False)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.head.weight, std=0.02)
        if c.tie_embeddings:
            self.head.weight = self.token_embedding.weight
        # As GPT-2: shrink what writes into the residual stream, so its variance stays ~1 with depth.
        for layer in self.layers:
            nn.init.normal_(layer.mixer.out_proj.weight, std=0.02 / math.sqrt(2 * c.num_layers))

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
        """input_ids (B, T) → logits (B, T, vocab); with ``cache``, the tokens continue that state.

        No length check: without position embeddings the model reads any length (block_size is only the
        training window)."""
        x = self.dropout(self.token_embedding(input_ids))
        states = []
        for i, layer in enumerate(self.layers):
            x, s = layer(x, cache.layers[i] if cache is not None else None)
            states.append(s)
        if logits_to_keep:
            x = x[:, -logits_to_keep:]  # generation only needs the last position's scores
        logits = self.head(self.norm_f(x))
        loss = lm_loss(logits, labels, num_items_in_batch) if labels is not None else None
        seen = (cache.seen if cache is not None else 0) + input_ids.size(1)
        new_cache = RecurrentCache(states, seen) if use_cache or cache is not None else None
        return LMOutput(logits=logits, loss=loss, cache=new_cache)
