"""`base+adapter` on the llama.cpp engine: a LoRA adapter trained in torch is converted to GGUF once
(llama.cpp's own converter) and applied by llama-server; it answers as torch with the adapter merged.
(The made-up-fact version, after real training, is in tests/tune/test_tune.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth import config
from hearth.config import EngineSettings
from hearth.models import engine, generate

pytestmark = pytest.mark.skipif(
    engine.find_binary(EngineSettings()) is None
    or not (engine.cache_dir() / "src" / "convert_lora_to_gguf.py").is_file(),
    reason="llama-server is not built: `make setup` builds it (needs cmake and a C++ compiler)",
)

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def _random_lora(base_dir: Path, out: Path) -> None:
    """A LoRA adapter with small random weights: enough to change the answer, as training would."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    peft = get_peft_model(
        model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    )
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.mul_(0.5)
    peft.save_pretrained(out)


def test_lora_adapter_runs_on_the_engine_like_torch(home: Path, tmp_path: Path) -> None:
    from hearth.models import adapters, backends, load

    base_dir = load.hf_dir(load.resolve("smollm2"))
    _random_lora(base_dir, tmp_path / "lora")
    adapters.register("randlora", tmp_path / "lora", base="smollm2", method="lora")
    settings = config.Settings()
    assert backends.engine_for("smollm2+randlora", settings)[0] == "llamacpp"

    params = generate.sampling(temperature=0, max_tokens=12, repetition_penalty=1.0)
    on_engine = backends.get_chat_model("smollm2+randlora", settings=settings)
    assert on_engine.kind == "llamacpp" and on_engine.engine.spec.lora is not None
    tuned = on_engine.complete(QUESTION, params).text
    base = backends.get_chat_model("smollm2", settings=settings).complete(QUESTION, params).text
    on_torch = backends.get_chat_model("smollm2+randlora", engine="torch", settings=settings)
    expected = on_torch.complete(QUESTION, params).text
    assert tuned != base  # the adapter is applied
    # Same greedy start as torch with the adapter merged (the engine's quantized kernels may let a
    # long continuation drift; a wrong or missing LoRA changes the very first words).
    same = next((i for i, (a, b) in enumerate(zip(tuned, expected, strict=False)) if a != b), len(tuned))
    assert same >= 12, (tuned, expected)
    # converted once: the GGUF sits in the adapter's folder and is reused
    assert len(list((home / "adapters" / "randlora").glob("engine-lora-*.gguf"))) == 1
    backends.forget("smollm2+randlora")
