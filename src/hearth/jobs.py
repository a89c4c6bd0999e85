"""Jobs: long work (ingest, training, evaluation) in a background thread, with progress events and cancel.

It lives at the app layer (not in ``serve/``) because every face starts the same jobs: the HTTP API
streams a job's events as SSE, the web UI draws them, and the CLI can show them as a progress bar.

A job is a plain function ``work(job)`` that reports progress with ``job.emit(...)`` and checks
``job.cancelled`` (or calls ``job.check()``, which raises ``Cancelled``) between steps. Events are kept
in order per job, so a late subscriber still sees everything from the start.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hearth.errors import HearthError, NotFound

FINISHED = ("done", "failed", "cancelled")


class Cancelled(Exception):
    """Raised inside a job's work when someone asked it to stop."""


@dataclass
class Job:
    id: str
    kind: str
    title: str
    owner: str | None = None  # the API key name that started it (None with keys off)
    status: str = "queued"  # queued → running → done | failed | cancelled
    created: float = field(default_factory=time.time)
    finished: float | None = None
    result: Any = None
    error: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _changed: threading.Condition = field(default_factory=threading.Condition, repr=False)

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        """Stop here (raise ``Cancelled``) if the job was cancelled."""
        if self._cancel.is_set():
            raise Cancelled()

    def emit(self, event_type: str = "progress", /, **data: Any) -> None:
        """Record one event, e.g. ``emit(done=3, total=10, message="parsed a.pdf")``."""
        with self._changed:
            self.events.append({"seq": len(self.events), "time": time.time(), **data, "type": event_type})
            self._changed.notify_all()

    def cancel(self) -> None:
        self._cancel.set()
        with self._changed:
            self._changed.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ends; True if it did within ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while self.status not in FINISHED:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def follow(self, start: int = 0, poll: float = 1.0) -> Iterator[dict[str, Any]]:
        """Yield events from ``start`` on, blocking for new ones, until the job has ended."""
        seq = start
        while True:
            with self._changed:
                while seq >= len(self.events) and self.status not in FINISHED:
                    self._changed.wait(poll)
                new = self.events[seq:]
                ended = self.status in FINISHED
            yield from new
            seq += len(new)
            if ended and seq >= len(self.events):
                return

    def summary(self) -> dict[str, Any]:
        last = next((e for e in reversed(self.events) if e["type"] == "progress"), None)
        return {
            "id": self.id,
            "kind": self.kind,
            "title": self.title,
            "status": self.status,
            "created": self.created,
            "finished": self.finished,
            "progress": last,
            "error": self.error,
            "result": self.result,
            "events": len(self.events),
        }

    def _finish(self, status: str, result: Any = None, error: str | None = None) -> None:
        with self._changed:
            self.status, self.result, self.error, self.finished = status, result, error, time.time()
            self.events.append({"seq": len(self.events), "time": time.time(), "type": status, "error": error})
            self._changed.notify_all()


class JobManager:
    """Starts jobs in daemon threads and keeps them (finished ones too) for status and events."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def start(self, kind: str, title: str, work: Callable[[Job], Any], owner: str | None = None) -> Job:
        job = Job(id=f"{kind}-{int(time.time())}-{next(self._ids)}", kind=kind, title=title, owner=owner)
        with self._lock:
            self._jobs[job.id] = job
        threading.Thread(target=self._run, args=(job, work), name=f"job-{job.id}", daemon=True).start()
        return job

    def _run(self, job: Job, work: Callable[[Job], Any]) -> None:
        job.status = "running"
        job.emit("started")
        try:
            result = work(job)
        except Cancelled:
            job._finish("cancelled")
        except HearthError as exc:
            job._finish("failed", error=str(exc))
        except Exception as exc:  # a job must never take the server down; keep the trace for the log
            job._finish("failed", error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}")
        else:
            job._finish("cancelled" if job.cancelled else "done", result=result)

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job '{job_id}'", "list jobs with GET /api/jobs")
        return job

    def list(self, kind: str | None = None) -> list[Job]:
        with self._lock:
            jobs = list(self._jobs.values())
        return [j for j in jobs if kind is None or j.kind == kind]

    def cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        job.cancel()
        return job


_manager: JobManager | None = None


def manager() -> JobManager:
    """The process's job manager (one per process: the server and the CLI each have theirs)."""
    global _manager
    if _manager is None:
        _manager = JobManager()
    return _manager


# ---------------------------------------------------------------------------------------------
# training as a job


def recipes_dir() -> Path:
    """``configs/`` of the working copy (``make run`` from the repo), else the one beside the source."""
    here = Path.cwd() / "configs"
    return here if here.is_dir() else Path(__file__).resolve().parents[2] / "configs"


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
        return path
    candidate = recipes_dir() / name
    if candidate.is_file():
        return candidate
    known = ", ".join(r["name"] for r in list_recipes()) or "none"
    raise NotFound(f"no recipe '{name}'", f"recipes in {recipes_dir()}: {known}")


def start_training(jobs: JobManager, recipe: str, overrides: list[str] | None = None, owner: str | None = None) -> Job:
    """Train a recipe in a child process (its own torch threads and memory; cancel = terminate it).

    Events: ``run`` (the run id once its folder exists) and ``progress`` for every logged metric point.
    """
    from hearth.train.scratch import load_config

    path = _recipe_path(recipe)
    overrides = list(overrides or [])
    cfg = load_config(path, overrides)  # refuse a bad recipe now, not in the child
    total = cfg.training.max_steps

    def work(job: Job) -> dict[str, Any]:
        import json
        import subprocess
        import sys

        from hearth import paths
        from hearth.train.runs import Run

        before = {p.name for p in paths.runs_dir().iterdir()}
        code = (
            "import sys; from hearth.train.scratch import load_config, train_scratch; "
            "run, _ = train_scratch(load_config(sys.argv[1], sys.argv[2:])); print(run.id)"
        )
        env = {**os.environ, "HEARTH_HOME": str(paths.home())}
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(path), *overrides],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        run: Run | None = None
        seen = 0
        try:
            while True:
                ended = proc.poll() is not None
                if run is None:
                    new = sorted({p.name for p in paths.runs_dir().iterdir()} - before)
                    if new:
                        run = Run(paths.runs_dir() / new[-1], writable=False)
                        job.emit("run", run_id=run.id)
                if run is not None:
                    points = run.metrics()
                    for point in points[seen:]:
                        job.emit("progress", done=point.get("step"), total=total, **point)
                    seen = len(points)
                if ended:
                    break
                if job.cancelled:
                    proc.terminate()
                    proc.wait(10)
                    raise Cancelled()
                time.sleep(0.5)
        finally:
            if proc.poll() is None:
                proc.kill()
        _, stderr = proc.communicate()
        if proc.returncode != 0:
            tail = "\n".join(stderr.strip().splitlines()[-5:])
            raise HearthError(f"training failed (exit {proc.returncode}): {tail}", "see the run's folder and logs")
        return {
            "run_id": run.id if run else None,
            "summary": run.summary if run else {},
            "config": json.loads(json.dumps(cfg.model_dump(mode="json"))),
        }

    return jobs.start("train", f"train {path.name}", work, owner=owner)


# ---------------------------------------------------------------------------------------------
# knowledge-base ingest as a job


def start_ingest(jobs: JobManager, collection: str, files: list[str | Path], owner: str | None = None) -> Job:
    """Ingest files into a collection; every ``IngestEvent`` becomes a job event. Cancel stops it
    between files (ingest is crash-safe, so stopping mid-way leaves whole documents only)."""
    from dataclasses import asdict

    from hearth.kb import ingest
    from hearth.kb.collection import read_meta

    read_meta(collection)  # a missing collection fails the request, not the job

    def work(job: Job) -> dict[str, Any]:
        def on_event(event: Any) -> None:
            job.emit("progress", done=event.files_done, total=event.files_total, **asdict(event))
            job.check()

        report = ingest.add(collection, files, on_event=on_event)
        return asdict(report)

    return jobs.start("ingest", f"ingest into {collection}", work, owner=owner)
