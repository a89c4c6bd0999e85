"""`hearth models` and `hearth inspect`: what models there are, and what one of them is."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table


def register(app: typer.Typer) -> None:
    @app.command("models")
    def models() -> None:
        """List the bundled, local, adapter and remote models you can pass to -m, and the engine that runs each."""
        from hearth import config
        from hearth.models.backends import engine_for
        from hearth.models.catalog import list_models

        settings = config.settings()
        table = Table("model", "kind", "engine", "why", "description", "path")
        for info in list_models(settings):
            engine, why = engine_for(info.id, settings)
            table.add_row(info.id, info.kind, engine, why, info.description, info.path or "")
        Console().print(table)

    @app.command("inspect")
    def inspect(
        model: str = typer.Argument(None, help="model name or path (.safetensors, .gguf, folder)"),
        params: str = typer.Option(None, "--params", help="a model not on disk: its parameter count, e.g. 70B"),
        dtype: str = typer.Option(
            None, "--dtype", help="show memory for this precision only: fp32 bf16 fp16 int8 int4"
        ),
        context: int = typer.Option(None, "--context", help="tokens of context for the KV-cache estimate"),
        tensors: bool = typer.Option(False, "--tensors", help="list every tensor"),
        as_json: bool = typer.Option(False, "--json", help="print JSON instead of tables"),
        plot: str = typer.Option(None, "--plot", help="write a bar chart of the parameter breakdown to this PNG"),
    ) -> None:
        """Tensors, parameters by role, and memory to run or train a model — read from headers only."""
        from hearth.errors import HearthError
        from hearth.models import inspect as insp

        if dtype and dtype not in insp.BYTES:
            raise HearthError(f"unknown dtype '{dtype}'", f"use one of: {', '.join(insp.BYTES)}")
        if params:
            report = insp.estimate(insp.parse_params(params), context or 4096)
        elif model:
            report = insp.inspect(model, context)
        else:
            raise HearthError(
                "name a model or give --params", "e.g. hearth inspect smollm2, or hearth inspect --params 70B"
            )
        rows = [
            r
            for r in report.memory
            if not dtype
            or r["dtype"] == dtype
            or (r["use"] != "inference" and dtype in ("bf16", "fp32") and r["dtype"] == dtype)
        ]
        if as_json:
            data = report.to_dict()
            data["memory"] = rows
            if not tensors:
                data.pop("tensors")
            print(json.dumps(data, indent=2))
        else:
            _print(report, rows, tensors)
        if plot:
            if not report.groups:
                raise HearthError(
                    "--plot needs a model on disk", "inspect a model file or folder to see its parameter breakdown"
                )
            print(f"wrote {insp.plot(report, plot)}")

    @app.command("convert")
    def convert(
        source: str = typer.Argument(
            ..., help="a .gguf, pytorch_model.bin, .pt checkpoint, a folder of .bin files, or a model name"
        ),
        out: str = typer.Option(..., "--out", "-o", help="a folder, or a file ending in .safetensors"),
    ) -> None:
        """Write a model's weights as safetensors (no pickles: nothing runs when it loads)."""
        from hearth.models.convert import convert as run

        print(f"wrote {run(source, out)}")


def _print(report, rows, show_tensors: bool) -> None:
    from hearth.models.inspect import gigabytes

    console = Console()
    console.print(f"[bold]{report.source}[/] ({report.format}) — [bold]{report.total_params:,}[/] parameters")
    arch = report.architecture
    for key, value in report.extras.items():
        console.print(f"[dim]checkpoint also holds[/] {key}: {value}")
    if arch.layers:
        console.print(
            f"layers {arch.layers} · hidden {arch.hidden} · heads {arch.heads} (kv {arch.kv_heads}) · head_dim {arch.head_dim} · context {arch.context} · vocab {arch.vocab}"
        )
    if show_tensors:
        t = Table("tensor", "shape", "dtype", "parameters", "role")
        for info in report.tensors:
            t.add_row(info.name, "×".join(map(str, info.shape)), info.dtype, f"{info.params:,}", info.role)
        console.print(t)
    if report.groups:
        t = Table("role", "parameters", "share", title="parameters by role")
        for role, n in report.groups.items():
            if n:
                t.add_row(role, f"{n:,}", f"{n / report.total_params:.1%}")
        t.add_row("[bold]total", f"[bold]{report.total_params:,}", "100%")
        console.print(t)
        if not report.groups.get("output head"):
            console.print("[dim]no separate output head: it shares the embedding matrix (tied weights)[/]")
    t = Table(
        "use",
        "dtype",
        "weights",
        f"KV cache ({report.context} tokens)",
        "total",
        title="memory (activations not included)",
    )
    for r in rows:
        t.add_row(r["use"], r["dtype"], gigabytes(r["weights"]), gigabytes(r["kv_cache"]), gigabytes(r["total"]))
    console.print(t)
