"""Fusion that never loses to its parts, and the calibrated "not found" threshold, on a three-note KB."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hearth.config import Settings
from hearth.kb import collection as kc
from hearth.kb import lexicon
from hearth.kb.fulltext import glossed_query_tokens, query_tokens
from hearth.kb.retrieve import fuse
from hearth.kb.store import Hit

S = Settings()

FALCON = (
    "# Falcon project\n\nThe Falcon project is the new billing system. The team meets every Tuesday, and the "
    "first release is planned for the end of the quarter. It is led by Maria in the finance department.\n"
)
PARKING = (
    "# Parking\n\nThe parking garage is open from seven in the morning until ten at night. Visitors park on "
    "level two; staff use levels three and four. The gate opens with your badge.\n"
)
CANTEEN = "# 食堂\n\n公司食堂每天上午十一点半开门，提供午餐。晚餐需要提前一天在系统里预订。\n"


@pytest.fixture
def notes(home: Path, tmp_path: Path) -> str:
    root = tmp_path / "notes"
    root.mkdir()
    (root / "falcon.md").write_text(FALCON, encoding="utf-8")
    (root / "parking.md").write_text(PARKING, encoding="utf-8")
    (root / "canteen.md").write_text(CANTEEN, encoding="utf-8")
    kc.create("notes", settings=S)
    assert not kc.add("notes", [root], settings=S).failed
    return "notes"


def test_canteen_first_in_both_languages(notes: str) -> None:
    for query in ("When does the canteen open?", "食堂几点开门"):
        res = kc.search(notes, query, 3, settings=S, threshold=0.0)
        assert res.results[0].source.endswith("canteen.md"), (query, [r.source for r in res.results])
    # the English question reaches the parking note through full text ("open"), yet it stays behind
    res = kc.search(notes, "When does the canteen open?", 3, settings=S, threshold=0.0, explain=True)
    assert res.explain is not None
    assert [r["where"].split("#")[0].endswith("parking.md") for r in res.explain["text"]][:1] == [True]
    assert res.explain["fused"][0]["where"].split("#")[0].endswith("canteen.md")


def test_query_stopwords_are_dropped() -> None:
    assert query_tokens("When does the canteen open?") == ["canteen", "open"]
    assert query_tokens("the") == ["the"]  # a query of stopwords only keeps them rather than match nothing


def test_chinese_words_are_glossed_into_english() -> None:
    assert lexicon.glosses("软件包") == ("software package",)
    assert "kernel" in lexicon.glosses("内核")  # "(computing) kernel": the remark goes, the word stays
    assert not any(g.startswith("CL:") for g in lexicon.glosses("食堂"))  # classifiers are no translation
    assert lexicon.glosses("Debian") == ()
    tokens = glossed_query_tokens("如何卸载软件包？")
    assert tokens[:3] == query_tokens("如何卸载软件包？")  # the question's own tokens first
    assert {"uninstal", "softwar", "packag"} <= set(tokens)  # stemmed like the passages' words
    assert glossed_query_tokens("When does the canteen open?") == ["canteen", "open"]


def test_a_chinese_question_finds_english_notes_through_full_text(notes: str) -> None:
    query = "访客把车停在哪里？"  # "Where do visitors park?": no word of it occurs in the English note
    res = kc.search(notes, query, 3, settings=S, threshold=0.0, explain=True)
    assert res.explain is not None and res.explain["glossed"]
    assert {"visitor", "park"} <= set(res.explain["query_tokens"])
    assert res.explain["text"][0]["where"].split("#")[0].endswith("parking.md")
    assert res.results[0].source.endswith("parking.md")
    # without the glosses full text has nothing to say about an English passage
    off = S.model_copy(update={"kb": S.kb.model_copy(update={"gloss_queries": False})})
    res = kc.search(notes, query, 3, settings=off, threshold=0.0, explain=True)
    assert res.explain is not None and not res.explain["glossed"]
    assert not any(r["where"].split("#")[0].endswith("parking.md") for r in res.explain["text"])


def _hit(i: str, score: float) -> Hit:
    return Hit.light(i, i, score)


def test_fusion_weights_follow_the_evidence() -> None:
    dense = [_hit("a", 0.6), _hit("b", 0.5), _hit("c", 0.2)]
    strong = [_hit("b", 20.0), _hit("a", 2.0)]  # full text matches every query token in b
    weak = [_hit("b", 0.3)]  # ...or one common word
    # strong full text lifts b over a; weak full text does not
    f = fuse(dense, strong, n_tokens=3, n_rows=100, query_cjk=0.0, passage_cjk=0.0)
    assert f.order[0][0] == "b" and f.strength == 1.0
    f = fuse(dense, weak, n_tokens=3, n_rows=100, query_cjk=0.0, passage_cjk=0.0)
    assert f.order[0][0] == "a" and f.strength < 0.05
    # a Chinese question against English passages: full text's silence counts for nothing
    f = fuse(dense, strong, n_tokens=3, n_rows=100, query_cjk=1.0, passage_cjk=0.0)
    assert [i for i, _ in f.order] == ["a", "b", "c"]
    # ...unless its words were glossed into English: then full text speaks the passages' language
    f = fuse(dense, strong, n_tokens=3, n_rows=100, query_cjk=1.0, passage_cjk=0.0, bilingual=True)
    assert f.order[0][0] == "b" and f.parts["b"][2] == 1.0
    # scores stay in 0..1 with 1 = first in both lists
    f = fuse([_hit("a", 0.6), _hit("b", 0.1)], [_hit("a", 20.0)], n_tokens=1, n_rows=10, query_cjk=0, passage_cjk=0.0)
    assert f.order[0] == ("a", pytest.approx(1.0))


def test_not_found_threshold_is_calibrated_and_shown(notes: str) -> None:
    from hearth.cli.main import app

    st = kc.stats(notes, settings=S)
    assert st.threshold_source == "calibrated" and 0.0 < st.threshold < 0.5
    assert kc.threshold(notes, S) == st.threshold
    assert not kc.search(notes, "What is the boiling point of liquid nitrogen?", settings=S).found
    assert kc.search(notes, "Where do visitors park?", settings=S).found
    # a fixed kb.score_threshold overrides the calibrated value
    fixed = S.model_copy(update={"kb": S.kb.model_copy(update={"score_threshold": 0.99})})
    assert kc.threshold(notes, fixed) == 0.99 and not kc.search(notes, "Where do visitors park?", settings=fixed).found

    runner = CliRunner()
    env = {"HEARTH_HOME": os.environ["HEARTH_HOME"]}
    out = runner.invoke(app, ["kb", "stats", notes, "--json"], env=env)
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)[0]["threshold_source"] == "calibrated"
    out = runner.invoke(app, ["kb", "search", notes, "When does the canteen open?", "--explain"], env=env)
    assert out.exit_code == 0, out.output
    for part in ("dense", "full text (BM25)", "fused", "canteen.md", "parking.md", "not-found threshold"):
        assert part in out.output
