"""`hearth debug overfit CONFIG` and `hearth debug lr-find CONFIG`: is the training pipeline sound?"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

dbg = typer.Typer(
    help="Debugging aids for training: overfit one batch, learning-rate range test.", no_args_is_help=True
)
out = Console()


@dbg.command("overfit")
def overfit_cmd(
    config: str = typer.Argument(..., help="a `hearth train` or `hearth tune` recipe"),
    overrides: list[str] = typer.Argument(None, help="key=value overrides"),
    steps: int = typer.Option(100, "--steps", help="optimizer steps on the one batch"),
    lr: float = typer.Option(None, "--lr", help="learning rate (default: the recipe's)"),
    drop: float = typer.Option(0.9, "--drop", help="pass when the loss falls by this share (0.9 = to a tenth)"),
) -> None:
    """Can the model memorise one batch? If not, the pipeline is broken. Logs gradient statistics too."""
    from hearth.train.debug import overfit

    r = overfit(config, overrides or [], steps=steps, learning_rate=lr, drop=drop)
    verdict = "[green]PASS[/]" if r.passed else "[red]FAIL[/]"
    out.print(
        f"{verdict} one batch of {r.batch_size}, {r.steps} steps: loss {r.initial_loss:.4f} → {r.final_loss:.4f} "
        f"(target ≤ {r.target:.4f})"
    )
    if r.grads:
        table = Table("layer group", "grad norm", "update / weight")
        groups = [k.split("/", 1)[1] for k in r.grads if k.startswith("grad_norm/") and k != "grad_norm/total"]
        for g in groups:
            table.add_row(g, f"{r.grads.get(f'grad_norm/{g}', 0):.3e}", f"{r.grads.get(f'update_ratio/{g}', 0):.3e}")
        out.print(table)
    out.print(f"{r.hint}\nrun: {r.run_id} (metrics.jsonl has the loss and split 'grads')")
    if not r.passed:
        raise typer.Exit(1)


@dbg.command("lr-find")
def lr_find_cmd(
    config: str = typer.Argument(..., help="a `hearth train` or `hearth tune` recipe"),
    overrides: list[str] = typer.Argument(None, help="key=value overrides"),
    min_lr: float = typer.Option(1e-7, "--min-lr", help="first learning rate"),
    max_lr: float = typer.Option(1.0, "--max-lr", help="last learning rate"),
    steps: int = typer.Option(100, "--steps", help="steps of the sweep"),
) -> None:
    """Learning-rate range test: raise the rate exponentially, plot the loss, suggest a rate."""
    from hearth.train.debug import lr_find

    r = lr_find(config, overrides or [], min_lr=min_lr, max_lr=max_lr, steps=steps)
    out.print(
        f"suggested learning rate [bold]{r.suggested_lr:.2e}[/] (steepest fall); lowest loss at {r.min_loss_lr:.2e}; "
        f"sweep stopped: {r.stopped} after {len(r.lrs)} steps"
    )
    out.print(f"plot: {r.plot}")


def register(app: typer.Typer) -> None:
    app.add_typer(dbg, name="debug")
