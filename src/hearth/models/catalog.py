"""Which models can be named right now: bundled, local (under ``models/``), adapters, remote backends.

``hearth models``, ``GET /v1/models`` and the web UI's pickers all list from here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from hearth import config, paths
from hearth.models import adapters, bundled


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
    for a in adapters.list_adapters():
        # listed by the name that loads it: base+adapter
        out.append(ModelEntry(f"{a['base']}+{a['name']}", "adapter", f"{a['method']} adapter", a["path"], a["base"]))
    for name, backend in settings.backends.items():
        out.append(ModelEntry(f"remote:{name}", "remote", f"{backend.model} at {backend.base_url}"))
    return out
