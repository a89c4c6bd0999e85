"""The from-scratch models, tokenizer and corpus: causality, attention arithmetic, overfitting, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hearth.errors import ConfigError, DataError
from hearth.scratch.corpus import CorpusConfig, build_datasets, read_documents, split_corpus
from hearth.scratch.model import ModelConfig, build_model
from hearth.scratch.tokenizer import TokenizerConfig, load_tokenizer, save_tokenizer, train_tokenizer
from hearth.train.config import TrainingConfig
from hearth.train.loop import train
from hearth.train.runs import Run

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"


def tiny(arch: str = "transformer", **kw: object) -> ModelConfig:
    base = dict(arch=arch, vocab_size=40, block_size=16, num_layers=2, hidden_size=32, num_heads=4, dropout=0.0)
    return ModelConfig(**{**base, **kw})


@pytest.mark.parametrize("arch", ["transformer", "lstm", "cnn", "mamba", "rwkv"])
def test_future_tokens_do_not_change_earlier_logits(arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(tiny(arch)).eval()
    x = torch.randint(0, 40, (2, 16))
    y = x.clone()
    y[:, 9] = (y[:, 9] + 1) % 40  # change token 9 only
    a, b = model(input_ids=x).logits, model(input_ids=y).logits
    torch.testing.assert_close(a[:, :9], b[:, :9], rtol=0, atol=1e-6)
    assert (a[:, 9:] - b[:, 9:]).abs().max() > 1e-4  # ...and it does change what comes after


def test_drawn_attention_is_the_same_arithmetic_as_sdpa() -> None:
    torch.manual_seed(0)
    model = build_model(tiny()).eval()
    x = torch.randint(0, 40, (1, 16))
    fast = model(input_ids=x).logits
    slow = model(input_ids=x, output_attentions=True)
    torch.testing.assert_close(slow.logits, fast, rtol=1e-5, atol=1e-5)
    w = slow.attentions[1][0]  # (heads, T, T)
    assert w.shape == (4, 16, 16)
    torch.testing.assert_close(w.sum(-1), torch.ones(4, 16))
    assert torch.all(w.triu(diagonal=1) == 0)  # nothing attends to the future


def test_padding_mask_leaves_real_tokens_alone() -> None:
    torch.manual_seed(0)
    model = build_model(tiny()).eval()
    x = torch.randint(0, 40, (1, 16))
    full = model(input_ids=x, attention_mask=torch.ones(1, 16, dtype=torch.long)).logits
    torch.testing.assert_close(full, model(input_ids=x).logits, rtol=1e-5, atol=1e-5)


def test_labels_minus_100_are_ignored() -> None:
    torch.manual_seed(0)
    model = build_model(tiny()).eval()
    x = torch.randint(0, 40, (2, 16))
    labels = x.clone()
    labels[:, :8] = -100
    out = model(input_ids=x, labels=labels)
    logits = out.logits[:, 7:-1].reshape(-1, 40)  # positions 7..14 predict labels 8..15
    expected = torch.nn.functional.cross_entropy(logits, x[:, 8:].reshape(-1))
    torch.testing.assert_close(out.loss, expected)


def test_tiny_transformer_overfits_one_batch(home: Path) -> None:
    torch.manual_seed(0)
    model = build_model(tiny(num_layers=2, hidden_size=64))
    batch = torch.randint(0, 40, (8, 16))
    data = [{"input_ids": row, "labels": row} for row in batch]
    cfg = TrainingConfig(
        max_steps=150,
        batch_size=8,
        learning_rate=3e-3,
        warmup_steps=10,
        weight_decay=0.0,
        eval_every=1000,
        log_every=10,
        save_every=1000,
        progress=False,
    )
    result = train(model, Run.create("test"), cfg, data)
    assert result.train_loss < 0.1, result.train_loss
    assert result.history[0]["loss"] > 3.0  # it started near ln(40) ≈ 3.7


def test_heads_must_divide_width() -> None:
    with pytest.raises(ValueError, match="not divisible"):
        ModelConfig(hidden_size=30, num_heads=4)
    cfg = ModelConfig.model_construct(
        **{**ModelConfig().model_dump(), "hidden_size": 30, "num_heads": 4, "vocab_size": 10}
    )
    with pytest.raises(ConfigError, match="equal heads"):
        build_model(cfg)


@pytest.mark.parametrize("kind", ["bpe", "char"])
def test_tokenizer_round_trips_english_and_chinese(kind: str, tmp_path: Path) -> None:
    texts = [
        "To be, or not to be, that is the question.\n" * 20,
        "床前明月光，疑是地上霜。举头望明月，低头思故乡。\n" * 20,
    ]
    save_tokenizer(train_tokenizer(texts, TokenizerConfig(kind=kind, vocab_size=300)), tmp_path)
    tok = load_tokenizer(tmp_path)  # PreTrainedTokenizerFast(tokenizer_file=...)
    assert tok.eos_token == "<|endoftext|>" and tok.eos_token_id is not None
    for text in ("that is the question", "举头望明月"):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text
    if kind == "char":
        assert len(tok("举头望明月", add_special_tokens=False)["input_ids"]) == 5


def test_split_is_deterministic_and_disjoint() -> None:
    docs = read_documents(EXAMPLES / "tang300" / "tang300.txt")
    assert len(docs) > 300
    cfg = CorpusConfig(path="x", val_fraction=0.1, test_fraction=0.1, seed=7)
    a, b = split_corpus(docs, cfg), split_corpus(docs, cfg)
    assert a == b
    assert not set(a.train) & set(a.val) and not set(a.train) & set(a.test) and not set(a.val) & set(a.test)
    assert len(a.train) + len(a.val) + len(a.test) == len(docs)
    assert split_corpus(docs, cfg.model_copy(update={"seed": 8})).val != a.val
    ranges = split_corpus(docs, CorpusConfig(path="x", split_by="range", num_chunks=50))
    assert sum(len(t) for _, ts in ranges.items() for t in ts) >= sum(len(d) for d in docs)  # nothing lost


def test_empty_and_too_small_corpora_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no text"):
        read_documents(tmp_path / "empty")
    with pytest.raises(DataError, match="does not exist"):
        read_documents(tmp_path / "missing.txt")
    small = tmp_path / "small.txt"
    small.write_text("a few words\n\nand two documents\n\nthree", encoding="utf-8")
    splits = split_corpus(read_documents(small), CorpusConfig(path=str(small)))
    save_tokenizer(train_tokenizer(splits.train, TokenizerConfig(kind="char")), tmp_path / "tok")
    with pytest.raises(DataError, match="fewer than one block"):
        build_datasets(load_tokenizer(tmp_path / "tok"), splits, block_size=64)
