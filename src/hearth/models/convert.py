"""Write any weights file Hearth reads (GGUF, pytorch_model.bin, training .pt checkpoints) as safetensors.

safetensors holds only tensors — no code runs when it is loaded — and is memory-mapped, so it is the
format Hearth keeps models in.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from hearth.errors import ModelError
from hearth.models import inspect, load

# Files that travel with the weights when a model folder is converted.
_SIDECARS = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "chat_template.jinja",
    "vocab.json",
    "merges.txt",
)


def convert(source: str | Path, out: str | Path) -> Path:
    """Convert ``source`` and return the written file or folder.

    ``out`` ending in ``.safetensors`` gets a single file; anything else is a model folder.
    """
    src = Path(source).expanduser()
    out = Path(out).expanduser()
    if not src.exists():
        ref = load.resolve(str(source))  # a model name such as `smollm2`
        if ref.path is None:
            raise ModelError(f"'{source}' has no local weights to convert", "convert a local file or folder")
        src = ref.path
    if src.suffix == ".gguf":
        return load.convert_gguf(src, out)
    if src.is_dir():
        pickles = sorted(p for p in src.iterdir() if p.suffix in inspect.PICKLE_SUFFIXES)
        if not pickles:
            raise ModelError(
                f"{src} has no .bin/.pt weights to convert",
                "point at a folder with pytorch_model.bin, or at a weights file",
            )
        tensors: dict = {}
        for p in pickles:
            tensors.update(inspect.load_state_dict(p)[0])
        out.mkdir(parents=True, exist_ok=True)
        for name in _SIDECARS:
            if (src / name).exists():
                shutil.copy(src / name, out / name)
        return _save(tensors, out / "model.safetensors")
    if src.suffix in inspect.PICKLE_SUFFIXES:
        tensors = inspect.load_state_dict(src)[0]
        target = out if out.suffix == ".safetensors" else out / "model.safetensors"
        return _save(tensors, target)
    raise ModelError(
        f"{src} is not a format to convert", "convert a .gguf, .bin or .pt file, or a folder of .bin files"
    )


def _save(tensors: dict, target: Path) -> Path:
    from safetensors.torch import save_file

    target.parent.mkdir(parents=True, exist_ok=True)
    # safetensors refuses tensors that share memory (tied embeddings); give each its own copy.
    owned = {name: t.detach().contiguous().clone() for name, t in tensors.items()}
    tmp = target.with_suffix(".tmp")
    save_file(owned, str(tmp), metadata={"format": "pt"})
    tmp.replace(target)
    return target
