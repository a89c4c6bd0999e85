"""`hearth tune CONFIG`, `hearth tune merge RUN --out DIR`, `hearth export gguf MODEL --out FILE`:
thin faces over hearth.train.tune / merge / export."""

from __future__ import annotations

from typing import Any

import click
import typer
from rich.console import Console
from typer.core import TyperGroup

out = Console()


class _RunByDefault(TyperGroup):
    """`hearth tune CONFIG …` means `hearth tune run CONFIG …`; `merge` stays a subcommand."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


def register(app: typer.Typer) -> None:
    tune = typer.Typer(
        cls=_RunByDefault,
        help="Fine-tune an open model on your data: full, lora, qlora, prefix or adapter (IA³).",
        no_args_is_help=True,
    )
    app.add_typer(tune, name="tune")

    @tune.command("run")
    def run(
        config: str = typer.Argument(None, help="recipe file, e.g. configs/tune/smollm2-lora.yaml"),
        overrides: list[str] = typer.Argument(
            None, help="key=value overrides, e.g. method.rank=8 training.max_steps=60"
        ),
        resume: str = typer.Option(None, "--resume", help="continue this run from its last checkpoint"),
        keys: bool = typer.Option(False, "--keys", help="list every recipe key with its type, default and meaning"),
    ) -> None:
        """Fine-tune (the default: `hearth tune CONFIG` runs this), then print the before/after report."""
        from rich.markdown import Markdown

        from hearth.errors import ConfigError
        from hearth.train import tune as tune_lib

        if keys:
            _print_keys(tune_lib.TuneConfig)
            return
        if resume:
            if config or overrides:
                raise ConfigError(
                    "--resume takes no config or overrides: a run continues with its own config.yaml",
                    f"run `hearth tune --resume {resume}` alone",
                )
            run_, rep = tune_lib.tune(tune_lib.TuneConfig(), resume=resume)
        else:
            if config is None:
                raise ConfigError("no recipe given", "e.g. `hearth tune configs/tune/smollm2-lora.yaml`")
            run_, rep = tune_lib.tune(tune_lib.load_config(config, overrides or []))
        if rep is None:  # not the main process of a multi-process run: it reports
            return
        out.print(Markdown((run_.root / "report.md").read_text(encoding="utf-8")))
        out.print(f"run folder: {run_.root}")

    @tune.command("merge")
    def merge(
        run_ref: str = typer.Argument(..., metavar="RUN", help="a fine-tuning run (id, runs/<id> or path)"),
        out_dir: str = typer.Option(..., "--out", help="folder to write the merged model into (new or empty)"),
    ) -> None:
        """Fold a run's LoRA/IA³ adapter into its base and write a plain safetensors model."""
        from hearth.train.merge import merge as merge_lib

        folder = merge_lib(run_ref, out_dir)
        out.print(f"[green]merged[/] into {folder}\n  chat with it: hearth chat -m {folder}")

    export = typer.Typer(help="Write models in other formats.", no_args_is_help=True)
    app.add_typer(export, name="export")

    @export.command("gguf")
    def gguf(
        model: str = typer.Argument(
            ..., help="model name, base+adapter, or a Hugging Face folder (llama architecture)"
        ),
        out_file: str = typer.Option(..., "--out", help="the .gguf file to write"),
        dtype: str = typer.Option("f16", "--dtype", help="f16 (half the size) or f32 (exact)"),
        check: bool = typer.Option(True, "--check/--no-check", help="load the file back and compare logits"),
    ) -> None:
        """Export to GGUF (for llama.cpp, Ollama, LM Studio) and check the file reproduces the model."""
        from hearth.errors import ConfigError
        from hearth.train.export import export_gguf

        if dtype not in ("f16", "f32"):
            raise ConfigError(f"--dtype {dtype} is not supported", "use f16 or f32")
        result = export_gguf(model, out_file, dtype=dtype, check=check)  # type: ignore[arg-type]
        checked = f"; reloaded, largest logit difference {result.max_logit_diff:.3g}" if check else ""
        out.print(f"[green]wrote[/] {result.path} ({result.tensors} tensors, {result.bytes / 2**20:,.0f} MiB){checked}")


def _print_keys(model: Any) -> None:
    from rich.table import Table

    from hearth import config as hconfig

    table = Table("key", "type", "default", "description")
    for row in hconfig.describe(model):
        table.add_row(*row)
    out.print(table)
