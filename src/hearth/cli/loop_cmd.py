"""`hearth loop CONFIG`: the closed loop — documents → knowledge base → Q&A pairs → LoRA → measured → served."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

out = Console()


def register(app: typer.Typer) -> None:
    @app.command("loop")
    def loop(
        config: str = typer.Argument(None, help="loop recipe, e.g. configs/loop/company-faq.yaml"),
        overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. tune.training.max_steps=20"),
        report: str = typer.Option(None, "--report", help="also copy the report folder here (e.g. docs/results/x)"),
        keys: bool = typer.Option(False, "--keys", help="list every recipe key with its type, default and meaning"),
    ) -> None:
        """Ingest a folder, synthesize pairs, LoRA-tune, compare base / tuned / RAG, register the adapter."""
        from hearth import config as hconfig
        from hearth.errors import ConfigError
        from hearth.eval import loop as loop_mod

        if keys:
            table = Table("key", "type", "default", "description")
            for row in hconfig.describe(loop_mod.LoopConfig):
                table.add_row(*row)
            out.print(table)
            return
        if config is None:
            raise ConfigError("no recipe given", "e.g. `hearth loop configs/loop/company-faq.yaml`")
        cfg = loop_mod.load_config(config, overrides or [])
        err = Console(stderr=True)
        result = loop_mod.run_loop(
            cfg, report, on_step=lambda s: err.print(f"[bold cyan]▶[/] {s}"), settings=hconfig.settings()
        )
        table = Table("system", "key fact", "token F1", "citation", "refuses out-of-corpus")
        for label, m in result.overall.items():
            cells = [f"{m[k]:.2f}" if k in m else "–" for k in ("contains_fact", "f1", "citation", "refusal")]
            table.add_row(label, *cells)
        out.print(table)
        for line in result.summary:
            out.print(f"• {line}")
        out.print(f"report: {result.report}\nrun: {result.run_dir}")
        if result.adapter:
            out.print(
                f"adapter registered: chat with `hearth chat -m {cfg.tune.model}+{result.adapter}` (also in `hearth serve`)"
            )
