"""A Hearth home for a module- or session-scoped fixture: the ``home`` fixture's monkeypatch lives for one
test only. Importable from any test folder (pytest puts tests/ on the path for tests/conftest.py)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from hearth import paths


@contextlib.contextmanager
def using_home(root: Path) -> Iterator[Path]:
    """``HEARTH_HOME`` (for child processes and ``config.settings()``) and ``paths`` point at ``root`` inside."""
    old = os.environ.get("HEARTH_HOME")
    os.environ["HEARTH_HOME"] = str(root)
    paths.set_home(root)
    try:
        yield root
    finally:
        paths.set_home(None)
        if old is None:
            os.environ.pop("HEARTH_HOME", None)
        else:
            os.environ["HEARTH_HOME"] = old
