"""Mamba and RWKV (and the LSTM's carried state): causality, recurrent decode = parallel forward, overfitting,
exact resume through the one loop, and generation through the one generation path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hearth.config import GenerationSettings
from hearth.models import generate
from hearth.models.inspect import role_of
from hearth.scratch import load_run
from hearth.scratch.model import ModelConfig, build_model
from hearth.train.config import TrainingConfig
from hearth.train.loop import train
from hearth.train.runs import Run
from hearth.train.scratch import load_config, resume_scratch, train_scratch

TANG = Path(__file__).resolve().parents[2] / "examples" / "data" / "tang300" / "tang300.txt"
RECURRENT = ["lstm", "mamba", "rwkv"]
# Mamba's scan is a Python loop over time: its training tests take ~20 s on a busy 2-core machine.
MAMBA_SLOW = [pytest.param("mamba", marks=pytest.mark.slow), "rwkv"]


def tiny(arch: str, **kw: object) -> ModelConfig:
    base = dict(arch=arch, vocab_size=40, block_size=16, num_layers=2, hidden_size=32, dropout=0.0, d_state=8)
    return ModelConfig(**{**base, **kw})


@pytest.mark.parametrize("arch", RECURRENT)
def test_recurrent_decode_equals_parallel_forward(arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(tiny(arch)).eval()
    x = torch.randint(0, 40, (2, 24))  # longer than block_size: a recurrent model reads any length
    parallel = model(input_ids=x).logits
    # Read a 5-token prompt at once, then one token at a time from the carried state.
    out = model(input_ids=x[:, :5], use_cache=True)
    pieces, cache = [out.logits], out.cache
    sizes = {cache.nbytes()}
    for t in range(5, x.size(1)):
        out = model(input_ids=x[:, t : t + 1], cache=cache, use_cache=True)
        pieces.append(out.logits)
        cache = out.cache
        sizes.add(cache.nbytes())
    torch.testing.assert_close(torch.cat(pieces, dim=1), parallel, rtol=1e-4, atol=1e-5)
    assert cache.get_seq_length() == 24
    assert len(sizes) == 1  # the state does not grow with the context


@pytest.mark.parametrize("arch", RECURRENT)
def test_generation_runs_past_block_size_from_the_carried_state(arch: str) -> None:
    """3 × block_size new tokens, one step each from the state; a full forward over the whole sequence agrees."""
    torch.manual_seed(0)
    model = build_model(tiny(arch)).eval()  # block_size 16
    prompt = [3, 1, 4, 1, 5]
    params = GenerationSettings(temperature=0.0, max_tokens=3 * 16, repetition_penalty=1.0)
    produced = list(generate.stream_token_ids(model, prompt, params, set(), context_length=16))
    assert len(produced) == 48  # not capped at block_size - len(prompt) = 11

    seq = torch.tensor([prompt + produced])  # 53 tokens, read in one parallel forward (no window)
    with torch.no_grad():
        full = model(input_ids=seq).logits[0]
        out = model(input_ids=seq[:, :1], use_cache=True)
        steps, cache = [out.logits[0]], out.cache
        for t in range(1, seq.size(1)):
            out = model(input_ids=seq[:, t : t + 1], cache=cache, use_cache=True)
            steps.append(out.logits[0])
            cache = out.cache
    torch.testing.assert_close(torch.cat(steps), full, rtol=1e-4, atol=1e-5)
    # Greedy: every produced token is the full forward's best at its position (up to float noise in near-ties).
    chosen = full[len(prompt) - 1 : -1].gather(1, torch.tensor(produced)[:, None]).squeeze(1)
    best = full[len(prompt) - 1 : -1].max(dim=1).values
    assert torch.all(chosen >= best - 1e-5), (chosen - best).min()


@pytest.mark.parametrize("arch", ["transformer", "cnn"])
def test_windowed_models_generate_past_block_size_from_the_last_window(arch: str) -> None:
    """The Transformer and CNN keep no state: each new token re-reads the last block_size tokens."""
    torch.manual_seed(0)
    model = build_model(tiny(arch, num_heads=4)).eval()
    prompt = [3, 1, 4, 1, 5]
    params = GenerationSettings(temperature=0.0, max_tokens=3 * 16, repetition_penalty=1.0)
    produced = list(generate.stream_token_ids(model, prompt, params, set(), context_length=16))
    assert len(produced) == 48
    ids = list(prompt)
    with torch.no_grad():
        for _ in produced:
            ids.append(int(model(input_ids=torch.tensor([ids[-16:]])).logits[0, -1].argmax()))
    assert ids[len(prompt) :] == produced


@pytest.mark.parametrize("arch", ["mamba", "rwkv"])
def test_every_parameter_learns(arch: str) -> None:
    """A gradient reaches every parameter (A_log, D, dt_proj, time_decay, time_first, the μ's, ...)."""
    torch.manual_seed(0)
    model = build_model(tiny(arch))
    x = torch.randint(0, 40, (2, 16))
    model(input_ids=x, labels=x).loss.backward()
    silent = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not silent, silent


def test_paper_names_and_shapes() -> None:
    mamba = dict(build_model(tiny("mamba", hidden_size=32, d_state=8, expand=2)).named_parameters())
    assert mamba["layers.0.mixer.A_log"].shape == (64, 8)  # (E = expand·D, N)
    assert mamba["layers.0.mixer.D"].shape == (64,)
    assert mamba["layers.0.mixer.in_proj.weight"].shape == (128, 32)  # D → 2E (x and the gate z)
    assert mamba["layers.0.mixer.x_proj.weight"].shape == (2 + 2 * 8, 64)  # E → dt_rank + 2N
    assert mamba["layers.0.mixer.dt_proj.weight"].shape == (64, 2)
    assert mamba["layers.0.mixer.conv1d.weight"].shape == (64, 1, 4)  # depthwise
    rwkv = dict(build_model(tiny("rwkv")).named_parameters())
    for name in ("time_decay", "time_first", "time_mix_k", "time_mix_v", "time_mix_r"):
        assert rwkv[f"layers.1.time_mix.{name}"].shape == (32,)
    for name in ("key", "value", "receptance", "output"):
        assert rwkv[f"layers.1.time_mix.{name}.weight"].shape == (32, 32)
    assert rwkv["layers.1.channel_mix.key.weight"].shape == (128, 32)
    # `hearth inspect` groups them by role: RWKV's key/value are not attention's Wk/Wv.
    roles = {role_of(n) for n in mamba} | {role_of(n) for n in rwkv}
    assert {"ssm (Mamba)", "time-mix (RWKV)", "channel-mix (RWKV)", "norms", "embeddings", "output head"} == roles


@pytest.mark.parametrize("arch", MAMBA_SLOW)
def test_overfits_one_batch(arch: str, home: Path) -> None:
    torch.manual_seed(0)
    model = build_model(tiny(arch))
    batch = torch.randint(0, 40, (8, 16))
    data = [{"input_ids": row, "labels": row} for row in batch]
    cfg = TrainingConfig(
        max_steps=60,
        batch_size=8,
        learning_rate=1e-2,
        warmup_steps=5,
        weight_decay=0.0,
        eval_every=1000,
        log_every=1,
        save_every=1000,
        progress=False,
    )
    result = train(model, Run.create("test"), cfg, data)
    assert result.history[0]["loss"] > 3.0  # it started near ln(40) ≈ 3.7
    assert result.train_loss < 0.3, result.train_loss


@pytest.mark.parametrize("arch", MAMBA_SLOW)
def test_resume_equals_uninterrupted_and_generation_carries_the_state(arch: str, home: Path) -> None:
    cfg = load_config(
        None,
        [
            f"data.path={TANG}",
            "data.split_by=range",
            "tokenizer.kind=char",
            f"model.arch={arch}",
            "model.block_size=24",
            "model.hidden_size=32",
            "model.num_layers=2",
            "model.d_state=4",
            "model.dropout=0.1",  # resume must restore the dropout RNG too
            "training.max_steps=12",
            "training.batch_size=4",
            "training.save_every=6",
            "training.eval_every=6",
            "training.eval_batches=2",
            "training.progress=false",
        ],
    )
    run, _ = train_scratch(cfg)
    final = run.root / "checkpoints" / "step-12"
    uninterrupted = load_file(final / "model.safetensors")
    shutil.rmtree(final)  # as if killed after step 6
    resumed_run, result = resume_scratch(run.id)
    assert result.steps == 12
    resumed = load_file(final / "model.safetensors")
    assert uninterrupted.keys() == resumed.keys()
    for name in uninterrupted:
        assert torch.equal(uninterrupted[name], resumed[name]), name  # bitwise

    # `hearth chat -m runs/<id>` decodes from the carried state; greedy, it picks what re-reading would.
    model, tokenizer = load_run(resumed_run.root)
    prompt = tokenizer("床前明月光", add_special_tokens=False)["input_ids"]
    params = GenerationSettings(temperature=0.0, max_tokens=10)
    fast = list(generate.stream_token_ids(model, prompt, params, set(), context_length=24))
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(len(fast)):
            ids.append(int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
    assert fast == ids[len(prompt) :] and len(fast) == 10
