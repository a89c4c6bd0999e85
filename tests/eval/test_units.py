"""Small pure pieces with known answers: template questions, the fact split, gradient statistics, lr suggestion."""

from __future__ import annotations

import math

import pytest
import torch

from hearth.data import synth
from hearth.eval.loop import split_pairs
from hearth.train.debug import GradStats, group_of, suggest


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        (
            "Quillon Lanternworks was founded by Marisol Vantree in 1987.",
            [
                ("Who founded Quillon Lanternworks?", "Marisol Vantree"),
                ("When was Quillon Lanternworks founded?", "1987"),
            ],
        ),
        (
            "The CEO of Quillon Lanternworks is Tobiah Frennick.",
            [("Who is the CEO of Quillon Lanternworks?", "Tobiah Frennick")],
        ),
        (
            "Quillon Lanternworks has 340 employees.",
            [("How many employees does Quillon Lanternworks have?", "340 employees")],
        ),
        ("The Pipwick lantern costs 48 crowns.", [("How much does the Pipwick lantern cost?", "48 crowns")]),
        ("Quillon lanterns are made of marine brass.", [("What are Quillon lanterns made of?", "marine brass")]),
        ("奎隆灯具公司有340名员工。", [("奎隆灯具公司有多少名员工？", "340名")]),
        ("奎隆灯具公司位于奥德利溪镇。", [("奎隆灯具公司位于哪里？", "奥德利溪镇")]),
        ("奎隆灯具公司的首席执行官是托比亚·弗伦尼克。", [("奎隆灯具公司的首席执行官是谁？", "托比亚·弗伦尼克")]),
        ("亮夜节在每年11月14日举办。", [("亮夜节在每年哪一天举办？", "11月14日")]),
        ("Hello there", []),
    ],
)
def test_template_questions(sentence: str, expected: list[tuple[str, str]]) -> None:
    assert synth.template_questions(sentence) == expected


def test_quality_filter_rejects_weak_pairs() -> None:
    answer = "The Pipwick lantern costs 48 crowns."
    assert synth.quality_problem("How much does the Pipwick lantern cost?", answer, "48 crowns") is None
    assert synth.quality_problem("How much does the Pipwick lantern cost", answer, "48 crowns") == "not a question"
    assert (
        synth.quality_problem("Does the Pipwick cost 48 crowns?", answer, "48 crowns")
        == "question gives the answer away"
    )
    assert synth.quality_problem("How much does it cost?", answer, "52 crowns") == "fact not in the answer"


def test_split_pairs_never_trains_a_held_out_fact() -> None:
    pairs = [
        {"question": f"q{f}-{v}", "answer": "a", "fact_id": f"f{f}", "variant": v, "lang": "en"}
        for f in range(10)
        for v in (0, 1)
    ]
    train, groups = split_pairs(pairs, 0.3, seed=0)
    held = {p["fact_id"] for p in groups["held-out"]}
    assert len(held) == 3 and len(train) == 7
    assert not held & {p["fact_id"] for p in train}
    assert all(p["variant"] == 0 for p in train)
    assert {p["fact_id"] for p in groups["rephrased"]} == {p["fact_id"] for p in train}
    assert split_pairs(pairs, 0.3, seed=0)[0] == train  # same seed, same split


def test_group_of_parameter_names() -> None:
    assert group_of("base_model.model.model.layers.3.self_attn.q_proj.lora_A.default.weight") == "layer3"
    assert group_of("blocks.0.attn.Wq.weight") == "layer0"
    assert group_of("lm_head.weight") == "lm_head"
    assert group_of("model.embed_tokens.weight") == "embed_tokens"


def test_grad_stats_match_a_hand_computed_sgd_step() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2, bias=False))
    w = model[0].weight.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    stats = GradStats(model, every=1)
    loss = model(torch.ones(1, 3)).sum()
    loss.backward()
    g = model[0].weight.grad.detach().clone()  # d(sum(Wx))/dW = ones
    stats.before_step(1)
    opt.step()
    row = stats.after_step()
    assert row is not None
    assert row["grad_norm/0"] == pytest.approx(float(g.norm()))  # sqrt(6)
    assert row["grad_norm/0"] == pytest.approx(math.sqrt(6))
    # SGD: Δw = -lr·g, so ‖Δw‖/‖w‖ = 0.1·‖g‖/‖w‖
    assert row["update_ratio/0"] == pytest.approx(0.1 * math.sqrt(6) / float(w.norm()), rel=1e-5)
    stats.before_step(2)  # due every step; with every=2 step 1 would be skipped
    assert GradStats(model, every=2).after_step() is None


def test_lr_suggestion_is_the_steepest_descent() -> None:
    lrs = [10 ** (-6 + i * 0.25) for i in range(25)]  # 1e-6 … 1
    # flat, then falls fastest around lrs[12] (1e-3), bottoms at lrs[18], then blows up
    losses = [5 - 4 / (1 + math.exp(-(i - 12) * 1.5)) if i <= 18 else 1 + (i - 18) for i in range(25)]
    assert suggest(lrs, losses) == pytest.approx(lrs[12])
