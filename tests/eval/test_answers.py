"""Answer metrics on hand-made cases whose values are worked out by hand (including Chinese F1)."""

from __future__ import annotations

import pytest

from hearth.eval import answers
from hearth.eval.judge import parse_grade

FOUNDER_Q = "Who founded Quillon Lanternworks?"
FOUNDER_A = "Quillon Lanternworks was founded by Marisol Vantree in 1987."


def test_exact_match_ignores_case_punctuation_and_articles() -> None:
    assert answers.exact_match("the Pipwick!", "Pipwick") == 1.0
    assert answers.exact_match("PIPWICK.", "the pipwick") == 1.0
    assert answers.exact_match("Pipwick lantern", "Pipwick") == 0.0


def test_token_f1_english_by_hand() -> None:
    # pred {costs, 212, crowns} vs gold {gullwick, costs, 212, crowns}: common 3 → P 1, R 3/4 → F1 6/7
    assert answers.token_f1("costs 212 crowns", "Gullwick costs 212 crowns") == pytest.approx(6 / 7)
    # "it" is a token: pred = it, costs, 212, crowns (4), gold = gullwick, costs, 212, crowns (4), common 3
    assert answers.token_f1("It costs 212 crowns", "Gullwick costs 212 crowns") == pytest.approx(0.75)
    assert answers.token_f1("nothing alike", "Gullwick costs 212 crowns") == 0.0
    assert answers.token_f1("Gullwick costs 212 crowns.", "the Gullwick costs 212 crowns") == 1.0
    # numbers with dots and dashes stay whole tokens
    assert answers.tokens("weighs 2.6 kg, call 0441-7730") == ["weighs", "2.6", "kg", "call", "0441-7730"]


def test_token_f1_chinese_counts_characters() -> None:
    pred, gold = "奎隆灯具公司有340名员工", "奎隆公司有三百名员工"
    assert answers.tokens(pred) == ["奎", "隆", "灯", "具", "公", "司", "有", "340", "名", "员", "工"]
    # pred 11 tokens, gold 10 (奎 隆 公 司 有 三 百 名 员 工), common 8 → P 8/11, R 8/10
    p, r = 8 / 11, 8 / 10
    assert answers.token_f1(pred, gold) == pytest.approx(2 * p * r / (p + r))
    assert answers.token_f1(pred, gold) == pytest.approx(16 / 21)
    # full-width digits and punctuation are normalised (NFKC) before comparing
    assert answers.exact_match("奎隆灯具公司有３４０名员工。", "奎隆灯具公司有340名员工") == 1.0


def test_contains_fact_uses_key_tokens_not_in_the_question() -> None:
    assert answers.key_tokens(FOUNDER_A, FOUNDER_Q) == ["marisol", "vantree", "1987"]
    assert answers.contains_fact("Marisol Vantree started it in 1987.", FOUNDER_A, FOUNDER_Q) == 1.0
    assert answers.contains_fact("Marisol Vantree started it.", FOUNDER_A, FOUNDER_Q) == 0.0  # year missing
    assert answers.contains_fact("Quillon Lanternworks was founded.", FOUNDER_A, FOUNDER_Q) == 0.0
    # an explicit fact wins over the key tokens
    assert answers.contains_fact("It was Marisol Vantree.", FOUNDER_A, FOUNDER_Q, fact="Marisol Vantree") == 1.0
    assert answers.contains_fact("It was Marisol.", FOUNDER_A, FOUNDER_Q, fact="Marisol Vantree") == 0.0
    # Chinese: the number is the key fact when the question already holds the rest
    assert answers.key_tokens("奎隆灯具公司有340名员工。", "奎隆灯具公司有多少名员工？") == ["340"]
    assert answers.contains_fact("有340名。", "奎隆灯具公司有340名员工。", "奎隆灯具公司有多少名员工？") == 1.0
    assert answers.contains_fact("有300名。", "奎隆灯具公司有340名员工。", "奎隆灯具公司有多少名员工？") == 0.0


def test_refusal_and_citation() -> None:
    from hearth.agent.rag import NOT_FOUND_EN, NOT_FOUND_ZH

    assert answers.is_refusal(NOT_FOUND_EN) and answers.is_refusal(NOT_FOUND_ZH)
    assert answers.is_refusal("I don't know.") and answers.is_refusal("我不知道。")
    assert not answers.is_refusal("The boiling point of mercury is 357 degrees.")
    assert answers.citation_correct(["/data/docs/about.md", "/data/docs/x.md"], "about.md") == 1.0
    assert answers.citation_correct(["/data/docs/x.md", "/data/docs/about.md"], "about.md") == 0.0  # first counts
    assert answers.citation_correct([], "about.md") == 0.0


def test_score_picks_the_metrics_that_apply() -> None:
    gold = {"question": FOUNDER_Q, "answer": FOUNDER_A, "source": "about.md"}
    text = "Marisol Vantree founded it in 1987 [1].\n\nSources:\n[1] /docs/about.md > History"
    s = answers.score(text, gold, ["/docs/about.md"])
    assert s["contains_fact"] == 1.0 and s["citation"] == 1.0 and s["exact_match"] == 0.0
    assert s["false_refusal"] == 0.0
    assert "refusal" not in s
    assert answers.strip_sources(text) == "Marisol Vantree founded it in 1987 [1]."
    assert "citation" not in answers.score(text, gold)  # a plain model cites nothing: not scored on it
    ooc = {"question": "What is the share price?", "answerable": False}
    assert answers.score("It is 12 crowns.", ooc) == {"refusal": 0.0}
    assert answers.score("I could not find this in the knowledge base.", ooc) == {"refusal": 1.0}


def test_judge_grade_parsing() -> None:
    assert parse_grade("8") == 0.8
    assert parse_grade("Grade: 10/10") == 1.0
    assert parse_grade("no idea") is None
