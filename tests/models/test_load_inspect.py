"""Loading models by name or path, bad files, and the inspector's numbers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hearth.errors import HearthError, ModelError, ModelNotFound
from hearth.models import bundled, inspect, load


def test_bundled_converts_once_to_safetensors(smol, session_home: Path) -> None:
    folder = session_home / "models" / "smollm2"
    assert (folder / "model.safetensors").exists() and (folder / "config.json").exists()
    assert json.loads((folder / "hearth-source.json").read_text())["source"] == str(bundled.gguf_path())
    assert smol.loaded.path.resolve() == folder.resolve()


def test_inspector_totals_equal_loaded_numel(smol) -> None:
    report = inspect.inspect(smol.loaded.path)
    loaded = sum(p.numel() for p in smol.model.parameters())
    assert report.total_params == loaded
    assert sum(report.groups.values()) == loaded
    assert report.groups["other"] == 0
    # SmolLM2: 30 layers, q/o 576×576, k/v 192×576 (3 KV heads of 64), gated MLP 576↔1536.
    assert report.groups["attention.Wq"] == 30 * 576 * 576
    assert report.groups["attention.Wk"] == 30 * 192 * 576
    assert report.groups["mlp.W1"] == report.groups["mlp.W2"] == report.groups["mlp.W3"] == 30 * 576 * 1536
    assert report.architecture.layers == 30 and report.architecture.kv_heads == 3


def test_inspector_reads_gguf_headers_alike(smol) -> None:
    gguf = inspect.inspect(bundled.gguf_path())
    st = inspect.inspect(smol.loaded.path)
    assert gguf.format == "gguf" and gguf.total_params == st.total_params
    assert gguf.groups == st.groups


def test_70b_at_bf16_is_140_gb() -> None:
    report = inspect.estimate(inspect.parse_params("70B"))
    bf16 = next(r for r in report.memory if r["use"] == "inference" and r["dtype"] == "bf16")
    assert bf16["total"] / 1e9 == pytest.approx(140, rel=0.01)
    full = next(r for r in report.memory if r["use"].startswith("train full (AdamW, fp32"))
    assert full["total"] == 70e9 * 16


def test_kv_cache_formula(smol) -> None:
    report = inspect.inspect(smol.loaded.path, context=1000)
    fp16 = next(r for r in report.memory if r["dtype"] == "fp16")
    assert fp16["kv_cache"] == 2 * 30 * 3 * 64 * 1000 * 2


@pytest.mark.parametrize(
    ("name", "role"),
    [
        ("model.layers.0.self_attn.q_proj.weight", "attention.Wq"),
        ("blk.3.attn_output.weight", "attention.Wo"),
        ("transformer.h.0.attn.c_attn.weight", "attention.Wqkv"),
        ("transformer.h.0.mlp.c_proj.weight", "mlp.W2"),
        ("model.layers.1.mlp.gate_proj.weight", "mlp.W1"),
        ("model.layers.1.mlp.up_proj.weight", "mlp.W3"),
        ("blocks.0.attn.Wk.weight", "attention.Wk"),
        ("blocks.0.ffn.W1.weight", "mlp.W1"),
        ("model.norm.weight", "norms"),
        ("lm_head.weight", "output head"),
        ("output.weight", "output head"),
        ("token_embd.weight", "embeddings"),
    ],
)
def test_roles(name: str, role: str) -> None:
    assert inspect.role_of(name) == role


def test_plot_writes_png(smol, tmp_path: Path) -> None:
    out = inspect.plot(inspect.inspect(smol.loaded.path), tmp_path / "params.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_truncated_files_are_clear_errors(smol, tmp_path: Path, home: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(smol.loaded.path / name, bad / name)
    data = (smol.loaded.path / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelError, match="corrupt or truncated"):
        load.load(str(bad))
    with pytest.raises(ModelError, match="corrupt or truncated"):
        inspect.inspect(bad)
    gguf = tmp_path / "cut.gguf"
    gguf.write_bytes(bundled.gguf_path().read_bytes()[:4096])
    with pytest.raises(ModelError, match="GGUF"):
        load.hf_dir(load.resolve(str(gguf)))
    with pytest.raises(ModelError, match="GGUF"):
        inspect.inspect(gguf)


def test_name_resolution_errors(tmp_path: Path, home: Path) -> None:
    with pytest.raises(ModelNotFound, match="does not download"):
        load.resolve("Qwen/Qwen2.5-7B-Instruct")
    lone = tmp_path / "w.safetensors"
    lone.write_bytes(b"")
    with pytest.raises(ModelError, match=r"no config\.json"):
        load.resolve(str(lone))
    with pytest.raises(HearthError, match="parameter count"):
        inspect.parse_params("seventy")
