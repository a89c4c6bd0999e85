"""Which models can be named right now: bundled, local (under ``models/``), adapters, remote backends.

``hearth models``, ``GET /v1/models`` and the web UI's pickers all list from here, and
``resolve_for_http`` lets a name from an HTTP client through only if it is one of these (or a
training run's id): never a path on the server.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from hearth import config, paths
from hearth.errors import ModelError, ModelNotFound
from hearth.models import adapters, bundled
from hearth.models.load import is_plain_name


@dataclass
class ModelEntry:
    id: str  # the name to pass as `model`
    kind: str  # bundled | local | adapter | remote
    description: str = ""
    path: str | None = None
    base_model: str | None = None  # for adapters

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)


def list_models(settings: config.Settings) -> list[ModelEntry]:
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


class PathRefused(ModelError):
    status = 400
    code = "model_path_not_allowed"


def resolve_for_http(name: str, settings: config.Settings) -> str:
    """``name`` if it names a registered model: the bundled one, a folder under ``models/``, a registered
    adapter on one (``base+adapter``), a training run's id, or ``remote:<backend>`` from hearth.yaml.

    Anything shaped like a path is refused with the same 400 whether or not it exists, so a client
    learns nothing about the server's disk; an unknown name is the 404 OpenAI answers."""
    name = name.strip()
    base, plus, adapter = name.partition("+")
    if name.startswith("remote:"):
        if name.split(":", 1)[1] in settings.backends:
            return name
    elif not is_plain_name(base) or (plus and not is_plain_name(adapter)):
        raise PathRefused(
            f"'{name}' is not a model name: over HTTP, models are names, not paths",
            "GET /v1/models lists the names; the server's admin adds models with `hearth models` on the server",
        )
    elif _registered(base) and (not plus or (paths.adapters_dir() / adapter / "adapter_config.json").is_file()):
        return name
    raise ModelNotFound(f"The model '{name}' does not exist", "GET /v1/models lists the models")


def _registered(name: str) -> bool:
    from hearth.scratch.load import find_run

    if name == bundled.NAME or (paths.models_dir() / name).is_dir():
        return True
    run = paths.runs_dir() / name
    return run.is_dir() and find_run(run) is not None
