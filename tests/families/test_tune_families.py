"""`hearth tune` (LoRA) and `hearth tune merge` on every family, from the shipped recipe with overrides.

A few dozen steps on eight made-up facts must cut the training loss by a large factor, and the merged
model must give the same logits as the base with the adapter on top — both as peft computes it
unmerged and as Hearth serves ``base+adapter``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_families import FACTS, FAMILIES
from typer.testing import CliRunner

NAMES = list(FAMILIES)
ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "configs" / "tune" / "smollm2-lora.yaml"


@pytest.fixture(scope="module")
def facts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("facts") / "facts.jsonl"
    path.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in FACTS))
    return path


@pytest.mark.parametrize("name", NAMES)
def test_lora_tune_learns_and_merge_keeps_the_logits(
    name: str, family_dirs: dict[str, Path], facts: Path, home: Path, tmp_path: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from hearth import paths
    from hearth.cli.main import app
    from hearth.models import load
    from hearth.train.runs import Run

    folder = family_dirs[name]
    runner = CliRunner()
    # The recipe users copy, pointed at the family's folder: `hearth tune RECIPE model=/path …`.
    result = runner.invoke(
        app,
        [
            "tune",
            str(RECIPE),
            f"model={folder}",
            f"name={name}",
            f"data.path={facts}",
            "data.val_fraction=0",
            "data.max_seq_len=64",
            "method.dropout=0",
            "training.max_steps=40",
            "training.learning_rate=1e-2",
            "training.warmup_steps=2",
            "training.log_every=1",
            "training.save_every=40",
            "training.progress=false",
            "report.samples=0",
        ],
    )
    assert result.exit_code == 0, result.output
    (run_dir,) = [p for p in paths.runs_dir().iterdir() if p.is_dir()]
    run = Run.open(run_dir.name, writable=False)
    losses = [m["loss"] for m in run.metrics("train")]
    assert len(losses) == 40
    # Memorising eight facts: the loss falls to a fraction of where it started (measured ~7.7 → 0.4–1.3).
    assert losses[-1] < losses[0] / 3, losses

    merged_dir = tmp_path / "merged"
    result = runner.invoke(app, ["tune", "merge", run.id, "--out", str(merged_dir)])
    assert result.exit_code == 0, result.output
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, local_files_only=True).eval()
    base = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    # peft wraps the model it is given in place: the adapter goes on a second copy.
    fresh = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    unmerged = PeftModel.from_pretrained(fresh, str(run.root / "adapter")).eval()
    served = load.load(f"{folder}+{name}").model  # how `hearth chat -m /path+adapter` runs it
    ids = _prompt_ids(merged_dir)
    with torch.no_grad():
        want = unmerged(input_ids=ids).logits
        torch.testing.assert_close(merged(input_ids=ids).logits, want, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(served(input_ids=ids).logits, want, rtol=1e-4, atol=1e-4)
        # …and the adapter changed the model: the tuned logits are not the base's.
        assert not torch.allclose(base(input_ids=ids).logits, want, atol=1e-2)


def _prompt_ids(folder: Path) -> torch.Tensor:
    """A training question rendered with the family's template, as token ids."""
    from transformers import AutoTokenizer

    from hearth.models import generate

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    prompt = generate.render_prompt(tokenizer, [{"role": "user", "content": FACTS[0][0]}])
    return torch.tensor([generate.encode_prompt(tokenizer, prompt)])


# Both templates render a turn differently once a later message follows, so a conversation cannot be
# one prompt + answer sequence; `hearth.train.data.render_pieces` makes one sequence per assistant turn.
_REWRITES = {
    # Qwen3 writes the (empty) think block only on the answer after the last user turn.
    "qwen3": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Where is Oddly Creek?"},
        {"role": "assistant", "content": "On the river Sallow."},
    ],
    # Mistral v0.3 folds the system prompt into the *last* user turn only, so the prompt has it and the
    # rendered conversation ending with the answer does not.
    "mistral": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Where is Oddly Creek?"},
        {"role": "assistant", "content": "On the river Sallow."},
    ],
}


@pytest.mark.parametrize("name", list(_REWRITES))
def test_training_data_for_templates_that_rewrite_turns(name: str) -> None:
    """Each assistant turn is trained on exactly the prompt inference renders for it."""
    from tiny_families import train_tokenizer

    from hearth.models import generate
    from hearth.train import data as tdata

    tokenizer = train_tokenizer(FAMILIES[name])
    messages = _REWRITES[name]
    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    sequences = tdata.encode_example(tokenizer, messages)
    assert len(sequences) == len(turns)
    for (ids, labels), i in zip(sequences, turns, strict=True):
        prompt = generate.encode_prompt(tokenizer, generate.render_prompt(tokenizer, messages[:i]))
        assert ids[: len(prompt)] == prompt and set(labels[: len(prompt)]) == {tdata.IGNORE_INDEX}
        answer = tokenizer.decode([t for t, lab in zip(ids, labels, strict=True) if lab != tdata.IGNORE_INDEX])
        assert messages[i]["content"] in answer and all(lab != tdata.IGNORE_INDEX for lab in labels[len(prompt) :])
        assert tokenizer.eos_token in answer or "<|im_end|>" in answer  # the turn's end is learned too
