"""The closed loop end to end on the example documents, with the recipe's 60 LoRA steps (50 were measured
too few to recall the facts reliably): the tuned model beats the base on the facts it trained on, RAG
refuses out-of-corpus questions, and the adapter is registered for serving. The loop runs once per suite
(``quillon_loop``) and its adapter is the suite's one 60-step fine-tune: the same adapter recalls its facts
on torch and on the llama.cpp engine, merges with the same logits and exports to GGUF."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hearth import paths
from homes import using_home

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def quillon_loop(tmp_path_factory: pytest.TempPathFactory, session_home: Path):
    """The closed loop run once on the example documents (60 LoRA steps, the recipe's): the one fine-tuned
    adapter of the suite, ``smollm2+ci-faq``. Returns (Hearth home, LoopResult, report folder); tests that
    use the adapter run in that home (``in_loop_home``). It lives in this one module so that `make test`
    (pytest-xdist, whole files per worker) trains it once."""
    from hearth import config
    from hearth.eval.loop import load_config, run_loop

    root = tmp_path_factory.mktemp("loop-home")
    shared = session_home / "models"
    shared.mkdir(exist_ok=True)
    (root / "models").symlink_to(shared, target_is_directory=True)
    cfg = load_config(
        ROOT / "configs" / "loop" / "company-faq.yaml",
        [
            f"docs={ROOT / 'examples' / 'docs' / 'quillon'}",
            "name=ci-faq",
            "kb.collection=ci-faq",
            "tune.training.progress=false",
            "eval.per_group=4",
            "eval.max_tokens=24",
            'eval.out_of_corpus=["What is the boiling point of mercury?"]',
        ],
    )
    with using_home(root):
        # a fixed "not found" threshold, as in test_compare: the calibrated one passes ~1 in 10 unrelated questions
        result = run_loop(cfg, report_dir=root / "loop-report", settings=config.Settings(kb={"score_threshold": 0.3}))
    return root, result, root / "loop-report"


@pytest.fixture
def in_loop_home(quillon_loop, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run a test in the home where ``quillon_loop`` trained and registered its adapter."""
    root = quillon_loop[0]
    monkeypatch.setenv("HEARTH_HOME", str(root))
    paths.set_home(root)
    yield root
    paths.set_home(None)


@pytest.mark.slow
def test_loop_end_to_end(quillon_loop, in_loop_home: Path) -> None:
    from hearth import config
    from hearth.models.catalog import list_models

    _, result, report = quillon_loop

    # training data: what `hearth tune` accepts, and the held-out facts never in it
    run = Path(result.run_dir)
    train = [json.loads(line) for line in (run / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    evals = [json.loads(line) for line in (run / "eval.jsonl").read_text(encoding="utf-8").splitlines()]
    held = {e["fact_id"] for e in evals if e["group"] == "held-out"}
    assert held and not held & {t["fact_id"] for t in train}

    # the tuned model knows the facts it trained on better than the base model does. Judged by the key
    # fact and exact match, not token F1: a base model that restates the question already shares most of
    # the gold sentence's words (measured: base F1 0.75 on these questions with no fact right).
    g = result.by_group
    assert g["tuned"]["trained"]["contains_fact"] > g["base"]["trained"]["contains_fact"]
    assert g["tuned"]["trained"]["exact_match"] > g["base"]["trained"]["exact_match"]
    assert g["base"]["trained"]["contains_fact"] == 0.0  # the facts are invented: the base cannot know them
    # retrieval refuses what the documents do not say
    assert result.overall["base + RAG"]["refusal"] == 1.0

    # registered: `hearth serve` lists the adapter as a model
    assert result.adapter == "ci-faq"
    listed = list_models(config.Settings())
    assert any(m.kind == "adapter" and m.id == "smollm2+ci-faq" for m in listed)  # its loadable name
    for f in ("report.md", "report.html", "plots/contains_fact.png", "plots/groups.png"):
        assert (report / f).is_file(), f


@pytest.mark.slow
def test_tuned_adapter_recalls_its_facts_served_merged_and_exported(
    quillon_loop, in_loop_home: Path, tmp_path: Path
) -> None:
    """The suite's one fine-tuned adapter (the closed loop's 60 LoRA steps on the example documents,
    ``quillon_loop``): it recalls a made-up fact it trained on, on torch and on the llama.cpp engine;
    it is registered as base+adapter; merging keeps the logits; the GGUF export reproduces the merge."""
    from hearth import config
    from hearth.models import backends, catalog, engine, generate, load
    from hearth.train.merge import merge
    from hearth.train.runs import Run

    _, result, _ = quillon_loop
    run = Run.open(result.tune_run)
    saved = json.loads((run.root / "report.json").read_text())
    assert saved["steps"] == 60 and saved["trainable"] > 0
    assert (run.root / "adapter" / "adapter_model.safetensors").is_file()
    # checkpoints hold only the adapter: a few MB, not the 540 MB base
    assert all(f.stat().st_size < 10_000_000 for f in (run.root / "checkpoints").glob("*/model.safetensors"))

    # Served as base+adapter through the ordinary chat path (LoRA merged on load): greedy answers to the
    # questions it trained on. The facts are invented, so the base model cannot know them (test_loop).
    evals = [json.loads(line) for line in (Path(result.run_dir) / "eval.jsonl").read_text().splitlines()]
    trained = [e for e in evals if e["group"] == "trained" and e.get("fact")]
    tuned = load.load("smollm2+ci-faq")
    params = generate.sampling(temperature=0, max_tokens=24, repetition_penalty=1.0)

    def ask(row: dict) -> list[dict[str, str]]:
        return [{"role": "user", "content": row["question"]}]

    answers = {
        e["question"]: generate.collect(generate.stream_chat(tuned.model, tuned.tokenizer, ask(e), params, 8192)).text
        for e in trained
    }
    recalled = [e for e in trained if e["fact"].lower() in answers[e["question"]].lower()]
    assert recalled, answers
    # The same adapter on the llama.cpp engine (converted to a LoRA GGUF once) recalls the fact too.
    if engine.find_binary(config.EngineSettings()) is not None:
        served = backends.get_chat_model("smollm2+ci-faq", settings=config.Settings())
        assert served.kind == "llamacpp"
        on_engine = served.complete(ask(recalled[0]), params).text
        assert recalled[0]["fact"].lower() in on_engine.lower(), (on_engine, answers[recalled[0]["question"]])
    assert any(m.id == "smollm2+ci-faq" and m.kind == "adapter" for m in catalog.list_models(config.Settings()))

    # The merged model's logits equal base + (unmerged) adapter's.
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    folder = merge(run.id, tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    fresh = load._load_hf(load.resolve("smollm2"), load.hf_dir(load.resolve("smollm2"))).model
    unmerged = PeftModel.from_pretrained(fresh, str(run.root / "adapter")).eval()
    ids = torch.tensor([[1, 504, 3458, 314, 253, 2113, 30, 1780]])
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=ids).logits, unmerged(input_ids=ids).logits, rtol=1e-4, atol=1e-4)

    # GGUF export of the merged fine-tune reproduces it (the export checks logits itself; f32 is exact).
    from hearth.train.export import export_gguf

    exported = export_gguf(str(folder), tmp_path / "quillon.gguf", dtype="f32")
    assert exported.max_logit_diff is not None and exported.max_logit_diff < 1e-3
    assert exported.tensors == 272
