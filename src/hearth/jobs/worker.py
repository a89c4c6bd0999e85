"""The child process of a job: ``python -m hearth.jobs.worker RUN_DIR``.

It reads ``RUN_DIR/job.json`` (written by the parent, see ``hearth.jobs.child``), does the work into that
same run folder, and reports progress events as JSON lines in ``RUN_DIR/progress.jsonl``; its last line
is a ``result`` (or an ``error`` with the message and hint of a HearthError). Everything it prints goes
to ``RUN_DIR/output.log``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hearth.errors import HearthError
from hearth.jobs.child import PROGRESS, SPEC
from hearth.progress import Event, OnEvent, counting
from hearth.train.runs import Run


def event_writer(path: Path) -> OnEvent:
    """An ``OnEvent`` that appends each event to ``path`` as one line, flushed at once for the parent."""
    f = path.open("a", encoding="utf-8")

    def write(event: Event) -> None:
        f.write(json.dumps(event.to_dict(), default=str, ensure_ascii=False) + "\n")
        f.flush()

    return write


def train(run: Run, spec: dict[str, Any], emit: OnEvent) -> dict[str, Any]:
    from hearth.train.scratch import ScratchConfig, train_scratch

    _, result = train_scratch(ScratchConfig.model_validate(spec["config"]), run=run)
    return {"run_id": run.id, "steps": result.steps, "stopped": result.stopped, "summary": run.summary}


def tune(run: Run, spec: dict[str, Any], emit: OnEvent) -> dict[str, Any]:
    from dataclasses import asdict

    from hearth.train import tune as tune_lib

    _, rep = tune_lib.tune(tune_lib.TuneConfig.model_validate(spec["config"]), run=run)
    return {"run_id": run.id, "report": asdict(rep) if rep is not None else None}


def evaluate(run: Run, spec: dict[str, Any], emit: OnEvent) -> dict[str, Any]:
    from hearth.config import Settings
    from hearth.eval.compare import compare

    settings = Settings.model_validate(spec["settings"]) if spec.get("settings") else None
    result = compare(
        spec["questions"],
        spec["systems"],
        max_tokens=spec["max_tokens"],
        judge=spec.get("judge"),
        run=run,
        on_progress=counting(emit),
        settings=settings,
    )
    data = result.to_dict()
    data.pop("answers", None)  # they are in the run's answers.jsonl; the event stays small
    return {"run_id": run.id, **data}


WORK: dict[str, Callable[[Run, dict[str, Any], OnEvent], dict[str, Any]]] = {
    "train": train,
    "tune": tune,
    "eval": evaluate,
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not (Path(args[0]) / SPEC).is_file():
        print("usage: python -m hearth.jobs.worker RUN_DIR  (RUN_DIR holds the job.json its parent wrote)")
        return 2
    root = Path(args[0])
    spec = json.loads((root / SPEC).read_text(encoding="utf-8"))
    emit = event_writer(root / PROGRESS)
    try:
        result = WORK[spec["kind"]](Run(root), spec, emit)
    except HearthError as exc:
        emit(Event("error", message=exc.message, data={"error": exc.message, "hint": exc.hint}))
        print(f"error: {exc.message}\nhint: {exc.hint}", file=sys.stderr)
        return 1
    emit(Event("result", data=result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
