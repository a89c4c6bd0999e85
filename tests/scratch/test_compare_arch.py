"""`hearth train compare`: matched parameter counts, decode cost by context length, the recall task, the report."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from hearth.errors import ConfigError
from hearth.scratch.model import ModelConfig, build_model
from hearth.train import compare_arch

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "configs" / "compare-architectures.yaml"


@pytest.mark.slow  # seconds alone; ~40 s on the busy shared machine
def test_widths_match_the_parameter_target() -> None:
    base = ModelConfig(block_size=64, num_heads=4, d_state=8)
    counts = {}
    for arch, layers in [("transformer", 4), ("lstm", 2), ("cnn", 4), ("mamba", 2), ("rwkv", 2)]:
        cfg = compare_arch.matched_model(base, compare_arch.ArchSpec(arch=arch, num_layers=layers), 70, 100_000)
        counts[arch] = build_model(cfg).num_parameters()
        assert cfg.num_layers == layers and cfg.arch == arch
    assert all(abs(c - 100_000) / 100_000 < 0.08 for c in counts.values()), counts


@pytest.mark.slow  # the profiler's start-up: seconds alone, ~40 s on the busy shared machine
def test_recurrent_memory_per_token_is_flat_and_attention_grows() -> None:
    rows = {}
    for arch in ("transformer", "mamba", "rwkv", "lstm"):
        torch.manual_seed(0)
        model = build_model(ModelConfig(arch=arch, vocab_size=30, block_size=257, hidden_size=16, num_layers=1))
        rows[arch] = compare_arch.decode_cost(model.eval(), [32, 256], repeats=1)
    for arch in ("mamba", "rwkv", "lstm"):
        small, large = rows[arch]
        assert small["allocated_bytes"] == large["allocated_bytes"], arch
        assert small["state_bytes"] == large["state_bytes"] > 0
    small, large = rows["transformer"]
    assert large["allocated_bytes"] > 4 * small["allocated_bytes"]
    assert small["state_bytes"] is None


def test_recall_example_labels_every_position_after_the_value() -> None:
    rc = compare_arch.RecallConfig(noise_tokens=4, value_tokens=3)
    ex = compare_arch.recall_example(5, 20, rc, random.Random(0))
    ids, labels = ex["input_ids"].tolist(), ex["labels"].tolist()
    assert [i for i, t in enumerate(ids) if t >= 4] == [5] and 4 <= ids[5] < 7  # one value, at position 5
    assert labels[:6] == [-100] * 6 and labels[6:] == [ids[5]] * 14


def test_unknown_architecture_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not known"):
        compare_arch.load_config(RECIPE, ["architectures=[{arch: gru}]"])


@pytest.mark.slow
def test_one_command_writes_the_report(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    overrides = [
        f"out={out}",
        "parameters=3000",
        "architectures=[{arch: transformer, num_layers: 1}, {arch: rwkv, num_layers: 1}]",
        f"base.data.path={ROOT / 'examples' / 'data' / 'tang300' / 'tang300.txt'}",
        "base.model.block_size=16",
        "base.training.max_steps=4",
        "base.training.batch_size=4",
        "base.training.eval_every=2",
        "base.training.eval_batches=1",
        "recall.max_gap=8",
        "recall.eval_gaps=[1, 8]",
        "recall.train_examples=32",
        "recall.eval_examples=8",
        "recall.training.max_steps=2",
        "recall.training.batch_size=8",
        "inference.contexts=[8, 32]",
        "inference.repeats=1",
    ]
    cfg = compare_arch.load_config(RECIPE, overrides)
    report = compare_arch.run_comparison(cfg, progress=lambda line: None)
    data = json.loads((out / "results.json").read_text())
    assert set(data["lm"]) == set(data["inference"]) == set(data["recall"]) == {"transformer", "rwkv"}
    assert len(data["lm"]["rwkv"]["val_curve"]) == 2  # evaluated at steps 2 and 4
    text = report.read_text()
    for png in ("loss_vs_tokens.png", "decode_cost.png", "recall_vs_gap.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png in text
    assert f"{data['lm']['rwkv']['best_val_loss']:.3f}" in text  # the table shows the measured numbers
    assert "weak long-range memory" not in text  # only the architectures that ran are in the table

    # parts=[recall]: only the recall task again; the language models' and decoding numbers are kept.
    again = compare_arch.load_config(RECIPE, [*overrides, "parts=[recall]", "recall.eval_gaps=[2, 8]"])
    compare_arch.run_comparison(again, progress=lambda line: None)
    redone = json.loads((out / "results.json").read_text())
    assert redone["lm"] == data["lm"] and redone["inference"] == data["inference"]
    assert set(redone["recall"]["rwkv"]["accuracy"]) == {"2", "8"}
    assert set(redone["seconds"]) == {"lm", "inference", "recall"}
    assert "| gap 2 | gap 8 |" in (out / "README.md").read_text()


def test_measuring_one_part_needs_the_others_measured_once(tmp_path: Path) -> None:
    cfg = compare_arch.load_config(RECIPE, [f"out={tmp_path}", "parts=[recall]"])
    with pytest.raises(ConfigError, match="run all parts once first"):
        compare_arch.run_comparison(cfg, progress=lambda line: None)
