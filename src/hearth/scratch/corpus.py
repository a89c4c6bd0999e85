"""A text corpus → a deterministic train/val/test split → token streams → fixed-length training examples.

The split happens on *text*, before tokenizing, so nothing of the validation or test text leaks into the
tokenizer or the training batches. Two ways to split, both seeded:

- ``documents``: every file of a folder is a document (one file is cut into documents at blank lines —
  ``doc_separator``); whole documents are dealt to train / val / test.
- ``range``: all text is cut into ``num_chunks`` contiguous ranges (at line ends); whole ranges are dealt.

Each split becomes one token stream with ``<|endoftext|>`` between documents, and the stream is cut into
windows of ``block_size`` tokens that overlap by one token, so every token but the first is a target once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, model_validator

from hearth.config import Section
from hearth.errors import DataError

TEXT_SUFFIXES = {".txt", ".md", ".text", ""}


class CorpusConfig(Section):
    """The ``data:`` section of a from-scratch recipe."""

    path: str = Field("examples/data/shakespeare", description="a text file or a folder of .txt/.md files (UTF-8)")
    split_by: Literal["documents", "range"] = Field(
        "documents", description="deal whole documents, or contiguous ranges of text, to the splits"
    )
    val_fraction: float = Field(
        0.1, ge=0.0, lt=1.0, description="share of the text held out for validation (early stopping, curves)"
    )
    test_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="share held out for the final test evaluation")
    seed: int = Field(1234, description="seed of the split shuffle: the same seed always gives the same split")
    doc_separator: str = Field("\n\n", description="documents mode, single file: the text between documents")
    num_chunks: int = Field(100, ge=3, description="range mode: how many contiguous ranges the text is cut into")

    @model_validator(mode="after")
    def _leaves_training_text(self) -> CorpusConfig:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError("val_fraction + test_fraction must leave at least 10% of the text for training")
        return self


@dataclass
class Splits:
    train: list[str]
    val: list[str]
    test: list[str]

    def items(self) -> list[tuple[str, list[str]]]:
        return [("train", self.train), ("val", self.val), ("test", self.test)]


def read_documents(path: str | Path, separator: str = "\n\n") -> list[str]:
    """The documents of a corpus: one per file in a folder, or the parts of one file between separators."""
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"corpus {root} does not exist", "set data.path to a text file or a folder of .txt files")
    if root.is_dir():
        files = sorted(
            p
            for p in root.rglob("*")
            if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES and not p.name.startswith(".")
        )
        docs = [_read(f) for f in files]
    else:
        docs = [d for d in _read(root).split(separator)] if separator else [_read(root)]
    docs = [d.strip("\n") for d in docs if d.strip()]
    if not docs:
        raise DataError(f"corpus {root} holds no text", "add UTF-8 .txt or .md files with some text in them")
    return docs


def _read(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8").replace("\r\n", "\n")
    except UnicodeDecodeError:
        raise DataError(f"{file} is not UTF-8 text", "convert it to UTF-8 (e.g. iconv -t utf-8)") from None


def split_corpus(docs: list[str], cfg: CorpusConfig) -> Splits:
    """Deal documents (or contiguous ranges) to train/val/test, deterministically for a given seed."""
    units = docs if cfg.split_by == "documents" else _ranges("\n".join(docs), cfg.num_chunks)
    order = list(range(len(units)))
    random.Random(cfg.seed).shuffle(order)
    n_val = _count(len(units), cfg.val_fraction)
    n_test = _count(len(units), cfg.test_fraction)
    if len(units) - n_val - n_test < 1:
        raise DataError(
            f"the corpus has {len(units)} {cfg.split_by} — too few to hold out validation and test text",
            "add text, use data.split_by=range, or lower data.val_fraction / data.test_fraction",
        )
    # Keep each split in corpus order so its token stream reads like the original text.
    val = sorted(order[:n_val])
    test = sorted(order[n_val : n_val + n_test])
    train = sorted(order[n_val + n_test :])
    return Splits(train=[units[i] for i in train], val=[units[i] for i in val], test=[units[i] for i in test])


def _count(n: int, fraction: float) -> int:
    return 0 if fraction == 0 else max(1, round(n * fraction))


def _ranges(text: str, n: int) -> list[str]:
    """Cut text into n contiguous pieces of about equal length, each ending at a line end when possible."""
    size = max(1, len(text) // n)
    out, start = [], 0
    while start < len(text):
        end = min(len(text), start + size)
        nl = text.find("\n", end)
        end = len(text) if nl == -1 or nl - end > size else nl + 1
        out.append(text[start:end])
        start = end
    return [r for r in out if r.strip()]


def token_stream(tokenizer: Any, texts: list[str]) -> torch.Tensor:
    """All documents of a split as one 1-D tensor of token ids, with the end token between documents."""
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for enc in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        ids.extend(enc)
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


class BlockDataset(torch.utils.data.Dataset):
    """Windows of ``block_size`` tokens from a stream; labels are the inputs (the model shifts them)."""

    def __init__(self, tokens: torch.Tensor, block_size: int) -> None:
        self.tokens = tokens
        self.block_size = block_size
        self.stride = block_size - 1  # windows share one token, so each token is a prediction target once

    def __len__(self) -> int:
        return max(0, (len(self.tokens) - 1) // self.stride)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        start = i * self.stride
        window = self.tokens[start : start + self.block_size]
        if len(window) < self.block_size:  # the last window may run off the end: slide it back
            window = self.tokens[-self.block_size :]
        return {"input_ids": window, "labels": window}


def build_datasets(tokenizer: Any, splits: Splits, block_size: int) -> dict[str, BlockDataset]:
    """Token streams → BlockDatasets for train/val/test; a split too short for one window is an error."""
    out: dict[str, BlockDataset] = {}
    for name, texts in splits.items():
        if not texts:
            continue
        tokens = token_stream(tokenizer, texts)
        if len(tokens) < block_size:
            raise DataError(
                f"the {name} split has {len(tokens)} tokens, fewer than one block of model.block_size={block_size}",
                "use a larger corpus, a smaller model.block_size, or a larger data.val_fraction / data.test_fraction",
            )
        out[name] = BlockDataset(tokens, block_size)
    return out
