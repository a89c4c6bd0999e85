"""The from-scratch language models: a decoder-only Transformer, and the LSTM and CNN it is compared with.

(Mamba and RWKV, the post-Transformer pair, live in ``mamba.py`` and ``rwkv.py`` and build on the classes here.)

One readable file in the spirit of nanoGPT. The Transformer's parameters carry the names a learner meets
in the textbook: ``token_embedding``, ``position_embedding``, per layer ``attn.Wq/Wk/Wv/Wo`` (multi-head
causal self-attention) and ``ffn.W1/W2`` (the feed-forward network), ``ln1/ln2`` (LayerNorm), ``ln_f`` and
``head`` (the output layer that scores every vocabulary token).

All five models follow Hugging Face's calling convention so the one training loop and the one generation
path serve them unchanged: ``model(input_ids, labels=None, attention_mask=None)`` returns an object with
``.logits`` (batch, time, vocab) and ``.loss`` (mean cross-entropy of predicting token t+1 from tokens ≤ t;
labels equal to -100 are ignored), and ``model.config.block_size`` is the longest context it can read.
The recurrent ones (LSTM, Mamba, RWKV) also take ``use_cache=True`` / ``cache=``: the output's ``.cache`` is
their state after the last token, and a call with it continues from there at a constant cost per token;
their ``recurrent = True`` tells the generation path that they have no context limit (block_size is only
their training window), so they generate past it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from hearth.config import Section
from hearth.errors import ConfigError

IGNORE_INDEX = -100  # labels with this value add nothing to the loss (Hugging Face's convention)

# Every architecture (model.arch) and what it is, in a line.
ARCH_NAMES = {
    "transformer": "attention over the whole context",
    "lstm": "a gated recurrent network",
    "cnn": "dilated causal convolutions",
    "mamba": "a selective state-space model",
    "rwkv": "a linear-attention RNN with learned decay",
}


class ModelConfig(Section):
    """The ``model:`` section of a from-scratch recipe."""

    arch: Literal["transformer", "lstm", "cnn", "mamba", "rwkv"] = Field(
        "transformer", description="which network: " + ", ".join(ARCH_NAMES) + " (same loop, same data)"
    )
    vocab_size: int = Field(0, ge=0, description="number of tokens; 0 = take it from the trained tokenizer")
    block_size: int = Field(128, ge=2, description="context length: the most tokens the model reads at once")
    num_layers: int = Field(
        4, ge=1, description="number of stacked layers (Transformer blocks, LSTM layers or conv layers)"
    )
    hidden_size: int = Field(128, ge=1, description="width of every token's vector (the embedding size)")
    num_heads: int = Field(
        4, ge=1, description="attention heads per layer (transformer); hidden_size must divide by it"
    )
    ffn_size: int = Field(0, ge=0, description="inner width of the feed-forward network; 0 = 4 × hidden_size")
    dropout: float = Field(
        0.1, ge=0.0, lt=1.0, description="fraction of activations zeroed in training (regularisation)"
    )
    bias: bool = Field(True, description="give linear layers and LayerNorms a bias term")
    tie_embeddings: bool = Field(
        False, description="share the token embedding matrix with the output head (fewer parameters)"
    )
    kernel_size: int = Field(
        3, ge=2, description="cnn only: width of each causal convolution (dilation doubles per layer)"
    )
    d_state: int = Field(16, ge=1, description="mamba only: N, the size of each channel's SSM state")
    d_conv: int = Field(4, ge=2, description="mamba only: width of the depthwise causal convolution before the SSM")
    expand: int = Field(2, ge=1, description="mamba only: the block works at expand × hidden_size channels")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ModelConfig:
        if self.arch == "transformer" and self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        return self

    @property
    def ffn_width(self) -> int:
        return self.ffn_size or 4 * self.hidden_size


@dataclass
class LMOutput:
    """What a forward pass returns (the fields Hugging Face's ``CausalLMOutput`` has, and no more)."""

    logits: torch.Tensor
    loss: torch.Tensor | None = None
    attentions: tuple[torch.Tensor, ...] | None = None  # per layer (batch, heads, time, time) when asked for
    cache: Any = None  # recurrent models with use_cache=True: the state after the last token


def lm_loss(
    logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch: torch.Tensor | int | None = None
) -> torch.Tensor:
    """Next-token cross-entropy: position t predicts labels[t + 1] (labels are the inputs, unshifted).

    The mean over this batch's tokens, or with ``num_items_in_batch`` their sum divided by it (the
    training loop's count over a whole step, as transformers' models take it)."""
    flat_logits, flat_labels = logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1)
    if num_items_in_batch is None:
        return F.cross_entropy(flat_logits, flat_labels, ignore_index=IGNORE_INDEX)
    return F.cross_entropy(flat_logits, flat_labels, ignore_index=IGNORE_INDEX, reduction="sum") / num_items_in_batch


class LanguageModel(nn.Module):
    """What the architectures share: the config, the HF-style output, and the device."""

    supports_kv_cache = False  # the generation path re-reads the last block_size tokens instead
    recurrent = False  # True: the cache is a fixed-size state, so generation runs past block_size

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.vocab_size < 1:
            raise ConfigError(
                "model.vocab_size is 0: the tokenizer has not been trained yet",
                "build the model after the tokenizer, with vocab_size=len(tokenizer)",
            )
        self.config = config

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _check_length(self, input_ids: torch.Tensor) -> None:
        if input_ids.size(1) > self.config.block_size:
            raise ConfigError(
                f"input has {input_ids.size(1)} tokens but the model reads at most block_size={self.config.block_size}",
                "crop the input to the last block_size tokens",
            )


# ---------------------------------------------------------------------------------------------
# The Transformer


class CausalSelfAttention(nn.Module):
    """Multi-head attention where each token looks only at itself and the tokens before it."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.num_heads = cfg.num_heads
        self.head_dim = cfg.hidden_size // cfg.num_heads
        # Queries ask, keys answer, values carry the content; Wo mixes the heads back together.
        self.Wq = nn.Linear(cfg.hidden_size, cfg.hidden_size, bias=cfg.bias)
        self.Wk = nn.Linear(cfg.hidden_size, cfg.hidden_size, bias=cfg.bias)
        self.Wv = nn.Linear(cfg.hidden_size, cfg.hidden_size, bias=cfg.bias)
        self.Wo = nn.Linear(cfg.hidden_size, cfg.hidden_size, bias=cfg.bias)
        self.dropout = cfg.dropout
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(
        self, x: torch.Tensor, key_mask: torch.Tensor | None = None, keep_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T, C = x.shape
        # (B, T, C) -> (B, heads, T, head_dim): every head attends in its own subspace.
        q, k, v = (W(x).view(B, T, self.num_heads, self.head_dim).transpose(1, 2) for W in (self.Wq, self.Wk, self.Wv))
        mask = None
        if key_mask is not None:
            # Causal AND not-padding; a token may always see itself, so no row is fully masked (no NaN).
            causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            mask = (causal & key_mask[:, None, None, :].bool()) | torch.eye(T, dtype=torch.bool, device=x.device)
        weights = None
        if keep_weights:
            # The same arithmetic as scaled_dot_product_attention, spelled out so the weights can be drawn.
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)
            allowed = mask if mask is not None else torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            weights = scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1)
            y = F.dropout(weights, self.dropout, self.training) @ v
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0, is_causal=mask is None
            )
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.Wo(y)), weights


class FeedForward(nn.Module):
    """Position-wise two-layer network: widen (W1), GELU, narrow back (W2)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.W1 = nn.Linear(cfg.hidden_size, cfg.ffn_width, bias=cfg.bias)
        self.W2 = nn.Linear(cfg.ffn_width, cfg.hidden_size, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.W2(F.gelu(self.W1(x))))


class Block(nn.Module):
    """One Transformer layer, pre-LayerNorm (trains stably without warm restarts): x + attn(ln(x)), x + ffn(ln(x))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.hidden_size, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.hidden_size, bias=cfg.bias)
        self.ffn = FeedForward(cfg)

    def forward(
        self, x: torch.Tensor, key_mask: torch.Tensor | None, keep_weights: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        a, weights = self.attn(self.ln1(x), key_mask, keep_weights)
        x = x + a
        return x + self.ffn(self.ln2(x)), weights


class Transformer(LanguageModel):
    """Decoder-only Transformer (GPT): embeddings → N blocks → LayerNorm → head."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        c = config
        self.token_embedding = nn.Embedding(c.vocab_size, c.hidden_size)
        self.position_embedding = nn.Embedding(c.block_size, c.hidden_size)  # learned, one vector per position
        self.dropout = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList(Block(c) for _ in range(c.num_layers))
        self.ln_f = nn.LayerNorm(c.hidden_size, bias=c.bias)
        self.head = nn.Linear(c.hidden_size, c.vocab_size, bias=False)
        if c.tie_embeddings:
            self.head.weight = self.token_embedding.weight
        self.apply(_init_weights)
        # GPT-2's trick: shrink the layers that write into the residual stream, so its variance stays ~1 with depth.
        for name, p in self.named_parameters():
            if name.endswith(("Wo.weight", "W2.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * c.num_layers))

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
        **_: object,
    ) -> LMOutput:
        self._check_length(input_ids)
        positions = torch.arange(input_ids.size(1), device=input_ids.device)
        x = self.dropout(self.token_embedding(input_ids) + self.position_embedding(positions))
        maps = []
        for block in self.layers:
            x, weights = block(x, attention_mask, output_attentions)
            maps.append(weights)
        logits = self.head(self.ln_f(x))
        loss = lm_loss(logits, labels, num_items_in_batch) if labels is not None else None
        return LMOutput(logits=logits, loss=loss, attentions=tuple(maps) if output_attentions else None)


# ---------------------------------------------------------------------------------------------
# The two baselines


@dataclass
class LSTMState:
    """The LSTM's state after the last token: hidden and cell vectors of every layer."""

    h: torch.Tensor  # (num_layers, B, hidden_size)
    c: torch.Tensor  # (num_layers, B, hidden_size)


class LSTMLanguageModel(LanguageModel):
    """Embeddings → stacked LSTM (reads left to right, so it is causal by construction) → LayerNorm → head."""

    supports_kv_cache = True  # the generation path carries (h, c) instead of re-reading the context
    recurrent = True  # (h, c) has the same size after any number of tokens: no context limit

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        c = config
        self.token_embedding = nn.Embedding(c.vocab_size, c.hidden_size)
        self.dropout = nn.Dropout(c.dropout)
        self.lstm = nn.LSTM(
            c.hidden_size,
            c.hidden_size,
            num_layers=c.num_layers,
            batch_first=True,
            dropout=c.dropout if c.num_layers > 1 else 0.0,
        )
        self.ln_f = nn.LayerNorm(c.hidden_size, bias=c.bias)
        self.head = nn.Linear(c.hidden_size, c.vocab_size, bias=False)
        if c.tie_embeddings:
            self.head.weight = self.token_embedding.weight
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.head.weight, std=0.02)

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        num_items_in_batch: torch.Tensor | int | None = None,
        cache: Any = None,
        use_cache: bool = False,
        logits_to_keep: int = 0,
        **_: object,
    ) -> LMOutput:
        """No length check: the LSTM has no position embeddings and reads any length (block_size is its training window)."""
        from hearth.scratch.scan import RecurrentCache

        previous = (cache.layers[0].h, cache.layers[0].c) if cache is not None else None
        h, (h_n, c_n) = self.lstm(self.dropout(self.token_embedding(input_ids)), previous)
        if logits_to_keep:
            h = h[:, -logits_to_keep:]
        logits = self.head(self.ln_f(self.dropout(h)))
        new_cache = None
        if use_cache or cache is not None:
            seen = (cache.seen if cache is not None else 0) + input_ids.size(1)
            new_cache = RecurrentCache([LSTMState(h_n.detach(), c_n.detach())], seen)
        loss = lm_loss(logits, labels, num_items_in_batch) if labels is not None else None
        return LMOutput(logits=logits, loss=loss, cache=new_cache)


class CausalConv(nn.Module):
    """A residual conv layer that only looks left: pad (kernel-1)·dilation zeros before the sequence."""

    def __init__(self, cfg: ModelConfig, dilation: int) -> None:
        super().__init__()
        self.pad = (cfg.kernel_size - 1) * dilation
        self.conv = nn.Conv1d(cfg.hidden_size, cfg.hidden_size, cfg.kernel_size, dilation=dilation, bias=cfg.bias)
        self.ln = nn.LayerNorm(cfg.hidden_size, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln(x).transpose(1, 2)  # Conv1d wants (batch, channels, time)
        h = self.conv(F.pad(h, (self.pad, 0))).transpose(1, 2)
        return x + self.dropout(F.gelu(h))


class CNNLanguageModel(LanguageModel):
    """Embeddings (+ positions) → dilated causal convolutions (receptive field doubles per layer) → head."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        c = config
        self.token_embedding = nn.Embedding(c.vocab_size, c.hidden_size)
        self.position_embedding = nn.Embedding(c.block_size, c.hidden_size)
        self.dropout = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList(CausalConv(c, dilation=2**i) for i in range(c.num_layers))
        self.ln_f = nn.LayerNorm(c.hidden_size, bias=c.bias)
        self.head = nn.Linear(c.hidden_size, c.vocab_size, bias=False)
        if c.tie_embeddings:
            self.head.weight = self.token_embedding.weight
        self.apply(_init_weights)

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        num_items_in_batch: torch.Tensor | int | None = None,
        **_: object,
    ) -> LMOutput:
        self._check_length(input_ids)
        positions = torch.arange(input_ids.size(1), device=input_ids.device)
        x = self.dropout(self.token_embedding(input_ids) + self.position_embedding(positions))
        for layer in self.layers:
            x = layer(x)
        logits = self.head(self.ln_f(x))
        return LMOutput(logits=logits, loss=lm_loss(logits, labels, num_items_in_batch) if labels is not None else None)


def _init_weights(module: nn.Module) -> None:
    # Small normal weights (std 0.02, as GPT-2) keep the first logits near uniform: initial loss ≈ ln(vocab).
    if isinstance(module, (nn.Linear, nn.Embedding, nn.Conv1d)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)


def architectures() -> dict[str, type[LanguageModel]]:
    """Each ``model.arch`` name and its class."""
    # Mamba and RWKV build on the classes above, so their files are imported here, on first use.
    from hearth.scratch.mamba import MambaLanguageModel
    from hearth.scratch.rwkv import RWKVLanguageModel

    return {
        "transformer": Transformer,
        "lstm": LSTMLanguageModel,
        "cnn": CNNLanguageModel,
        "mamba": MambaLanguageModel,
        "rwkv": RWKVLanguageModel,
    }


def build_model(config: ModelConfig) -> LanguageModel:
    """A freshly initialised model for ``config`` (seed torch first for a reproducible start)."""
    if config.arch == "transformer" and config.hidden_size % config.num_heads:
        raise ConfigError(
            f"model.hidden_size={config.hidden_size} cannot be split into model.num_heads={config.num_heads} equal heads",
            "choose hidden_size divisible by num_heads, e.g. hidden_size=128 num_heads=4",
        )
    return architectures()[config.arch](config)
