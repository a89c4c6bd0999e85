"""Fixtures for the agent tests: the bundled model loaded once, and one knowledge base built once.

The knowledge base (four small documents in tests/agent/data: an English handbook, a Chinese lab
guide, unrelated garden notes, supplier notes carrying a prompt injection) lives in its own Hearth home shared by the session; tests that use
it point HEARTH_HOME there. Its facts are invented, so the model can only know them from retrieval.

The MCP compatibility tests also get clients that cannot live in the project's venv: the official
SDK 1.x in a venv of its own (``mcp1_python``) and the MCP Inspector CLI from npm (``inspector``).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hearth import config, paths
from homes import using_home

DATA = Path(__file__).parent / "data"
# Test tools that live outside the project's own venv (another SDK generation, Node.js clients) are
# installed once into .venv/ and kept between runs; `make clean` removes them with the venv.
TOOLS = Path(__file__).resolve().parents[2] / ".venv"
MCP1 = "mcp==1.30.0"  # the 1.x client the issue asks us to stay compatible with


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
def torch_model(session_home: Path):
    """The bundled model on the torch engine, for tests of torch's own path (xgrammar processors)."""
    from hearth.models import backends

    (session_home / "models").mkdir(exist_ok=True)
    paths.set_home(session_home)
    try:
        return backends.get_chat_model("smollm2", engine="torch")
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
    with using_home(root):
        settings = config.Settings()
        collection.create("handbook", settings=settings)
        report = ingest.add("handbook", [docs], settings=settings)
        assert len(report.added) == 4 and not report.failed, report
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


@pytest.fixture(scope="session")
def mcp1_python() -> Path:
    """The python of a venv holding the official MCP SDK 1.x (the project's venv holds 2.x).

    Built once into .venv/mcp1 (pip's cache makes a rebuild quick); a marker naming the pinned
    release says the install finished, so a half-built venv or an older pin is rebuilt. An install
    that fails fails the test that needs it: the 1.x client is part of the compatibility contract.
    """
    venv = TOOLS / "mcp1"
    python = venv / "bin" / "python"
    marker = venv / f".installed-{MCP1}"
    if marker.exists():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", MCP1],
    ]
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            pytest.fail(f"building the MCP 1.x client venv timed out: {' '.join(step)}", pytrace=False)
        if done.returncode != 0:
            pytest.fail(
                f"could not build the MCP 1.x client venv in {venv} ({' '.join(step)} exited {done.returncode}); "
                f"it installs from PyPI.\n{done.stderr[-3000:]}",
                pytrace=False,
            )
    marker.touch()
    return python


def _npm_install(prefix: Path, packages: list[str]) -> None:
    """npm-install pinned packages into their own prefix, once; fail the test with npm's words if it can't."""
    marker = prefix / ".installed"  # holds the package list, so changing a pin reinstalls
    if marker.exists() and marker.read_text() == " ".join(packages):
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: the MCP Inspector test needs Node.js and npm")
    shutil.rmtree(prefix, ignore_errors=True)
    step = [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", *packages]
    try:
        done = subprocess.run(step, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        pytest.fail(f"npm install timed out: {' '.join(step)}", pytrace=False)
    if done.returncode != 0:
        pytest.fail(f"npm install failed ({' '.join(step)}):\n{done.stderr[-3000:]}", pytrace=False)
    marker.write_text(" ".join(packages))


# The Inspector generations we test against. 0.15.0 is what `npx @modelcontextprotocol/inspector`
# resolves to on Debian's Node 20 (every later release needs Node >= 22); 2.x is the current one and
# needs Node >= 22.19, so it runs on a Node build that the npm registry ships (node-linux-<arch>).
INSPECTORS = {"0.15.0": None, "2.12.0": "22.23.5"}  # Inspector release -> Node release (None: the system's)


@pytest.fixture(scope="session", params=sorted(INSPECTORS))
def inspector(request: pytest.FixtureRequest) -> tuple[str, list[str]]:
    """The MCP Inspector installed from npm into a cache folder, one per generation: its release, and
    the command that starts it (node and the package's `mcp-inspector` bin)."""
    release, node_release = request.param, INSPECTORS[request.param]
    prefix = Path(os.environ.get("HEARTH_TEST_NPM_CACHE", TOOLS / "npm")) / f"inspector-{release}"
    packages = [f"@modelcontextprotocol/inspector@{release}"]
    if node_release:
        arch = {"x86_64": "x64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
        packages.append(f"node-linux-{arch}@{node_release}")
    _npm_install(prefix, packages)
    package = prefix / "node_modules" / "@modelcontextprotocol" / "inspector"
    bins = json.loads((package / "package.json").read_text())["bin"]
    node = str(prefix / "node_modules" / ".bin" / "node") if node_release else shutil.which("node") or "node"
    return release, [node, str(package / bins["mcp-inspector"])]
