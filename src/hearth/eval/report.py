"""The comparison report: numbers as tables, pictures as bar charts, and a plain-language summary.

Files written into the run folder:

    comparison.json      every mean (overall, per language, per question group) and the summary
    answers.jsonl        every answer with its scores — the ground truth behind each bar
    plots/<metric>.png   one bar chart per metric: a group of bars per language, one bar per system
    plots/groups.png     key-fact accuracy per question group (trained / held-out / out-of-corpus …)
    report.md            tables + the plots + sample answers
    report.html          the same, self-contained (plots embedded), for a browser
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from hearth.eval.compare import Comparison

# Metric names as a reader says them, in the order tables show them.
NAMES = {
    "contains_fact": "key fact",
    "f1": "token F1",
    "exact_match": "exact match",
    "citation": "citation correct",
    "refusal": "refuses out-of-corpus",
    "false_refusal": "refuses answerable",
    "judge": "judge (0–1)",
}


def metrics_present(c: Comparison) -> list[str]:
    return [m for m in NAMES if any(m in v for v in c.overall.values())]


# ---------------------------------------------------------------------------------------------
# summary


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def summarize(c: Comparison) -> list[str]:
    """Short sentences saying what helped, each backed by a number in the tables."""
    if not c.systems:
        return []
    base = c.systems[0]
    key = "contains_fact" if any("contains_fact" in v for v in c.overall.values()) else "f1"
    out = []
    ranked = sorted(c.systems, key=lambda s: -c.overall[s.label].get(key, 0.0))
    best = ranked[0]
    out.append(
        f"Best at the key fact: **{best.label}** ({_pct(c.overall[best.label].get(key, 0.0))} of answerable questions)."
    )
    b = c.overall[base.label].get(key)
    for s in c.systems[1:]:
        v = c.overall[s.label].get(key)
        if v is None or b is None:
            continue
        what = []
        if "+" in s.model and "+" not in base.model:
            what.append("fine-tuning")
        if s.grounded and not base.grounded:
            what.append("retrieval (RAG)")
        if s.model.startswith("remote:"):
            what.append("a bigger remote model")
        how = " + ".join(what) or "this setup"
        delta = 100 * (v - b)
        verb = "raised" if delta > 0.5 else "lowered" if delta < -0.5 else "did not change"
        change = f" by {abs(delta):.0f} points" if verb != "did not change" else ""
        out.append(f"{s.label}: {how} {verb} the key-fact rate{change} ({_pct(b)} → {_pct(v)}) over {base.label}.")
    # Which kind of question each approach helps with: tuning only knows what it was trained on.
    groups = sorted({g for per in c.by_group.values() for g in per})
    if len(groups) > 1:
        for g in groups:
            vals = {s.label: c.by_group[s.label].get(g, {}).get(key) for s in c.systems}
            vals = {k: v for k, v in vals.items() if v is not None}
            if vals:
                top = max(vals, key=lambda k: vals[k])
                out.append(f"On {g} questions the best is {top} ({_pct(vals[top])}).")
    refusers = {s.label: c.overall[s.label]["refusal"] for s in c.systems if "refusal" in c.overall[s.label]}
    if refusers:
        parts = ", ".join(f"{k} {_pct(v)}" for k, v in refusers.items())
        out.append(
            f"Out-of-corpus questions answered with a refusal: {parts} — a grounded system can say "
            "'not found'; a model alone invents an answer."
        )
    cites = {s.label: c.overall[s.label]["citation"] for s in c.systems if "citation" in c.overall[s.label]}
    if cites:
        out.append(
            "Answers whose first citation is the right document: "
            + ", ".join(f"{k} {_pct(v)}" for k, v in cites.items())
            + "."
        )
    return out


# ---------------------------------------------------------------------------------------------
# plots


def _bars(ax: Any, groups: list[str], series: dict[str, list[float]], title: str) -> None:
    import numpy as np

    width = 0.8 / max(1, len(series))
    x = np.arange(len(groups))
    for i, (label, values) in enumerate(series.items()):
        bars = ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=label)
        for rect, v in zip(bars, values, strict=True):
            if v == v:  # not NaN
                ax.annotate(f"{v:.2f}", (rect.get_x() + rect.get_width() / 2, v), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, groups)
    ax.set_ylim(0, 1.12)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)


def plot_metric(c: Comparison, metric: str, file: Path) -> None:
    """Bars per system, grouped by language (``all`` first)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    langs = ["all", *sorted({lang for per in c.by_language.values() for lang in per})]
    series = {}
    for s in c.systems:
        row = [c.overall[s.label].get(metric, float("nan"))]
        row += [c.by_language[s.label].get(lang, {}).get(metric, float("nan")) for lang in langs[1:]]
        series[s.label] = row
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(langs) * max(1, len(series)) / 2), 3.4))
    _bars(ax, langs, series, f"{NAMES.get(metric, metric)} by language")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(file, dpi=110)
    plt.close(fig)


def plot_groups(c: Comparison, metric: str, file: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({g for per in c.by_group.values() for g in per})

    def value(label: str, g: str) -> float:
        # a group of out-of-corpus questions has no key fact: its bar is the refusal rate
        row = c.by_group[label].get(g, {})
        return row.get(metric, row.get("refusal", float("nan")))

    series = {s.label: [value(s.label, g) for g in groups] for s in c.systems}
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(groups) * max(1, len(series)) / 2), 3.4))
    _bars(ax, groups, series, f"{NAMES.get(metric, metric)} by question group (out-of-corpus: refusal rate)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(file, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# files


def _table(c: Comparison, rows: dict[str, dict[str, float]], metrics: list[str]) -> list[str]:
    lines = ["| system | n | " + " | ".join(NAMES[m] for m in metrics) + " |"]
    lines.append("| --- | --- | " + " | ".join("---" for _ in metrics) + " |")
    for s in c.systems:
        v = rows.get(s.label, {})
        cells = [f"{v[m]:.3f}" if m in v else "–" for m in metrics]
        lines.append(f"| {s.label} | {int(v.get('n', 0))} | " + " | ".join(cells) + " |")
    return lines


def _cell(text: str | None, limit: int = 160) -> str:
    text = (text or "").replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_markdown(c: Comparison, plots: list[str], title: str = "Base vs fine-tuned vs RAG") -> str:
    metrics = metrics_present(c)
    lines = [f"# {title}", "", f"{c.questions} questions, {len(c.systems)} systems:", ""]
    for s in c.systems:
        lines.append(f"- **{s.label}** — model `{s.model}`" + (f", grounded in collection `{s.kb}`" if s.kb else ""))
    lines += ["", "## What helped", ""] + [f"- {line}" for line in c.summary]
    lines += ["", "## All questions", "", *_table(c, c.overall, metrics)]
    for lang in sorted({lang for per in c.by_language.values() for lang in per}):
        rows = {s.label: c.by_language[s.label].get(lang, {}) for s in c.systems}
        lines += ["", f"## Language: {lang}", "", *_table(c, rows, metrics)]
    groups = sorted({g for per in c.by_group.values() for g in per})
    if len(groups) > 1:
        for g in groups:
            rows = {s.label: c.by_group[s.label].get(g, {}) for s in c.systems}
            lines += ["", f"## Question group: {g}", "", *_table(c, rows, metrics)]
    lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots]
    lines += [
        "",
        "## Sample answers",
        "",
        "| system | question | gold | answer | key fact |",
        "| --- | --- | --- | --- | --- |",
    ]
    per_system = max(1, 12 // max(1, len(c.systems)))
    for s in c.systems:
        for a in [a for a in c.answers if a.system == s.label][:per_system]:
            fact = a.scores.get("contains_fact", a.scores.get("refusal"))
            lines.append(
                f"| {s.label} | {_cell(a.question)} | {_cell(a.gold or '(not in the documents)')} | {_cell(a.answer)} | "
                f"{'–' if fact is None else int(fact)} |"
            )
    lines += [
        "",
        "Metrics: *key fact* = the answer holds the gold fact; *token F1* = word overlap with the gold answer "
        "(characters for Chinese); *citation correct* = the first cited document is the gold one; *refuses "
        "out-of-corpus* = declines a question the documents cannot answer. Answers are greedy (temperature 0).",
    ]
    return "\n".join(lines) + "\n"


def render_html(markdown_text: str, folder: Path) -> str:
    """The Markdown as HTML, with plot images embedded so the file stands alone."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(markdown_text)
    for png in sorted((folder / "plots").glob("*.png")):
        data = base64.b64encode(png.read_bytes()).decode()
        body = body.replace(f'src="plots/{png.name}"', f'src="data:image/png;base64,{data}"')
    style = (
        "body{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .5em;font-size:.9em}"
        "img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape('Hearth comparison')}</title>"
        f"<style>{style}</style></head><body>{body}</body></html>"
    )


def write_report(c: Comparison, folder: Path, title: str = "Base vs fine-tuned vs RAG") -> Path:
    """Write every file of the report into ``folder``; returns report.md."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plots").mkdir(exist_ok=True)
    data = c.to_dict()
    answers = data.pop("answers")
    (folder / "comparison.json").write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    with open(folder / "answers.jsonl", "w", encoding="utf-8") as f:
        for a in answers:
            f.write(json.dumps(a, ensure_ascii=False) + "\n")
    plots = []
    for m in metrics_present(c):
        plot_metric(c, m, folder / "plots" / f"{m}.png")
        plots.append(f"plots/{m}.png")
    if len({g for per in c.by_group.values() for g in per}) > 1:
        key = "contains_fact" if "contains_fact" in metrics_present(c) else "f1"
        plot_groups(c, key, folder / "plots" / "groups.png")
        plots.append("plots/groups.png")
    md = render_markdown(c, plots, title)
    (folder / "report.md").write_text(md, encoding="utf-8")
    (folder / "report.html").write_text(render_html(md, folder), encoding="utf-8")
    return folder / "report.md"
