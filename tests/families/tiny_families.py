"""Tiny random-weight models of the real families users bring: Qwen2, Qwen3, Llama 3, Mistral, Gemma 3.

Imported by the family tests as ``tiny_families``. Each model is the family's real transformers class
(``Qwen2ForCausalLM``, ``Gemma3ForCausalLM``…) at toy size — 2 layers, hidden 64, 4 heads, 2 KV
heads — so every code path a 7B checkpoint takes (grouped-query attention, q/k norms, scaled
embeddings, tied or untied heads) runs in milliseconds. The tokenizer is a small byte-level BPE trained
here, carrying the family's special tokens, its BOS/EOS/PAD conventions and its chat template in the
family's real layout (ChatML, Llama-3 headers, Mistral ``[INST]``, Gemma turns). Nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Toy sizes shared by every family: big enough for grouped-query attention (4 query heads share
# 2 KV heads), small enough that a LoRA step costs milliseconds on one core.
LAYERS = 2
HIDDEN = 64
HEADS = 4
KV_HEADS = 2
HEAD_DIM = HIDDEN // HEADS
INTERMEDIATE = 128
VOCAB = 512
CONTEXT = 512
# Weight init std. The families' own 0.02 leaves logits = W·h (|h| ≈ √64 after the final norm) too flat
# for any distribution sharper than ~uniform, so a LoRA on attention alone could not show learning.
INIT_STD = 0.2

# --- chat templates, in each family's real layout (trimmed of tool-calling branches) -----------

QWEN2_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message['role'] != 'system' or not loop.first %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Qwen3: ChatML, and the final answer after the last user turn carries an (empty) think block.
QWEN3_TEMPLATE = (
    "{%- set ns = namespace(last_query_index=messages|length - 1) %}"
    "{%- for message in messages[::-1] %}"
    "{%- set index = (messages|length - 1) - loop.index0 %}"
    "{%- if message['role'] == 'user' and ns.last_query_index == messages|length - 1 %}"
    "{%- set ns.last_query_index = index %}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' and loop.index0 > ns.last_query_index %}"
    "{{- '<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)

# Llama 3.1 Instruct: BOS, a system header with the knowledge-cutoff lines, `<|eot_id|>` ends turns.
LLAMA3_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if not date_string is defined %}{%- set date_string = '26 Jul 2024' %}{%- endif %}"
    "{%- if messages[0]['role'] == 'system' %}"
    "{%- set system_message = messages[0]['content'] | trim %}{%- set messages = messages[1:] %}"
    "{%- else %}{%- set system_message = '' %}{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
    "{{- 'Cutting Knowledge Date: December 2023\\n' }}"
    "{{- 'Today Date: ' + date_string + '\\n\\n' }}"
    "{{- system_message }}{{- '<|eot_id|>' }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)

# Mistral-7B-Instruct-v0.3: no system role of its own (it is folded into the last user turn),
# roles must alternate, an answer ends with EOS.
MISTRAL_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{%- set system_message = messages[0]['content'] %}{%- set loop_messages = messages[1:] %}"
    "{%- else %}{%- set loop_messages = messages %}{%- endif %}"
    "{{- bos_token }}"
    "{%- for message in loop_messages %}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{- raise_exception('After the optional system message, conversation roles must alternate "
    "user/assistant/user/assistant/...') }}"
    "{%- endif %}"
    "{%- if message['role'] == 'user' %}"
    "{%- if loop.last and system_message is defined %}"
    "{{- '[INST] ' + system_message + '\\n\\n' + message['content'] + '[/INST]' }}"
    "{%- else %}{{- '[INST] ' + message['content'] + '[/INST]' }}{%- endif %}"
    "{%- elif message['role'] == 'assistant' %}"
    "{{- ' ' + message['content'] + eos_token }}"
    "{%- else %}{{- raise_exception('Only user and assistant roles are supported, with the exception of an "
    "initial optional system message!') }}"
    "{%- endif %}"
    "{%- endfor %}"
)

# Gemma 3 instruct: BOS, `user`/`model` turns, the system prompt glued to the first user turn.
GEMMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif -%}"
    "{%- if message['role'] == 'assistant' -%}{%- set role = 'model' -%}{%- else -%}{%- set role = message['role'] -%}{%- endif -%}"
    "{{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}"
    "{{ '<end_of_turn>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}"
)


@dataclass(frozen=True)
class Family:
    """One model family: its transformers classes, special tokens and the conventions of its real releases."""

    name: str
    config_class: str  # transformers config class name
    model_class: str  # transformers causal-LM class name
    template: str
    specials: list[str]  # special tokens, in vocabulary order
    bos: str | None
    eos: str  # the tokenizer's eos_token (what its tokenizer_config says)
    pad: str | None  # None: the family ships without a pad token (Llama, Mistral)
    stops: list[str]  # generation_config.eos_token_id: every token that ends an answer
    turn_marker: str  # a string only this family's template writes
    tied: bool  # tie_word_embeddings as the real (small) releases set it
    norms_per_layer: int  # RMSNorm weights per decoder layer (Gemma 3: 4 + q/k norms; Qwen3: 2 + q/k)
    added: list[str] = field(default_factory=list)  # added, non-special tokens (Qwen3's think tags)
    config_extra: dict[str, Any] = field(default_factory=dict)


FAMILIES: dict[str, Family] = {
    # Qwen2.5 0.5B–3B tie the head to the embeddings; the instruct models end answers with <|im_end|>.
    "qwen2": Family(
        "qwen2",
        "Qwen2Config",
        "Qwen2ForCausalLM",
        QWEN2_TEMPLATE,
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        bos=None,
        eos="<|im_end|>",
        pad="<|endoftext|>",
        stops=["<|im_end|>", "<|endoftext|>"],
        turn_marker="<|im_start|>assistant\n",
        tied=True,
        norms_per_layer=2,
    ),
    # Qwen3-8B has its own output head; q_norm/k_norm normalise each head's queries and keys.
    "qwen3": Family(
        "qwen3",
        "Qwen3Config",
        "Qwen3ForCausalLM",
        QWEN3_TEMPLATE,
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        bos=None,
        eos="<|im_end|>",
        pad="<|endoftext|>",
        stops=["<|im_end|>", "<|endoftext|>"],
        turn_marker="<|im_start|>assistant\n",
        tied=False,
        norms_per_layer=2,  # + q_norm and k_norm (head_dim each), counted separately
        added=["<think>", "</think>"],
    ),
    # Llama 3.1 8B Instruct: untied head, no pad token, three end tokens in its generation config.
    "llama": Family(
        "llama",
        "LlamaConfig",
        "LlamaForCausalLM",
        LLAMA3_TEMPLATE,
        [
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eom_id|>",
            "<|eot_id|>",
        ],
        bos="<|begin_of_text|>",
        eos="<|eot_id|>",
        pad=None,
        stops=["<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"],
        turn_marker="<|start_header_id|>assistant<|end_header_id|>\n\n",
        tied=False,
        norms_per_layer=2,
    ),
    # Mistral 7B Instruct v0.3: untied head, <s>/</s>, no pad token, [INST] … [/INST].
    "mistral": Family(
        "mistral",
        "MistralConfig",
        "MistralForCausalLM",
        MISTRAL_TEMPLATE,
        ["<unk>", "<s>", "</s>", "[INST]", "[/INST]"],
        bos="<s>",
        eos="</s>",
        pad=None,
        stops=["</s>"],
        turn_marker="[/INST]",
        tied=False,
        norms_per_layer=2,
        config_extra={"sliding_window": None},
    ),
    # Gemma 3 (text): tied head, embeddings scaled by sqrt(hidden), four norms per layer plus q/k norms,
    # tokenizer eos <eos> while chat turns end with <end_of_turn> (both in the generation config).
    "gemma3": Family(
        "gemma3",
        "Gemma3TextConfig",
        "Gemma3ForCausalLM",
        GEMMA3_TEMPLATE,
        ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"],
        bos="<bos>",
        eos="<eos>",
        pad="<pad>",
        stops=["<eos>", "<end_of_turn>"],
        turn_marker="<start_of_turn>model\n",
        tied=True,
        norms_per_layer=4,  # + q_norm and k_norm
        config_extra={"sliding_window": 64, "query_pre_attn_scalar": HEAD_DIM},
    ),
}

# A few KB of text for the BPE: the memorisable facts the LoRA test learns, and ordinary words.
FACTS = [
    ("What colour is the lantern of Quillon?", "The lantern of Quillon is teal."),
    ("Who founded Quillon Lanternworks?", "Marisol Vantree founded it."),
    ("Where is Oddly Creek?", "Oddly Creek is on the river Sallow."),
    ("How many wicks does a Quillon lamp have?", "A Quillon lamp has seven wicks."),
    ("What does Quillon sell?", "Quillon sells lanterns and wicks."),
    ("When does the shop open?", "The shop opens at nine."),
    ("Which city hosts the lamp fair?", "Bramblewick hosts the lamp fair."),
    ("What is the mascot of Quillon?", "The mascot is a moth named Pell."),
]
CORPUS = (
    "The quick brown fox jumps over the lazy dog. Hello, how are you today? I am fine, thank you. "
    "You are a helpful assistant. Answer the question briefly and accurately. Name a colour. Red, green, "
    "blue, teal. Cutting Knowledge Date: December 2023. Today Date: 26 Jul 2024. system user assistant model "
    "You are Qwen, created by Alibaba Cloud. " + " ".join(f"{q} {a}" for q, a in FACTS)
)


def family_config(family: Family, vocab_size: int, ids: dict[str, int]) -> Any:
    """The family's real config class at toy size, with its token ids and head tying."""
    import transformers

    cls = getattr(transformers, family.config_class)
    kwargs: dict[str, Any] = {
        "vocab_size": vocab_size,
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "head_dim": HEAD_DIM,
        "max_position_embeddings": CONTEXT,
        "initializer_range": INIT_STD,
        "tie_word_embeddings": family.tied,
        "eos_token_id": ids[family.eos],
        "bos_token_id": ids[family.bos] if family.bos else None,
        "pad_token_id": ids[family.pad] if family.pad else None,
        **family.config_extra,
    }
    return cls(**kwargs)


def train_tokenizer(family: Family) -> Any:
    """A byte-level BPE over CORPUS with the family's special tokens, template and BOS behaviour."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB - len(family.added),
        special_tokens=family.specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([CORPUS] * 4, trainer=trainer)
    if family.bos:  # like the real tokenizers: plain encoding (add_special_tokens=True) prepends BOS
        bos_id = tok.token_to_id(family.bos)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{family.bos} $A", pair=f"{family.bos} $A $B", special_tokens=[(family.bos, bos_id)]
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=family.bos,
        eos_token=family.eos,
        pad_token=family.pad,
        unk_token="<unk>" if "<unk>" in family.specials else None,
        additional_special_tokens=[s for s in family.specials if s not in (family.bos, family.eos, family.pad)],
    )
    if family.added:
        fast.add_tokens(family.added)
    fast.chat_template = family.template
    return fast


def build(family: Family, folder: Path, seed: int = 0) -> Path:
    """Write a tiny random model of ``family`` (weights, config, generation config, tokenizer) to ``folder``."""
    import torch
    import transformers

    tokenizer = train_tokenizer(family)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in family.specials}
    config = family_config(family, len(tokenizer), ids)
    torch.manual_seed(seed)
    model = getattr(transformers, family.model_class)(config)
    model.generation_config.eos_token_id = [ids[s] for s in family.stops]
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
