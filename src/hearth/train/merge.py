"""`hearth tune merge`: fold a run's adapter into its base model and write a plain safetensors model.

LoRA and IA³ change weights by a fixed amount (``W + B·A·alpha/r``, ``W·diag(l)``), so the sum can be
written as an ordinary model that needs neither peft nor the adapter to serve. Prefix tuning adds
key/value positions instead of changing weights, so it cannot be merged: serve it as ``base+adapter``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from hearth.errors import TrainError
from hearth.train.runs import Run
from hearth.train.tune import KIND, TuneConfig


def merge(run_ref: str | Path, out: str | Path) -> Path:
    """Write base + the run's adapter, merged, to ``out`` (written in a temp folder, then renamed)."""
    from peft import PeftConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hearth.models import adapters
    from hearth.models import load as mload

    run = Run.open(run_ref, writable=False)
    if run.meta.get("kind") != KIND:
        raise TrainError(f"run {run.id} is not a fine-tuning run", "merge runs made by `hearth tune`")
    cfg = run.read_config(TuneConfig)
    adapter = run.root / "adapter"
    if cfg.method.name == "full":
        raise TrainError(
            f"run {run.id} trained every weight: its model in {run.root / 'model'} is already whole",
            "use that folder directly (e.g. `hearth chat -m " + str(run.root / "model") + "`)",
        )
    if not (adapter / "adapter_config.json").is_file():
        raise TrainError(f"run {run.id} has no adapter (it did not finish)", "finish or resume it first")
    if PeftConfig.from_pretrained(str(adapter)).is_prompt_learning:
        raise TrainError(
            f"run {run.id} used prefix tuning, which adds key/value positions rather than changing weights, "
            "so there is nothing to merge into the base",
            f"serve it as base+adapter: `hearth chat -m {cfg.model}+{cfg.adapter_name or cfg.name}`",
        )
    out = Path(out).expanduser().resolve()
    if out.exists() and any(out.iterdir()):
        raise TrainError(f"{out} already exists and is not empty", "choose a new --out folder, or remove that one")

    base_dir = mload.hf_dir(mload.resolve(cfg.model)).resolve()
    model = AutoModelForCausalLM.from_pretrained(base_dir, local_files_only=True, dtype="auto")
    tokenizer_dir = adapter if (adapter / "tokenizer_config.json").exists() else base_dir
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    merged = adapters.attach(model, adapter, merge=True)

    tmp = out.with_name(f".{out.name}.merging")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    except Exception:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    return out
