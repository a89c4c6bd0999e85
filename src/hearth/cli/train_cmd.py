"""`hearth train`, `hearth runs list|show|compare`, `hearth explain attention`: thin faces over hearth.train / hearth.scratch."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Column, Table

out = Console()


def _fmt(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train(
        config: str = typer.Argument(
            None, help="recipe file, e.g. configs/scratch-shakespeare.yaml, or `compare` and its recipe"
        ),
        overrides: list[str] = typer.Argument(
            None, help="key=value overrides, e.g. training.learning_rate=3e-4 model.arch=lstm"
        ),
        resume: str = typer.Option(
            None, "--resume", help="continue this run (id, runs/<id> or path) from its last checkpoint"
        ),
        keys: bool = typer.Option(False, "--keys", help="list every recipe key with its type, default and meaning"),
    ) -> None:
        """Train a model from scratch with the one training loop: model.arch = transformer, lstm, cnn, mamba or rwkv.

        `hearth train compare configs/compare-architectures.yaml` trains all five at a matched parameter
        count and token budget and writes the measured comparison to docs/results/architectures/
        (`parts=[recall]` after it measures only the recall task again and keeps the other numbers).
        """
        from hearth import config as hconfig
        from hearth.errors import ConfigError
        from hearth.train import scratch

        if config == "compare":
            _compare(overrides or [])
            return

        if keys:
            table = Table("key", "type", "default", "description")
            for row in hconfig.describe(scratch.ScratchConfig):
                table.add_row(*row)
            out.print(table)
            return
        if resume:
            if config or overrides:
                raise ConfigError(
                    "--resume takes no config or overrides: a run continues with its own config.yaml",
                    f"run `hearth train --resume {resume}` alone",
                )
            run, result = scratch.resume_scratch(resume)
        else:
            if config is None:
                raise ConfigError(
                    "no recipe given",
                    "pass a config file, e.g. `hearth train configs/scratch-tiny.yaml`, or --resume RUN",
                )
            cfg = scratch.load_config(config, overrides or [])
            run, result = scratch.train_scratch(cfg)
        if run.writable:
            out.print(
                f"[green]run {run.id}[/] — {result.steps} steps ({result.stopped}); train loss {_fmt(result.train_loss)}, best val loss {_fmt(result.best_val_loss)}, test loss {_fmt(result.test_loss)}, {_fmt(result.tokens_per_s)} tokens/s"
            )
            out.print(f"  folder: {run.root}\n  sample: hearth chat -m {run.root}")

    def _compare(args: list[str]) -> None:
        from hearth.errors import ConfigError
        from hearth.train import compare_arch

        if not args:
            raise ConfigError(
                "`hearth train compare` needs its recipe",
                "run `hearth train compare configs/compare-architectures.yaml` (key=value overrides may follow)",
            )
        cfg = compare_arch.load_config(args[0], args[1:])
        report = compare_arch.run_comparison(cfg, progress=lambda line: out.print(f"[bold]compare[/] {line}"))
        out.print(f"[green]report[/] {report}  (plots and results.json beside it)")

    runs = typer.Typer(
        help="Training runs: where every hyperparameter, metric and checkpoint is recorded.", no_args_is_help=True
    )
    app.add_typer(runs, name="runs")

    @runs.command("list")
    def runs_list() -> None:
        """Every run with its status and final numbers."""
        from hearth.train.report import summary_row
        from hearth.train.runs import list_runs

        table = Table(
            Column("id", no_wrap=True),
            "kind",
            "arch",
            Column("status", no_wrap=True),
            "step",
            "params",
            "train loss",
            "best val",
            "test",
            "tok/s",
        )
        for run in list_runs():
            r = summary_row(run)
            table.add_row(
                r["id"],
                r["kind"],
                r["arch"],
                r["status"],
                _fmt(r["step"]),
                _fmt(r["parameters"]),
                _fmt(r["train_loss"]),
                _fmt(r["best_val_loss"]),
                _fmt(r["test_loss"]),
                _fmt(r["tokens_per_s"]),
            )
        # Piped (grep, a script, a test) the table keeps its natural width: rich would fit it to 80 columns and
        # end the ids `runs show` takes in "…". A terminal gets it fitted to its own width.
        wide = out.measure(table, options=out.options.update_width(500)).maximum
        (out if out.is_terminal else Console(width=max(out.width, wide))).print(table)

    @runs.command("show")
    def runs_show(run_id: str = typer.Argument(..., help="run id, runs/<id> or path")) -> None:
        """A run's config, environment, summary and checkpoints."""
        from hearth.train.runs import Run

        run = Run.open(run_id, writable=False)
        out.print(f"[bold]{run.id}[/]  {run.root}")
        out.print_json(json.dumps(run.meta))
        if (run.root / "config.yaml").exists():
            out.print("[bold]config.yaml[/]")
            out.print((run.root / "config.yaml").read_text(encoding="utf-8"), highlight=False)
        for name in ("summary.json", "environment.json"):
            if (run.root / name).exists():
                out.print(f"[bold]{name}[/]")
                out.print_json((run.root / name).read_text())
        out.print("[bold]checkpoints[/]: " + (", ".join(p.name for p in run.checkpoints()) or "none"))

    @runs.command("compare")
    def runs_compare(
        run_ids: list[str] = typer.Argument(..., help="two or more runs"),
        plot: str = typer.Option(None, "--plot", help="also draw the loss curves into this PNG"),
    ) -> None:
        """Final numbers side by side, the config keys that differ, and (with --plot) the loss curves."""
        from hearth.train.report import config_differences, plot_curves, summary_row
        from hearth.train.runs import iter_runs

        chosen = list(iter_runs(run_ids))
        rows = [summary_row(r) for r in chosen]
        table = Table("", *[r["id"] for r in rows])
        for key in ("arch", "status", "parameters", "step", "train_loss", "best_val_loss", "test_loss", "tokens_per_s"):
            table.add_row(key, *[_fmt(r[key]) for r in rows])
        for key, values in config_differences(chosen):
            table.add_row(f"[cyan]{key}[/]", *[_fmt(v) for v in values])
        out.print(table)
        if plot:
            out.print(f"curves: {plot_curves(chosen, plot)}")

    explain = typer.Typer(help="Look inside a model.", no_args_is_help=True)
    app.add_typer(explain, name="explain")

    @explain.command("attention")
    def explain_attention(
        model: str = typer.Argument(..., help="a from-scratch run (runs/<id>, id) or a model name/path (e.g. smollm2)"),
        text: str = typer.Argument(..., help="the sentence to look at"),
        layer: int = typer.Option(0, "--layer", help="which layer (0 = first)"),
        head: int = typer.Option(0, "--head", help="which attention head in that layer"),
        out_file: str = typer.Option("attention.png", "--out", help="PNG file to write"),
    ) -> None:
        """Draw one head's attention matrix for a sentence as a heatmap."""
        from hearth.scratch.attention import attention_map, plot_attention

        att = attention_map(model, text, layer, head)
        path = plot_attention(att, out_file)
        out.print(
            f"{len(att.tokens)} tokens, layer {layer} of {att.num_layers}, head {head} of {att.num_heads} → {path}"
        )
