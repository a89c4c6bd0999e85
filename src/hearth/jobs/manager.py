"""The job manager: long work in a background thread, its progress events, cancel, and forgetting old jobs.

A job is a plain function ``work(job)`` that reports progress with ``job.emit(Event(...))`` and checks
``job.cancelled`` (or calls ``job.check()``, which raises ``Cancelled``) between steps; work that runs
in a child process (``hearth.jobs.child``) is such a function too. Memory stays bounded however long a
server lives: a job keeps its first event and its last ``max_events`` (a late subscriber still learns
how it started and where it is), and the manager forgets finished jobs beyond the newest
``keep_finished`` or older than ``keep_seconds``.
"""

from __future__ import annotations

import atexit
import itertools
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from hearth.errors import HearthError, NotFound
from hearth.progress import FINISHED, Event


class Cancelled(Exception):
    """Raised inside a job's work when someone asked it to stop."""


class Job:
    """One piece of long work: its state, its recent events, and a cancel switch."""

    def __init__(self, id: str, kind: str, title: str, owner: str | None = None, max_events: int = 1000) -> None:
        self.id, self.kind, self.title = id, kind, title
        self.owner = owner  # the API key name that started it (None with keys off)
        self.status = "queued"  # queued → running → done | failed | cancelled
        self.created = time.time()
        self.finished: float | None = None
        self.result: Any = None
        self.error: str | None = None
        self.run_id: str | None = None  # the run folder, for jobs that have one
        self.pid: int | None = None  # the child process, for jobs that run in one
        self._first: Event | None = None
        self._recent: deque[Event] = deque(maxlen=max(1, max_events - 1))
        self._count = 0  # events ever emitted: the next one's seq
        self._last_progress: Event | None = None
        self._cancel = threading.Event()
        self._changed = threading.Condition()

    # -- the work's side -------------------------------------------------------------------------

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        """Stop here (raise ``Cancelled``) if the job was cancelled."""
        if self._cancel.is_set():
            raise Cancelled()

    def emit(self, event: Event) -> Event:
        """Record one event (it gets the next ``seq``); this is the job's ``OnEvent`` callback."""
        with self._changed:
            event = replace(event, seq=self._count)
            self._count += 1
            if self._first is None:
                self._first = event
            else:
                self._recent.append(event)
            if event.type == "progress":
                self._last_progress = event
            if event.type == "run":
                self.run_id = event.data.get("run_id")
            self._changed.notify_all()
        return event

    def sleep(self, seconds: float) -> None:
        """Wait up to ``seconds``, waking at once when the job is cancelled."""
        self._cancel.wait(seconds)

    # -- everyone else's side ----------------------------------------------------------------------

    def cancel(self) -> None:
        self._cancel.set()
        with self._changed:
            self._changed.notify_all()

    @property
    def events(self) -> list[Event]:
        """The kept events, oldest first: the first one ever, then the last ``max_events - 1``."""
        with self._changed:
            return ([self._first] if self._first is not None else []) + list(self._recent)

    def since(self, seq: int) -> list[Event]:
        """Kept events with ``seq`` at least ``seq`` (those dropped meanwhile are skipped)."""
        return [e for e in self.events if e.seq >= seq]

    @property
    def ended(self) -> bool:
        return self.status in FINISHED

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ends; True if it did within ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while not self.ended:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def follow(self, start: int = 0, poll: float = 1.0) -> Iterator[Event]:
        """Yield events from ``seq`` ``start`` on, blocking for new ones, until the job has ended."""
        seq = start
        while True:
            with self._changed:
                while self._count <= seq and not self.ended:
                    self._changed.wait(poll)
                ended = self.ended
            new = self.since(seq)
            yield from new
            if new:
                seq = new[-1].seq + 1
            if ended and seq >= self._count:
                return

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "title": self.title,
            "status": self.status,
            "created": self.created,
            "finished": self.finished,
            "run_id": self.run_id,
            "progress": self._last_progress.to_dict() if self._last_progress else None,
            "error": self.error,
            "result": self.result,
            "events": self._count,
        }

    def _finish(self, status: str, result: Any = None, error: str | None = None) -> None:
        with self._changed:  # one step (the lock is re-entrant): a follower never sees the status without its event
            self.status, self.result, self.error, self.finished = status, result, error, time.time()
            self.emit(Event(status, message=error or "", data={"error": error}))


class JobManager:
    """Starts jobs in daemon threads; keeps running ones, and finished ones for a while, for status and events."""

    def __init__(self, keep_finished: int = 50, keep_seconds: float = 3600.0, max_events: int = 1000) -> None:
        self.keep_finished = keep_finished  # at most this many finished jobs are kept ...
        self.keep_seconds = keep_seconds  # ... and none that finished longer ago than this
        self.max_events = max_events  # events kept per job (the first, and the latest)
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def start(self, kind: str, title: str, work: Callable[[Job], Any], owner: str | None = None) -> Job:
        job = Job(f"{kind}-{int(time.time())}-{next(self._ids)}", kind, title, owner, self.max_events)
        with self._lock:
            self._prune()
            self._jobs[job.id] = job
        threading.Thread(target=self._run, args=(job, work), name=f"job-{job.id}", daemon=True).start()
        return job

    def _run(self, job: Job, work: Callable[[Job], Any]) -> None:
        job.status = "running"
        job.emit(Event("started", message=job.title))
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

    def _prune(self) -> None:
        """Forget finished jobs past the newest ``keep_finished`` or older than ``keep_seconds`` (lock held)."""
        finished = sorted((j for j in self._jobs.values() if j.ended), key=lambda j: j.finished or 0, reverse=True)
        horizon = time.time() - self.keep_seconds
        for i, job in enumerate(finished):
            if i >= self.keep_finished or (job.finished or 0) < horizon:
                del self._jobs[job.id]

    def get(self, job_id: str) -> Job:
        with self._lock:
            self._prune()
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job '{job_id}'", "list jobs with GET /api/jobs (finished jobs are kept for a while)")
        return job

    def list(self, kind: str | None = None) -> list[Job]:
        with self._lock:
            self._prune()
            jobs = list(self._jobs.values())
        return [j for j in jobs if kind is None or j.kind == kind]

    def cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        job.cancel()
        return job

    def shutdown(self, timeout: float = 15.0) -> None:
        """Cancel every running job and wait up to ``timeout`` seconds for them: a child process runs in
        its own session, so without this it would go on training after the server has stopped."""
        running = [j for j in self.list() if not j.ended]
        for job in running:
            job.cancel()
        deadline = time.monotonic() + timeout
        for job in running:
            job.wait(max(0.0, deadline - time.monotonic()))


_manager: JobManager | None = None


def manager() -> JobManager:
    """The process's job manager (one per process: the server and the CLI each have theirs)."""
    global _manager
    if _manager is None:
        _manager = JobManager()
        atexit.register(_manager.shutdown)
    return _manager
