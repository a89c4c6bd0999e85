"""Fixtures for the evaluation tests: the example documents in a real knowledge base."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hearth.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "examples" / "docs" / "quillon"


@pytest.fixture
def company_kb(home: Path, tmp_path: Path) -> tuple[str, Path]:
    """Collection 'company' holding a copy of the example company documents (English and Chinese)."""
    from hearth.kb import collection as kbc

    docs = tmp_path / "quillon"
    shutil.copytree(DOCS, docs)
    kbc.create("company", settings=Settings())
    report = kbc.add("company", [docs], settings=Settings())
    assert not report.failed
    return "company", docs
