"""Work in a child process: the parent makes the run folder, the child works in it, the parent follows.

Training, fine-tuning and evaluation run in their own process (their own torch threads and memory; a
cancel really stops them). The parent creates the run folder and writes ``job.json`` (what to do) into
it, then starts ``python -m hearth.jobs.worker RUN_DIR`` in a new process group. So each job follows
exactly the run it made, however many start at once. In that folder:

    job.json        what the child is to do (kind, recipe, overrides, settings)
    output.log      the child's stdout and stderr, written straight to the file (no pipe to fill up)
    progress.jsonl  the child's progress events, one JSON object a line, which the parent tails
    metrics.jsonl   for training, the loop's points, which the parent tails as progress events too

Cancel sends SIGTERM to the whole process group (then SIGKILL after a grace period), so whatever the
child started goes with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hearth import paths
from hearth.errors import HearthError
from hearth.jobs.manager import Cancelled, Job
from hearth.models.engine import _die_with_parent as die_with_parent
from hearth.progress import Event
from hearth.train.runs import Run

SPEC = "job.json"
LOG = "output.log"
PROGRESS = "progress.jsonl"
POLL = 0.25  # seconds between looks at the child's files
GRACE = 10.0  # seconds a cancelled child gets to exit on SIGTERM before SIGKILL


class Tail:
    """The new complete lines of a file another process appends to (a half-written last line waits)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""

    def lines(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(chunk)
        *complete, self.partial = (self.partial + chunk).split(b"\n")
        rows = []
        for line in complete:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # not ours to fail on: skip a damaged line
                continue
        return rows


def metric_event(row: dict[str, Any], total: int | None) -> Event:
    """One metrics.jsonl point as a progress event (``done`` = its step)."""
    loss = row.get("loss")
    message = f"{row.get('split', 'train')} loss {loss:.4f}" if isinstance(loss, int | float) else ""
    return Event(done=row.get("step"), total=total, message=message, data=row)


def run_in_child(
    job: Job, run: Run, spec: dict[str, Any], steps: int | None = None, command: list[str] | None = None
) -> dict[str, Any]:
    """Run ``spec`` in ``python -m hearth.jobs.worker RUN_DIR`` inside ``run``; relay its events; return its result.

    ``steps``: the run's step count, when the loop's metrics.jsonl is to be followed as progress.
    ``command``: another program that keeps the worker's contract (RUN_DIR as its last argument).
    """
    # Owner-only: the spec may carry settings with a remote backend's API key.
    fd = os.open(run.root / SPEC, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(spec, f, indent=2, default=str, ensure_ascii=False)
    run.write_meta(status="queued", job=job.id)
    job.emit(Event("run", message=str(run.root), data={"run_id": run.id, "run_dir": str(run.root)}))
    env = {**os.environ, "HEARTH_HOME": str(paths.home()), "PYTHONUNBUFFERED": "1"}
    with (run.root / LOG).open("ab") as log:  # the child writes into its own copy of this file descriptor
        proc = subprocess.Popen(
            [*(command or [sys.executable, "-m", "hearth.jobs.worker"]), str(run.root)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: cancel reaches everything it starts
            # Killed with this thread's process, even by kill -9 (the way the engines are tied to Hearth);
            # the thread lives exactly as long as the child, waiting for it.
            preexec_fn=die_with_parent(os.getpid()),
        )
    job.pid = proc.pid
    progress = Tail(run.root / PROGRESS)
    metrics = Tail(run.root / "metrics.jsonl") if steps is not None else None
    outcome: dict[str, Any] = {}

    def relay() -> None:
        for row in progress.lines():
            event = Event.from_dict(row)
            if event.type in ("result", "error"):  # the child's last word, not a progress event
                outcome[event.type] = event.data
            else:
                job.emit(event)
        for row in metrics.lines() if metrics is not None else []:
            job.emit(metric_event(row, steps))

    try:
        while proc.poll() is None:
            relay()
            if job.cancelled:
                stop(proc)
                relay()
                run.write_meta(status="cancelled")
                raise Cancelled()
            job.sleep(POLL)
        relay()
    finally:
        if proc.poll() is None:  # the parent itself failed: take the child down with it
            stop(proc)
        signal_group(proc.pid, signal.SIGKILL)  # anything the child left running
    if "error" in outcome:
        run.write_meta(status="failed")
        raise HearthError(outcome["error"].get("error", "the job failed"), outcome["error"].get("hint", ""))
    if proc.returncode != 0:
        run.write_meta(status="failed")
        raise HearthError(
            f"{job.kind} failed (exit {proc.returncode}): {log_tail(run.root / LOG)}",
            f"the whole output is in {run.root / LOG}",
        )
    return outcome.get("result", {})


def stop(proc: subprocess.Popen[bytes], grace: float = GRACE) -> None:
    """End the child's whole process group: SIGTERM, then SIGKILL for what is left after ``grace`` seconds.
    Returns once the group is gone (or, failing that, after the second wait)."""
    signal_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace)
    if not group_gone(proc.pid, grace):
        signal_group(proc.pid, signal.SIGKILL)
        group_gone(proc.pid, grace)
    proc.wait()


def group_gone(pgid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for every process of group ``pgid`` to exit."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # the id now belongs to someone else's group: ours is gone
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone already
        os.killpg(pgid, sig)


def log_tail(path: Path, lines: int = 5, limit: int = 64 * 1024) -> str:
    """The last ``lines`` lines of a log that may be huge (reads only its end)."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - limit))
            text = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])
