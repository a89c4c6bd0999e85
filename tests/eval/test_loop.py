"""The closed loop end to end on the example documents, with the recipe's 60 LoRA steps (50 were measured
too few to recall the facts reliably): the tuned model beats the base on the facts it trained on, RAG
refuses out-of-corpus questions, and the adapter is registered for serving."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_loop_end_to_end(home: Path, tmp_path: Path) -> None:
    from hearth import config
    from hearth.eval.loop import load_config, run_loop
    from hearth.models.catalog import list_models

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
    # a fixed "not found" threshold, as in test_compare: the calibrated one passes ~1 in 10 unrelated questions
    result = run_loop(cfg, report_dir=tmp_path / "report", settings=config.Settings(kb={"score_threshold": 0.3}))

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
        assert (tmp_path / "report" / f).is_file(), f
