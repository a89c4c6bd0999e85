"""Debugging aids for training: is the pipeline sound, and is the learning rate sane?

    overfit(config)      can the model memorise ONE batch? A correct pipeline drives the loss on a single
                         repeated batch close to zero; if it can't, something is broken (labels all -100,
                         frozen weights, a detached loss, a learning rate of 0 …) — find that before a long run.
    GradStats            per layer group: gradient norm, weight norm and the update/weight ratio ‖Δw‖/‖w‖
                         of each optimizer step (a healthy ratio is around 1e-3; 1e-1 means the step is
                         rewriting the weights, 1e-6 means they barely move). The loop logs them into
                         metrics.jsonl as split ``grads`` when ``training.grad_stats_every`` > 0.
    lr_find(config)      the learning-rate range test (Smith, 2015): raise the rate exponentially over a
                         few hundred steps and watch the loss; suggest the rate where it falls fastest.

Both ``overfit`` and ``lr_find`` read the same recipe files ``hearth train`` (from scratch) and ``hearth
tune`` (fine-tuning) read, and build the model and data the way those commands do.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from hearth.errors import ConfigError, TrainError
from hearth.train.config import TrainingConfig

# ---------------------------------------------------------------------------------------------
# per-layer-group gradient statistics

_LAYER = re.compile(r"(?:^|\.)(?:layers|blocks|h|layer)\.(\d+)\.")


def group_of(name: str) -> str:
    """'model.layers.3.self_attn.q_proj.lora_A.default.weight' → 'layer3'; 'lm_head.weight' → 'lm_head'."""
    m = _LAYER.search(name)
    if m:
        return f"layer{int(m.group(1))}"
    parts = [p for p in name.split(".") if p not in ("base_model", "model", "module", "weight", "bias", "default")]
    return parts[0] if parts else name


class GradStats:
    """Measure each layer group's gradient and update at the steps that are due (every ``every`` steps)."""

    def __init__(self, model: torch.nn.Module, every: int) -> None:
        self.every = max(1, every)
        self.params = [(group_of(n), p) for n, p in model.named_parameters() if p.requires_grad]
        self._before: dict[int, torch.Tensor] | None = None
        self._grads: dict[str, float] = {}

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def before_step(self, step: int) -> None:
        """Call after backward, before clipping and the optimizer step; ``step`` is the step about to finish."""
        if not self.due(step):
            self._before = None
            return
        sq: dict[str, float] = {}
        for g, p in self.params:
            if p.grad is not None:
                sq[g] = sq.get(g, 0.0) + float(p.grad.detach().float().pow(2).sum())
        self._grads = {g: math.sqrt(v) for g, v in sq.items()}
        self._before = {id(p): p.detach().clone() for _, p in self.params}

    def after_step(self) -> dict[str, float] | None:
        """Call after the optimizer step: the row to log (None when this step was not due)."""
        if self._before is None:
            return None
        upd: dict[str, float] = {}
        wsq: dict[str, float] = {}
        for g, p in self.params:
            before = self._before[id(p)]
            upd[g] = upd.get(g, 0.0) + float((p.detach() - before).float().pow(2).sum())
            wsq[g] = wsq.get(g, 0.0) + float(before.float().pow(2).sum())
        self._before = None
        row: dict[str, float] = {}
        for g in sorted(wsq, key=_group_order):
            row[f"grad_norm/{g}"] = self._grads.get(g, 0.0)
            row[f"update_ratio/{g}"] = math.sqrt(upd[g]) / max(math.sqrt(wsq[g]), 1e-12)
        row["grad_norm/total"] = math.sqrt(sum(v * v for v in self._grads.values()))
        return row


def _group_order(g: str) -> tuple[int, int, str]:
    m = re.fullmatch(r"layer(\d+)", g)
    return (1, int(m.group(1)), "") if m else (0 if "emb" in g else 2, 0, g)


# ---------------------------------------------------------------------------------------------
# building a recipe's model and data


@dataclass
class Built:
    kind: str  # scratch | tune
    name: str
    model: torch.nn.Module
    train_data: Any  # a map-style dataset of examples
    collate_fn: Any
    training: TrainingConfig
    trainable_only: bool


def recipe_kind(path: str | Path) -> str:
    """'scratch' or 'tune': a scratch recipe describes its model (a mapping); a tune recipe names one."""
    import yaml

    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"recipe {file} does not exist", "pass a file from configs/ (scratch-*.yaml or tune/*.yaml)")
    raw = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    return "scratch" if isinstance(raw.get("model"), dict) or "tokenizer" in raw else "tune"


def build(path: str | Path, overrides: Sequence[str] = (), no_dropout: bool = False) -> Built:
    """The model and training data a recipe describes, as ``hearth train`` / ``hearth tune`` build them."""
    if recipe_kind(path) == "scratch":
        from hearth.scratch.corpus import build_datasets, read_documents, split_corpus
        from hearth.scratch.model import build_model
        from hearth.scratch.tokenizer import as_transformers, train_tokenizer
        from hearth.train import scratch

        cfg = scratch.load_config(path, [*overrides, *(["model.dropout=0"] if no_dropout else [])])
        splits = split_corpus(read_documents(cfg.data.path, cfg.data.doc_separator), cfg.data)
        tokenizer = as_transformers(train_tokenizer(splits.train, cfg.tokenizer))
        model_cfg = cfg.model.model_copy(update={"vocab_size": len(tokenizer)})
        data = build_datasets(tokenizer, splits, model_cfg.block_size)
        torch.manual_seed(cfg.training.seed)
        return Built("scratch", cfg.name, build_model(model_cfg), data["train"], None, cfg.training, False)

    from hearth.train import data as tdata
    from hearth.train import methods, tune

    cfg = tune.load_config(path, overrides)
    prep = tune.setup(cfg)
    torch.manual_seed(cfg.training.seed)
    model = methods.setup(prep.base, cfg.method, prep.tokenizer)
    return Built(
        "tune",
        cfg.name,
        model,
        tdata.Rows(prep.train_rows.rows),
        tdata.collator(prep.tokenizer.pad_token_id),
        cfg.training,
        cfg.method.name != "full",
    )


def _batch(built: Built, indices: Sequence[int]) -> dict[str, torch.Tensor]:
    items = [built.train_data[i] for i in indices]
    if built.collate_fn is not None:
        return built.collate_fn(items)
    return torch.utils.data.default_collate(items)


def batch_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> float:
    """The loss on ``batch`` without dropout (what memorising is measured by)."""
    was = model.training
    model.eval()
    with torch.no_grad():
        loss = float(model(**batch).loss)
    model.train(was)
    return loss


# ---------------------------------------------------------------------------------------------
# overfit one batch


@dataclass
class OverfitResult:
    run_id: str
    kind: str
    batch_size: int
    steps: int
    initial_loss: float
    final_loss: float
    target: float
    passed: bool
    curve: list[tuple[int, float]] = field(default_factory=list)
    grads: dict[str, float] = field(default_factory=dict)  # the last logged gradient statistics
    hint: str = ""


def overfit(
    path: str | Path,
    overrides: Sequence[str] = (),
    *,
    steps: int = 100,
    learning_rate: float | None = None,
    drop: float = 0.9,
) -> OverfitResult:
    """Train on one repeated batch for ``steps`` steps; passed when the loss falls by ``drop`` (90%)."""
    from hearth.train.loop import train
    from hearth.train.runs import Run

    built = build(path, overrides, no_dropout=True)
    n = built.training.batch_size
    if len(built.train_data) < n:
        raise TrainError(
            f"the data has {len(built.train_data)} examples, fewer than one batch of {n}", "lower training.batch_size"
        )
    one = torch.utils.data.Subset(built.train_data, list(range(n)))
    log_every = max(1, steps // 20)
    cfg = built.training.model_copy(
        update={
            "max_steps": steps,
            "learning_rate": learning_rate or built.training.learning_rate,
            "schedule": "constant",  # no decay: the question is whether it can, not how fast it settles
            "warmup_steps": min(built.training.warmup_steps, steps // 10),
            "weight_decay": 0.0,
            "grad_accum_steps": 1,
            "early_stop_patience": 0,
            "log_every": log_every,
            "grad_stats_every": log_every,
            "save_every": steps,
            "keep_last": 1,
        }
    )
    batch = _batch(built, range(n))
    initial = batch_loss(built.model, batch)
    run = Run.create("debug", f"overfit-{built.name}")
    run.write_config(cfg)
    train(built.model, run, cfg, one, collate_fn=built.collate_fn, trainable_only=built.trainable_only)
    final = batch_loss(built.model, batch)
    target = initial * (1 - drop)
    passed = final <= target
    train_rows = run.metrics("train")
    grad_rows = run.metrics("grads")
    hint = (
        "the pipeline can learn: it memorised one batch"
        if passed
        else "a sound pipeline memorises one batch — check that labels are not all -100, that the trainable "
        "parameters get gradients (grad_norm/* above 0), and the learning rate; then try more --steps"
    )
    result = OverfitResult(
        run.id,
        built.kind,
        n,
        steps,
        initial,
        final,
        target,
        passed,
        [(int(r["step"]), float(r["loss"])) for r in train_rows],
        {k: v for k, v in (grad_rows[-1] if grad_rows else {}).items() if k not in ("step", "split", "time")},
        hint,
    )
    (run.root / "overfit.json").write_text(json.dumps(asdict(result), indent=1))
    return result


# ---------------------------------------------------------------------------------------------
# learning-rate range test


@dataclass
class LRFindResult:
    run_id: str
    suggested_lr: float
    min_loss_lr: float
    lrs: list[float]
    losses: list[float]  # smoothed
    stopped: str  # "diverged" or "max_lr"
    plot: str


def suggest(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """The rate where the smoothed loss falls fastest per log-step of the rate (before its minimum)."""
    import numpy as np

    if len(lrs) < 3:
        return float(lrs[0]) if lrs else float("nan")
    y = np.asarray(losses, dtype=float)
    x = np.log10(np.asarray(lrs, dtype=float))
    end = int(np.argmin(y)) + 1  # only the descending part counts
    if end < 3:
        return float(lrs[int(np.argmin(y))])
    slope = np.gradient(y[:end], x[:end])
    return float(lrs[int(np.argmin(slope))])


def lr_find(
    path: str | Path,
    overrides: Sequence[str] = (),
    *,
    min_lr: float = 1e-7,
    max_lr: float = 1.0,
    steps: int = 100,
    smooth: float = 0.9,
    diverge: float = 4.0,
) -> LRFindResult:
    """Exponential learning-rate sweep from ``min_lr`` to ``max_lr``; stops when the loss passes ``diverge`` × its best."""
    from torch.utils.data import DataLoader, RandomSampler

    from hearth.train.loop import build_optimizer
    from hearth.train.runs import Run

    if not (0 < min_lr < max_lr) or steps < 5:
        raise ConfigError(
            "lr-find needs 0 < min_lr < max_lr and at least 5 steps", "e.g. --min-lr 1e-7 --max-lr 1 --steps 100"
        )
    built = build(path, overrides)
    cfg = built.training
    model = built.model
    model.train()
    optimizer = build_optimizer(model.parameters(), cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    sampler = RandomSampler(built.train_data, replacement=True, num_samples=steps * cfg.batch_size, generator=gen)
    loader = iter(DataLoader(built.train_data, batch_size=cfg.batch_size, sampler=sampler, collate_fn=built.collate_fn))
    run = Run.create("debug", f"lr-find-{built.name}")
    run.write_config(cfg)
    lrs: list[float] = []
    losses: list[float] = []
    avg, best, stopped = 0.0, math.inf, "max_lr"
    for i in range(steps):
        lr = min_lr * (max_lr / min_lr) ** (i / (steps - 1))
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = next(loader)
        loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        value = loss.item()
        # exponential moving average with bias correction, so the first points are not pulled to 0
        avg = smooth * avg + (1 - smooth) * value
        smoothed = avg / (1 - smooth ** (i + 1))
        if not math.isfinite(smoothed) or smoothed > diverge * best:
            stopped = "diverged"
            break
        best = min(best, smoothed)
        lrs.append(lr)
        losses.append(smoothed)
        run.log(i + 1, "lr_find", lr=lr, loss=value, smoothed_loss=smoothed)
    run.close()
    if not lrs:
        raise TrainError("the loss diverged at the very first learning rate", "lower --min-lr")
    lr_best = suggest(lrs, losses)
    lr_min = lrs[min(range(len(losses)), key=losses.__getitem__)]
    plot = run.root / "lr_find.png"
    plot_lr(lrs, losses, lr_best, plot, title=f"LR range test — {built.name}")
    result = LRFindResult(run.id, lr_best, lr_min, lrs, losses, stopped, str(plot))
    (run.root / "lr_find.json").write_text(json.dumps(asdict(result), indent=1))
    return result


def plot_lr(lrs: Sequence[float], losses: Sequence[float], suggested: float, file: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(lrs, losses, lw=1.5)
    ax.set_xscale("log")
    ax.axvline(suggested, color="tab:red", ls="--", lw=1)
    ax.annotate(
        f"steepest: {suggested:.1e}", (suggested, max(losses)), color="tab:red", fontsize=8, ha="left", va="top"
    )
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss (smoothed)")
    ax.set_title(title or "LR range test")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(file, dpi=110)
    plt.close(fig)
