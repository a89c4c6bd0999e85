"""`hearth eval …`: evaluations. `hearth eval retrieval NAME QA.jsonl` scores a knowledge base's search."""

from __future__ import annotations

import json
from dataclasses import asdict

import typer
from rich.console import Console
from rich.table import Table

ev = typer.Typer(help="Evaluate retrieval (and, later, models and answers).", no_args_is_help=True)
out = Console()


@ev.command("retrieval")
def retrieval(
    name: str = typer.Argument(..., help="knowledge base to evaluate"),
    qa_file: str = typer.Argument(..., help="JSON lines: question + source and/or answer (+ lang)"),
    k: int = typer.Option(5, "-k", help="cut-off for recall@k and nDCG@k"),
    mode: str = typer.Option("hybrid", "--mode", help="hybrid, dense or text"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """recall@k, MRR and nDCG@k, overall and per language; saved under runs/eval-<timestamp>/."""
    from rich.progress import Progress

    from hearth.eval.retrieval import evaluate

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("questions", total=None)
        report = evaluate(name, qa_file, k, mode, on_progress=lambda i, n: bar.update(task, completed=i, total=n))
    if as_json:
        print(json.dumps(asdict(report), indent=1, ensure_ascii=False))
        return
    table = Table("language", "questions", f"recall@{k}", "MRR", f"nDCG@{k}")
    m = report.metrics
    table.add_row("all", str(report.n_questions), f"{m[f'recall@{k}']:.3f}", f"{m['mrr']:.3f}", f"{m[f'ndcg@{k}']:.3f}")
    for lang, lm in report.by_language.items():
        table.add_row(lang, str(int(lm["n"])), f"{lm[f'recall@{k}']:.3f}", f"{lm['mrr']:.3f}", f"{lm[f'ndcg@{k}']:.3f}")
    out.print(table)
    out.print(f"saved {report.run_dir}/retrieval.json")


def register(app: typer.Typer) -> None:
    app.add_typer(ev, name="eval")
