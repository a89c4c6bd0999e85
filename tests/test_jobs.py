"""Jobs: bounded events and job lists, child processes that cannot block on their output and die with a
cancel, and real training, fine-tuning and evaluation jobs each in the run folder its parent made."""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

import pytest

from hearth.errors import HearthError, NotFound
from hearth.jobs import Event, Job, JobManager, start_eval, start_training, start_tuning
from hearth.jobs.child import LOG, run_in_child, signal_group
from hearth.train.runs import Run

ROOT = Path(__file__).resolve().parents[1]
CHILD = [sys.executable, str(Path(__file__).with_name("job_child.py"))]
TINY = [  # the scratch-tiny recipe, logging every step, quiet
    "training.log_every=1",
    "training.eval_every=1000",
    "training.save_every=1000",
    "training.progress=false",
]


def _child_job(jobs: JobManager, mode: str) -> tuple[Job, Run]:
    run = Run.create("test", mode)
    return jobs.start("test", mode, lambda job: run_in_child(job, run, {"kind": mode}, command=[*CHILD, mode])), run


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def test_events_are_capped_keeping_the_first_and_the_last() -> None:
    jobs = JobManager(max_events=5)
    job = jobs.start("test", "count", lambda job: [job.emit(Event(done=i, total=100)) for i in range(100)] and 7)
    assert job.wait(60)
    kept = job.events
    assert [e.seq for e in kept] == [0, 98, 99, 100, 101]  # started, the last progress events, done
    assert kept[0].type == "started" and kept[-1].type == "done" and kept[-2].done == 99
    assert [e.seq for e in job.follow()] == [0, 98, 99, 100, 101]
    assert [e.seq for e in job.since(99)] == [99, 100, 101]
    summary = job.summary()
    assert summary["events"] == 102 and summary["progress"]["done"] == 99 and summary["result"] == 7
    assert kept[-2]["done"] == 99 and "total" in kept[-2]  # reads like the JSON the API sends


def test_finished_jobs_are_forgotten_running_ones_kept() -> None:
    jobs = JobManager(keep_finished=2)
    gate = threading.Event()
    running = jobs.start("test", "waits", lambda job: gate.wait(60))
    done = [jobs.start("test", f"quick {i}", lambda job, i=i: i) for i in range(4)]
    for job in done:
        assert job.wait(60)
    listed = {j.id for j in jobs.list()}
    newest = sorted(done, key=lambda j: j.finished or 0)[-2:]
    assert listed == {running.id, *(j.id for j in newest)}
    with pytest.raises(NotFound):
        jobs.get(sorted(done, key=lambda j: j.finished or 0)[0].id)

    jobs.keep_seconds = 0  # and none kept once their time is up
    gate.set()
    assert running.wait(60)
    assert jobs.list() == []


def test_a_child_printing_megabytes_does_not_block(home: Path) -> None:
    job, run = _child_job(JobManager(), "chatty")
    assert job.wait(120), "the child blocked on its output"
    assert job.status == "done", job.error
    assert job.result == {"printed": 3 * 1024 * 1024}
    assert (run.root / LOG).stat().st_size == 3 * 1024 * 1024  # all of it, in the run's log file
    progress = [e for e in job.events if e.type == "progress"]
    assert [(e.done, e.total, e.message) for e in progress] == [(1, 3, "part 1"), (2, 3, "part 2"), (3, 3, "part 3")]
    assert job.run_id == run.id and json.loads((run.root / "job.json").read_text()) == {"kind": "chatty"}


def test_a_failing_child_fails_the_job_with_the_end_of_its_log(home: Path) -> None:
    job, run = _child_job(JobManager(), "fail")
    assert job.wait(60)
    assert job.status == "failed" and "exit 3" in job.error and "wrong on purpose" in job.error
    assert run.meta["status"] == "failed"


def test_cancel_kills_the_child_and_everything_it_started(home: Path) -> None:
    job, run = _child_job(JobManager(), "hang")
    waiting = next(e for e in job.follow(poll=0.2) if e.type == "progress")
    grandchild = waiting["grandchild"]
    assert not _gone(job.pid)
    job.cancel()
    assert job.wait(60)
    assert job.status == "cancelled" and run.meta["status"] == "cancelled"
    assert _gone(job.pid)  # the whole process group: the child and its grandchild
    with pytest.raises(ProcessLookupError):
        os.kill(grandchild, 0)


def test_shutdown_stops_running_children(home: Path) -> None:
    jobs = JobManager()
    job, _ = _child_job(jobs, "hang")
    next(e for e in job.follow(poll=0.2) if e.type == "progress")
    jobs.shutdown()  # what the server's exit runs: its children live in their own sessions
    assert job.status == "cancelled" and _gone(job.pid)


def test_a_child_dies_with_a_killed_server(home: Path) -> None:
    """kill -9 of the process running the job manager (no atexit runs) still ends the job's child."""
    import signal
    import subprocess
    import time

    host = subprocess.Popen(
        [sys.executable, "-c", HOST.format(child=CHILD)], stdout=subprocess.PIPE, text=True, env=os.environ
    )
    child = int(host.stdout.readline())  # the host prints the child's pid once it has started
    assert not _gone(child)
    host.send_signal(signal.SIGKILL)
    host.wait()
    deadline = time.monotonic() + 30
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = _alive(child)
    signal_group(child, signal.SIGKILL)  # what the child started outlives it (only the child is tied to the host)
    assert not alive


HOST = """
import time
from hearth.jobs import JobManager
from hearth.jobs.child import run_in_child
from hearth.train.runs import Run
run = Run.create("test", "host")
job = JobManager().start("test", "hang", lambda job: run_in_child(job, run, {{}}, command={child} + ["hang"]))
next(e for e in job.follow(poll=0.1) if e.type == "progress")
print(job.pid, flush=True)
time.sleep(600)
"""


def test_bad_recipes_fail_the_request_not_the_job(home: Path) -> None:
    jobs = JobManager()
    with pytest.raises(NotFound, match=r"no recipe 'nope\.yaml'"):
        start_training(jobs, "nope.yaml")
    with pytest.raises(HearthError, match="max_stepz"):
        start_training(jobs, "scratch-tiny.yaml", ["training.max_stepz=3"])
    with pytest.raises(HearthError, match="no questions"):
        start_eval(jobs, [{"answer": "no question"}], ["smollm2"])
    assert jobs.list() == []


@pytest.mark.slow
def test_trainings_started_together_each_follow_their_own_run_and_cancel_stops_one(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # the recipe's corpus path is relative to the repository
    jobs = JobManager()
    a = start_training(jobs, "scratch-tiny.yaml", [*TINY, "training.max_steps=3"])
    b = start_training(jobs, "scratch-tiny.yaml", [*TINY, "training.max_steps=5"])
    endless = start_training(jobs, "scratch-tiny.yaml", [*TINY, "training.max_steps=100000"])

    first = next(e for e in endless.follow(poll=0.2) if e.type == "progress")
    assert first.done == 1 and first.total == 100000
    endless.cancel()
    assert endless.wait(60) and endless.status == "cancelled"
    assert _gone(endless.pid)
    stopped = Run.open(endless.run_id)
    assert stopped.meta["status"] == "cancelled" and stopped.summary == {}

    for job, steps in ((a, 3), (b, 5)):
        assert job.wait(300) and job.status == "done", job.error
        run = Run.open(job.run_id)
        assert job.result["run_id"] == run.id and job.result["steps"] == steps
        assert max(p["step"] for p in run.metrics("train")) == steps
        progress = [e for e in job.events if e.type == "progress" and e.get("split") == "train"]
        assert [e.done for e in progress] == list(range(1, steps + 1)) and progress[-1].total == steps
        assert run.meta["status"] == "finished" and run.meta["job"] == job.id
    assert len({a.run_id, b.run_id, endless.run_id}) == 3
    assert sorted(p.name for p in (home / "runs").iterdir()) == sorted([a.run_id, b.run_id, endless.run_id])


@pytest.mark.slow
def test_fine_tuning_and_evaluation_run_as_jobs(home: Path) -> None:
    jobs = JobManager()
    tune = start_tuning(
        jobs,
        "tune/smollm2-lora.yaml",
        [
            f"data.path={ROOT / 'examples' / 'data' / 'company-qa-en.jsonl'}",
            "data.max_seq_len=64",
            "training.max_steps=2",
            "training.log_every=1",
            "training.eval_every=2",
            "training.save_every=2",
            "training.progress=false",
            "report.samples=0",
            "name=job-tune",
        ],
    )
    evaluation = start_eval(
        jobs,
        [{"question": "Who founded Quillon Lanternworks?", "answer": "Marisol Vantree"}],
        ["smollm2"],
        max_tokens=4,
    )
    assert tune.wait(600) and tune.status == "done", tune.error
    run = Run.open(tune.run_id)
    assert tune.result["run_id"] == run.id and tune.result["report"]["steps"] == 2
    assert [e.done for e in tune.events if e.type == "progress" and e.get("split") == "train"] == [1, 2]
    assert (run.root / "adapter" / "adapter_model.safetensors").is_file() and (run.root / LOG).is_file()

    assert evaluation.wait(600) and evaluation.status == "done", evaluation.error
    run = Run.open(evaluation.run_id)
    assert evaluation.result["run_id"] == run.id and (run.root / "report.md").is_file()
    answers = [json.loads(line) for line in (run.root / "answers.jsonl").read_text().splitlines()]
    assert len(answers) == 1 and answers[0]["system"] == "smollm2"
    assert [(e.done, e.total, e.message) for e in evaluation.events if e.type == "progress"] == [(1, 1, "smollm2")]
