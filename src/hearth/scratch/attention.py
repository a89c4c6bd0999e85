"""Attention maps: which earlier tokens each token looks at, for one layer and head, drawn as a heatmap.

Works for from-scratch Transformers (a run folder or run id) and for Hugging Face models (loaded with
eager attention so the weights exist). Row i of the matrix is token i's attention over tokens 0..i.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hearth.errors import ModelError


@dataclass
class AttentionMap:
    tokens: list[str]
    weights: torch.Tensor  # (time, time); rows sum to 1
    layer: int
    head: int
    num_layers: int
    num_heads: int
    model: str


def attention_map(model_ref: str, text: str, layer: int = 0, head: int = 0) -> AttentionMap:
    """Run ``text`` through the model and keep the attention weights of one layer and head."""
    from hearth.scratch.load import find_run, load_run

    if not text.strip():
        raise ModelError("there is no text to look at", 'pass a sentence, e.g. "I love Tokyo in spring"')
    if find_run(model_ref) is not None:
        model, tokenizer = load_run(model_ref)
        if model.config.arch != "transformer":
            raise ModelError(
                f"{model_ref} is an {model.config.arch.upper()} model: it has no attention",
                "pick a run with model.arch=transformer",
            )
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][:, -model.config.block_size :]
        with torch.no_grad():
            maps = model(input_ids=ids, output_attentions=True).attentions
    else:
        model, tokenizer, previous = _load_hf_eager(model_ref)
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        try:
            with torch.no_grad():
                maps = model(input_ids=ids, output_attentions=True).attentions
        finally:
            _set_attn(model, previous)  # the cached model goes back to its fast kernels for chat
    if not maps or maps[0] is None:
        raise ModelError(
            f"{model_ref} did not return attention weights", "use a Transformer that supports output_attentions"
        )
    num_layers, num_heads = len(maps), maps[0].shape[1]
    if not 0 <= layer < num_layers:
        raise ModelError(
            f"layer {layer} does not exist: the model has layers 0–{num_layers - 1}",
            f"pass --layer between 0 and {num_layers - 1}",
        )
    if not 0 <= head < num_heads:
        raise ModelError(
            f"head {head} does not exist: each layer has heads 0–{num_heads - 1}",
            f"pass --head between 0 and {num_heads - 1}",
        )
    tokens = [tokenizer.decode([int(t)]) for t in ids[0]]
    return AttentionMap(tokens, maps[layer][0, head].float(), layer, head, num_layers, num_heads, str(model_ref))


def _load_hf_eager(name: str) -> tuple[Any, Any, str | None]:
    """A Hugging Face causal LM switched to eager attention (the fused kernels never form the weights)."""
    from hearth.models import load as model_load

    loaded = model_load.load(name)
    previous = getattr(loaded.model.config, "_attn_implementation", None)
    _set_attn(loaded.model, "eager")
    return loaded.model, loaded.tokenizer, previous


def _set_attn(model: Any, implementation: str | None) -> None:
    if implementation is None:
        return
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(implementation)
    else:
        model.config._attn_implementation = implementation


def plot_attention(att: AttentionMap, out: str | Path) -> Path:
    """Save the map as a heatmap PNG: rows = the token attending, columns = the token attended to."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    has_cjk = _use_cjk_font(plt)
    labels = [_label(t, has_cjk) for t in att.tokens]
    n = len(labels)
    size = max(4.0, min(16.0, 0.45 * n + 2))
    fig, ax = plt.subplots(figsize=(size + 1, size), dpi=120)
    im = ax.imshow(att.weights.numpy(), cmap="viridis", vmin=0.0)
    ax.set_xticks(range(n), labels, rotation=90, fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set_xlabel("attended-to token (key)")
    ax.set_ylabel("attending token (query)")
    ax.set_title(f"{Path(att.model).name}: layer {att.layer}/{att.num_layers - 1}, head {att.head}/{att.num_heads - 1}")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="attention weight")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def _label(token: str, has_cjk: bool) -> str:
    """A tick label: spaces and newlines shown visibly; CJK as U+XXXX when no installed font can draw it."""
    text = repr(token)[1:-1] or "∅"
    if not has_cjk:
        text = "".join(ch if ord(ch) < 0x2E80 else f"U+{ord(ch):04X}" for ch in text)
    return text


def _use_cjk_font(plt: Any) -> bool:
    # Chinese tokens need a font with CJK glyphs (e.g. Debian's fonts-noto-cjk); use one if installed.
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    for name in (
        "Noto Sans CJK SC",
        "Noto Sans CJK JP",
        "WenQuanYi Zen Hei",
        "WenQuanYi Micro Hei",
        "AR PL UMing CN",
        "Droid Sans Fallback",
    ):
        if name in installed:
            plt.rcParams["font.sans-serif"] = [name, "DejaVu Sans"]
            return True
    return False
