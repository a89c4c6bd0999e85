"""The one loop and runs: baselines train through it, exact resume after SIGKILL, NaN guard, bad input, compare."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hearth.errors import DataError, NotFound, TrainError
from hearth.scratch import load_run
from hearth.scratch.model import LMOutput
from hearth.train.config import TrainingConfig
from hearth.train.loop import lr_factor, train
from hearth.train.runs import Run
from hearth.train.scratch import load_config, resume_scratch, train_scratch

ROOT = Path(__file__).resolve().parents[2]
TANG = ROOT / "examples" / "data" / "tang300" / "tang300.txt"

# Small enough for seconds, with dropout on so resume must restore the RNG to match bit for bit.
RECIPE = """
name: resume
model: {arch: transformer, block_size: 32, num_layers: 2, hidden_size: 64, num_heads: 4, dropout: 0.1}
data: {path: %s, split_by: range}
tokenizer: {kind: char}
training: {max_steps: %d, batch_size: 8, learning_rate: 0.003, warmup_steps: 10, log_every: 5, eval_every: 40, eval_batches: 3, save_every: 20, keep_last: 2, progress: false}
"""


def recipe(tmp_path: Path, steps: int) -> Path:
    file = tmp_path / "recipe.yaml"
    file.write_text(RECIPE % (TANG, steps), encoding="utf-8")
    return file


def cli(*args: str, home: Path) -> subprocess.Popen:
    env = {**os.environ, "HEARTH_HOME": str(home)}
    return subprocess.Popen(
        [sys.executable, "-m", "hearth.cli.main", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.parametrize("arch", ["lstm", "cnn"])
def test_baselines_train_through_the_same_loop(arch: str, home: Path) -> None:
    cfg = load_config(
        None,
        [
            f"data.path={TANG}",
            "data.split_by=range",
            "tokenizer.kind=char",
            f"model.arch={arch}",
            "model.block_size=32",
            "model.hidden_size=64",
            "model.num_layers=2",
            "model.dropout=0",
            "training.max_steps=60",
            "training.batch_size=8",
            "training.learning_rate=0.003",
            "training.eval_every=30",
            "training.eval_batches=3",
            "training.log_every=5",
            "training.progress=false",
        ],
    )
    run, result = train_scratch(cfg)
    first, last = result.history[0]["loss"], result.train_loss
    assert last < first - 1.0, (first, last)  # it learns (from ~ln(vocab) ≈ 7.8)
    assert result.val_loss is not None and result.test_loss is not None
    model, tokenizer = load_run(run.root)
    assert type(model).__name__.lower().startswith(arch) and not model.training
    assert tokenizer.decode(tokenizer("明月", add_special_tokens=False)["input_ids"]) == "明月"


@pytest.mark.slow
def test_kill_and_resume_equals_uninterrupted(home: Path, tmp_path: Path) -> None:
    steps = 300
    file = recipe(tmp_path, steps)
    full = cli("train", str(file), home=tmp_path / "a")
    assert full.wait(timeout=300) == 0, full.stdout.read()

    victim = cli("train", str(file), home=tmp_path / "b")
    runs_b = tmp_path / "b" / "runs"
    deadline = time.time() + 120
    while time.time() < deadline:
        if list(runs_b.glob("*/checkpoints/step-60")):
            break
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL
    run_dir = next(runs_b.iterdir())
    assert not (run_dir / "checkpoints" / f"step-{steps}").exists(), "the run finished before it was killed"

    resumed = cli("train", "--resume", run_dir.name, home=tmp_path / "b")
    assert resumed.wait(timeout=300) == 0, resumed.stdout.read()

    run_a = next((tmp_path / "a" / "runs").iterdir())
    a = load_file(run_a / "checkpoints" / f"step-{steps}" / "model.safetensors")
    b = load_file(run_dir / "checkpoints" / f"step-{steps}" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name  # bitwise

    # The metrics log has each step once, with the same numbers as the uninterrupted run.
    def rows(d):
        return [
            (r["step"], r["split"], r["loss"]) for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())
        ]

    assert rows(run_dir) == rows(run_a)
    assert len(list((run_dir / "checkpoints").glob("step-*"))) == 2  # keep_last


def test_resume_errors(home: Path, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no run 'nope'"):
        resume_scratch("nope")
    cfg = load_config(recipe(tmp_path, 20), ["training.save_every=10"])
    run, _ = train_scratch(cfg)
    # Someone edits the model section of the run's config.yaml, then resumes: refused, naming the mismatch.
    cfg_file = run.root / "config.yaml"
    cfg_file.write_text(cfg_file.read_text().replace("hidden_size: 64", "hidden_size: 32"))
    with pytest.raises(TrainError, match="different architecture"):
        resume_scratch(run.id)
    # A save interrupted before its rename leaves only a hidden temp folder: it is never "latest".
    (run.checkpoints_dir / ".tmp-step-30").mkdir()
    assert run.latest_checkpoint().name == "step-20"


class ExplodesAtStep3(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(4))
        self.calls = 0

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None, **_: object) -> LMOutput:
        self.calls += 1
        loss = (self.w.sum() - 1.0) ** 2 * (float("nan") if self.calls == 3 else 1.0)
        return LMOutput(logits=torch.zeros(1), loss=loss)


def test_nan_guard_stops_naming_the_step_and_keeps_the_last_good_checkpoint(home: Path) -> None:
    data = [{"input_ids": torch.zeros(4, dtype=torch.long), "labels": torch.zeros(4, dtype=torch.long)}] * 4
    run = Run.create("test")
    cfg = TrainingConfig(max_steps=10, batch_size=4, save_every=2, progress=False)
    with pytest.raises(TrainError, match="at step 3") as err:
        train(ExplodesAtStep3(), run, cfg, data)
    assert "step-2" in err.value.hint
    assert run.latest_checkpoint().name == "step-2" and run.meta["status"] == "failed"


class FlatLoss(torch.nn.Module):
    """A model whose loss never changes, so validation never improves."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(2))

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None, **_: object) -> LMOutput:
        return LMOutput(logits=torch.zeros(1), loss=self.w.sum() * 0 + 1.0)


def test_early_stop_after_patience_evaluations_without_improvement(home: Path) -> None:
    data = [{"input_ids": torch.zeros(4, dtype=torch.long), "labels": torch.ones(4, dtype=torch.long)}] * 4
    cfg = TrainingConfig(max_steps=50, batch_size=2, eval_every=1, early_stop_patience=2, progress=False)
    result = train(FlatLoss(), Run.create("test"), cfg, data, val_data=data)
    assert result.stopped == "early_stop" and result.steps == 3  # best at step 1, no better at 2 and 3


def test_too_few_examples_for_one_batch(home: Path) -> None:
    data = [{"input_ids": torch.zeros(4, dtype=torch.long), "labels": torch.zeros(4, dtype=torch.long)}] * 3
    with pytest.raises(DataError, match="fewer than one batch"):
        train(ExplodesAtStep3(), Run.create("test"), TrainingConfig(batch_size=4, progress=False), data)


def test_schedule_warms_up_then_decays() -> None:
    cfg = TrainingConfig(max_steps=100, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    assert lr_factor(0, cfg) == pytest.approx(1 / 11)
    assert lr_factor(10, cfg) == pytest.approx(1.0)
    assert lr_factor(55, cfg) == pytest.approx(0.55)
    assert lr_factor(100, cfg) == pytest.approx(0.1)
    assert lr_factor(55, cfg.model_copy(update={"schedule": "linear"})) == pytest.approx(0.55)
    assert lr_factor(99, cfg.model_copy(update={"schedule": "constant"})) == 1.0


def test_deterministic_switch_is_restored_after_a_run() -> None:
    import torch

    from hearth.train.loop import deterministic

    assert not torch.are_deterministic_algorithms_enabled()
    with deterministic(True):
        assert torch.are_deterministic_algorithms_enabled()
    assert not torch.are_deterministic_algorithms_enabled()
