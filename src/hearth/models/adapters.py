"""PEFT adapters: the catalog under ``$HEARTH_HOME/adapters/<name>/`` and attaching one to a base model.

A model name ``base+adapter`` (e.g. ``smollm2+company``) means "the base model with this adapter on top".
Each adapter folder holds peft's ``adapter_config.json`` + ``adapter_model.safetensors`` and our
``hearth-adapter.json`` (base model name, method, the run that made it). Mergeable adapters (LoRA, IA3)
are merged into a private copy of the base on load, so decoding runs at the base model's speed; prefix
tuning stays a peft model, with the cache fix below.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from hearth import paths
from hearth.errors import ModelNotFound

META = "hearth-adapter.json"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def split_name(name: str) -> tuple[str, str] | None:
    """``"smollm2+company"`` → ``("smollm2", "company")``; None for a plain model name."""
    base, sep, adapter = name.partition("+")
    if not sep or not base.strip() or not adapter.strip() or Path(name).expanduser().exists():
        return None
    return base.strip(), adapter.strip()


def find(name: str) -> Path:
    """An adapter folder by registered name or by path; ModelNotFound lists the registered ones."""
    for candidate in (paths.adapters_dir() / name, Path(name).expanduser()):
        if (candidate / "adapter_config.json").is_file():
            return candidate.resolve()
    known = [a["name"] for a in list_adapters()]
    raise ModelNotFound(
        f"no adapter '{name}' under {paths.adapters_dir()}",
        ("registered adapters: " + ", ".join(known)) if known else "fine-tune one with `hearth tune CONFIG`",
    )


def list_adapters() -> list[dict[str, Any]]:
    """Registered adapters: name, base model, method, run, path (for `hearth models`)."""
    out = []
    for folder in sorted(paths.adapters_dir().iterdir()):
        if not (folder / "adapter_config.json").is_file():
            continue
        meta = _read_json(folder / META)
        out.append(
            {
                "name": folder.name,
                "base": meta.get("base", "?"),
                "method": meta.get("method", _read_json(folder / "adapter_config.json").get("peft_type", "?")),
                "run": meta.get("run"),
                "path": str(folder),
            }
        )
    return out


def register(name: str, source: Path, base: str, method: str, run: str | None = None) -> Path:
    """Copy an adapter folder into the catalog atomically (temp folder + rename); replaces one of the same name."""
    target = paths.adapters_dir() / name
    tmp = target.with_name(f".{name}.registering")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    (tmp / META).write_text(json.dumps({"base": base, "method": method, "run": run}, indent=2))
    old = target.with_name(f".{name}.old")
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def peft_type(folder: Path) -> str:
    """The adapter's peft method as peft writes it: LORA, IA3, PREFIX_TUNING, …"""
    return str(_read_json(folder / "adapter_config.json").get("peft_type", "?")).upper()


def lora_gguf(folder: Path, base_dir: Path) -> Path:
    """The LoRA adapter in ``folder`` as a GGUF file for the llama.cpp engine, converted once.

    llama.cpp's own ``convert_lora_to_gguf.py`` (from the sources ``make setup`` built the engine from)
    writes it, in f32 so the engine's answers follow the torch path's; the file is kept in the adapter's
    folder, named after the weights it came from, so a retrained adapter is converted again.
    """
    import subprocess
    import sys

    from filelock import FileLock

    from hearth.errors import ModelError
    from hearth.models import engine

    weights = folder / "adapter_model.safetensors"
    stat = weights.stat()
    out = folder / f"engine-lora-{stat.st_size}-{stat.st_mtime_ns}.gguf"
    script = engine.cache_dir() / "src" / "convert_lora_to_gguf.py"
    with FileLock(str(folder / ".engine-lora.lock")):
        if out.is_file():
            return out
        if not script.is_file():
            raise ModelError(f"llama.cpp's LoRA converter is missing ({script})", engine.BUILD_HINT)
        tmp = out.with_name(f".{out.name}.writing")
        cmd = [sys.executable, str(script), "--outtype", "f32", "--outfile", str(tmp), "--base", str(base_dir)]
        done = subprocess.run([*cmd, str(folder)], capture_output=True, text=True, env=_env())
        if done.returncode != 0 or not tmp.is_file():
            tmp.unlink(missing_ok=True)
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise ModelError(
                f"converting adapter {folder.name} to GGUF failed: {' | '.join(tail)}",
                "serve it on the torch engine (engine torch), or retrain it as a plain LoRA",
            )
        for old in folder.glob("engine-lora-*.gguf"):
            old.unlink(missing_ok=True)
        tmp.replace(out)
    return out


def _env() -> dict[str, str]:
    import os

    # No hub; and the converter must use the gguf-py vendored beside it (NO_LOCAL_GGUF would skip it).
    env = {k: v for k, v in os.environ.items() if k != "NO_LOCAL_GGUF"}
    return {**env, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def attach(model: Any, folder: Path, merge: bool = True) -> Any:
    """Put the adapter in ``folder`` on ``model`` (which it changes: pass a private copy).

    LoRA/IA3 are merged into the weights when ``merge`` (a plain transformers model comes back);
    prefix tuning returns the peft model with ``fix_prefix_cache`` applied.
    """
    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(model, str(folder), is_trainable=False)
    config = peft_model.active_peft_config
    if config.is_prompt_learning:
        fix_prefix_cache(peft_model)
        return peft_model
    return peft_model.merge_and_unload() if merge else peft_model


def fix_prefix_cache(peft_model: Any) -> None:
    """Make peft's prefix tuning work with transformers 5's ``cache=`` argument (this instance only).

    peft 0.21 hands the learned prefix to the base model as ``past_key_values``. transformers 5 renamed
    that argument to ``cache`` and, when both arrive (every decoding step passes ``cache``, None at
    first), keeps ``cache`` and silently drops the prefix — the model answers as if never tuned. Here the
    prefix becomes the cache when decoding starts (empty cache) and is dropped later, when the cache
    already holds it followed by the tokens so far.
    """
    inner = peft_model.base_model
    original = inner.forward

    def forward(*args: Any, **kwargs: Any) -> Any:
        prefix = kwargs.pop("past_key_values", None)
        cache = kwargs.get("cache")
        if cache is None or cache.get_seq_length() == 0:
            kwargs["cache"] = prefix
        return original(*args, **kwargs)

    inner.forward = forward
    # Hearth's generation path decodes with a KV cache only for models that say they support one.
    peft_model.supports_kv_cache = True


def _read_json(file: Path) -> dict[str, Any]:
    try:
        return json.loads(file.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
