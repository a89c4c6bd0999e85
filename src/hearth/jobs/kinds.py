"""The kinds of job: training, fine-tuning and evaluation (each in a child process), and ingest (a thread).

Every ``start_*`` checks its input first, so a bad recipe or a missing collection fails the request
that asked, not the job; then it starts the job and returns it. Progress arrives as ``Event``s:
training and fine-tuning report a ``run`` event (the folder the parent made for it) and a ``progress``
event for every metrics point, evaluation one per answer, ingest one per file.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hearth.errors import NotFound
from hearth.jobs.child import run_in_child
from hearth.jobs.manager import Job, JobManager
from hearth.progress import Event

if TYPE_CHECKING:
    from hearth.config import Settings


# ---------------------------------------------------------------------------------------------
# recipes


def recipes_dir() -> Path:
    """``configs/`` of the working copy (``make run`` from the repo), else the one beside the source."""
    here = Path.cwd() / "configs"
    return here if here.is_dir() else Path(__file__).resolve().parents[3] / "configs"


def list_recipes() -> list[dict[str, Any]]:
    """The training recipes in ``configs/``: file name and its YAML (for the UI's hyperparameter form)."""
    import yaml

    out = []
    folder = recipes_dir()
    for file in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            continue
        out.append({"name": file.name, "path": str(file), "config": data})
    return out


def _recipe_path(name: str) -> Path:
    path = Path(name).expanduser()
    if path.is_file():
        return path.resolve()
    candidate = recipes_dir() / name
    if candidate.is_file():
        return candidate.resolve()
    known = ", ".join(r["name"] for r in list_recipes()) or "none"
    raise NotFound(f"no recipe '{name}'", f"recipes in {recipes_dir()}: {known}")


# ---------------------------------------------------------------------------------------------
# training, fine-tuning and evaluation: child processes, each in the run folder its parent made


def start_training(jobs: JobManager, recipe: str, overrides: list[str] | None = None, owner: str | None = None) -> Job:
    """Train a from-scratch recipe (``configs/scratch-*.yaml`` or a path) in a child process."""
    from hearth.train import scratch
    from hearth.train.runs import Run

    path, overrides = _recipe_path(recipe), list(overrides or [])
    cfg = scratch.load_config(path, overrides)  # refuse a bad recipe now, not in the child
    # The child gets the config resolved here, so it trains exactly what was checked.
    spec = {"kind": "train", "recipe": str(path), "overrides": overrides, "config": cfg.model_dump(mode="json")}

    def work(job: Job) -> dict[str, Any]:
        run = Run.create(scratch.KIND, cfg.name)
        result = run_in_child(job, run, spec, steps=cfg.training.max_steps)
        return {**result, "config": cfg.model_dump(mode="json")}

    return jobs.start("train", f"train {path.name}", work, owner=owner)


def start_tuning(jobs: JobManager, recipe: str, overrides: list[str] | None = None, owner: str | None = None) -> Job:
    """Fine-tune with a recipe (``configs/tune/*.yaml``, e.g. ``tune/smollm2-lora.yaml``, or a path) in a child process."""
    from hearth.train import tune
    from hearth.train.runs import Run

    path, overrides = _recipe_path(recipe), list(overrides or [])
    cfg = tune.load_config(path, overrides)
    spec = {"kind": "tune", "recipe": str(path), "overrides": overrides, "config": cfg.model_dump(mode="json")}

    def work(job: Job) -> dict[str, Any]:
        run = Run.create(tune.KIND, cfg.name)
        return run_in_child(job, run, spec, steps=cfg.training.max_steps)

    return jobs.start("tune", f"tune {path.name}", work, owner=owner)


def start_eval(
    jobs: JobManager,
    questions: str | Path | list[dict[str, Any]],
    systems: list[str],
    *,
    max_tokens: int = 48,
    judge: str | None = None,
    limit: int | None = None,
    name: str = "compare",
    owner: str | None = None,
    settings: Settings | None = None,
) -> Job:
    """Ask ``questions`` (a JSON-lines file, or the rows) to ``systems`` (``[label=]MODEL[@KB]``) and score
    the answers, in a child process; ``settings`` (the face's) reach the child through job.json."""
    from hearth.errors import ConfigError
    from hearth.eval.compare import parse_system, read_questions
    from hearth.train.runs import Run

    if isinstance(questions, str | Path):
        rows = read_questions(questions, limit)  # a missing or malformed file fails now
    else:
        rows = list(questions)[:limit] if limit else list(questions)
    if not rows or not all(isinstance(r, dict) and r.get("question") for r in rows):
        raise ConfigError("no questions to ask", "give JSON objects with a 'question' (and an 'answer')")
    if not systems:
        raise ConfigError("no systems to compare", "pass at least one system, e.g. smollm2 or smollm2@KB")
    for system in systems:
        parse_system(system)
    spec = {
        "kind": "eval",
        "questions": rows,
        "systems": list(systems),
        "max_tokens": max_tokens,
        "judge": judge,
        "settings": settings.model_dump(mode="json") if settings is not None else None,
    }

    def work(job: Job) -> dict[str, Any]:
        return run_in_child(job, Run.create("eval", name), spec)

    return jobs.start("eval", f"evaluate {len(systems)} system(s) on {len(rows)} questions", work, owner=owner)


# ---------------------------------------------------------------------------------------------
# knowledge-base ingest: a thread (it stops cleanly between files)


def start_ingest(
    jobs: JobManager,
    collection: str,
    files: list[str | Path],
    owner: str | None = None,
    *,
    settings: Settings,
) -> Job:
    """Ingest files into a collection; every ``IngestEvent`` becomes a progress event. Cancel stops it
    between files (ingest is crash-safe, so stopping mid-way leaves whole documents only)."""
    from hearth.kb import ingest
    from hearth.kb.collection import read_meta

    read_meta(collection)  # a missing collection fails the request, not the job

    def work(job: Job) -> dict[str, Any]:
        def on_event(e: ingest.IngestEvent) -> None:
            # ingest reports its own event type (hearth.kb); this is where it meets the one progress shape
            job.emit(Event(done=e.files_done, total=e.files_total, message=e.message or e.path, data=asdict(e)))
            job.check()

        return asdict(ingest.add(collection, files, on_event=on_event, settings=settings))

    return jobs.start("ingest", f"ingest into {collection}", work, owner=owner)
