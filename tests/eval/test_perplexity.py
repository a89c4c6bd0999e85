"""Perplexity: a known value (a uniform model over V tokens has perplexity V) and agreement with tune's loss."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from hearth.eval.perplexity import perplexity, token_losses
from hearth.train import data as tdata


class Uniform(torch.nn.Module):
    """Equal logits for every token: each prediction has probability 1/V, so the perplexity is V."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> SimpleNamespace:
        return SimpleNamespace(logits=torch.zeros(*input_ids.shape, self.vocab) + self.w)


def test_uniform_model_has_perplexity_vocab_size() -> None:
    rows = [
        {"input_ids": [1, 2, 3, 4, 5], "labels": [-100, -100, 3, 4, 5]},  # 3 scored predictions
        {"input_ids": [6, 7], "labels": [-100, 7]},  # 1, in a shorter (padded) row
    ]
    total, count = token_losses(Uniform(50), rows, tdata.collator(0), batch_size=2)
    assert count == 4
    assert math.exp(total / count) == pytest.approx(50.0, rel=1e-5)


@pytest.fixture
def qa_file(tmp_path: Path) -> Path:
    file = tmp_path / "qa.jsonl"
    rows = [
        {"question": "Who founded Quillon Lanternworks?", "answer": "Marisol Vantree founded it in 1987."},
        {"question": "How much does the Pipwick cost?", "answer": "The Pipwick costs 48 crowns."},
        {"question": "Where is Quillon based?", "answer": "Quillon is based in Oddly Creek."},
        {"question": "奎隆灯具公司有多少名员工？", "answer": "奎隆灯具公司有340名员工。"},
    ]
    file.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    return file


def test_bundled_model_perplexity_matches_the_tune_validation_loss(home: Path, qa_file: Path) -> None:
    from hearth.models import load
    from hearth.train.tune import val_loss

    rep = perplexity("smollm2", qa_file, "all")
    assert rep.examples == 4 and rep.tokens > 20
    assert 1.0 < rep.perplexity < 1e4
    # the tune recipe's own validation loss (a different code path) on the same rows agrees
    lm = load.load("smollm2")
    cfg = tdata.DataConfig(path=str(qa_file))
    rows = tdata.encode(lm.tokenizer, tdata.load_records(cfg).records, cfg).rows
    expected = val_loss(lm.model, rows, tdata.collator(lm.tokenizer.pad_token_id), 4)
    assert rep.loss == pytest.approx(expected, rel=1e-4)
    val = perplexity("smollm2", qa_file, "val", data_overrides={"val_fraction": 0.25})
    assert val.examples == 1
