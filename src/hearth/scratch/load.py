"""Load a trained from-scratch model from its run folder: ``load_run(path) -> (model, tokenizer)``.

This lives in the core layer and reads the run folder's files directly (``config.yaml``'s ``model:``
section, ``tokenizer/``, the newest complete ``checkpoints/step-N/model.safetensors``), so the model loader
and the generation path can use a run without importing the training code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hearth import paths
from hearth.errors import ModelError, ModelNotFound
from hearth.scratch.model import LanguageModel, ModelConfig, build_model
from hearth.scratch.tokenizer import load_tokenizer


def find_run(ref: str | Path) -> Path | None:
    """The run folder for a path, ``runs/<id>`` or a bare run id; None if it is not a from-scratch run."""
    ref = str(ref)
    for candidate in (Path(ref).expanduser(), paths.runs_dir() / ref, paths.runs_dir() / Path(ref).name):
        if (candidate / "config.yaml").is_file() and (candidate / "tokenizer" / "tokenizer.json").is_file():
            return candidate.resolve()
        # A checkpoint folder inside a run: runs/<id>/checkpoints/step-N
        if (candidate / "model.safetensors").is_file() and candidate.parent.name == "checkpoints":
            return candidate.parent.parent.resolve()
    return None


def load_run(path: str | Path) -> tuple[LanguageModel, Any]:
    """The run's newest checkpoint (or the checkpoint folder given) as an eval-mode model, and its tokenizer."""
    from safetensors.torch import load_model

    run = find_run(path)
    if run is None:
        raise ModelNotFound(
            f"'{path}' is not a from-scratch training run", "pass runs/<id> or a run id from `hearth runs list`"
        )
    given = Path(path).expanduser()
    if (given / "model.safetensors").is_file():
        checkpoint = given
    else:
        steps = (
            sorted((run / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
            if (run / "checkpoints").exists()
            else []
        )
        if not steps:
            raise ModelError(
                f"run {run.name} has no checkpoint yet",
                "wait for its first save, or resume it with `hearth train --resume`",
            )
        checkpoint = steps[-1]
    raw = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) or {}
    cfg = ModelConfig.model_validate(raw.get("model", {}))
    model = build_model(cfg)
    try:
        load_model(model, str(checkpoint / "model.safetensors"), strict=True)
    except RuntimeError as exc:
        raise ModelError(
            f"{checkpoint} does not match the model in {run / 'config.yaml'}: {exc}",
            "the config was edited after training: restore it",
        ) from None
    model.eval()
    return model, load_tokenizer(run / "tokenizer")
