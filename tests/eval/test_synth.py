"""`data synth`: pairs pass the fine-tuning validator and every one is a sentence of a real stored chunk."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from hearth.cli.main import app
from hearth.config import Settings
from hearth.data import synth
from hearth.train import data as tdata


def test_synth_pairs_are_valid_training_data_grounded_in_real_chunks(
    company_kb: tuple[str, Path], tmp_path: Path
) -> None:
    from hearth.kb import collection as kbc

    name, docs = company_kb
    out = tmp_path / "pairs.jsonl"
    result = CliRunner().invoke(app, ["data", "synth", name, "--out", str(out)])
    assert result.exit_code == 0, result.output
    pairs = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(pairs) >= 40
    assert {p["lang"] for p in pairs} == {"en", "zh"}

    # the dataset is one `hearth tune` accepts, checked by its own validator (errors on any bad record)
    loaded = tdata.load_records(tdata.DataConfig(path=str(out)))
    assert loaded.format == "qa" and len(loaded.records) == len(pairs) and not loaded.problems

    # every pair links to a real chunk: found by the knowledge base's own search, same document and index
    for p in pairs:
        assert p["answer"] in (docs / Path(p["source"]).name).read_text(encoding="utf-8")
        hits = kbc.search(name, p["answer"], 5, mode="text", settings=Settings()).results
        match = [h for h in hits if h.doc_id == p["doc_id"] and h.chunk_index == p["chunk_index"]]
        assert match, p
        assert p["answer"] in match[0].text
        assert p["fact"] is None or p["fact"].lower() in p["answer"].lower()

    # de-duplicated: no question twice, and each fact has exactly one plain and one rephrased question
    questions = [p["question"] for p in pairs]
    assert len(set(questions)) == len(questions)
    by_fact: dict[str, list[int]] = {}
    for p in pairs:
        by_fact.setdefault(p["fact_id"], []).append(p["variant"])
    assert all(sorted(v) == [0, 1] for v in by_fact.values())
    assert any(p["question"] == "Who is the CEO of Quillon Lanternworks?" for p in pairs)
    assert any(p["question"] == "奎隆灯具公司有多少名员工？" for p in pairs)


def test_chunk_overlap_does_not_duplicate_pairs(company_kb: tuple[str, Path]) -> None:
    name, _ = company_kb
    chunks = synth.iter_chunks(name)
    assert chunks and all(c.text for c in chunks)
    rep = synth.synthesize(name, None, variants=1)
    answers = [(p.answer, p.fact) for p in rep.pairs]
    assert len(set(answers)) == len(answers)
    assert rep.generated == len(rep.pairs) + rep.duplicates + rep.rejected
