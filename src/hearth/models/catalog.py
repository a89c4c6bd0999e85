"""Which models can be named right now: bundled, local (under ``models/``), adapters, remote backends.

``hearth models``, ``GET /v1/models`` and the web UI's pickers all list from here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from hearth import config, paths
from hearth.models import bundled


@dataclass
class ModelEntry:
    id: str  # the name to pass as `model`
    kind: str  # bundled | local | adapter | remote
    description: str = ""
    path: str | None = None
    base_model: str | None = None  # for adapters

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)


def list_models(settings: config.Settings | None = None) -> list[ModelEntry]:
    settings = settings or config.settings()
    out = [ModelEntry(bundled.NAME, "bundled", bundled.DESCRIPTION)]
    for folder in sorted(paths.models_dir().iterdir()):
        # the bundled model's converted copy lives here too; it is listed once, as bundled
        if folder.name == bundled.NAME or folder.name.startswith(".") or not folder.is_dir():
            continue
        if (folder / "config.json").exists() or any(folder.glob("*.gguf")):
            out.append(ModelEntry(folder.name, "local", "model folder", str(folder)))
    for folder in sorted(paths.adapters_dir().iterdir()):
        cfg = folder / "adapter_config.json"
        if cfg.exists():
            out.append(ModelEntry(folder.name, "adapter", "PEFT adapter", str(folder), _base_of(cfg)))
    for name, backend in settings.backends.items():
        out.append(ModelEntry(f"remote:{name}", "remote", f"{backend.model} at {backend.base_url}"))
    return out


def _base_of(cfg: Path) -> str | None:
    try:
        return json.loads(cfg.read_text()).get("base_model_name_or_path")
    except (OSError, json.JSONDecodeError):
        return None
