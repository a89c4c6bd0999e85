"""Tokenizers for from-scratch models: byte-level BPE or characters, trained on the training split only.

Both are built with the ``tokenizers`` library and saved as one ``tokenizer.json`` plus the files
``transformers`` needs, so the run loads as ``PreTrainedTokenizerFast`` (with ``<|endoftext|>`` as the end
token) through the same generation path as any Hugging Face model. Byte-level BPE never meets an unknown
character (every byte is in its base alphabet), so English and Chinese both work; ``char`` keeps one
token per character seen in training and maps the rest to ``<unk>``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from hearth.config import Section
from hearth.errors import DataError, ModelError

EOS = "<|endoftext|>"  # separates documents in the token stream; generation stops on it
UNK = "<unk>"


class TokenizerConfig(Section):
    """The ``tokenizer:`` section of a from-scratch recipe."""

    kind: Literal["bpe", "char"] = Field(
        "bpe", description="bpe = byte-level BPE (any language); char = one token per character"
    )
    vocab_size: int = Field(
        2048, ge=260, description="bpe only: target vocabulary size (256 bytes + merges + special tokens)"
    )
    min_frequency: int = Field(2, ge=1, description="bpe only: a pair must occur this often to become a merge")


def train_tokenizer(texts: Iterable[str], cfg: TokenizerConfig) -> Any:
    """Train a ``tokenizers.Tokenizer`` on ``texts`` (the training split)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    texts = list(texts)
    if not any(t.strip() for t in texts):
        raise DataError(
            "there is no training text to learn a tokenizer from", "check the corpus path and that its files hold text"
        )
    if cfg.kind == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=cfg.vocab_size,
            min_frequency=cfg.min_frequency,
            special_tokens=[EOS],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        return tok
    chars = sorted({ch for text in texts for ch in text})
    vocab = {EOS: 0, UNK: 1} | {ch: i + 2 for i, ch in enumerate(chars)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every character its own piece
    tok.decoder = decoders.Fuse()  # join pieces with nothing between them
    return tok


def save_tokenizer(tok: Any, folder: Path) -> Any:
    """Save as a transformers tokenizer folder (tokenizer.json + config); returns the fast tokenizer."""
    fast = as_transformers(tok)
    fast.save_pretrained(folder)
    return fast


def as_transformers(tok: Any) -> Any:
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, unk_token=UNK if tok.token_to_id(UNK) is not None else None
    )


def load_tokenizer(folder: Path) -> Any:
    from transformers import PreTrainedTokenizerFast

    file = folder / "tokenizer.json"
    if not file.exists():
        raise ModelError(f"no tokenizer.json in {folder}", "the run was saved before its tokenizer: train it again")
    return PreTrainedTokenizerFast(tokenizer_file=str(file), eos_token=EOS)
