"""The weight files people arrive with: pytorch_model.bin, training .pt checkpoints, sharded safetensors."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from hearth.errors import ModelError
from hearth.models import convert, inspect


def tiny_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {
        "model.embed_tokens.weight": torch.randn(50, 8),
        "model.layers.0.self_attn.q_proj.weight": torch.randn(8, 8),
        "model.layers.0.self_attn.k_proj.weight": torch.randn(4, 8),
        "model.layers.0.mlp.down_proj.weight": torch.randn(8, 16),
        "model.norm.weight": torch.ones(8),
        "lm_head.weight": torch.randn(50, 8),
    }


def test_pytorch_bin_is_read_and_converted(tmp_path: Path) -> None:
    state = tiny_state()
    folder = tmp_path / "m"
    folder.mkdir()
    torch.save(state, folder / "pytorch_model.bin")
    (folder / "config.json").write_text(
        json.dumps({"num_hidden_layers": 1, "hidden_size": 8, "num_attention_heads": 2})
    )
    report = inspect.inspect(folder)
    assert report.format == "pytorch"
    assert report.total_params == sum(t.numel() for t in state.values())
    assert report.groups["attention.Wq"] == 64 and report.groups["output head"] == 400
    out = convert.convert(folder, tmp_path / "st")
    assert (tmp_path / "st" / "config.json").exists()
    loaded = load_file(out)
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_training_checkpoint_shows_what_else_it_holds(tmp_path: Path) -> None:
    model = torch.nn.Linear(8, 8)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 8)).sum().backward()
    opt.step()
    path = tmp_path / "checkpoint-10000.pt"
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 10000, "epoch": 3}, path)
    report = inspect.inspect(path)
    assert report.total_params == 72
    assert report.extras["step"] == 10000 and report.extras["epoch"] == 3
    assert "optimizer state (2 parameters" in report.extras["optimizer"]
    out = convert.convert(path, tmp_path / "weights.safetensors")
    assert set(load_file(out)) == {"weight", "bias"}


class Evil:
    def __reduce__(self):
        return (print, ("this would have run",))


def test_pickle_with_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "payload": Evil()}, path, pickle_module=pickle)
    with pytest.raises(ModelError, match="could run code"):
        inspect.inspect(path)


def test_sharded_safetensors_with_index(tmp_path: Path) -> None:
    state = tiny_state()
    names = sorted(state)
    shards = {"model-00001-of-00002.safetensors": names[:3], "model-00002-of-00002.safetensors": names[3:]}
    for file, keys in shards.items():
        save_file({k: state[k] for k in keys}, str(tmp_path / file))
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {k: f for f, ks in shards.items() for k in ks}}))
    total = sum(t.numel() for t in state.values())
    assert inspect.inspect(index).total_params == total
    assert inspect.inspect(tmp_path).total_params == total


def test_gguf_written_by_the_test(tmp_path: Path) -> None:
    import gguf
    import numpy as np

    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(2)
    writer.add_embedding_length(8)
    writer.add_head_count(2)
    writer.add_head_count_kv(1)
    writer.add_context_length(128)
    writer.add_tensor("token_embd.weight", np.zeros((50, 8), dtype=np.float32))
    writer.add_tensor("blk.0.attn_k.weight", np.zeros((4, 8), dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    report = inspect.inspect(path)
    assert report.format == "gguf" and report.total_params == 432
    assert report.groups["embeddings"] == 400 and report.groups["attention.Wk"] == 32
    assert [t.shape for t in report.tensors] == [[50, 8], [4, 8]]
    assert report.architecture.kv_heads == 1 and report.architecture.head_dim == 4
