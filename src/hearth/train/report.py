"""Reading runs back: one-line summaries, side-by-side comparison, and loss curves as a PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hearth.errors import TrainError
from hearth.train.runs import Run


def summary_row(run: Run) -> dict[str, Any]:
    """What `hearth runs list` shows for one run."""
    meta, summary = run.meta, run.summary
    last = run.metrics("train")[-1:] or [{}]
    return {
        "id": run.id,
        "kind": meta.get("kind", "?"),
        "status": meta.get("status", "?"),
        "arch": meta.get("arch", ""),
        "parameters": meta.get("parameters"),
        "step": summary.get("steps", last[0].get("step")),
        "train_loss": summary.get("train_loss", last[0].get("loss")),
        "best_val_loss": summary.get("best_val_loss"),
        "test_loss": summary.get("test_loss"),
        "tokens_per_s": summary.get("tokens_per_s"),
    }


def flat_config(run: Run) -> dict[str, Any]:
    file = run.root / "config.yaml"
    data = yaml.safe_load(file.read_text(encoding="utf-8")) if file.exists() else {}
    out: dict[str, Any] = {}

    def walk(d: dict[str, Any], prefix: str) -> None:
        for k, v in d.items():
            if isinstance(v, dict) and v:
                walk(v, f"{prefix}{k}.")
            else:
                out[f"{prefix}{k}"] = v

    walk(data or {}, "")
    return out


def config_differences(runs: list[Run]) -> list[tuple[str, list[Any]]]:
    """The config keys whose values differ between the runs (the 'what did I change?' table)."""
    configs = [flat_config(r) for r in runs]
    keys = sorted({k for c in configs for k in c})
    return [
        (k, [c.get(k) for c in configs]) for k in keys if len({repr(c.get(k)) for c in configs}) > 1 and k != "name"
    ]


def plot_curves(runs: list[Run], out: str | Path) -> Path:
    """Train (thin) and validation (thick, dots) loss against step, one colour per run, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    fig, ax = plt.subplots(figsize=(9, 5), dpi=120)
    drawn = 0
    for i, run in enumerate(runs):
        color = f"C{i % 10}"
        label = f"{run.id} ({run.meta.get('arch', run.meta.get('kind', ''))})"
        train = run.metrics("train")
        val = run.metrics("val")
        if train:
            ax.plot(
                [r["step"] for r in train],
                [r["loss"] for r in train],
                color=color,
                alpha=0.45,
                lw=1,
                label=f"{label} train",
            )
            drawn += 1
        if val:
            ax.plot(
                [r["step"] for r in val],
                [r["loss"] for r in val],
                color=color,
                lw=2.2,
                marker="o",
                ms=4,
                label=f"{label} val",
            )
            drawn += 1
    if not drawn:
        plt.close(fig)
        raise TrainError(
            "none of these runs has logged a loss yet", "wait for the first log_every steps, or pick finished runs"
        )
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy loss (nats per token)")
    ax.set_title("Loss curves")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
