"""What reaches the disk from outside: model names from HTTP, GGUF conversion over an installed model, and
checkpoint files of a resumed run (a pickle runs code when loaded). No server needed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from hearth import config, paths
from hearth.errors import ModelError, ModelNotFound, TrainError
from hearth.models import catalog, load


def test_http_model_names_are_registry_names(home: Path, tmp_path: Path) -> None:
    settings = config.Settings()
    (paths.models_dir() / "mine").mkdir()
    assert catalog.resolve_for_http("smollm2", settings) == "smollm2"
    assert catalog.resolve_for_http("mine", settings) == "mine"
    real = tmp_path / "real.gguf"
    real.write_bytes(b"GGUF")
    answers = set()
    for name in (str(real), str(tmp_path / "missing.gguf"), "../../etc/passwd", "/etc", "~/x", "a/b", "smollm2+/tmp"):
        with pytest.raises(catalog.PathRefused) as exc:
            catalog.resolve_for_http(name, settings)
        answers.add(exc.value.message.replace(name, "NAME"))
    assert len(answers) == 1  # an existing file and a missing one get the same words
    with pytest.raises(ModelNotFound):
        catalog.resolve_for_http("nothing-here", settings)
    with pytest.raises(ModelNotFound):
        catalog.resolve_for_http("remote:unknown", settings)


def test_a_registered_name_beats_a_file_in_the_working_folder(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = paths.models_dir() / "twin"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    work = tmp_path / "work"
    (work / "twin").mkdir(parents=True)  # a folder of the same name where the server was started
    monkeypatch.chdir(work)
    assert load.resolve("twin").path == folder.resolve()


def test_conversion_never_replaces_an_installed_model(home: Path, tmp_path: Path) -> None:
    installed = paths.models_dir() / "qwen"
    installed.mkdir()
    (installed / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    (installed / "model.safetensors").write_bytes(b"weights")
    source = tmp_path / "qwen.gguf"
    source.write_bytes(b"GGUF not really")
    with pytest.raises(ModelError, match="would replace the model folder models/qwen"):
        load.hf_dir(load.ModelRef(name=str(source), kind="gguf", path=source))
    assert (installed / "model.safetensors").read_bytes() == b"weights"


class _Payload:
    """Unpickling this runs a command: what a planted checkpoint file would carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def test_resume_loads_only_tensors_and_plain_state(tmp_path: Path) -> None:
    from hearth.train.loop import _get_rng, _set_rng, load_state

    checkpoint = tmp_path / "step-10"
    checkpoint.mkdir()
    torch.save(_get_rng(), checkpoint / "rng.pt")  # what Hearth writes loads as before
    _set_rng(load_state(checkpoint / "rng.pt"))
    marker = tmp_path / "pwned"
    torch.save({"state": {}, "param_groups": [], "x": _Payload(marker)}, checkpoint / "optimizer.pt")
    with pytest.raises(TrainError, match="holds objects other than tensors"):
        load_state(checkpoint / "optimizer.pt")
    assert not marker.exists()
