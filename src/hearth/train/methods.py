"""Fine-tuning methods: which weights learn. Each is a plain function that takes the base model and
returns the model to train (with only the method's weights requiring grad).

- ``full``    every weight learns.
- ``lora``    peft LoRA: low-rank updates ``B·A`` beside the target projections (default: attention).
- ``qlora``   LoRA over a 4-bit (NF4) frozen base: bitsandbytes on CUDA; elsewhere torchao's NF4 tensor
              (``nf4.py``), because bitsandbytes' 4-bit layers load on CPU but have no backward kernel.
- ``prefix``  peft prefix tuning: learned key/value vectors prepended at every layer, initialised from
              the base model's own keys/values for a real text (so training starts at the base's loss),
              with ``adapters.fix_prefix_cache`` making the prefix reach the model under transformers 5.
- ``adapter`` peft IA³ ("Infused Adapter by Inhibiting and Amplifying Inner Activations"): learned
              per-channel scales on keys, values and the MLP's down projection — the smallest adapter.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from hearth.config import Section
from hearth.errors import ConfigError, TrainError

Method = Literal["full", "lora", "qlora", "prefix", "adapter"]
PEFT_METHODS = ("lora", "qlora", "prefix", "adapter")


class MethodConfig(Section):
    """The ``method:`` section: which weights learn, and the method's own knobs."""

    name: Method = Field("lora", description="full | lora | qlora | prefix | adapter (IA³)")
    rank: int = Field(16, ge=1, description="lora/qlora: rank r of the update B·A")
    alpha: float = Field(32.0, gt=0, description="lora/qlora: the update is scaled by alpha / rank")
    dropout: float = Field(0.05, ge=0, lt=1, description="lora/qlora: dropout on the adapter's input")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        description="lora/qlora: layer names to adapt (default: the attention projections)",
    )
    adapter_modules: list[str] = Field(
        default_factory=lambda: ["k_proj", "v_proj", "down_proj"],
        description="adapter (IA³): layers whose activations get learned scales",
    )
    feedforward_modules: list[str] = Field(
        default_factory=lambda: ["down_proj"], description="adapter (IA³): which of those are MLP layers (scale inputs)"
    )
    num_virtual_tokens: int = Field(16, ge=1, description="prefix: learned key/value positions per layer")
    prefix_init_text: str = Field(
        "You are a helpful assistant. Answer the question accurately and briefly.",
        description="prefix: text whose keys/values start the prefix ('' = random start)",
    )


def setup(model: Any, cfg: MethodConfig, tokenizer: Any = None) -> Any:
    """The model to train for ``cfg.name``; only the method's weights require grad."""
    if cfg.name == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    if cfg.name in ("lora", "qlora"):
        peft_model = _lora(model, cfg)
    elif cfg.name == "prefix":
        peft_model = _prefix(model, cfg, tokenizer)
    else:
        peft_model = _ia3(model, cfg)
    # peft passes `cache=` through to the base model, so Hearth's generation path may decode with a KV cache.
    peft_model.supports_kv_cache = True
    return peft_model


def count_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts; tied weights counted once."""
    seen: set[int] = set()
    trainable = total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total


def linear_names(model: Any) -> list[str]:
    """The short names of the model's linear layers (what ``target_modules`` may name)."""
    import torch

    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    return sorted(names)


def check_targets(model: Any, targets: list[str], key: str) -> None:
    """Refuse target modules this model does not have, listing the ones it does."""
    have = linear_names(model)
    missing = [t for t in targets if t not in have]
    if missing:
        raise ConfigError(
            f"{key}: this model has no layer named {', '.join(repr(m) for m in missing)}",
            f"this model's linear layers are: {', '.join(have)}",
        )


def qlora_backend() -> Literal["bitsandbytes", "torchao"]:
    """Where QLoRA's 4-bit base comes from here: bitsandbytes on CUDA (the QLoRA paper's kernels),
    else torchao's NF4 tensor, which trains on CPU. Refuses when neither can."""
    import importlib.util

    import torch

    from hearth.train import nf4

    if torch.cuda.is_available() and importlib.util.find_spec("bitsandbytes") is not None:
        return "bitsandbytes"
    if nf4.available():
        return "torchao"
    raise TrainError(
        "method 'qlora' needs bitsandbytes (with a CUDA GPU) or torchao for its 4-bit base; neither is installed",
        "pip install torchao (CPU or GPU), or bitsandbytes on a CUDA host; or use method.name=lora",
    )


def quantization_config() -> Any:
    """The 4-bit NF4 loading config QLoRA's paper uses (double quantization, bf16 compute)."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def _lora(model: Any, cfg: MethodConfig) -> Any:
    from peft import LoraConfig, get_peft_model

    check_targets(model, cfg.target_modules, "method.target_modules")
    if cfg.name == "qlora" and getattr(model, "is_loaded_in_4bit", False):  # bitsandbytes' 4-bit base
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model)
    config = LoraConfig(
        task_type="CAUSAL_LM",
        r=cfg.rank,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules),
    )
    return get_peft_model(model, config)


def _ia3(model: Any, cfg: MethodConfig) -> Any:
    from peft import IA3Config, get_peft_model

    check_targets(model, cfg.adapter_modules, "method.adapter_modules")
    stray = [m for m in cfg.feedforward_modules if m not in cfg.adapter_modules]
    if stray:
        raise ConfigError(
            f"method.feedforward_modules names {stray}, which are not in method.adapter_modules",
            "feedforward_modules must be a subset of adapter_modules",
        )
    config = IA3Config(
        task_type="CAUSAL_LM",
        target_modules=list(cfg.adapter_modules),
        feedforward_modules=list(cfg.feedforward_modules),
    )
    return get_peft_model(model, config)


def _prefix(model: Any, cfg: MethodConfig, tokenizer: Any) -> Any:
    import torch
    from peft import PrefixTuningConfig, get_peft_model

    from hearth.models.adapters import fix_prefix_cache

    init = _prefix_init(model, tokenizer, cfg) if cfg.prefix_init_text and tokenizer is not None else None
    peft_model = get_peft_model(
        model, PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=cfg.num_virtual_tokens)
    )
    if init is not None:
        embedding = peft_model.prompt_encoder[peft_model.active_adapter].embedding
        with torch.no_grad():
            embedding.weight.copy_(init.to(embedding.weight.dtype))
    fix_prefix_cache(peft_model)
    return peft_model


def _prefix_init(model: Any, tokenizer: Any, cfg: MethodConfig) -> Any:
    """Prefix weights = the base model's keys/values for a real text (repeated to the prefix length).

    A random prefix puts keys and values the model has never seen at every layer and wrecks its output
    at step 0 (measured on SmolLM2: loss 2 → 8.6); real activations start training from the base
    model's own behaviour, the initialisation Li & Liang (2021) found works best.
    """
    import torch

    ids = tokenizer(cfg.prefix_init_text, add_special_tokens=False)["input_ids"]
    n = cfg.num_virtual_tokens
    ids = (ids * (n // max(1, len(ids)) + 1))[:n]
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids], device=model.device), use_cache=True)
    cache = out.cache if hasattr(out, "cache") else out.past_key_values
    per_layer = []
    for layer in range(model.config.num_hidden_layers):
        keys, values = _layer_kv(cache, layer)  # (1, kv_heads, n, head_dim)
        # peft's layout per virtual token: [layer0 K, layer0 V, layer1 K, ...], each kv_heads × head_dim.
        per_layer.append(torch.stack([keys[0], values[0]]))  # (2, kv_heads, n, head_dim)
    stacked = torch.stack(per_layer)  # (layers, 2, kv_heads, n, head_dim)
    return stacked.permute(3, 0, 1, 2, 4).reshape(n, -1)  # (n, layers·2·kv_heads·head_dim)


def _layer_kv(cache: Any, layer: int) -> tuple[Any, Any]:
    if hasattr(cache, "layers"):
        return cache.layers[layer].keys, cache.layers[layer].values
    return cache[layer][0], cache[layer][1]
