"""Progress: one event shape for long work, and the rich bar that draws it.

Long work (training, fine-tuning, evaluation, ingest) reports ``Event``s to a callback of one shape,
``OnEvent = Callable[[Event], None]``. A job keeps them (``hearth.jobs``), the HTTP API streams them as
server-sent events (``to_dict()`` is the JSON it sends, ``seq`` the SSE id), the CLI draws them with
``bar()`` and the web UI reads the same fields.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

# started → run (the run folder, for child-process jobs) → progress … → done | failed | cancelled
FINISHED = ("done", "failed", "cancelled")


@dataclass(frozen=True)
class Event:
    """One step of progress, or a change of a job's state."""

    type: str = "progress"  # started, run, progress, done, failed, cancelled
    done: float | None = None  # units finished so far (steps, files, answers); None = not counted
    total: float | None = None  # units in all; None = unknown
    message: str = ""  # what is happening, for people (a file name, a system's label, an error)
    data: dict[str, Any] = field(default_factory=dict)  # the kind's own numbers: loss, lr, path, ...
    seq: int = -1  # position in its job's stream (the SSE event id); -1 until a job records it
    time: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        """The flat JSON form the API sends: the kind's numbers beside the common fields."""
        return {
            **self.data,
            "seq": self.seq,
            "time": self.time,
            "type": self.type,
            "done": self.done,
            "total": self.total,
            "message": self.message,
        }

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Event:
        """Back from ``to_dict()`` (a line a child process wrote, an SSE event a client received)."""
        common = {"seq", "time", "type", "done", "total", "message"}
        return cls(
            type=str(row.get("type", "progress")),
            done=row.get("done"),
            total=row.get("total"),
            message=str(row.get("message") or ""),
            data={k: v for k, v in row.items() if k not in common},
            seq=int(row.get("seq", -1)),
            time=float(row.get("time") or time.time()),
        )

    # Read like the JSON (``event["loss"]``, ``event.get("kind")``): code written against the API's
    # events works unchanged on the ones a job hands out in the same process.
    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_dict().get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self.to_dict()


OnEvent = Callable[[Event], None]


def counting(on_event: OnEvent) -> Callable[..., None]:
    """Adapt ``on_event`` to the ``on_progress(done, total[, message])`` callbacks of the eval and data code."""

    def on_progress(done: float, total: float | None, message: str = "") -> None:
        on_event(Event(done=done, total=total, message=message))

    return on_progress


class Bar:
    """A rich progress bar on stderr, drawn from events: call it with each ``Event``, ``close()`` at the end.

    Only ``progress`` events move it; a field an event leaves None (``total``, ``done``) keeps its value.
    With ``enabled=False`` (a worker process, ``progress: false``) it draws nothing.
    """

    def __init__(
        self, label: str, total: float | None = None, done: float = 0, transient: bool = True, enabled: bool = True
    ) -> None:
        self.progress: Any = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=transient,
        )
        self.task = self.progress.add_task(label, total=total, completed=done, note="")
        self.progress.start()

    def __call__(self, event: Event) -> None:
        if self.progress is None or event.type != "progress":
            return
        note = {"note": event.message} if event.message else {}
        self.progress.update(self.task, completed=event.done, total=event.total, **note)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


@contextmanager
def bar(label: str, transient: bool = True) -> Iterator[OnEvent]:
    """A ``Bar`` for the duration of the block; feed it events through the callback it yields."""
    drawn = Bar(label, transient=transient)
    try:
        yield drawn
    finally:
        drawn.close()
