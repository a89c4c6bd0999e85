"""Every family users name — Qwen2, Qwen3, Llama 3, Mistral, Gemma 3 — through `hearth inspect` and `hearth chat`.

The inspector's per-role counts are computed here from the config (layers × rows × columns), so a
tensor that lands in the wrong role (Qwen3/Gemma's q_norm in attention, Qwen2's q/k/v biases lost in
"other") fails. Generation is checked against transformers' own greedy ``generate`` token for token.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from rich.control import strip_control_codes
from tiny_families import FAMILIES, HEAD_DIM, HEADS, HIDDEN, INTERMEDIATE, KV_HEADS, LAYERS, Family
from typer.testing import CliRunner

NAMES = list(FAMILIES)
ASK = [{"role": "user", "content": "Who founded Quillon Lanternworks?"}]


def expected_groups(family: Family, vocab: int) -> dict[str, int]:
    """Parameters per role from the architecture alone."""
    q_out, kv_out = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
    bias = family.name == "qwen2"  # Qwen2 adds biases to q, k and v (not o)
    qk_norms = family.name in ("qwen3", "gemma3")  # one head_dim-wide RMSNorm for queries, one for keys
    return {
        "embeddings": vocab * HIDDEN,
        "attention.Wq": LAYERS * (HIDDEN * q_out + (q_out if bias else 0)),
        "attention.Wk": LAYERS * (HIDDEN * kv_out + (kv_out if bias else 0)),
        "attention.Wv": LAYERS * (HIDDEN * kv_out + (kv_out if bias else 0)),
        "attention.Wqkv": 0,
        "attention.Wo": LAYERS * q_out * HIDDEN,
        "mlp.W1": LAYERS * HIDDEN * INTERMEDIATE,  # gate
        "mlp.W2": LAYERS * INTERMEDIATE * HIDDEN,  # down
        "mlp.W3": LAYERS * HIDDEN * INTERMEDIATE,  # up
        "ssm (Mamba)": 0,  # the recurrent architectures' roles: none in a Transformer
        "time-mix (RWKV)": 0,
        "channel-mix (RWKV)": 0,
        "norms": LAYERS * (family.norms_per_layer * HIDDEN + (2 * HEAD_DIM if qk_norms else 0)) + HIDDEN,
        "output head": 0 if family.tied else vocab * HIDDEN,
        "other": 0,
    }


@pytest.mark.parametrize("name", NAMES)
def test_inspect_maps_every_tensor_to_its_role(name: str, family_dirs: dict[str, Path], home: Path) -> None:
    from hearth.cli.main import app
    from hearth.models import load

    folder = family_dirs[name]
    result = CliRunner().invoke(app, ["inspect", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    loaded = load.load(str(folder))
    vocab = loaded.model.config.vocab_size
    assert report["groups"] == expected_groups(FAMILIES[name], vocab)
    # Tied heads are one tensor on disk and one parameter in torch: both totals agree.
    assert report["total_params"] == sum(p.numel() for p in loaded.model.parameters())
    arch = report["architecture"]
    assert (arch["layers"], arch["hidden"], arch["heads"], arch["kv_heads"], arch["head_dim"]) == (
        LAYERS,
        HIDDEN,
        HEADS,
        KV_HEADS,
        HEAD_DIM,
    )
    # The KV cache uses the KV heads (grouped-query attention), not the query heads.
    bf16 = next(r for r in report["memory"] if r["use"] == "inference" and r["dtype"] == "bf16")
    assert bf16["kv_cache"] == 2 * LAYERS * KV_HEADS * HEAD_DIM * report["context"] * 2


@pytest.mark.parametrize("name", NAMES)
def test_chat_uses_the_family_template_and_matches_transformers(
    name: str, family_dirs: dict[str, Path], home: Path
) -> None:
    from hearth.models import backends, generate

    family = FAMILIES[name]
    chat = backends.get_chat_model(str(family_dirs[name]))
    prompt = generate.render_prompt(chat.tokenizer, ASK)
    assert prompt.endswith(family.turn_marker) or family.turn_marker in prompt
    ids = generate.encode_prompt(chat.tokenizer, prompt)
    bos = chat.tokenizer.bos_token_id
    if family.bos:  # the template writes BOS once; encoding must not add a second
        assert ids[0] == bos and ids.count(bos) == 1
    else:
        assert bos is None or bos not in ids
    # Every end-of-turn token of the family stops decoding (Gemma: <end_of_turn> beside <eos>).
    stops = {chat.tokenizer.convert_tokens_to_ids(t) for t in family.stops}
    assert generate.stop_token_ids(chat.model, chat.tokenizer) == stops

    params = generate.sampling(temperature=0, max_tokens=6, repetition_penalty=1.0)
    streamed = list(chat.stream(ASK, params))
    whole = chat.complete(ASK, params)
    assert "".join(d.text for d in streamed) == whole.text
    assert whole.usage.completion_tokens >= 1 and whole.usage.prompt_tokens == len(ids)

    # Hearth's KV-cached greedy decode equals transformers' generate, token for token.
    ours = list(generate.stream_token_ids(chat.model, ids, params, stops, chat.context_length))
    with torch.no_grad():
        prompt_ids = torch.tensor([ids])
        theirs = chat.model.generate(
            prompt_ids,
            attention_mask=torch.ones_like(prompt_ids),  # no padding: never guess a mask from a pad id
            max_new_tokens=6,
            do_sample=False,
            eos_token_id=sorted(stops),
            pad_token_id=min(stops),
        )[0, len(ids) :].tolist()
    assert ours == theirs


@pytest.mark.parametrize("name", NAMES)
def test_hearth_chat_cli_answers_with_the_library_text(name: str, family_dirs: dict[str, Path], home: Path) -> None:
    from hearth.cli.main import app
    from hearth.models import backends, generate

    folder = str(family_dirs[name])
    result = CliRunner().invoke(
        app, ["chat", "-m", folder, "-t", "0", "--max-tokens", "5", "--repetition-penalty", "1", ASK[0]["content"]]
    )
    assert result.exit_code == 0, result.output
    params = generate.sampling(temperature=0, max_tokens=5, repetition_penalty=1.0)
    expected = backends.get_chat_model(folder).complete(ASK, params).text
    # The streamed text and the CLI's closing newline; rich drops \r and bell-like control codes, which a
    # random-weight model may well emit.
    assert result.stdout == strip_control_codes(expected) + "\n"
