"""`hearth data synth KB --out pairs.jsonl`: turn knowledge-base chunks into grounded Q&A pairs for `hearth tune`."""

from __future__ import annotations

import typer
from rich.console import Console

data = typer.Typer(help="Training data from your documents.", no_args_is_help=True)
out = Console()


@data.command("synth")
def synth_cmd(
    collection: str = typer.Argument(..., help="knowledge base whose chunks become question–answer pairs"),
    out_file: str = typer.Option(..., "--out", help="JSON-lines file to write (qa format: hearth tune reads it)"),
    generator: str = typer.Option("template", "--generator", help="template (offline patterns, EN + ZH) or model"),
    model: str = typer.Option(None, "--model", "-m", help="generator=model: the chat model that writes questions"),
    variants: int = typer.Option(2, "--variants", help="phrasings per fact (sharing a fact_id)"),
    max_pairs: int = typer.Option(None, "--max-pairs", help="stop after about this many pairs"),
) -> None:
    """Every pair keeps its source chunk; duplicates and weak pairs are dropped and counted."""
    from hearth.data.synth import synthesize
    from hearth.errors import ConfigError
    from hearth.progress import bar, counting

    if generator not in ("template", "model"):
        raise ConfigError(f"unknown generator '{generator}'", "use template or model")
    with bar("chunks") as on_event:
        report = synthesize(
            collection,
            out_file,
            generator=generator,  # type: ignore[arg-type]
            model=model,
            variants=variants,
            max_pairs=max_pairs,
            on_progress=counting(on_event),
        )
    c = report.counts()
    out.print(
        f"{len(report.pairs)} pairs from {c['chunks']} chunks ({c['sentences']} sentences): "
        f"{c['duplicates']} duplicates and {c['rejected']} weak pairs dropped, {c['unmatched']} sentences fit no pattern"
    )
    out.print(f"wrote {report.out} — train on it: `hearth tune configs/tune/smollm2-lora.yaml data.path={report.out}`")


def register(app: typer.Typer) -> None:
    app.add_typer(data, name="data")
