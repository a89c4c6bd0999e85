"""One store test-suite, run against every engine: LanceDB (directory), Milvus (Milvus Lite file), FAISS, Chroma.

A new engine (FAISS, Chroma) joins by adding its name to ENGINES below and passing these tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hearth.kb.fulltext import tokenize
from hearth.kb.store import Filter, Row, open_store

ENGINES = ["lancedb", "milvus", "faiss", "chroma"]
DIM = 8


def _row(doc: str, i: int, text: str, vec: list[float], source: str = "", tags: str = "", date: int = 0) -> Row:
    v = np.asarray(vec, np.float32)
    return Row(
        id=f"{doc}:{i}",
        doc_id=doc,
        source=source or f"/data/{doc}.md",
        title=doc,
        headings="Top > Sub",
        page=i + 1,
        chunk_index=i,
        text=text,
        tokens=tokenize(text),
        tags=tags,
        date=date,
        content_hash="h-" + doc,
        embedder="test@1/8",
        vector=v / np.linalg.norm(v),
    )


def _basis(i: int, noise: float = 0.0) -> list[float]:
    v = [noise] * DIM
    v[i] = 1.0
    return v


@pytest.fixture(scope="module")
def milvus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One Milvus Lite file for the module (each file starts a server); collections keep tests apart."""
    return tmp_path_factory.mktemp("milvus")


@pytest.fixture(params=ENGINES)
def store(request: pytest.FixtureRequest, tmp_path: Path, milvus_dir: Path):  # type: ignore[no-untyped-def]
    where = milvus_dir if request.param == "milvus" else tmp_path
    s = open_store(request.param, where, f"t_{request.node.name}", DIM)
    s.add(
        [
            _row(
                "hr",
                0,
                "Employees get fifteen days of paid annual leave.",
                _basis(0),
                tags=",hr,policy,",
                date=20240105,
            ),
            _row("hr", 1, "员工每年享有十五天带薪年假。", _basis(1), tags=",hr,policy,", date=20240105),
            _row(
                "it",
                0,
                "Passwords must be changed every ninety days.",
                _basis(2),
                source="/data/it/security.txt",
                tags=",it,",
                date=20230301,
            ),
            _row(
                "it",
                1,
                "所有员工必须每九十天更换一次电脑密码。",
                _basis(3),
                source="/data/it/security.txt",
                tags=",it,",
                date=20230301,
            ),
        ]
    )
    s.optimize()
    yield s
    s.drop()
    s.close()


def test_counts(store) -> None:  # type: ignore[no-untyped-def]
    assert store.count() == 4
    assert store.doc_chunk_counts() == {"hr": 2, "it": 2}


def test_dense_ranks_by_cosine(store) -> None:  # type: ignore[no-untyped-def]
    hits = store.search_dense(np.asarray(_basis(2, 0.1), np.float32), 4)
    assert hits[0].id == "it:0"
    assert hits[0].score == pytest.approx(1.0 / np.linalg.norm(_basis(2, 0.1)), abs=0.02)
    assert hits[0].headings == "Top > Sub" and hits[0].page == 1 and hits[0].source == "/data/it/security.txt"
    assert hits[0].score > hits[1].score


@pytest.mark.parametrize(
    ("query", "expected"),
    [("annual leave", "hr:0"), ("年假", "hr:1"), ("更换密码", "it:1"), ("password changed", "it:0")],
)
def test_full_text_english_and_chinese(store, query: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    hits = store.search_text(tokenize(query), 4)
    assert hits and hits[0].id == expected
    assert hits[0].score > 0


def test_filters(store) -> None:  # type: ignore[no-untyped-def]
    q = np.asarray(_basis(0), np.float32)
    assert {h.doc_id for h in store.search_dense(q, 4, Filter(tag="it"))} == {"it"}
    assert {h.doc_id for h in store.search_dense(q, 4, Filter(source="security"))} == {"it"}
    assert {h.doc_id for h in store.search_dense(q, 4, Filter(source="/data/hr*"))} == {"hr"}
    assert {h.doc_id for h in store.search_dense(q, 4, Filter(date_from=20240101))} == {"hr"}
    assert {h.doc_id for h in store.search_dense(q, 4, Filter(date_to=20231231))} == {"it"}
    assert {h.doc_id for h in store.search_text(tokenize("days"), 4, Filter(doc_ids=["it"]))} == {"it"}
    assert store.search_dense(q, 4, Filter(tag="nope")) == []


def test_delete_document_removes_all_its_chunks(store) -> None:  # type: ignore[no-untyped-def]
    store.delete_docs(["hr"])
    assert store.count() == 2
    assert store.doc_chunk_counts() == {"it": 2}
    assert all(h.doc_id != "hr" for h in store.search_dense(np.asarray(_basis(0), np.float32), 10))
    assert store.search_text(tokenize("年假"), 10) == []
    store.optimize()  # rebuilding indexes must not resurrect deleted rows
    assert store.search_text(tokenize("annual leave"), 10) == []


def test_new_rows_searchable_before_optimize(store) -> None:  # type: ignore[no-untyped-def]
    store.add([_row("new", 0, "The canteen opens at half past eleven.", _basis(4))])
    assert store.search_text(tokenize("canteen"), 3)[0].id == "new:0"
    assert store.search_dense(np.asarray(_basis(4), np.float32), 1)[0].id == "new:0"


def test_light_search_then_fill_equals_full_search(store) -> None:  # type: ignore[no-untyped-def]
    q = np.asarray(_basis(3, 0.1), np.float32)
    full = store.search_dense(q, 4)
    light = store.search_dense(q, 4, light=True)
    assert [(h.id, h.doc_id) for h in light] == [(h.id, h.doc_id) for h in full]
    assert store.fill(light) == full
    text_full = store.search_text(tokenize("更换密码"), 4)
    assert [h.text for h in store.fill(store.search_text(tokenize("更换密码"), 4, light=True))] == [
        h.text for h in text_full
    ]


def test_fill_after_rows_moved_and_deleted(store) -> None:  # type: ignore[no-untyped-def]
    """Between a light search and its fill, writes may compact the table (renumbering rows) or delete a
    document: fill still returns the right rows, and never a deleted one."""
    light = store.search_dense(np.asarray(_basis(2, 0.1), np.float32), 4, light=True)
    store.delete_docs(["hr"])
    store.add([_row("more", i, f"filler number {i}", _basis(5 + i % 3, 0.2)) for i in range(20)])
    store.optimize()
    filled = store.fill(light)
    assert {h.doc_id for h in filled} <= {"it", "hr"}
    by_id = {h.id: h for h in filled}
    assert by_id["it:0"].text == "Passwords must be changed every ninety days."
    assert by_id["it:1"].text.startswith("所有员工")
    if store.engine == "lancedb":  # the one engine whose light hits are really light
        assert "hr:0" not in by_id


def test_empty_text_query(store) -> None:  # type: ignore[no-untyped-def]
    assert store.search_text("", 5) == []


def test_reopen_reads_everything_back(store, tmp_path: Path, milvus_dir: Path, request: pytest.FixtureRequest) -> None:  # type: ignore[no-untyped-def]
    store.delete_docs(["it"])
    store.add([_row("new", 0, "The canteen opens at half past eleven.", _basis(4))])
    store.close()
    where = milvus_dir if store.engine == "milvus" else tmp_path
    again = open_store(store.engine, where, f"t_{request.node.name}", DIM)
    try:
        assert again.doc_chunk_counts() == {"hr": 2, "new": 1}
        assert again.search_dense(np.asarray(_basis(4), np.float32), 1)[0].id == "new:0"
        assert [h.id for h in again.search_text(tokenize("年假"), 3)] == ["hr:1"]
        assert again.search_text(tokenize("password"), 3) == []
    finally:
        again.close()
