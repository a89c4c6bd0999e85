"""Where Hearth keeps things on disk: ``$HEARTH_HOME`` (default ``~/.hearth``) and its layout.

models/<name>/      converted or user models (safetensors + config + tokenizer)
adapters/<name>/    PEFT adapters registered by fine-tuning runs
runs/<run-id>/      training runs: config.yaml, metrics.jsonl, checkpoints/
kb/<collection>/    knowledge-base stores and their manifests
hearth.yaml         user settings
"""

from __future__ import annotations

import os
from pathlib import Path

_home_override: Path | None = None


def set_home(path: str | Path | None) -> None:
    """Point Hearth at another home for this process (the CLI's ``--home``)."""
    global _home_override
    _home_override = Path(path).expanduser().resolve() if path else None


def home() -> Path:
    if _home_override is not None:
        root = _home_override
    else:
        root = Path(os.environ.get("HEARTH_HOME", "~/.hearth")).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def _sub(name: str) -> Path:
    path = home() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir() -> Path:
    return _sub("models")


def adapters_dir() -> Path:
    return _sub("adapters")


def runs_dir() -> Path:
    return _sub("runs")


def kb_dir() -> Path:
    return _sub("kb")


def settings_file() -> Path:
    return home() / "hearth.yaml"
