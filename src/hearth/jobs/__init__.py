"""Jobs: long work (training, fine-tuning, evaluation, ingest) in the background, with progress events and cancel.

It lives at the app layer (not in ``serve/``) because every face starts the same jobs: the HTTP API
streams a job's events as SSE, the web UI draws them, and the CLI can show them as a progress bar.

    manager.py  Job and JobManager: events (first + last N), cancel, finished jobs forgotten after a while
    child.py    work in a child process, in a run folder the parent made; output to a log file
    worker.py   the child's entry point: ``python -m hearth.jobs.worker RUN_DIR``
    kinds.py    start_training, start_tuning, start_eval, start_ingest; the recipes in configs/
"""

from hearth.jobs.kinds import list_recipes, recipes_dir, start_eval, start_ingest, start_training, start_tuning
from hearth.jobs.manager import Cancelled, Job, JobManager, manager
from hearth.progress import FINISHED, Event

__all__ = [
    "FINISHED",
    "Cancelled",
    "Event",
    "Job",
    "JobManager",
    "list_recipes",
    "manager",
    "recipes_dir",
    "start_eval",
    "start_ingest",
    "start_training",
    "start_tuning",
]
