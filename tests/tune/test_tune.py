"""`hearth tune` on the bundled model: the tune report, resume equals an uninterrupted run, config errors,
two processes under Accelerate. The suite's one 60-step adapter (recall, serving, merge, GGUF export) is
trained and tested in tests/eval/test_loop.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hearth.errors import ConfigError
from hearth.train import tune

ROOT = Path(__file__).resolve().parents[2]
EN = str(ROOT / "examples" / "data" / "company-qa-en.jsonl")


def _cfg(*overrides: str) -> tune.TuneConfig:
    return tune.load_config(
        None,
        [
            f"data.path={EN}",
            "data.seed=2",
            "data.max_seq_len=96",
            "training.progress=false",
            "report.samples=0",
            *overrides,
        ],
    )


@pytest.mark.slow
def test_resumed_lora_run_equals_uninterrupted(home: Path) -> None:
    from safetensors.torch import load_file

    cfg = _cfg(
        "name=resume",
        "training.max_steps=4",
        "training.save_every=2",
        "training.eval_every=2",
        "training.warmup_steps=1",
        "training.learning_rate=1e-3",
        "training.keep_last=3",
        "data.val_fraction=0.1",
        "method.rank=16",
        "report.samples=1",
        "report.max_tokens=8",
    )
    run, rep = tune.tune(cfg)
    # the report: validation loss against the base model's, perplexities, a before/after sample
    assert rep.trainable == 1_843_200 and rep.steps == 4
    assert rep.tuned_val_loss is not None and rep.base_val_loss is not None
    assert rep.tuned_val_loss < rep.base_val_loss
    saved = json.loads((run.root / "report.json").read_text())
    assert saved["base_perplexity"] > saved["tuned_perplexity"] and len(saved["samples"]) == 1
    assert "| base |" in (run.root / "report.md").read_text()
    final = run.root / "checkpoints" / "step-4"
    uninterrupted = load_file(final / "model.safetensors")
    assert any("lora_B" in k for k in uninterrupted)
    # Simulate a kill after step 2: the step-4 checkpoint and the outputs never got written.
    import shutil

    shutil.rmtree(final)
    shutil.rmtree(run.root / "adapter")
    run2, rep = tune.tune(cfg, resume=run.id)
    assert run2.id == run.id and rep.steps == 4
    resumed = load_file(final / "model.safetensors")
    assert resumed.keys() == uninterrupted.keys()
    for key, value in uninterrupted.items():
        torch.testing.assert_close(resumed[key], value, rtol=0, atol=0)


def test_bad_inputs_fail_before_a_run_exists(home: Path, tmp_path: Path) -> None:
    from hearth import paths
    from hearth.errors import DataError, TrainError

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "a"}\n{"question": \n')
    with pytest.raises(DataError, match=rf"{bad}:2: not valid JSON"):
        tune.setup(_cfg(f"data.path={bad}"))
    with pytest.raises(ConfigError, match="max_seq_len is 9000"):
        tune.setup(_cfg("data.max_seq_len=9000"))
    with pytest.raises(TrainError, match="lost its answer to truncation"):
        tune.setup(_cfg("data.max_seq_len=16"))
    with pytest.raises(ConfigError, match=r"unknown key 'method\.rnak'"):
        _cfg("method.rnak=4")
    with pytest.raises(ConfigError, match="no layer named 'qkv'"):
        tune.tune(_cfg("method.target_modules=[qkv]"))
    assert not list(paths.runs_dir().iterdir()) and not list(paths.adapters_dir().iterdir())


@pytest.mark.slow
def test_accelerate_launch_two_processes_train_like_one(home: Path, tmp_path: Path) -> None:
    """The same recipe under `accelerate launch` (2 processes × batch 2, gloo on CPU) as in one process
    with batch 4: one run, both processes counted, and the same losses, because a step's loss is the
    mean over all its answer tokens (not a mean of each process's mean)."""
    import os
    import subprocess
    import sys

    def metrics(launcher: list[str], batch: int) -> tuple[dict, list[float]]:
        before = set((home / "runs").glob("*")) if (home / "runs").exists() else set()
        cmd = [
            *launcher,
            "-m",
            "hearth.cli.main",
            "tune",
            str(ROOT / "configs" / "tune" / "smollm2-lora.yaml"),
            "training.max_steps=4",
            f"training.batch_size={batch}",
            "training.eval_every=2",
            "training.save_every=4",
            "training.log_every=1",
            "method.dropout=0",
            "data.max_seq_len=64",
            "report.samples=0",
        ]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        (run,) = set((home / "runs").glob("*")) - before  # one run for both processes
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert (run / "adapter" / "adapter_model.safetensors").exists()
        return json.loads((run / "environment.json").read_text()), [r["loss"] for r in rows]

    env_one, one = metrics([sys.executable], 4)
    env_two, two = metrics(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"], 2
    )
    assert (env_one["processes"], env_two["processes"]) == (1, 2)
    assert len(one) == len(two) == 6  # 4 train + 2 val
    # measured: equal to 1e-6 at step 1, within 0.1% later (each process pads to its own longest row)
    assert two == pytest.approx(one, rel=5e-3)
