"""Fixtures for the agent tests: the bundled model loaded once, and one knowledge base built once.

The knowledge base (four small documents in tests/agent/data: an English handbook, a Chinese lab
guide, unrelated garden notes, supplier notes carrying a prompt injection) lives in its own Hearth home shared by the session; tests that use
it point HEARTH_HOME there. Its facts are invented, so the model can only know them from retrieval.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from hearth import paths

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def chat_model(session_home: Path):
    """The bundled SmolLM2-135M, converted once into the session's models/ folder."""
    from hearth.models import backends

    (session_home / "models").mkdir(exist_ok=True)
    paths.set_home(session_home)
    try:
        return backends.get_chat_model("smollm2")
    finally:
        paths.set_home(None)


@pytest.fixture(scope="session")
def kb_home(session_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Hearth home with collection 'handbook' holding the test documents (copied: the KB keeps paths)."""
    from hearth.kb import collection, ingest

    root = tmp_path_factory.mktemp("agent-home")
    (session_home / "models").mkdir(exist_ok=True)
    (root / "models").symlink_to(session_home / "models", target_is_directory=True)
    docs = root / "docs"
    shutil.copytree(DATA, docs)
    old = os.environ.get("HEARTH_HOME")
    os.environ["HEARTH_HOME"] = str(root)
    paths.set_home(root)
    try:
        collection.create("handbook")
        report = ingest.add("handbook", [docs])
        assert len(report.added) == 4 and not report.failed, report
    finally:
        paths.set_home(None)
        if old is None:
            os.environ.pop("HEARTH_HOME", None)
        else:
            os.environ["HEARTH_HOME"] = old
    return root


@pytest.fixture
def grounded(kb_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Run a test inside the knowledge-base home."""
    monkeypatch.setenv("HEARTH_HOME", str(kb_home))
    paths.set_home(kb_home)
    yield kb_home
    paths.set_home(None)


@pytest.fixture(scope="session")
def npm_everything(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """@modelcontextprotocol/server-everything installed from the npm registry into a cache folder."""
    import subprocess

    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: the third-party MCP server test needs Node.js and npm")
    cache = Path(os.environ.get("HEARTH_TEST_NPM_CACHE", tmp_path_factory.mktemp("npm")))
    binary = cache / "node_modules" / ".bin" / "mcp-server-everything"
    if not binary.exists():
        subprocess.run(
            [
                npm,
                "install",
                "--prefix",
                str(cache),
                "--no-audit",
                "--no-fund",
                "@modelcontextprotocol/server-everything",
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return binary
