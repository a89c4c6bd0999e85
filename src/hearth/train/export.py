"""`hearth export gguf`: write a Llama-architecture model (e.g. a merged fine-tune) as a GGUF file.

The file is written with the ``gguf`` library: the ``llama.*`` hyperparameter keys, the tokenizer
(tokens, token types, BPE merges, special ids, chat template) and f32 or f16 tensors under llama.cpp's
tensor names. llama.cpp stores the query/key projections with their rotary halves interleaved
differently from Hugging Face, so those two are permuted on the way out (readers permute them back).
After writing, the file is loaded back through transformers (``gguf_file=``) and its logits are compared
with the source model's, so a wrong export fails here and not in someone's chat.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hearth.errors import ModelError

Dtype = Literal["f32", "f16"]
ARCHITECTURES = ("llama",)  # model_type values whose tensors and keys this writer knows


@dataclass
class ExportResult:
    path: Path
    tensors: int
    bytes: int
    max_logit_diff: float | None  # source vs reloaded export, on a short prompt


def export_gguf(model_name: str, out: str | Path, dtype: Dtype = "f16", check: bool = True) -> ExportResult:
    """Export ``model_name`` (a model name, ``base+adapter`` with a mergeable adapter, or an HF folder)."""
    from hearth.models import load as mload

    out = Path(out).expanduser().resolve()
    if out.suffix != ".gguf":
        raise ModelError(f"{out} does not end in .gguf", "name the output file like model.gguf")
    loaded = mload.load(model_name)
    model, tokenizer = loaded.model, loaded.tokenizer
    if hasattr(model, "peft_config"):
        raise ModelError(
            f"'{model_name}' uses prefix tuning, which cannot be folded into plain weights",
            "export a LoRA/IA³/full fine-tune, or serve this one as base+adapter",
        )
    model_type = getattr(model.config, "model_type", "?")
    if model_type not in ARCHITECTURES:
        raise ModelError(
            f"GGUF export knows the {', '.join(ARCHITECTURES)} architecture; '{model_name}' is '{model_type}'",
            "use llama.cpp's convert_hf_to_gguf.py for other architectures",
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.writing")
    try:
        count = write_llama(model, tokenizer, loaded.path, tmp, dtype)
        diff = check_export(model, tokenizer, tmp, dtype) if check else None
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(out)
    return ExportResult(out, count, out.stat().st_size, diff)


def write_llama(model: Any, tokenizer: Any, source_dir: Path, path: Path, dtype: Dtype) -> int:
    """Write the GGUF file; returns the number of tensors."""
    import gguf
    import numpy as np

    cfg = model.config
    heads, kv_heads = cfg.num_attention_heads, getattr(cfg, "num_key_value_heads", cfg.num_attention_heads)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    rope = getattr(cfg, "rope_parameters", None) or {}
    theta = rope.get("rope_theta", getattr(cfg, "rope_theta", 10000.0))

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(getattr(cfg, "_name_or_path", "") or source_dir.name)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(theta))
    writer.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32 if dtype == "f32" else gguf.LlamaFileType.MOSTLY_F16)
    _add_tokenizer(writer, tokenizer, source_dir, cfg.vocab_size)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    tied = bool(getattr(cfg, "tie_word_embeddings", False))
    count = 0
    for name, tensor in model.state_dict().items():
        if tied and name == "lm_head.weight":
            continue  # llama.cpp reuses token_embd when output.weight is absent
        gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ModelError(f"no GGUF name for tensor {name}", "this model has layers the llama layout lacks")
        data = tensor.detach().float().cpu().numpy()
        if name.endswith("self_attn.q_proj.weight"):
            data = _rope_permute(data, heads)
        elif name.endswith("self_attn.k_proj.weight"):
            data = _rope_permute(data, kv_heads)
        # Norms and other 1-D tensors stay f32, as llama.cpp's converter keeps them.
        if dtype == "f16" and data.ndim > 1:
            data = data.astype(np.float16)
        writer.add_tensor(gguf_name, data)
        count += 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return count


def _rope_permute(weights: Any, heads: int) -> Any:
    """HF keeps each head's rotary pairs as two halves; llama.cpp interleaves them."""
    half = weights.shape[0] // heads // 2
    return weights.reshape(heads, 2, half, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def _add_tokenizer(writer: Any, tokenizer: Any, source_dir: Path, vocab_size: int) -> None:
    import gguf

    if not (source_dir / "tokenizer.json").exists():
        raise ModelError(f"{source_dir} has no tokenizer.json", "GGUF export needs a fast (BPE) tokenizer")
    tokens, types = [], []
    special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}))
    for i in range(vocab_size):
        token = tokenizer.convert_ids_to_tokens(i)
        if token is None:  # padding rows of the embedding beyond the real vocabulary
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        tokens.append(token)
        types.append(gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    # Merges, bos/eos/unk/pad ids and the chat template, read by the gguf library from the tokenizer files.
    vocab = gguf.SpecialVocab(source_dir, load_merges=True, n_vocab=vocab_size)
    if getattr(tokenizer, "chat_template", None):  # the template in use (a run may have set its own)
        vocab.chat_template = tokenizer.chat_template
    vocab.add_to_gguf(writer)


def check_export(model: Any, tokenizer: Any, path: Path, dtype: Dtype) -> float:
    """Load the file back through transformers and compare logits with the source model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    staging = path.parent / f".{path.stem}.check"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        link = staging / "model.gguf"
        link.symlink_to(path)
        reloaded = AutoModelForCausalLM.from_pretrained(staging, gguf_file=link.name, dtype=torch.float32)
        reloaded_tokenizer = AutoTokenizer.from_pretrained(staging, gguf_file=link.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    text = "The lighthouse keeper lit the lantern and said: <|im_end|> 灯"
    ids = tokenizer(text, return_tensors="pt").input_ids
    if reloaded_tokenizer(text, return_tensors="pt").input_ids.tolist() != ids.tolist():
        raise ModelError(
            "the exported GGUF's tokenizer splits text differently from the model's own",
            "this is a bug in the export: please report it with the model's tokenizer.json",
        )
    with torch.no_grad():
        want = model(input_ids=ids).logits.float()
        got = reloaded(input_ids=ids).logits.float()
    diff = float((want - got).abs().max())
    tolerance = 1e-3 if dtype == "f32" else 0.5  # f16 rounding moves logits by up to a few tenths
    same_top = torch.equal(want.argmax(-1), got.argmax(-1)) or dtype == "f16"  # f16 may swap near-ties
    if not torch.isfinite(got).all() or diff > tolerance or not same_top:
        raise ModelError(
            f"the exported GGUF does not reproduce the model (largest logit difference {diff:.4g})",
            "this is a bug in the export: please report it with the model's config.json",
        )
    return diff
