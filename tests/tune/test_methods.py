"""Methods on the real bundled model: what learns, bad targets, QLoRA on a 4-bit base, the prefix-tuning fix,
and that prefix / IA³ adapter training drive the loss down through the one loop."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hearth.errors import ConfigError, TrainError
from hearth.train import methods, tune
from hearth.train.data import collator
from hearth.train.methods import MethodConfig

ROOT = Path(__file__).resolve().parents[2]
EN = str(ROOT / "examples" / "data" / "company-qa-en.jsonl")


def _base():
    from hearth.models import load

    ref = load.resolve("smollm2")
    return load._load_hf(ref, load.hf_dir(ref)).model  # a private copy: methods change it in place


def test_lora_trains_only_adapter_weights(home: Path) -> None:
    model = methods.setup(_base(), MethodConfig(name="lora", rank=8))
    trainable, total = methods.count_parameters(model)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    # 30 layers × 4 projections × r·(in + out): q,o 576→576, k,v 576→192
    assert trainable == 30 * 8 * (2 * (576 + 576) + 2 * (576 + 192))
    assert 134_000_000 < total < 137_000_000


def test_unknown_target_module_lists_the_real_ones(home: Path) -> None:
    with pytest.raises(ConfigError) as err:
        methods.setup(_base(), MethodConfig(name="lora", target_modules=["q_proj", "query_key_value"]))
    assert "'query_key_value'" in err.value.message
    for name in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        assert name in err.value.hint


def test_qlora_without_a_4_bit_backend_says_what_to_install(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hearth.train import nf4

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(nf4, "available", lambda: False)  # as on a host where torchao is not installed
    with pytest.raises(TrainError, match=r"bitsandbytes .* or torchao") as err:
        tune.setup(tune.TuneConfig(method=MethodConfig(name="qlora")))
    assert "pip install torchao" in err.value.hint


def test_prefix_reaches_the_model_when_decoding_with_a_cache(home: Path) -> None:
    """The bug: with transformers 5, peft's prefix was dropped whenever `cache=` was passed (every decode)."""
    from hearth.models.adapters import fix_prefix_cache

    base = _base()
    ids = torch.tensor([[1, 504, 3458, 314, 253, 2113, 30]])
    with torch.no_grad():
        plain = base(input_ids=ids).logits
    model = methods.setup(base, MethodConfig(name="prefix", num_virtual_tokens=4, prefix_init_text="Ahoy sailor"))
    model.eval()
    with torch.no_grad():
        no_cache = model(input_ids=ids).logits
        first = model(input_ids=ids, cache=None, use_cache=True)  # what generation does
        # one more token through the returned cache equals the whole sequence without a cache
        step = model(input_ids=ids[:, -1:], cache=_drop_last(first.cache, ids), use_cache=True).logits
    assert not torch.allclose(no_cache, plain, atol=1e-3)  # the prefix changes the output
    torch.testing.assert_close(first.logits, no_cache, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(step[:, -1], no_cache[:, -1], rtol=1e-4, atol=1e-4)

    unfixed = methods.setup(_base(), MethodConfig(name="prefix", num_virtual_tokens=4, prefix_init_text="Ahoy sailor"))
    unfixed.base_model.forward = type(unfixed.base_model).forward.__get__(unfixed.base_model)  # undo the fix
    with torch.no_grad():
        broken = unfixed(input_ids=ids, cache=None, use_cache=True).logits
    torch.testing.assert_close(broken, plain, rtol=1e-4, atol=1e-4)  # without the fix the prefix is ignored
    assert fix_prefix_cache  # the fix lives in the models layer, shared with base+adapter loading


def _drop_last(cache, ids):
    cache.crop(-1)
    return cache


def _loss_drop(method: MethodConfig, lr: float, steps: int) -> tuple[float, float, torch.nn.Module]:
    from hearth.train.loop import train
    from hearth.train.runs import Run

    cfg = tune.load_config(
        None,
        [
            f"data.path={EN}",
            "data.val_fraction=0",
            "data.max_seq_len=64",
            f"training.max_steps={steps}",
            f"training.learning_rate={lr}",
            "training.batch_size=4",
            "training.warmup_steps=2",
            "training.progress=false",
            "training.save_every=1000",
            "training.eval_every=1000",
            f"method.name={method.name}",  # qlora loads its base in 4 bits
        ],
    )
    prep = tune.setup(cfg)
    rows = prep.train_rows.rows[:16]
    collate = collator(prep.tokenizer.pad_token_id)
    before = tune.val_loss(prep.base, rows, collate, 8)
    model = methods.setup(prep.base, method, prep.tokenizer)
    from hearth.train.data import Rows

    train(model, Run.create("tune", "loss-drop"), cfg.training, Rows(rows), collate_fn=collate, trainable_only=True)
    after = tune.val_loss(model, rows, collate, 8)
    return before, after, model


@pytest.mark.slow
def test_prefix_tuning_loss_falls_30_percent(home: Path) -> None:
    before, after, _ = _loss_drop(MethodConfig(name="prefix", num_virtual_tokens=16), lr=3e-2, steps=16)
    assert after < 0.7 * before, (before, after)


@pytest.mark.slow
def test_ia3_adapter_loss_falls_30_percent(home: Path) -> None:
    before, after, _ = _loss_drop(MethodConfig(name="adapter"), lr=3e-2, steps=16)
    assert after < 0.7 * before, (before, after)


@pytest.mark.slow
def test_qlora_trains_lora_over_a_4_bit_base_without_cuda(home: Path) -> None:
    """On a host without CUDA the base's linear layers become torchao NF4 tensors (4-bit codes + block
    scales): frozen, about a quarter of bf16's bytes, and the LoRA beside them still drives the loss down."""
    if torch.cuda.is_available():
        pytest.skip("with CUDA, qlora uses bitsandbytes")
    from hearth.train.nf4 import FrozenNF4Linear

    before, after, model = _loss_drop(MethodConfig(name="qlora", rank=16), lr=2e-3, steps=16)
    assert after < 0.7 * before, (before, after)
    quantized = [m for m in model.modules() if isinstance(m, FrozenNF4Linear)]
    assert len(quantized) == 30 * 7  # q, k, v, o, gate, up, down in each of the 30 layers
    weight = quantized[0].weight
    assert not weight.requires_grad
    assert weight.quantized_data.numel() == weight.numel() // 2  # two 4-bit codes per byte
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
