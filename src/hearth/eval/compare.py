"""Ask the same questions to several systems and score every answer against the gold answers.

A system is a model, optionally grounded in a knowledge base, written ``[label=]MODEL[@KB]``:

    smollm2                      the bundled model alone
    smollm2@company              the same model answering from collection ``company`` (RAG, with citations)
    smollm2+company-faq          a LoRA adapter on the bundled model (instruction-tuned on the company's pairs)
    smollm2+company-faq@company  the tuned model, grounded as well
    remote:openai                any configured remote model (and ``remote:openai@company``)

Plain systems are asked the question alone (the way tuning data is rendered); grounded ones go through
the one chat path (``agent.engine.respond``), the same path ``hearth chat --kb`` and the API use, so the
numbers measure what a user gets. Answers are greedy, so a comparison can be repeated.
The per-question rows, the means and the report land in a run folder (``runs/<id>/``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hearth.errors import ConfigError, DataError
from hearth.eval import answers

if TYPE_CHECKING:
    from hearth.train.runs import Run

METRICS = ("exact_match", "f1", "contains_fact", "citation", "refusal", "false_refusal", "judge")


@dataclass(frozen=True)
class System:
    label: str
    model: str
    kb: str | None = None  # collection to ground answers in (None = the model alone)

    @property
    def grounded(self) -> bool:
        return self.kb is not None


def parse_system(spec: str) -> System:
    """``[label=]MODEL[@KB]`` → System (the label defaults to the spec itself)."""
    spec = spec.strip()
    label, sep, rest = spec.partition("=")
    if not sep:
        label, rest = spec, spec
    model, at, kb = rest.partition("@")
    if not model.strip() or (at and not kb.strip()) or not label.strip():
        raise ConfigError(
            f"'{spec}' is not a system", "write MODEL, MODEL@KB or LABEL=MODEL@KB, e.g. tuned+rag=smollm2+faq@company"
        )
    return System(label.strip(), model.strip(), kb.strip() or None)


@dataclass
class Answer:
    system: str
    question: str
    lang: str
    answer: str
    gold: str | None
    group: str
    scores: dict[str, float]
    cited: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Comparison:
    systems: list[System]
    questions: int
    # system label → metric → mean; and the same per language and per question group
    overall: dict[str, dict[str, float]]
    by_language: dict[str, dict[str, dict[str, float]]]
    by_group: dict[str, dict[str, dict[str, float]]]
    answers: list[Answer]
    run_dir: str = ""
    summary: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["answers"] = [asdict(a) for a in self.answers]
        return out


def read_questions(path: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """A question set: JSON lines with ``question`` and ``answer`` (or ``answerable: false``), plus
    optional ``fact``, ``source``, ``lang`` and ``group`` (e.g. trained / held-out / out-of-corpus)."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"question file {file} does not exist", "give a JSON-lines file of {question, answer}")
    rows = []
    for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{file}:{n}: not valid JSON ({exc.msg})", "one JSON object per line") from None
        if not isinstance(row, dict) or not str(row.get("question", "")).strip():
            raise DataError(f"{file}:{n}: field 'question' is missing", 'e.g. {"question": "...", "answer": "..."}')
        if row.get("answerable") is not False and not str(row.get("answer", "")).strip():
            raise DataError(
                f"{file}:{n}: field 'answer' is missing",
                'give the gold answer, or mark an out-of-corpus question with "answerable": false',
            )
        rows.append(row)
    if not rows:
        raise DataError(f"{file} holds no questions", "one JSON object per line")
    return rows[:limit] if limit else rows


def ask(system: System, question: str, max_tokens: int, settings: Any) -> tuple[str, list[str]]:
    """One greedy answer from ``system``, and the sources it cites (grounded systems only)."""
    from hearth.models import backends, generate

    params = generate.sampling(temperature=0, max_tokens=max_tokens, repetition_penalty=1.0)
    model = backends.get_chat_model(system.model, settings=settings)
    messages = [{"role": "user", "content": question}]
    if not system.grounded:
        return model.complete(messages, params).text.strip(), []
    from hearth.agent.engine import ChatRequest, respond

    text: list[str] = []
    citations: list[dict[str, Any]] = []
    for delta in respond(ChatRequest(messages, kb=[system.kb], model=model, params=params), settings):  # type: ignore[list-item]
        text.append(delta.text)
        if delta.citations:
            citations = delta.citations
    # The cited sources, in order: those the answer marks with [n]; when it marks none, the engine lists
    # every passage it was given, best first, and those are what a reader sees as the answer's sources.
    marked = [c["source"] for c in citations if c.get("cited")]
    return "".join(text).strip(), marked or [c["source"] for c in citations]


def compare(
    questions: str | Path | Sequence[dict[str, Any]],
    systems: Sequence[str | System],
    *,
    max_tokens: int = 48,
    judge: str | None = None,
    limit: int | None = None,
    name: str = "compare",
    save: bool = True,
    run: Run | None = None,
    on_progress: Callable[[int, int, str], None] | None = None,
    settings: Any = None,
) -> Comparison:
    """Run every question through every system, score, aggregate and (``save``) write the report
    into a new run folder (or ``run``, made by a job's parent)."""
    from hearth import config

    gold_rows = read_questions(questions, limit) if isinstance(questions, str | Path) else list(questions)[:limit]
    chosen = [s if isinstance(s, System) else parse_system(s) for s in systems]
    if not chosen:
        raise ConfigError("no systems to compare", "pass --system MODEL (and MODEL@KB for RAG) at least once")
    labels = [s.label for s in chosen]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"two systems share a label: {labels}", "give each a label: LABEL=MODEL@KB")
    settings = settings or config.Settings()  # the face passes its settings; a library never reads hearth.yaml
    rows: list[Answer] = []
    total, done = len(gold_rows) * len(chosen), 0
    for system in chosen:
        for gold in gold_rows:
            start = time.perf_counter()
            text, cited = ask(system, gold["question"], max_tokens, settings)
            scores = answers.score(text, gold, cited if system.grounded else None)
            if judge and gold.get("answerable") is not False:
                from hearth.eval.judge import judge_answer

                grade = judge_answer(judge, gold["question"], gold["answer"], answers.strip_sources(text))
                if grade is not None:
                    scores["judge"] = grade
            rows.append(
                Answer(
                    system=system.label,
                    question=gold["question"],
                    lang=answers.lang_of(gold),
                    answer=text,
                    gold=gold.get("answer"),
                    group=gold.get("group", "all"),
                    scores=scores,
                    cited=cited,
                    seconds=time.perf_counter() - start,
                )
            )
            done += 1
            if on_progress:
                on_progress(done, total, system.label)
    result = aggregate(chosen, rows, len(gold_rows))
    from hearth.eval.report import summarize

    result.summary = summarize(result)
    if save:
        from hearth.eval.report import write_report
        from hearth.train.runs import Run

        run = run or Run.create("eval", name)
        run.write_meta(status="finished", systems=[asdict(s) for s in chosen], questions=len(gold_rows))
        result.run_dir = str(run.root)
        write_report(result, run.root)
    return result


def aggregate(systems: Sequence[System], rows: Sequence[Answer], n_questions: int) -> Comparison:
    """Means per system: overall, per language, per question group (a metric only where it applies)."""

    def means(subset: list[Answer]) -> dict[str, float]:
        out = answers.mean_by([a.scores for a in subset], METRICS)
        out["n"] = float(len(subset))
        return out

    overall, by_lang, by_group = {}, {}, {}
    for s in systems:
        mine = [a for a in rows if a.system == s.label]
        overall[s.label] = means(mine)
        by_lang[s.label] = {lang: means([a for a in mine if a.lang == lang]) for lang in sorted({a.lang for a in mine})}
        by_group[s.label] = {g: means([a for a in mine if a.group == g]) for g in sorted({a.group for a in mine})}
    return Comparison(list(systems), n_questions, overall, by_lang, by_group, list(rows))
