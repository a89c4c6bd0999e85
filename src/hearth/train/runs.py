"""Runs — the answer to "where are the parameters recorded?".

A run is one folder, ``$HEARTH_HOME/runs/<id>/``::

    run.json             id, kind (scratch / tune / ...), status, created
    config.yaml          the fully resolved config: every hyperparameter
    environment.json     versions, device, processes, seed
    metrics.jsonl        one JSON object per logged point: {"step", "split", "loss", ...}
    events.out.tfevents  the same numbers for TensorBoard (``tensorboard --logdir runs/``)
    summary.json         final numbers (best val loss, test loss, tokens/s, ...)
    checkpoints/step-N/  model.safetensors, optimizer.pt, scheduler.pt, rng-rank<R>.pt, trainer_state.json
    job.json, output.log, progress.jsonl   for a run started as a job: what the child process was asked
                         to do, everything it printed, its progress events (``hearth.jobs.child``)

A job's parent process creates the folder (``Run.create``: a fresh id even when several start in the
same second) and hands it to the child, so the job knows which run it follows.

Checkpoints are written into a hidden temp folder and renamed into place, so a crash or a kill while
saving never leaves a half-written ``step-N``; only the last ``keep_last`` are kept. In a multi-process
run only the main process writes (``writable=False`` elsewhere), except each rank's own RNG file.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from hearth import config as hconfig
from hearth import paths
from hearth.errors import NotFound, TrainError

T = TypeVar("T", bound=BaseModel)

CHECKPOINT_PREFIX = "step-"


class Run:
    """One training run's folder, with the operations the loop and the CLI need."""

    def __init__(self, root: Path, writable: bool = True) -> None:
        self.root = root
        self.id = root.name
        self.writable = writable
        self._writer: Any = None

    # -- finding and creating -----------------------------------------------------------------

    @classmethod
    def create(cls, kind: str, name: str = "", root: Path | None = None) -> Run:
        """A new, empty run folder with a unique id ``YYYYmmdd-HHMMSS-<name>``."""
        base = root or paths.runs_dir()
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        slug = "".join(c if c.isalnum() or c in "-_" else "-" for c in name.strip())[:40] or kind
        for n in range(1000):
            folder = base / (f"{stamp}-{slug}" + (f"-{n}" if n else ""))
            try:
                folder.mkdir(parents=True)
                break
            except FileExistsError:
                continue
        run = cls(folder)
        run.write_meta(kind=kind, status="created", created=datetime.now().isoformat(timespec="seconds"))
        return run

    @classmethod
    def open(cls, ref: str | Path, writable: bool = True) -> Run:
        """An existing run, by id, by ``runs/<id>``, or by path; NotFound names the runs that exist."""
        ref = str(ref)
        candidates = [Path(ref).expanduser(), paths.runs_dir() / ref, paths.runs_dir() / Path(ref).name]
        for c in candidates:
            if (c / "run.json").is_file():
                return cls(c.resolve(), writable)
        known = [r.id for r in list_runs()][-5:]
        raise NotFound(
            f"no run '{ref}' under {paths.runs_dir()}",
            ("recent runs: " + ", ".join(known)) if known else "start one with `hearth train CONFIG`",
        )

    # -- metadata and config ------------------------------------------------------------------

    @property
    def meta(self) -> dict[str, Any]:
        try:
            return json.loads((self.root / "run.json").read_text())
        except (OSError, json.JSONDecodeError):
            return {"id": self.id}

    def write_meta(self, **changes: Any) -> None:
        if not self.writable:
            return
        meta = {**self.meta, "id": self.id, **changes}
        _atomic_write(self.root / "run.json", json.dumps(meta, indent=2))

    def write_config(self, cfg: BaseModel) -> None:
        if self.writable:
            hconfig.save_yaml(cfg, self.root / "config.yaml")

    def read_config(self, cls: type[T]) -> T:
        return hconfig.load(cls, self.root / "config.yaml", env={})

    def write_environment(self, **extra: Any) -> None:
        if not self.writable:
            return
        import torch

        env = {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "hostname": platform.node(),
            **_versions("transformers", "tokenizers", "accelerate", "safetensors", "numpy"),
            **extra,
        }
        _atomic_write(self.root / "environment.json", json.dumps(env, indent=2, default=str))

    def write_summary(self, **summary: Any) -> None:
        if self.writable:
            _atomic_write(self.root / "summary.json", json.dumps({**self.summary, **summary}, indent=2, default=float))

    @property
    def summary(self) -> dict[str, Any]:
        try:
            return json.loads((self.root / "summary.json").read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    # -- metrics ---------------------------------------------------------------------------------

    def log(self, step: int, split: str, **values: float) -> None:
        """Append one point to metrics.jsonl and TensorBoard (``<split>/<name>``)."""
        if not self.writable:
            return
        row = {"step": step, "split": split, "time": round(time.time(), 3), **values}
        with (self.root / "metrics.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        writer = self.tensorboard()
        for key, value in values.items():
            writer.add_scalar(f"{split}/{key}", value, step)

    def metrics(self, split: str | None = None) -> list[dict[str, Any]]:
        file = self.root / "metrics.jsonl"
        if not file.exists():
            return []
        rows = []
        for line in file.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
            if split is None or row.get("split") == split:
                rows.append(row)
        return rows

    def truncate_metrics(self, after_step: int) -> None:
        """Forget points logged after ``after_step`` (a resumed run logs them again)."""
        if not self.writable or not (self.root / "metrics.jsonl").exists():
            return
        kept = [json.dumps(r) + "\n" for r in self.metrics() if r.get("step", 0) <= after_step]
        _atomic_write(self.root / "metrics.jsonl", "".join(kept))

    def tensorboard(self, purge_step: int | None = None) -> Any:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.root), purge_step=purge_step)
        return self._writer

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # -- checkpoints -----------------------------------------------------------------------------

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / "checkpoints"

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first (temp folders of an interrupted save are not listed)."""
        if not self.checkpoints_dir.exists():
            return []
        found = [p for p in self.checkpoints_dir.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX)]
        return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]))

    def latest_checkpoint(self) -> Path | None:
        found = self.checkpoints()
        return found[-1] if found else None

    def require_checkpoint(self) -> Path:
        latest = self.latest_checkpoint()
        if latest is None:
            raise TrainError(
                f"run {self.id} has no checkpoint to resume from",
                "it was stopped before its first save; start it again",
            )
        return latest

    def checkpoint_tmp(self, step: int) -> Path:
        """The hidden folder a checkpoint is written into before ``commit_checkpoint`` renames it."""
        return self.checkpoints_dir / f".tmp-{CHECKPOINT_PREFIX}{step}"

    def begin_checkpoint(self, step: int) -> Path:
        tmp = self.checkpoint_tmp(step)
        if self.writable:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        return tmp

    def commit_checkpoint(self, step: int, keep_last: int) -> Path:
        """Rename the temp folder into ``step-N`` (atomic on one filesystem), then drop old ones."""
        tmp = self.checkpoint_tmp(step)
        final = self.checkpoints_dir / f"{CHECKPOINT_PREFIX}{step}"
        if not self.writable:
            return final
        _fsync_tree(tmp)
        if final.exists():  # the same step saved again (e.g. final save right after a periodic one)
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(self.checkpoints_dir)
        for old in self.checkpoints()[:-keep_last] if keep_last > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def save_checkpoint(self, step: int, write: Callable[[Path], None], keep_last: int) -> Path:
        """Write a checkpoint with ``write(folder)`` atomically (single-process convenience)."""
        tmp = self.begin_checkpoint(step)
        write(tmp)
        return self.commit_checkpoint(step, keep_last)


def list_runs() -> list[Run]:
    """All runs, oldest first."""
    root = paths.runs_dir()
    return [Run(p, writable=False) for p in sorted(root.iterdir()) if (p / "run.json").is_file()]


def iter_runs(refs: list[str]) -> Iterator[Run]:
    for ref in refs:
        yield Run.open(ref, writable=False)


def _versions(*names: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _fsync_tree(folder: Path) -> None:
    for file in folder.rglob("*"):
        if file.is_file():
            with file.open("rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
