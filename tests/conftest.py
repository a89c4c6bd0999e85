"""Shared fixtures: every test runs against its own Hearth home; the bundled model is converted once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hearth import paths

# `make test` runs one pytest-xdist worker per core. Each worker is pinned to its own core, with what it starts
# (llama-server, training children, whose thread counts follow: hearth.cpu.usable_cores), so two workers never
# run four busy threads on two cores.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER and hasattr(os, "sched_setaffinity"):
    _cores = sorted(os.sched_getaffinity(0))
    _count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if len(_cores) >= _count > 1:
        os.sched_setaffinity(0, _cores[int(_WORKER.removeprefix("gw")) % _count :: _count])

# Nothing in the suite may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with slow tests run first. Under xdist a long file that starts last ends the run alone on one
    worker while the other core idles (measured: 11.7 min for 9.3 min of parallel CPU time)."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)  # stable: a file's tests stay together and in order


@pytest.fixture(scope="session")
def session_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Hearth home shared by the session, so the bundled model converts only once. The xdist workers of
    one run share its models/ too (the conversion takes a file lock; ~30 s per worker)."""
    root = tmp_path_factory.mktemp("hearth-home")
    if _WORKER:
        shared = tmp_path_factory.getbasetemp().parent / "models"
        shared.mkdir(exist_ok=True)
        (root / "models").symlink_to(shared, target_is_directory=True)
    return root


@pytest.fixture
def home(tmp_path: Path, session_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh Hearth home for one test; `models/` is shared with the session (conversion is slow)."""
    root = tmp_path / "home"
    root.mkdir()
    shared_models = session_home / "models"
    shared_models.mkdir(exist_ok=True)
    (root / "models").symlink_to(shared_models, target_is_directory=True)
    monkeypatch.setenv("HEARTH_HOME", str(root))
    paths.set_home(root)
    yield root
    paths.set_home(None)


@pytest.fixture(scope="session")
def smol(session_home: Path):
    """The bundled chat model on torch (Hearth's own generation path), converted once into the
    session home and loaded once."""
    from hearth.models import backends

    paths.set_home(session_home)
    try:
        return backends.get_chat_model("smollm2", engine="torch")
    finally:
        paths.set_home(None)
