"""LanceDB engine: the embedded default. One directory per collection, one table ``chunks``.

Why LanceDB: an embedded columnar store with native full-text (BM25) and vector indexes, many readers
across processes, and commits that are atomic (a killed writer leaves the last committed version).
Full text runs over the pre-tokenized ``tokens`` column with a plain whitespace tokenizer (the
tokens are already lower-cased, stemmed and jieba-segmented), so Chinese words stay searchable. The vector index (IVF-HNSW) is built once the
table is large enough for brute force to be slower than the index (``INDEX_MIN_ROWS``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from hearth.errors import KBError
from hearth.kb.store import HIT_FIELDS, Filter, Hit, Row, safe_literal

# Lance's Rust logger prints k-means warnings ("empty clusters") to the terminal while it builds the
# vector index of a small or skewed table, and a notice about centroids on every index_stats(); they
# say nothing a user can act on. Errors still show. lancedb's logger reads LANCEDB_LOG (LANCE_LOG alone,
# set here before, did not reach it). Index statistics without the centroids: only deltas are read.
os.environ.setdefault("LANCEDB_LOG", "error")
os.environ.setdefault("LANCE_LOG", "error")
os.environ.setdefault("LANCE_INCLUDE_VECTOR_CENTROIDS", "false")

TABLE = "chunks"
INDEX_MIN_ROWS = 5_000  # exact search measured 14 ms at 10k rows, 116 ms at 100k; the index 3 ms at 10k
LIGHT_FIELDS = ("id", "doc_id")
REFINE = 2  # index candidates re-scored exactly per result wanted
# Each optimize() after an add appends the new rows to the vector index as one more delta, and Lance
# neither merges deltas nor compacts fragments indexed by different ones. Measured after a real ingest
# (3,000 files in 150 adds, 120k chunks): 143 deltas and 143 fragments, dense search 125 ms instead of
# 23 ms, whole hybrid search p50 133 ms. Rebuilt at 8 (see optimize): at worst 8 deltas and 8 fragments,
# hybrid p95 13 ms (store side) at 120k rows against 72 ms, for an ingest 1.8x slower (747 s vs 411 s).
MAX_INDEX_DELTAS = 8


def _schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            ("id", pa.string()),
            ("doc_id", pa.string()),
            ("source", pa.string()),
            ("title", pa.string()),
            ("headings", pa.string()),
            ("page", pa.int32()),
            ("chunk_index", pa.int32()),
            ("text", pa.string()),
            ("tokens", pa.string()),
            ("tags", pa.string()),
            ("date", pa.int32()),
            ("content_hash", pa.string()),
            ("embedder", pa.string()),
            ("vector", pa.list_(pa.float32(), dim)),
        ]
    )


class LanceStore:
    engine = "lancedb"
    parallel_reads = True

    def __init__(self, path: Path, dim: int) -> None:
        import lancedb

        self.path = path
        self.dim = dim
        path.mkdir(parents=True, exist_ok=True)
        self._db = lancedb.connect(str(path))
        if TABLE in self._db.list_tables().tables:
            self._table = self._db.open_table(TABLE)
            stored = self._table.schema.field("vector").type.list_size
            if stored != dim:
                raise KBError(
                    f"the store at {path} holds {stored}-d vectors, not {dim}-d",
                    "run `hearth kb reindex NAME` to re-embed",
                )
        else:
            self._table = self._db.create_table(TABLE, schema=_schema(dim), exist_ok=True)
        self._dirty = True  # unknown index state after open: let optimize() check once
        self._rows: int | None = None  # count_rows() of the version open, kept: every fused search asks

    def _read(self, query: Any) -> list[dict]:
        """Run a query built on the async table the sync one wraps, on lancedb's own event loop.

        Why not ``table.search()``: the sync builder asks the table for its schema (twice for a vector
        query) and checks for legacy indexes, each a trip to that loop; at 120k rows it cost ~3 ms of a
        12 ms dense search. Same table object, so reads see this store's writes and ``refresh``."""
        from lancedb.background_loop import LOOP

        return LOOP.run(query.to_arrow()).to_pylist()

    @property
    def _async(self) -> Any:
        return self._table._table  # lancedb is pinned (pyproject): the AsyncTable the sync table wraps

    # -- writes ---------------------------------------------------------------------------------

    def add(self, rows: Sequence[Row]) -> None:
        if not rows:
            return
        # one add() = one Lance commit: a document's chunks appear all at once or not at all
        self._table.add(self._arrow(rows))
        self._changed()

    def _arrow(self, rows: Sequence[Row]) -> pa.Table:
        cols: dict[str, list] = {name: [] for name in _schema(self.dim).names if name != "vector"}
        for r in rows:
            for name in cols:
                cols[name].append(getattr(r, name))
        vectors = np.ascontiguousarray(np.stack([r.vector for r in rows]).astype(np.float32))
        arrays = [pa.array(cols[name], type=_schema(self.dim).field(name).type) for name in cols]
        arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), self.dim))
        return pa.Table.from_arrays(arrays, schema=_schema(self.dim))

    def replace_doc(self, doc_id: str, rows: Sequence[Row]) -> None:
        """Swap a document's chunks for ``rows`` in one commit (readers see the old or the new version)."""
        self._table.merge_insert(
            "id"
        ).when_matched_update_all().when_not_matched_insert_all().when_not_matched_by_source_delete(
            f"doc_id = '{safe_literal(doc_id)}'"
        ).execute(self._arrow(rows))
        self._changed()

    def _changed(self) -> None:
        self._dirty = True
        self._rows = None

    def refresh(self) -> None:
        self._table.checkout_latest()  # an open table otherwise stays at the version it was opened at
        self._rows = None

    def delete_docs(self, doc_ids: Sequence[str]) -> None:
        ids = [safe_literal(d) for d in doc_ids]
        for i in range(0, len(ids), 500):
            inside = ", ".join(f"'{d}'" for d in ids[i : i + 500])
            self._table.delete(f"doc_id IN ({inside})")
        self._changed()

    def optimize(self) -> None:
        """Compact the table, create the full-text index (and the vector index on big tables) and fold new
        rows into them; at ``MAX_INDEX_DELTAS`` pieces the vector index is rebuilt whole."""
        if not self._dirty:
            return
        indices = {ix.name: ix for ix in self._table.list_indices()}
        n = self.count()
        vector = next((ix.name for ix in indices.values() if "vector" in ix.columns), None)
        if vector is not None and self.index_deltas(vector) >= MAX_INDEX_DELTAS:  # this add would be one more
            # Dropped before compacting: a compaction remaps every index over the fragments it rewrites,
            # and remapping IVF-HNSW is dearer than building it (110k rows: 66 s, against 1.6 s for the
            # compaction alone and 28 s for the build). Readers in other processes keep the version they
            # have open until this writer bumps the collection's generation.
            self._table.drop_index(vector)
            vector = None
        if n:
            # compaction (every add() is a fragment: a first ingest of 1,027 files left 290 of them,
            # hybrid 56 ms/query, compacted 23 ms) and the new rows appended to the existing indexes
            self._table.optimize()
        if n and not any("tokens" in ix.columns for ix in indices.values()):
            self._table.create_fts_index(
                "tokens",
                base_tokenizer="whitespace",
                lower_case=False,
                stem=False,
                remove_stop_words=False,
                ascii_folding=False,
                replace=True,
            )
        if n >= INDEX_MIN_ROWS and vector is None:
            self.build_vector_index()
        self._dirty = False

    def index_deltas(self, name: str) -> int:
        """How many pieces index ``name`` is in: one per optimize() that added rows since it was built."""
        stats = self._table.index_stats(name)
        return int(stats.num_indices) if stats is not None and stats.num_indices else 1

    def build_vector_index(self) -> None:
        from lancedb.index import HnswSq

        n = self.count()
        self._table.create_index(
            "vector", config=HnswSq(distance_type="cosine", num_partitions=max(1, int(n**0.5) // 8)), replace=True
        )

    def drop(self) -> None:
        self._db.drop_table(TABLE, ignore_missing=True)
        shutil.rmtree(self.path, ignore_errors=True)

    def close(self) -> None:
        pass  # LanceDB holds no locks or servers

    # -- reads ----------------------------------------------------------------------------------

    def search_dense(
        self, vector: np.ndarray, k: int, where: Filter | None = None, *, light: bool = False
    ) -> list[Hit]:
        q = self._async.query().nearest_to(np.asarray(vector, np.float32)).column("vector").distance_type("cosine")
        # Refining re-scores the index's candidates with the stored vectors. Without it the IVF-HNSW-SQ
        # index returns quantized distances (measured: similarities at 0.48x their true value, which
        # broke the "not found" threshold) and recall@5 0.94 instead of 0.98 on 100k real passages.
        q = q.refine_factor(REFINE).select([*(LIGHT_FIELDS if light else HIT_FIELDS), "_distance"]).limit(k)
        if light:
            q = q.with_row_id()
        if where is not None and not where.empty():
            q = q.where(_where(where))  # a prefilter: the k nearest among the rows that match
        # cosine distance = 1 - cosine similarity
        return [_hit(r, 1.0 - float(r["_distance"]), light) for r in self._read(q)]

    def search_text(self, tokens: str, k: int, where: Filter | None = None, *, light: bool = False) -> list[Hit]:
        if not tokens.strip():
            return []
        q = self._async.query().nearest_to_text(tokens, columns=["tokens"])
        q = q.select([*(LIGHT_FIELDS if light else HIT_FIELDS), "_score"]).limit(k)
        if light:
            q = q.with_row_id()
        if where is not None and not where.empty():
            q = q.where(_where(where))
        try:
            rows = self._read(q)
        except (ValueError, RuntimeError) as exc:
            if "index" in str(exc).lower():  # no full-text index yet (empty table)
                return []
            raise
        return [_hit(r, float(r["_score"]), light) for r in rows]

    def fill(self, hits: Sequence[Hit]) -> list[Hit]:
        if not hits or all(h.ref is None for h in hits):
            return list(hits)
        # by row id is the fastest read Lance has (~3 ms for a few rows at 100k, against ~10 ms for a
        # filter on id); a compaction between search and fill can renumber rows, so check the ids
        full = {
            r["id"]: r for r in self._read(self._async.take_row_ids([h.ref for h in hits]).select(list(HIT_FIELDS)))
        }
        if any(h.id not in full for h in hits):
            inside = ", ".join(f"'{safe_literal(h.id)}'" for h in hits)
            table = self._table.search().where(f"id IN ({inside})").select(list(HIT_FIELDS)).limit(None).to_arrow()
            full = {r["id"]: r for r in table.to_pylist()}
        return [_hit(full[h.id], h.score) for h in hits if h.id in full]  # a row deleted meanwhile is gone

    def doc_chunk_counts(self) -> dict[str, int]:
        ids = self._table.search().select(["doc_id"]).limit(None).to_arrow()
        if ids.num_rows == 0:
            return {}
        grouped = ids.group_by("doc_id").aggregate([("doc_id", "count")])
        return dict(zip(grouped["doc_id"].to_pylist(), grouped["doc_id_count"].to_pylist(), strict=True))

    def count(self) -> int:
        # the open version changes only by this store's writes and refresh(), which forget the number
        if self._rows is None:
            self._rows = int(self._table.count_rows())
        return self._rows

    def fragments(self) -> int:
        """Data fragments of the table: each ``add`` makes one until ``optimize`` compacts them."""
        return int(self._table.stats()["fragment_stats"]["num_fragments"])


def _hit(r: dict, score: float, light: bool = False) -> Hit:
    if light:
        return Hit.light(r["id"], r["doc_id"], score, r["_rowid"])
    return Hit(**{f: r[f] for f in HIT_FIELDS}, score=score)


def _where(f: Filter) -> str:
    parts = []
    if f.source:
        parts.append(f"source LIKE '{safe_literal(f.like_source() or '')}'")
    if f.tag:
        parts.append(f"tags LIKE '%,{safe_literal(f.tag)},%'")
    if f.date_from:
        parts.append(f"date >= {int(f.date_from)}")
    if f.date_to:
        parts.append(f"date <= {int(f.date_to)}")
    if f.doc_ids:
        parts.append("doc_id IN (" + ", ".join(f"'{safe_literal(d)}'" for d in f.doc_ids) + ")")
    return " AND ".join(parts)
