"""Find a model by name and load it as a torch model + tokenizer — never from a hub unless asked.

A model name is one of:
- ``smollm2`` — the bundled default (converted once from its GGUF to safetensors under ``models/``);
- a name under ``$HEARTH_HOME/models/``;
- a path: a Hugging Face-format directory, a ``.safetensors`` file beside its ``config.json``, or a ``.gguf``
  file (converted once, like the bundled one);
- ``remote:<backend>`` — a server from ``hearth.yaml`` (handled by ``backends``, not loaded here);
- ``base+adapter`` — a base model above with a fine-tuned adapter from ``$HEARTH_HOME/adapters/`` on top;
- a from-scratch training run: ``runs/<id>``, its id, or its folder (loaded by ``hearth.scratch.load_run``).

A plain name that is registered under ``$HEARTH_HOME`` means the registered model even when a file of
that name sits in the current folder. Paths are for the CLI (it runs as the user); over HTTP,
``catalog.resolve_for_http`` lets only registered names through. Converting a GGUF file never replaces
a model folder that holds something else.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hearth import paths
from hearth.errors import ModelError, ModelNotFound
from hearth.models import adapters, bundled

Kind = Literal["hf", "gguf", "remote", "scratch"]


@dataclass(frozen=True)
class ModelRef:
    """What a model name points at."""

    name: str
    kind: Kind
    path: Path | None = None  # the HF directory, or the .gguf file before conversion
    backend: str | None = None  # for remote models
    adapter: Path | None = None  # a PEFT adapter folder on top (name ``base+adapter``)


@dataclass
class LoadedModel:
    """A local model ready for the generation path."""

    ref: ModelRef
    model: Any  # torch.nn.Module following Hugging Face's forward convention
    tokenizer: Any  # a transformers tokenizer
    path: Path

    @property
    def context_length(self) -> int:
        cfg = self.model.config
        for attr in ("max_position_embeddings", "block_size", "n_positions"):
            value = getattr(cfg, attr, None)
            if isinstance(value, int) and value > 0:
                return value
        return 2048


def resolve(name: str) -> ModelRef:
    """Turn a user's model name into a ModelRef, or say clearly why it can't be found."""
    name = name.strip()
    if not name:
        raise ModelNotFound("no model named", "pass a model name or path, e.g. -m smollm2")
    if name.startswith("remote:"):
        return ModelRef(name=name, kind="remote", backend=name.split(":", 1)[1])
    if name == bundled.NAME:
        return ModelRef(name=name, kind="gguf", path=bundled.gguf_path())
    if (pair := adapters.split_name(name)) is not None:
        return dataclasses.replace(resolve(pair[0]), adapter=adapters.find(pair[1]))
    from hearth.scratch.load import find_run

    registered = paths.models_dir() / name
    if is_plain_name(name) and registered.is_dir():
        candidate = registered
    elif (run := find_run(name)) is not None:
        return ModelRef(name=name, kind="scratch", path=run)
    else:
        candidate = Path(name).expanduser()
    if not candidate.exists():
        under_models = paths.models_dir() / name
        if under_models.is_dir():
            candidate = under_models
        else:
            raise ModelNotFound(
                f"model '{name}' is not a bundled model, a folder under {paths.models_dir()}, or a path that exists",
                "`hearth models` lists what is available; Hearth does not download from model hubs — "
                "download the model yourself and pass its folder or .gguf file",
            )
    candidate = candidate.resolve()
    if candidate.is_file():
        if candidate.suffix == ".gguf":
            return ModelRef(name=name, kind="gguf", path=candidate)
        if candidate.suffix == ".safetensors":
            if (candidate.parent / "config.json").exists():
                return ModelRef(name=name, kind="hf", path=candidate.parent)
            raise ModelError(
                f"{candidate} is a lone weights file: there is no config.json beside it to say what model it is",
                "put it in a folder with its config.json and tokenizer files (`hearth inspect` can still read it)",
            )
        raise ModelError(
            f"{candidate} is not a model file Hearth can load", "use a .gguf file, or a folder with config.json"
        )
    if (candidate / "config.json").exists():
        return ModelRef(name=name, kind="hf", path=candidate)
    ggufs = sorted(candidate.glob("*.gguf"))
    if ggufs:
        return ModelRef(name=name, kind="gguf", path=ggufs[0])
    raise ModelError(
        f"{candidate} has no config.json and no .gguf file",
        "point at a Hugging Face-format model folder (config.json + *.safetensors + tokenizer) or a .gguf file",
    )


PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def is_plain_name(name: str) -> bool:
    """A registry name (letters, digits, ``.``, ``_``, ``-``; no separators, not ``.``-led): never a path."""
    return PLAIN_NAME.fullmatch(name) is not None and ".." not in name


def hf_dir(ref: ModelRef) -> Path:
    """A Hugging Face-format directory for a local ref, converting a GGUF file once if needed."""
    if ref.kind == "remote" or ref.path is None:
        raise ModelError(f"'{ref.name}' is a remote model and has no local weights", "use a local model here")
    if ref.kind == "hf":
        return ref.path
    target = paths.models_dir() / (bundled.NAME if ref.name == bundled.NAME else ref.path.stem)
    if _converted_from(target) == _fingerprint(ref.path):
        return target
    from filelock import FileLock

    # Processes started together (`accelerate launch`, several workers) would all convert into the same
    # temp folder at once; the first converts, the others wait and then find the result.
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.with_name(f".{target.name}.lock"))):
        if _converted_from(target) == _fingerprint(ref.path):
            return target
        _check_replaceable(target, ref.path, bundled=ref.name == bundled.NAME)
        return convert_gguf(ref.path, target)


def _check_replaceable(target: Path, source: Path, bundled: bool) -> None:
    """A conversion may replace only its own stale output (same source file, or the bundled model's
    folder): a folder the user installed, or another file's conversion, is never deleted."""
    if not target.exists():
        return
    earlier = _converted_from(target)
    if earlier is not None and (bundled or earlier.get("source") == str(source)):
        return
    raise ModelError(
        f"converting {source.name} would replace the model folder models/{target.name}, which holds another model",
        f"rename the .gguf file (its name becomes the folder's), or move models/{target.name} away",
    )


def convert_gguf(source: Path, target: Path) -> Path:
    """Dequantize a GGUF file into a float32 safetensors model directory, atomically (temp dir + rename)."""
    from rich.console import Console
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig
    from transformers.utils import logging as hf_logging

    _check_gguf(source)
    hf_logging.enable_progress_bar()
    Console(stderr=True).print(
        f"[cyan]Converting[/] {source.name} to safetensors under {target} (once; later loads are fast)"
    )
    tmp = target.with_name(f".{target.name}.converting")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        model = AutoModelForCausalLM.from_pretrained(
            source.parent, gguf_file=source.name, quantization_config=GgufConfig(dequantize=True)
        )
        # Not model.save_pretrained: once torch.distributed is up (`accelerate launch`) it silently writes
        # nothing on ranks other than 0, and whichever rank holds the conversion lock must write it all.
        from safetensors.torch import save_file

        tmp.mkdir(parents=True)
        model.config.architectures = [type(model).__name__]  # what save_pretrained records
        model.config.save_pretrained(tmp)
        if model.generation_config is not None:
            model.generation_config.save_pretrained(tmp)
        # tied weights once, under their first name (the embeddings, not the head), as transformers does
        weights: dict[str, Any] = {}
        stored: set[int] = set()
        for key, tensor in model.state_dict().items():
            if tensor.data_ptr() not in stored:
                stored.add(tensor.data_ptr())
                weights[key] = tensor.contiguous()
        save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save_pretrained(tmp)
    except Exception as exc:  # transformers raises many types for a bad file
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelError(f"could not convert {source}: {exc}", "check that the file is a complete GGUF model") from exc
    (tmp / "hearth-source.json").write_text(json.dumps(_fingerprint(source)))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


_cache: dict[str, LoadedModel] = {}
_cache_lock = threading.Lock()


def load(name: str) -> LoadedModel:
    """Load a local model (cached per process), in eval mode, float32 on CPU."""
    ref = resolve(name)
    with _cache_lock:
        key = _cache_key(ref)
        if key not in _cache and ref.kind == "scratch":
            from hearth.scratch.load import load_run

            model, tokenizer = load_run(key)
            _cache[key] = LoadedModel(ref=ref, model=model, tokenizer=tokenizer, path=Path(key))
        if key not in _cache:
            _cache[key] = _load_hf(ref, hf_dir(ref).resolve())
        return _cache[key]


def forget(name: str | None = None) -> None:
    """Drop cached models (all, or one) so their memory can be freed."""
    with _cache_lock:
        if name is None:
            _cache.clear()
        else:
            _cache.pop(_cache_key(resolve(name)), None)


def _cache_key(ref: ModelRef) -> str:
    if ref.kind == "scratch" and ref.path is not None:
        return str(ref.path)
    key = str(hf_dir(ref).resolve())
    return f"{key}+{ref.adapter}" if ref.adapter else key


def _load_hf(ref: ModelRef, folder: Path) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    _check_safetensors(folder)
    hf_logging.disable_progress_bar()  # a 1-second load needs no bar; conversions keep theirs
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype="auto")
    except OSError as exc:
        raise ModelError(
            f"could not load the model in {folder}: {exc}",
            "check that the folder holds config.json, weights and tokenizer files",
        ) from exc
    if ref.adapter is not None:  # a fresh copy of the base was loaded above: the adapter changes it
        if (ref.adapter / "tokenizer_config.json").exists():  # saved when the run set its own chat template
            tokenizer = AutoTokenizer.from_pretrained(ref.adapter, local_files_only=True)
        model = adapters.attach(model, ref.adapter)
    model.eval()
    return LoadedModel(ref=ref, model=model, tokenizer=tokenizer, path=folder)


def _fingerprint(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"source": str(path), "size": st.st_size, "mtime": int(st.st_mtime)}


def _converted_from(target: Path) -> dict[str, Any] | None:
    marker = target / "hearth-source.json"
    if not marker.exists():
        return None
    try:
        return json.loads(marker.read_text())
    except json.JSONDecodeError:
        return None


def _check_gguf(path: Path) -> None:
    """Read the GGUF header and tensor table; a truncated or foreign file fails here with a clear error."""
    import gguf

    try:
        gguf.GGUFReader(path)
    except Exception as exc:
        raise ModelError(
            f"{path} is not a readable GGUF file ({exc})", "the file is corrupt or truncated: download it again"
        ) from None


def _check_safetensors(folder: Path) -> None:
    from safetensors import safe_open

    for file in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(file, framework="pt") as f:
                names = list(f.keys())
                if names:  # reading the last tensor touches the end of the file: truncation shows here
                    f.get_slice(names[-1])
        except Exception as exc:
            raise ModelError(
                f"{file} is not a readable safetensors file ({exc})",
                "the file is corrupt or truncated: convert or download it again",
            ) from None
