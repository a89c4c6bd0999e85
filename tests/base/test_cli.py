"""The CLI's contract: errors print a message and a hint, no traceback, non-zero exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def hearth(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hearth.cli.main", "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_version_and_config_show(tmp_path: Path) -> None:
    out = hearth("--version", home=tmp_path)
    assert out.returncode == 0 and out.stdout.startswith("hearth ")
    out = hearth("config", "show", "generation.temperature=0.2", home=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "temperature: 0.2" in out.stdout


def test_config_error_has_hint_and_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "hearth.yaml").write_text("generaton:\n  temperature: 0.1\n")
    out = hearth("config", "show", home=tmp_path)
    assert out.returncode == 1
    assert "unknown key 'generaton'" in out.stderr and "did you mean 'generation'" in out.stderr
    assert "hint:" in out.stderr
    assert "Traceback" not in out.stderr
    debug = hearth("--debug", "config", "show", home=tmp_path)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    out = hearth("chat", "-m", str(tmp_path / "nope"), "hi", home=tmp_path)
    assert out.returncode == 1
    assert "is not a bundled model" in out.stderr and "does not download" in out.stderr
    assert "Traceback" not in out.stderr


def test_impossible_sampling_value(tmp_path: Path) -> None:
    out = hearth("chat", "--top-p", "2", "hi", home=tmp_path)
    assert out.returncode == 1 and "top_p" in out.stderr and "Traceback" not in out.stderr
