"""Perplexity of a language model on a dataset split: exp(mean loss per predicted token).

The dataset is read, validated, split and tokenized exactly as ``hearth tune`` does it (``train/data.py``),
so "the validation split" here is the very examples a tuning run with the same ``data:`` settings held
out, and the number is comparable with the report of that run. Chat data is scored on the answer
tokens only (what the model is asked to produce); plain text on every token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hearth.errors import ConfigError

Split = Literal["train", "val", "all"]


@dataclass
class PerplexityReport:
    model: str
    data: str
    split: str
    examples: int
    tokens: int  # tokens whose prediction was scored
    loss: float  # mean negative log-likelihood per scored token (nats)
    perplexity: float


def token_losses(model: Any, rows: list[dict[str, list[int]]], collate: Any, batch_size: int = 8) -> tuple[float, int]:
    """(sum of token losses, number of scored tokens) — summed per token, so batch padding never biases it."""
    import torch

    from hearth.train.data import IGNORE_INDEX

    device = next(model.parameters()).device
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = {k: v.to(device) for k, v in collate(rows[start : start + batch_size]).items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            labels = batch["labels"][:, 1:]
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.size(-1)).float(),
                labels.reshape(-1),
                ignore_index=IGNORE_INDEX,
                reduction="sum",
            )
            total += float(loss)
            count += int((labels != IGNORE_INDEX).sum())
    model.train(was_training)
    return total, count


def perplexity(
    model_name: str,
    data: str | Path,
    split: Split = "val",
    *,
    data_overrides: dict[str, Any] | None = None,
    batch_size: int = 8,
) -> PerplexityReport:
    """Perplexity of ``model_name`` (any local model name, adapters included) on ``split`` of ``data``."""
    from hearth.models import load as mload
    from hearth.train import data as tdata

    if split not in ("train", "val", "all"):
        raise ConfigError(f"unknown split '{split}'", "use train, val or all")
    ref = mload.resolve(model_name)
    if ref.kind == "remote":
        raise ConfigError(
            f"'{model_name}' is a remote model: its token probabilities are not available here",
            "measure perplexity of a local model (bundled, a folder, or base+adapter)",
        )
    cfg = tdata.DataConfig(path=str(data), **(data_overrides or {}))
    loaded = tdata.load_records(cfg)
    lm = mload.load(model_name)
    tokenizer = lm.tokenizer
    tdata.prepare_tokenizer(tokenizer, cfg, model_name, chat=loaded.format != "text")
    train_records, val_records = tdata.split(loaded.records, cfg)
    records = {"train": train_records, "val": val_records, "all": loaded.records}[split]
    if not records:
        raise ConfigError(
            f"the '{split}' split of {data} is empty",
            "use split all, or raise data.val_fraction for a validation split",
        )
    rows = tdata.encode(tokenizer, records, cfg.model_copy(update={"packing": False})).rows
    total, count = token_losses(lm.model, rows, tdata.collator(tokenizer.pad_token_id), batch_size)
    loss = total / max(count, 1)
    return PerplexityReport(model_name, str(data), split, len(records), count, loss, math.exp(min(loss, 50.0)))
