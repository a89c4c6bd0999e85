"""`eval compare` on a tiny setup: the report's numbers equal a direct computation from its own answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hearth.cli.main import app
from hearth.eval import answers
from hearth.eval.compare import parse_system


def test_parse_system() -> None:
    s = parse_system("tuned+rag=smollm2+faq@company")
    assert (s.label, s.model, s.kb, s.grounded) == ("tuned+rag", "smollm2+faq", "company", True)
    assert parse_system("smollm2").kb is None
    with pytest.raises(Exception, match="not a system"):
        parse_system("smollm2@")


@pytest.mark.slow
def test_compare_report_matches_direct_computation(
    company_kb: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, _ = company_kb
    # A fixed "not found" threshold: the collection's calibrated one (0.17 on these 11 chunks) lets about
    # 1 in 10 unrelated questions through, and the mercury question below is such a one (0.198). This test
    # checks the report's arithmetic; calibration's refusal rates are measured in tests/kb and the README.
    monkeypatch.setenv("HEARTH_KB__SCORE_THRESHOLD", "0.3")
    qa = tmp_path / "qa.jsonl"
    rows = [
        {
            "question": "Who is the CEO of Quillon Lanternworks?",
            "answer": "The CEO of Quillon Lanternworks is Tobiah Frennick.",
            "fact": "Tobiah Frennick",
            "source": "about.md",
        },
        {"question": "奎隆灯具公司有多少名员工？", "answer": "奎隆灯具公司有340名员工。", "source": "公司简介.md"},
        {"question": "What is the boiling point of mercury?", "answerable": False},
    ]
    qa.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    result = CliRunner().invoke(
        app,
        ["eval", "compare", str(qa), "-s", "base=smollm2", "-s", f"rag=smollm2@{name}", "--max-tokens", "12", "--json"],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    run = Path(report["run_dir"])
    for f in (
        "report.md",
        "report.html",
        "comparison.json",
        "answers.jsonl",
        "plots/contains_fact.png",
        "plots/f1.png",
    ):
        assert (run / f).is_file(), f
    html = (run / "report.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in html and "<table>" in html

    # recompute every mean from the saved answers with the metric functions
    saved = [json.loads(line) for line in (run / "answers.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(saved) == 6
    for a in saved:
        gold = next(r for r in rows if r["question"] == a["question"])
        rescored = answers.score(a["answer"], gold, a["cited"] if a["system"] == "rag" else None)
        assert rescored == a["scores"]
    for label in ("base", "rag"):
        mine = [a for a in saved if a["system"] == label]
        for metric in ("f1", "contains_fact", "exact_match", "refusal"):
            vals = [a["scores"][metric] for a in mine if metric in a["scores"]]
            assert report["overall"][label][metric] == pytest.approx(sum(vals) / len(vals))
        zh = [a["scores"]["f1"] for a in mine if a["lang"] == "zh"]
        assert report["by_language"][label]["zh"]["f1"] == pytest.approx(sum(zh) / len(zh))

    # the grounded system refuses the out-of-corpus question (nothing passes the threshold) and cites
    rag_ooc = next(a for a in saved if a["system"] == "rag" and a["question"].startswith("What is the boiling"))
    assert rag_ooc["scores"] == {"refusal": 1.0}
    assert report["overall"]["rag"]["citation"] == pytest.approx(
        sum(a["scores"]["citation"] for a in saved if "citation" in a["scores"]) / 2
    )
    assert report["summary"] and "md" in (run / "report.md").read_text(encoding="utf-8")
