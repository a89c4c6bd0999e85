"""Shared fixtures: every test runs against its own Hearth home; the bundled model is converted once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hearth import paths

# Nothing in the suite may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def session_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Hearth home shared by the session, so the bundled model converts only once."""
    return tmp_path_factory.mktemp("hearth-home")


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
