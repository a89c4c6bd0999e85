"""End to end through the library API: ingest real files, search across languages, update, remove, bad input."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from kb_samples import EN_VACATION, ZH_CANTEEN, ZH_SECURITY

from hearth.config import Settings
from hearth.errors import KBError, NotFound
from hearth.kb import collection as kc

S = Settings()  # the settings a face would build and pass down (defaults: no hearth.yaml in tests)


def _top(name: str, query: str, k: int = 3, **kw) -> list:  # type: ignore[no-untyped-def]
    return kc.search(name, query, k, **kw, settings=S).results


@pytest.fixture(params=["lancedb", "milvus"])
def filled(request: pytest.FixtureRequest, home: Path, docs: Path) -> tuple[str, Path]:
    kc.create("kb1", store=request.param, settings=S)
    events = []
    rep = kc.add("kb1", [docs], on_event=events.append, settings=S)
    assert rep.failed == [] and len(rep.added) == 5
    assert events[0].kind == "start" and events[0].files_total == 5 and events[-1].kind == "done"
    assert sum(1 for e in events if e.kind == "file") == 5
    return "kb1", docs


def test_every_format_is_found_with_its_metadata(filled: tuple[str, Path]) -> None:
    name, docs = filled
    hit = _top(name, "How many days of paid annual leave do I get?")[0]
    assert hit.text == EN_VACATION and hit.headings == ["Employee Handbook", "Vacation"]
    assert hit.source == str((docs / "handbook.md").resolve())
    pdf = _top(name, "where are the first aid kits")[0]
    assert pdf.source.endswith("safety.pdf") and pdf.page == 2
    assert _top(name, "which garage do visitors use")[0].headings == ["Office Guide", "Parking"]
    assert _top(name, "电脑密码多久更换一次")[0].text == ZH_SECURITY  # GBK file


def test_cross_lingual_both_directions(filled: tuple[str, Path]) -> None:
    name, _ = filled
    # Chinese question → English passage (dense only, so word overlap cannot help)
    hit = _top(name, "每年有多少天带薪年假？", mode="dense")[0]
    assert hit.text == EN_VACATION
    # English question → Chinese passage
    hit = _top(name, "When does the company canteen open for lunch?", mode="dense")[0]
    assert hit.text == ZH_CANTEEN


def test_remove_never_returns_the_document(filled: tuple[str, Path]) -> None:
    name, _ = filled
    entry = kc.remove(name, "handbook.md")
    assert entry.n_chunks == 2
    for mode in ("hybrid", "dense", "text"):
        for q in ("paid annual leave fifteen days", "travel expenses receipts", "年假"):
            assert all(r.doc_id != entry.doc_id for r in _top(name, q, 10, mode=mode))
    assert kc.stats(name, settings=S).documents == 4
    with pytest.raises(NotFound):
        kc.remove(name, "handbook.md")


def test_incremental_idempotent_update_and_sync(filled: tuple[str, Path]) -> None:
    name, docs = filled
    before = kc.stats(name, settings=S).chunks
    again = kc.add(name, [docs], settings=S)
    assert again.added == [] and again.chunks_added == 0 and len(again.unchanged) == 5
    assert kc.stats(name, settings=S).chunks == before
    # change one file: its chunks are replaced, not added to
    (docs / "handbook.md").write_text(
        "# Employee Handbook\n\n## Vacation\n\nEveryone now gets twenty days of leave.\n", encoding="utf-8"
    )
    rep = kc.add(name, [docs], settings=S)
    assert len(rep.updated) == 1 and len(rep.unchanged) == 4
    assert kc.stats(name, settings=S).chunks == before - 1
    assert all("fifteen days" not in r.text for r in _top(name, "fifteen days paid annual leave", 10))
    # delete a file: --sync removes its document
    (docs / "office.docx").unlink()
    rep = kc.add(name, [docs], sync=True, settings=S)
    assert [Path(s).name for s in rep.removed] == ["office.docx"]
    assert {Path(d.source).name for d in kc.list_docs(name)} == {
        "handbook.md",
        "security.txt",
        "canteen.html",
        "safety.pdf",
    }


def test_include_exclude_and_tags_filters(home: Path, docs: Path) -> None:
    kc.create("kb2", settings=S)
    rep = kc.add("kb2", [docs], include=["*.md", "sub/*"], exclude=["*.html"], tags=["hr"], settings=S)
    assert sorted(Path(s).name for s in rep.added) == ["handbook.md", "security.txt"]
    kc.add("kb2", [docs / "safety.pdf"], tags=["safety"], settings=S)
    from hearth.kb.store import parse_filters

    assert {
        r.source.rsplit("/", 1)[1] for r in _top("kb2", "fire exits", 10, filters=parse_filters(["tag=safety"]))
    } == {"safety.pdf"}
    assert all(r.source.endswith(".md") for r in _top("kb2", "days", 10, filters=parse_filters(["source=*.md"])))
    with pytest.raises(KBError, match="filter"):
        parse_filters(["colour=red"])


def test_bad_input_is_reported_and_the_batch_goes_on(home: Path, tmp_path: Path) -> None:
    d = tmp_path / "mixed"
    d.mkdir()
    (d / "good.md").write_text("# Notes\n\nThe backup runs every night at two o'clock.\n", encoding="utf-8")
    (d / "empty.txt").write_bytes(b"")
    (d / "binary.txt").write_bytes(os.urandom(4096))
    (d / "truncated.pdf").write_bytes(b"%PDF-1.7\n1 0 obj")
    odd = d / "报告 ü\u0301 (final).md"  # Chinese, a combining accent (NFD) and spaces
    odd.write_text("# 报告\n\n季度销售额增长了百分之二十。\n", encoding="utf-8")
    with open(d / "huge.txt", "wb") as f:  # a sparse 200 MB file: no disk used
        f.truncate(200 * 1024 * 1024)
    kc.create("kb3", settings=S)
    rep = kc.add("kb3", [d], settings=S)
    reasons = dict((Path(p).name, r) for p, r in rep.failed)
    assert set(reasons) == {"empty.txt", "binary.txt", "truncated.pdf", "huge.txt"}
    assert "empty" in reasons["empty.txt"] and "binary" in reasons["binary.txt"]
    assert "MB limit" in reasons["huge.txt"]
    assert len(rep.added) == 2
    assert _top("kb3", "销售额增长")[0].title == "报告"
    assert _top("kb3", "when does the backup run")[0].text.startswith("The backup runs")
    # a smaller limit in the settings refuses ordinary files too
    small = S.model_copy(update={"kb": S.kb.model_copy(update={"max_file_mb": 0.00001})})
    (d / "good.md").write_text("# Notes\n\nThe backup now runs at three o'clock.\n", encoding="utf-8")
    rep = kc.add("kb3", [d / "good.md"], settings=small)
    assert rep.failed and "limit" in rep.failed[0][1]
    assert kc.stats("kb3", settings=S).chunks == 2  # the store stays consistent and searchable


def test_queries_empty_and_huge(home: Path, docs: Path) -> None:
    kc.create("kb4", settings=S)
    kc.add("kb4", [docs / "handbook.md"], settings=S)
    with pytest.raises(KBError, match="empty"):
        kc.search("kb4", "   ", settings=S)
    with pytest.raises(KBError, match="10,000 characters"):
        kc.search("kb4", "x" * 10_000, settings=S)
    assert kc.search("kb4", "annual leave", settings=S).found


def test_not_found_threshold(home: Path, docs: Path) -> None:
    kc.create("kb5", settings=S)
    kc.add("kb5", [docs / "handbook.md"], settings=S)
    ok = kc.search("kb5", "How many vacation days do employees get?", threshold=0.3, settings=S)
    assert ok.found and ok.results[0].text == EN_VACATION and ok.results[0].similarity >= 0.3
    miss = kc.search("kb5", "What is the boiling point of liquid nitrogen?", threshold=0.3, settings=S)
    assert not miss.found and miss.results == [] and "not found" in miss.message


def test_upload_names_are_made_safe(home: Path) -> None:
    kc.create("kb6", settings=S)
    p = kc.save_upload("kb6", "../../etc/passwd.md", b"# x\n\nhello")
    assert p.parent == (home / "kb" / "kb6" / "files").resolve() and p.name == "passwd.md"
    with pytest.raises(KBError):
        kc.save_upload("kb6", "..", b"x")


def test_names_embedder_mismatch_and_drop(home: Path, docs: Path) -> None:
    with pytest.raises(KBError, match="valid collection name"):
        kc.create("../evil", settings=S)
    with pytest.raises(NotFound):
        kc.search("nope", "x", settings=S)
    kc.create("kb7", settings=S)
    kc.add("kb7", [docs / "handbook.md"], settings=S)
    import json

    meta_file = home / "kb" / "kb7" / "collection.json"
    meta = json.loads(meta_file.read_text())
    meta["embedder_id"] = "other@1/512"
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(KBError, match="kb reindex kb7"):
        kc.search("kb7", "annual leave", settings=S)
    rep = kc.reindex("kb7", settings=S)
    assert len(rep.added) == 1 and kc.search("kb7", "annual leave", settings=S).results[0].text == EN_VACATION
    with pytest.raises(KBError, match="already exists"):
        kc.create("kb7", settings=S)
    kc.drop("kb7")
    assert not (home / "kb" / "kb7").exists() and kc.list_collections() == []
