"""Node packages for the JavaScript tests: each lockfile is installed once into a cache outside the repo.

``install(folder)`` copies ``package.json`` and ``package-lock.json`` from ``folder`` into
``~/.cache/hearth/npm/<name>-<lock hash>/`` and runs ``npm ci`` there, once; later runs (and other
checkouts) reuse it. A different lockfile is a different directory, so a stale install is never used.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from filelock import FileLock

NODE = shutil.which("node")
NPM = shutil.which("npm")
MIN_NODE = (20, 0)

REPO = Path(__file__).resolve().parents[2]


def node_version() -> tuple[int, int]:
    if NODE is None:
        return (0, 0)
    out = subprocess.run([NODE, "--version"], capture_output=True, text=True, check=True).stdout
    major, minor = out.strip().lstrip("v").split(".")[:2]
    return int(major), int(minor)


def missing(least: tuple[int, int] = MIN_NODE) -> str | None:
    """Why the Node tests cannot run here, or None when they can."""
    if NODE is None or NPM is None:
        return "node and npm are not installed (apt-get install nodejs npm); CI runs these tests"
    if node_version() < least:
        have = ".".join(map(str, node_version()))
        return f"node {least[0]}.{least[1]} or newer is needed (this is {have}); CI runs these tests"
    return None


def needs_node(least: tuple[int, int] = MIN_NODE) -> list[pytest.MarkDecorator]:
    """Marks for a module of Node tests: ``node`` (select or deselect with -m), skipped without Node."""
    reason = missing(least)
    return [pytest.mark.node, pytest.mark.skipif(reason is not None, reason=reason or "")]


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hearth" / "npm"


def install(folder: Path) -> Path:
    """The directory whose ``node_modules`` holds ``folder``'s locked packages (installed if missing)."""
    lock = folder / "package-lock.json"
    digest = hashlib.sha256(lock.read_bytes() + (folder / "package.json").read_bytes()).hexdigest()[:16]
    target = cache_root() / f"{folder.name}-{digest}"
    done = target / ".installed"
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):  # two test processes starting together install once
        if done.exists():
            return target
        shutil.rmtree(target, ignore_errors=True)  # a half-finished install from an interrupted run
        target.mkdir()
        shutil.copy(folder / "package.json", target)
        shutil.copy(lock, target)
        result = subprocess.run(
            [NPM, "ci", "--no-audit", "--no-fund", "--loglevel=error"],  # type: ignore[list-item]
            cwd=target,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"npm ci in {target} failed (is registry.npmjs.org reachable?):\n{result.stderr}")
        done.touch()
    return target


def run_node(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    """Run node; the output is shown in full when the test fails."""
    return subprocess.run(
        [NODE, *args],  # type: ignore[list-item]
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
