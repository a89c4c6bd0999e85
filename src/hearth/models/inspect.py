"""What a model *is*: its tensors, parameters by role, and the memory it needs to run or train.

Reads only file headers (safetensors JSON header, GGUF tensor table), never the weights, so a 70B
checkpoint is inspected in milliseconds. Parameter roles use the textbook names: embeddings,
attention Wq/Wk/Wv/Wo, MLP W1/W2/W3 (LLaMA's convention: W1 = gate, W3 = up, W2 = down; a plain
two-layer MLP has W1 and W2), norms, output head.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hearth.errors import HearthError, ModelError

# Bytes per parameter when weights are stored at each precision. int4 is the bare 4 bits; real
# formats add block scales (NF4 + double quantization ≈ 4.13 bits, GGUF Q4_K ≈ 4.5 bits).
BYTES = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "int8": 1.0, "int4": 0.5}
NF4_BYTES = 4.127 / 8  # QLoRA's NF4 with double-quantized constants (Dettmers et al., 2023)
ADAMW_FP32_BYTES = 16  # weights 4 + gradients 4 + Adam m 4 + Adam v 4
LORA_RANK = 16

ROLES = [
    "embeddings",
    "attention.Wq",
    "attention.Wk",
    "attention.Wv",
    "attention.Wqkv",
    "attention.Wo",
    "mlp.W1",
    "mlp.W2",
    "mlp.W3",
    "ssm (Mamba)",
    "time-mix (RWKV)",
    "channel-mix (RWKV)",
    "norms",
    "output head",
    "other",
]

# (pattern on the tensor name, role); first match wins. Covers Hugging Face names (Llama, Qwen,
# Mistral, Gemma, GPT-2, GPT-NeoX), GGUF names, and Hearth's from-scratch model.
_RULES: list[tuple[str, str]] = [
    (r"(^|\.)(lm_head|output|head|embed_out)\.(weight|bias)$", "output head"),
    (
        r"(embed_tokens|wte|wpe|tok_emb|pos_emb|token_embd|position_embd|embeddings?|word_embeddings)(\.|$)",
        "embeddings",
    ),
    # Hearth's Mamba and RWKV (before the attention rules: RWKV's key/value/receptance are not attention's).
    (r"\.mixer\.", "ssm (Mamba)"),
    (r"\.time_mix\.", "time-mix (RWKV)"),
    (r"\.channel_mix\.", "channel-mix (RWKV)"),
    (r"(q_proj|\.Wq|attn_q|\.query|\.wq)(\.|$)", "attention.Wq"),
    (r"(k_proj|\.Wk|attn_k|\.key|\.wk)(\.|$)", "attention.Wk"),
    (r"(v_proj|\.Wv|attn_v|\.value|\.wv)(\.|$)", "attention.Wv"),
    (r"(qkv_proj|c_attn|query_key_value|attn_qkv|\.Wqkv)(\.|$)", "attention.Wqkv"),
    (r"(o_proj|\.Wo|attn_output|out_proj|attn\.c_proj|attention\.dense|\.wo)(\.|$)", "attention.Wo"),
    (r"(gate_proj|ffn_gate|\.w1|\.W1|c_fc|fc1|dense_h_to_4h|fc_in)(\.|$)", "mlp.W1"),
    (r"(down_proj|ffn_down|\.w2|\.W2|mlp\.c_proj|fc2|dense_4h_to_h|fc_out)(\.|$)", "mlp.W2"),
    (r"(up_proj|ffn_up|\.w3|\.W3)(\.|$)", "mlp.W3"),
    (r"(norm|ln_|layernorm|LayerNorm|(^|\.)ln\d*\.|ln_f)", "norms"),
]


def role_of(name: str) -> str:
    for pattern, role in _RULES:
        if re.search(pattern, name):
            return role
    return "other"


@dataclass
class TensorInfo:
    name: str
    shape: list[int]
    dtype: str
    params: int
    role: str


@dataclass
class Architecture:
    layers: int | None = None
    hidden: int | None = None
    heads: int | None = None
    kv_heads: int | None = None
    head_dim: int | None = None
    context: int | None = None
    vocab: int | None = None


@dataclass
class Report:
    source: str
    format: str
    total_params: int
    groups: dict[str, int]
    architecture: Architecture
    tensors: list[TensorInfo] = field(default_factory=list)
    memory: list[dict[str, Any]] = field(default_factory=list)
    context: int = 0
    extras: dict[str, Any] = field(default_factory=dict)  # what else a training checkpoint holds

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# reading headers


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")


def read(path: str | Path) -> tuple[list[TensorInfo], Architecture, str, dict[str, Any]]:
    """Tensors, architecture, format and (for training checkpoints) what else the file holds.

    Headers only where the format has them (safetensors, GGUF); torch pickles are memory-mapped."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.safetensors"))
        if files:
            return _read_safetensors(files), _arch_from_config(path / "config.json"), "safetensors", {}
        ggufs = sorted(path.glob("*.gguf"))
        if ggufs:
            return read(ggufs[0])
        pickles = sorted(p for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            tensors = [t for p in pickles for t in _read_pickle(p)[0]]
            return tensors, _arch_from_config(path / "config.json"), "pytorch", {}
        raise ModelError(
            f"{path} holds no .safetensors, .gguf or .bin file", "point at a model folder or a weights file"
        )
    if path.name.endswith(".safetensors.index.json"):  # a sharded checkpoint's index
        shards = sorted({path.parent / f for f in json.loads(path.read_text())["weight_map"].values()})
        return _read_safetensors(shards), _arch_from_config(path.parent / "config.json"), "safetensors", {}
    if path.suffix == ".safetensors":
        return _read_safetensors([path]), _arch_from_config(path.parent / "config.json"), "safetensors", {}
    if path.suffix == ".gguf":
        return (*_read_gguf(path), {})
    if path.suffix in PICKLE_SUFFIXES:
        tensors, extras = _read_pickle(path)
        return tensors, _arch_from_config(path.parent / "config.json"), "pytorch", extras
    raise ModelError(
        f"{path} is not a format the inspector reads",
        "use .safetensors (or its .index.json), .gguf, pytorch_model.bin, a .pt checkpoint, or a model folder",
    )


def load_state_dict(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The tensors of a torch pickle (``pytorch_model.bin``, ``checkpoint-N.pt``) and what else it holds.

    Loaded with ``weights_only=True``: a pickle can run code, so anything beyond tensors and plain
    containers is refused. Training checkpoints keep the weights under ``model``/``state_dict``; the
    other entries (optimizer state, step, epoch…) are summarised, not returned as weights.
    """
    import pickle

    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError) as exc:
        if "weights_only" in str(exc) or isinstance(exc, pickle.UnpicklingError):
            raise ModelError(
                f"{path} holds Python objects beyond tensors; loading it could run code, so Hearth refuses",
                "if you trust the file, load it yourself and re-save the weights: torch.save(model.state_dict(), 'weights.pt')",
            ) from None
        raise ModelError(f"{path} is not a readable PyTorch file ({exc})", "the file is corrupt or truncated") from None
    if not isinstance(obj, dict):
        raise ModelError(f"{path} holds a {type(obj).__name__}, not a dict of tensors", "save a state_dict instead")
    for key in ("model", "state_dict", "model_state_dict", "module"):
        if isinstance(obj.get(key), dict) and any(hasattr(v, "shape") for v in obj[key].values()):
            rest = {k: _summary(v) for k, v in obj.items() if k != key}
            return obj[key], rest
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    rest = {k: _summary(v) for k, v in obj.items() if k not in tensors}
    if not tensors:
        raise ModelError(
            f"{path} holds no tensors (keys: {', '.join(map(str, obj))[:200]})", "is this a model checkpoint?"
        )
    return tensors, rest


def _summary(value: Any) -> Any:
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    if isinstance(value, dict):
        if "state" in value and "param_groups" in value:
            return f"optimizer state ({len(value['state'])} parameters, {len(value['param_groups'])} groups)"
        return f"dict with {len(value)} entries"
    if hasattr(value, "shape"):
        return f"tensor {list(value.shape)}"
    return type(value).__name__


def _read_pickle(path: Path) -> tuple[list[TensorInfo], dict[str, Any]]:
    tensors, rest = load_state_dict(path)
    infos = [
        TensorInfo(name, list(t.shape), str(t.dtype).replace("torch.", ""), int(t.numel()), role_of(name))
        for name, t in tensors.items()
    ]
    return infos, rest


def _read_safetensors(files: list[Path]) -> list[TensorInfo]:
    from safetensors import safe_open

    out: list[TensorInfo] = []
    for file in files:
        try:
            with safe_open(file, framework="pt") as f:
                for name in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                    sl = f.get_slice(name)
                    shape = list(sl.get_shape())
                    out.append(TensorInfo(name, shape, str(sl.get_dtype()), _numel(shape), role_of(name)))
        except Exception as exc:
            raise ModelError(
                f"{file} is not a readable safetensors file ({exc})",
                "the file is corrupt or truncated: convert or download it again",
            ) from None
    return out


def _read_gguf(path: Path) -> tuple[list[TensorInfo], Architecture, str]:
    import gguf

    try:
        reader = gguf.GGUFReader(path)
    except Exception as exc:
        raise ModelError(
            f"{path} is not a readable GGUF file ({exc})", "the file is corrupt or truncated: download it again"
        ) from None

    def field_value(key: str) -> Any:
        f = reader.fields.get(key)
        if f is None:
            return None
        try:
            return f.contents()
        except Exception:
            return None

    arch_name = field_value("general.architecture") or "llama"
    heads = field_value(f"{arch_name}.attention.head_count")
    hidden = field_value(f"{arch_name}.embedding_length")
    arch = Architecture(
        layers=field_value(f"{arch_name}.block_count"),
        hidden=hidden,
        heads=heads,
        kv_heads=field_value(f"{arch_name}.attention.head_count_kv") or heads,
        head_dim=field_value(f"{arch_name}.attention.key_length") or (hidden // heads if hidden and heads else None),
        context=field_value(f"{arch_name}.context_length"),
        vocab=field_value(f"{arch_name}.vocab_size"),
    )
    tensors = [
        # GGUF lists dimensions innermost first; show them the way torch does.
        TensorInfo(
            t.name, [int(d) for d in reversed(t.shape.tolist())], t.tensor_type.name, int(t.n_elements), role_of(t.name)
        )
        for t in reader.tensors
    ]
    return tensors, arch, "gguf"


def _arch_from_config(config_path: Path) -> Architecture:
    if not config_path.exists():
        return Architecture()
    cfg = json.loads(config_path.read_text())
    cfg = cfg.get("text_config", cfg)  # multimodal configs (Gemma 3) nest the language model
    heads = cfg.get("num_attention_heads") or cfg.get("n_head")
    hidden = cfg.get("hidden_size") or cfg.get("n_embd")
    return Architecture(
        layers=cfg.get("num_hidden_layers") or cfg.get("n_layer"),
        hidden=hidden,
        heads=heads,
        kv_heads=cfg.get("num_key_value_heads") or heads,
        head_dim=cfg.get("head_dim") or (hidden // heads if hidden and heads else None),
        context=cfg.get("max_position_embeddings") or cfg.get("n_positions") or cfg.get("block_size"),
        vocab=cfg.get("vocab_size"),
    )


def _numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


# ---------------------------------------------------------------------------------------------
# memory


def parse_params(text: str) -> int:
    """'70B' → 70e9, '135M' → 135e6, '7.5e9' → 7.5e9."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kKmMbBtT]?)\s*", text)
    if not m:
        raise HearthError(f"cannot read a parameter count from {text!r}", "write it like 70B, 7.5B, 135M or 7e9")
    scale = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}[m.group(2).lower()]
    return int(float(m.group(1)) * scale)


def kv_cache_bytes(arch: Architecture, context: int, batch: int = 1, bytes_per_value: float = 2.0) -> float | None:
    """Keys and values for every layer and KV head: 2 × layers × kv_heads × head_dim × tokens."""
    if not (arch.layers and arch.kv_heads and arch.head_dim):
        return None
    return 2 * arch.layers * arch.kv_heads * arch.head_dim * context * batch * bytes_per_value


def lora_params(tensors: list[TensorInfo], total: int, rank: int = LORA_RANK) -> int:
    """LoRA on the attention projections: rank × (in + out) per matrix; ~0.2% of the model if unknown."""
    attn = [t for t in tensors if t.role.startswith("attention.") and len(t.shape) == 2]
    if attn:
        return sum(rank * (t.shape[0] + t.shape[1]) for t in attn)
    return int(total * 0.002)


def memory_table(
    total: int, arch: Architecture, tensors: list[TensorInfo], context: int, batch: int = 1
) -> list[dict[str, Any]]:
    """Bytes needed to run (weights + KV cache) and to train (full / LoRA / QLoRA) at each precision.

    Activations are left out: they depend on batch size, sequence length and checkpointing.
    """
    rows: list[dict[str, Any]] = []
    for dtype, b in BYTES.items():
        weights = total * b
        kv = kv_cache_bytes(arch, context, batch, 4.0 if dtype == "fp32" else 2.0)
        rows.append(
            {"use": "inference", "dtype": dtype, "weights": weights, "kv_cache": kv, "total": weights + (kv or 0)}
        )
    lora = lora_params(tensors, total)
    rows.append(
        {
            "use": "train full (AdamW, fp32)",
            "dtype": "fp32",
            "weights": total * 4.0,
            "kv_cache": None,
            "total": total * ADAMW_FP32_BYTES,
        }
    )
    rows.append(
        {
            "use": "train full (AdamW, bf16 weights+states)",
            "dtype": "bf16",
            "weights": total * 2.0,
            "kv_cache": None,
            "total": total * 8.0,
        }
    )
    rows.append(
        {
            "use": f"train LoRA r={LORA_RANK} (frozen bf16 base)",
            "dtype": "bf16",
            "weights": total * 2.0,
            "kv_cache": None,
            "total": total * 2.0 + lora * ADAMW_FP32_BYTES,
        }
    )
    rows.append(
        {
            "use": f"train QLoRA r={LORA_RANK} (NF4 base)",
            "dtype": "nf4",
            "weights": total * NF4_BYTES,
            "kv_cache": None,
            "total": total * NF4_BYTES + lora * ADAMW_FP32_BYTES,
        }
    )
    return rows


# ---------------------------------------------------------------------------------------------
# the report


def inspect(source: str | Path, context: int | None = None) -> Report:
    """Inspect a model by name (``smollm2``, a folder under models/) or path."""
    path = _locate(source)
    tensors, arch, fmt, extras = read(path)
    total = sum(t.params for t in tensors)
    groups = {role: 0 for role in ROLES}
    for t in tensors:
        groups[t.role] += t.params
    ctx = context or min(arch.context or 4096, 4096)
    return Report(str(path), fmt, total, groups, arch, tensors, memory_table(total, arch, tensors, ctx), ctx, extras)


def estimate(params: int, context: int = 4096) -> Report:
    """A report for a model that is not on disk: memory from the parameter count alone."""
    return Report(
        f"{params:,} parameters (estimate)",
        "none",
        params,
        {},
        Architecture(),
        [],
        memory_table(params, Architecture(), [], context),
        context,
    )


def _locate(source: str | Path) -> Path:
    path = Path(source).expanduser()
    if path.exists():
        return path
    from hearth.models import load  # names like `smollm2` resolve through the loader

    ref = load.resolve(str(source))
    if ref.path is None:
        raise ModelError(
            f"'{source}' is a remote model: its weights are not here to inspect",
            "inspect a local model, or use --params",
        )
    return ref.path


def gigabytes(n: float | None) -> str:
    return "—" if n is None else f"{n / 1e9:,.2f} GB"


def plot(report: Report, out: str | Path) -> Path:
    """A bar chart of parameters by role."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {k: v for k, v in report.groups.items() if v}
    fig, ax = plt.subplots(figsize=(8, 4.5))
    bars = ax.barh(list(groups)[::-1], [v / 1e6 for v in groups.values()][::-1], color="#d9822b")
    for bar, value in zip(bars, list(groups.values())[::-1], strict=True):
        ax.text(
            bar.get_width(),
            bar.get_y() + bar.get_height() / 2,
            f" {value / report.total_params:.1%}",
            va="center",
            fontsize=8,
        )
    ax.set_xlabel("parameters (millions)")
    ax.set_title(f"{Path(report.source).name}: {report.total_params / 1e6:,.1f}M parameters by role")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
