"""`hearth eval …`: evaluations. `hearth eval retrieval NAME QA.jsonl` scores a knowledge base's search."""

from __future__ import annotations

import json
from dataclasses import asdict

import typer
from rich.console import Console
from rich.table import Table

ev = typer.Typer(
    help="Evaluate retrieval, language models and answers (base vs fine-tuned vs RAG).", no_args_is_help=True
)
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
    from hearth.eval.retrieval import evaluate
    from hearth.progress import bar, counting

    with bar("questions") as on_event:
        report = evaluate(name, qa_file, k, mode, on_progress=counting(on_event))
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


@ev.command("compare")
def compare_cmd(
    questions: str = typer.Argument(
        ..., help="JSON lines: question + answer (+ fact, source, lang, group, answerable)"
    ),
    systems: list[str] = typer.Option(
        ..., "--system", "-s", help="[LABEL=]MODEL[@KB], repeatable: smollm2, smollm2@kb, smollm2+adapter@kb, remote:x"
    ),
    max_tokens: int = typer.Option(48, "--max-tokens", help="most tokens per answer (greedy)"),
    judge: str = typer.Option(None, "--judge", help="LLM-as-judge model, e.g. remote:openai"),
    limit: int = typer.Option(None, "--limit", help="only the first N questions"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """The same questions through several systems; report.md / report.html with plots in runs/<id>/."""
    from hearth import config
    from hearth.eval.compare import compare
    from hearth.progress import bar, counting

    with bar("answers") as on_event:
        result = compare(
            questions,
            systems,
            max_tokens=max_tokens,
            judge=judge,
            limit=limit,
            on_progress=counting(on_event),
            settings=config.settings(),
        )
    if as_json:
        data = result.to_dict()
        data.pop("answers")
        print(json.dumps(data, indent=1, ensure_ascii=False))
        return
    from hearth.eval.report import NAMES, metrics_present

    metrics = metrics_present(result)
    table = Table("system", "n", *[NAMES[m] for m in metrics])
    for s in result.systems:
        m = result.overall[s.label]
        table.add_row(s.label, str(int(m["n"])), *[f"{m[k]:.3f}" if k in m else "–" for k in metrics])
    out.print(table)
    for line in result.summary:
        out.print(f"• {line}")
    out.print(f"saved {result.run_dir}/report.md and report.html")


@ev.command("perplexity")
def perplexity_cmd(
    model: str = typer.Argument(..., help="local model: smollm2, smollm2+adapter, a folder, runs/<id>"),
    data: str = typer.Argument(..., help="dataset as `hearth tune` reads it (.jsonl, .json, .csv, .txt)"),
    split: str = typer.Option("val", "--split", help="val (held out as tune would), train, or all"),
    val_fraction: float = typer.Option(
        0.1, "--val-fraction", help="the split's validation share (as data.val_fraction)"
    ),
    seed: int = typer.Option(0, "--seed", help="the split's seed (as data.seed)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """exp(mean loss per answer token) — lower is better; same split as a tuning run with these settings."""
    from hearth.eval.perplexity import perplexity

    rep = perplexity(model, data, split, data_overrides={"val_fraction": val_fraction, "seed": seed})  # type: ignore[arg-type]
    if as_json:
        print(json.dumps(asdict(rep), indent=1))
        return
    out.print(
        f"{rep.model} on {rep.split} of {rep.data}: perplexity [bold]{rep.perplexity:.3f}[/] "
        f"(loss {rep.loss:.4f} over {rep.tokens} tokens, {rep.examples} examples)"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(ev, name="eval")
