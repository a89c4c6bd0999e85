"""`debug overfit` passes on a sound pipeline and fails when it cannot learn; lr-find plots and suggests."""

from __future__ import annotations

import json
from pathlib import Path

from hearth.train.debug import lr_find, overfit

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "configs" / "scratch-tiny.yaml")
QUIET = ["training.progress=false"]


def test_overfit_one_batch_and_grad_stats_in_metrics(home: Path) -> None:
    r = overfit(TINY, QUIET, steps=60, learning_rate=1e-2)
    assert r.passed, r
    assert r.final_loss < 0.1 * r.initial_loss
    rows = [json.loads(line) for line in (home / "runs" / r.run_id / "metrics.jsonl").read_text().splitlines()]
    grads = [row for row in rows if row["split"] == "grads"]
    assert grads and {"grad_norm/layer0", "update_ratio/layer1", "grad_norm/total"} <= set(grads[0])
    assert all(v > 0 for k, v in grads[0].items() if k.startswith(("grad_norm/", "update_ratio/")))


def test_overfit_fails_when_the_model_cannot_learn(home: Path) -> None:
    # a learning rate of 1e-9 moves nothing: the check must say FAIL, not pass quietly
    r = overfit(TINY, QUIET, steps=10, learning_rate=1e-9)
    assert not r.passed
    assert r.final_loss > 0.9 * r.initial_loss
    assert "memorises one batch" in r.hint


def test_lr_find_sweeps_plots_and_suggests(home: Path) -> None:
    r = lr_find(TINY, QUIET, min_lr=1e-5, max_lr=10.0, steps=40)
    assert Path(r.plot).is_file() and Path(r.plot).stat().st_size > 5000
    assert 1e-5 <= r.suggested_lr <= 10.0
    assert r.lrs == sorted(r.lrs) and len(r.lrs) == len(r.losses)
    assert min(r.losses) < r.losses[0]  # somewhere in the sweep the loss fell
