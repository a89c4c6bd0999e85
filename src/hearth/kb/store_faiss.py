"""FAISS engine (``kb.store: faiss``): an exact vector index file beside a SQLite metadata table.

Layout of ``kb/<collection>/faiss/``::

    meta.sqlite   every chunk's fields and its vector (the truth), an FTS5 table over ``tokens``
    index.faiss   IndexIDMap(IndexFlatIP) over the unit vectors: exact cosine, ids = SQLite rowids
    index.json    the SQLite generation the index file was written at

SQLite commits are atomic, so a document's rows (vectors included) appear or vanish in one
transaction. The index file is a cache of those vectors: it is written with temp file + rename (a
crash leaves the old file or the new one, never half of one), and on open it is used only when its
generation matches the table's; otherwise it is rebuilt from the vectors in SQLite. Every write bumps
the generation, so a reader in another process notices and reloads before it searches.

Full text is SQLite's FTS5 with its built-in BM25 over the pre-tokenized column (see ``fulltext.py``);
metadata filters are SQL, and dense search is limited to the matching ids with a FAISS ID selector.
Flat search is exact and takes a few ms per 100k 512-d vectors; beyond a few million chunks an IVF or
HNSW index (or Milvus) fits better.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hearth.errors import KBError
from hearth.kb.store import HIT_FIELDS, Filter, Hit, Row

_COLUMNS = (*HIT_FIELDS, "content_hash", "embedder")
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS chunks (
    rowid INTEGER PRIMARY KEY,  -- the FAISS id
    {", ".join(f"{c} {'INTEGER' if c in ('page', 'chunk_index', 'date') else 'TEXT'}" for c in _COLUMNS)},
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
-- tokens are already lower-cased, stemmed and jieba-segmented: unicode61 only splits them on spaces
-- (and punctuation), and keeps diacritics as the query tokenizer does
CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(tokens, tokenize = 'unicode61 remove_diacritics 0');
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class FaissStore:
    engine = "faiss"
    parallel_reads = False  # one lock serialises its reads anyway

    def __init__(self, path: Path, dim: int) -> None:
        self.path = path
        self.dim = dim
        path.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()  # the server searches from several threads
        self._db = sqlite3.connect(path / "meta.sqlite", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")  # readers in other processes do not block the writer
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.execute("PRAGMA case_sensitive_like=ON")  # source/tag filters match case as LanceDB's LIKE does
        self._db.executescript(_SCHEMA)
        stored = self._meta("dim")
        if stored is None:
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('dim', ?), ('generation', '0')", (str(dim),))
        elif int(stored) != dim:
            raise KBError(
                f"the store at {path} holds {stored}-d vectors, not {dim}-d", "run `hearth kb reindex NAME` to re-embed"
            )
        self._index = None
        self._gen = -1  # generation the in-memory index reflects
        self._load()

    # -- the index file -------------------------------------------------------------------------

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _generation(self) -> int:
        return int(self._meta("generation") or 0)

    def _load(self) -> None:
        """Read the index file if it matches the table's generation, else rebuild it from SQLite."""
        import faiss

        gen = self._generation()
        file, stamp = self.path / "index.faiss", self.path / "index.json"
        if file.exists() and stamp.exists():
            try:
                if json.loads(stamp.read_text())["generation"] == gen:
                    self._index, self._gen = faiss.read_index(str(file)), gen
                    return
            except (ValueError, KeyError, RuntimeError):
                pass  # unreadable cache: rebuild below
        index = faiss.IndexIDMap(faiss.IndexFlatIP(self.dim))
        cur = self._db.execute("SELECT rowid, vector FROM chunks")
        while batch := cur.fetchmany(8192):
            ids = np.fromiter((r[0] for r in batch), np.int64, len(batch))
            vecs = np.frombuffer(b"".join(r[1] for r in batch), np.float32).reshape(len(batch), self.dim)
            index.add_with_ids(vecs, ids)
        self._index, self._gen = index, gen

    def _fresh(self):  # type: ignore[no-untyped-def]
        """The index, reloaded first when another process (or a crash repair) changed the table."""
        if self._generation() != self._gen:
            self._load()
        return self._index

    def _save(self) -> None:
        """Write index.faiss then index.json, each via a temp file renamed over the old one."""
        import faiss

        for name, write in (
            ("index.faiss", lambda p: faiss.write_index(self._index, p)),
            ("index.json", lambda p: Path(p).write_text(json.dumps({"generation": self._gen}))),
        ):
            fd, tmp = tempfile.mkstemp(dir=self.path, prefix=f".{name}.")
            os.close(fd)
            try:
                write(tmp)
                os.replace(tmp, self.path / name)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)

    def _bump(self) -> int:
        self._db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
        return self._generation()

    # -- writes ---------------------------------------------------------------------------------

    def add(self, rows: Sequence[Row]) -> None:
        if rows:
            self._write(rows)

    def replace_doc(self, doc_id: str, rows: Sequence[Row]) -> None:
        """Swap a document's chunks for ``rows`` in one transaction (readers see the old or the new version)."""
        self._write(rows, replace=doc_id)

    def _write(self, rows: Sequence[Row], replace: str | None = None) -> None:
        vecs = np.stack([_unit(r.vector) for r in rows]).astype(np.float32)
        with self._lock:
            index = self._fresh()
            self._db.execute("BEGIN IMMEDIATE")
            try:
                old: list[int] = []
                if replace is not None:
                    old = [r[0] for r in self._db.execute("SELECT rowid FROM chunks WHERE doc_id = ?", (replace,))]
                for i in range(0, len(old), 500):
                    marks = ", ".join("?" * len(old[i : i + 500]))
                    self._db.execute(f"DELETE FROM chunks WHERE rowid IN ({marks})", old[i : i + 500])
                    self._db.execute(f"DELETE FROM fts WHERE rowid IN ({marks})", old[i : i + 500])
                ids = []
                for r, v in zip(rows, vecs, strict=True):
                    cur = self._db.execute(
                        f"INSERT INTO chunks ({', '.join(_COLUMNS)}, vector) VALUES ({', '.join('?' * (len(_COLUMNS) + 1))})",
                        (*(getattr(r, c) for c in _COLUMNS), v.tobytes()),
                    )
                    ids.append(cur.lastrowid)
                    self._db.execute("INSERT INTO fts (rowid, tokens) VALUES (?, ?)", (cur.lastrowid, r.tokens))
                gen = self._bump()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            if old:
                index.remove_ids(np.asarray(old, np.int64))
            index.add_with_ids(vecs, np.asarray(ids, np.int64))
            self._gen = gen  # the index file is saved by optimize() / close(); SQLite already holds the rows

    def refresh(self) -> None:
        with self._lock:
            self._fresh()  # reloads the index when the table's generation moved on

    def delete_docs(self, doc_ids: Sequence[str]) -> None:
        if not doc_ids:
            return
        with self._lock:
            index = self._fresh()
            self._db.execute("BEGIN IMMEDIATE")
            try:
                ids: list[int] = []
                for i in range(0, len(doc_ids), 500):
                    part = list(doc_ids[i : i + 500])
                    marks = ", ".join("?" * len(part))
                    ids += [r[0] for r in self._db.execute(f"SELECT rowid FROM chunks WHERE doc_id IN ({marks})", part)]
                for i in range(0, len(ids), 500):
                    part_ids = ids[i : i + 500]
                    marks = ", ".join("?" * len(part_ids))
                    self._db.execute(f"DELETE FROM chunks WHERE rowid IN ({marks})", part_ids)
                    self._db.execute(f"DELETE FROM fts WHERE rowid IN ({marks})", part_ids)
                gen = self._bump()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            if ids:
                index.remove_ids(np.asarray(ids, np.int64))
            self._gen = gen

    def optimize(self) -> None:
        """Persist the index file when it lags the table (after a batch of adds or deletes)."""
        with self._lock:
            self._fresh()
            stamp = self.path / "index.json"
            try:
                saved = json.loads(stamp.read_text())["generation"] if stamp.exists() else -1
            except (ValueError, KeyError):
                saved = -1
            if saved != self._gen:
                self._save()
                self._db.execute("INSERT INTO fts (fts) VALUES ('optimize')")  # merge FTS5 segments

    def drop(self) -> None:
        self.close(save=False)
        shutil.rmtree(self.path, ignore_errors=True)

    def close(self, save: bool = True) -> None:
        with self._lock:
            if self._db is None:
                return
            if save:
                self.optimize()
            self._db.close()
            self._db = None  # type: ignore[assignment]

    # -- reads ----------------------------------------------------------------------------------

    def search_dense(
        self, vector: np.ndarray, k: int, where: Filter | None = None, *, light: bool = False
    ) -> list[Hit]:
        import faiss

        q = _unit(np.asarray(vector, np.float32)).reshape(1, -1)
        with self._lock:
            index = self._fresh()
            params = None
            if where is not None and not where.empty():
                allowed = [r[0] for r in self._db.execute(*_select("SELECT rowid FROM chunks", where))]
                if not allowed:
                    return []
                params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(np.asarray(allowed, np.int64)))
            if index.ntotal == 0:
                return []
            scores, ids = index.search(q, min(k, index.ntotal), params=params)
            found = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
            return self._hits(found)

    def search_text(self, tokens: str, k: int, where: Filter | None = None, *, light: bool = False) -> list[Hit]:
        words = {w for w in tokens.split() if w}
        if not words:
            return []
        # any of the query's tokens, each quoted so FTS5 reads no operators in them; bm25() is lower = better
        match = " OR ".join('"' + w.replace('"', '""') + '"' for w in sorted(words))
        sql = "SELECT fts.rowid, -bm25(fts) FROM fts JOIN chunks c ON c.rowid = fts.rowid WHERE fts MATCH ?"
        args: list[object] = [match]
        if where is not None and not where.empty():
            cond, more = _conditions(where, prefix="c.")
            sql += " AND " + cond
            args += more
        sql += " ORDER BY bm25(fts) LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, [*args, k]).fetchall()
            return self._hits([(int(r[0]), float(r[1])) for r in rows])

    def fill(self, hits: Sequence[Hit]) -> list[Hit]:
        return list(hits)  # the rows come from SQLite by rowid in one cheap query; light searches are full already

    def _hits(self, found: list[tuple[int, float]]) -> list[Hit]:
        if not found:
            return []
        marks = ", ".join("?" * len(found))
        rows = self._db.execute(
            f"SELECT rowid, {', '.join(HIT_FIELDS)} FROM chunks WHERE rowid IN ({marks})", [i for i, _ in found]
        ).fetchall()
        by_id = {r[0]: r[1:] for r in rows}
        return [Hit(**dict(zip(HIT_FIELDS, by_id[i], strict=True)), score=s) for i, s in found if i in by_id]

    def doc_chunk_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute("SELECT doc_id, COUNT(*) FROM chunks GROUP BY doc_id").fetchall())

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float32)
    return v / max(float(np.linalg.norm(v)), 1e-12)  # inner product = cosine only for unit vectors


def _conditions(f: Filter, prefix: str = "") -> tuple[str, list[object]]:
    """SQL conditions with bound parameters (no quoting of user values needed)."""
    parts: list[str] = []
    args: list[object] = []
    if f.source:
        parts.append(f"{prefix}source LIKE ?")
        args.append(f.like_source())
    if f.tag:
        parts.append(f"{prefix}tags LIKE ?")
        args.append(f"%,{f.tag},%")
    if f.date_from:
        parts.append(f"{prefix}date >= ?")
        args.append(int(f.date_from))
    if f.date_to:
        parts.append(f"{prefix}date <= ?")
        args.append(int(f.date_to))
    if f.doc_ids:
        parts.append(f"{prefix}doc_id IN ({', '.join('?' * len(f.doc_ids))})")
        args += list(f.doc_ids)
    return " AND ".join(parts), args


def _select(sql: str, f: Filter) -> tuple[str, list[object]]:
    cond, args = _conditions(f)
    return f"{sql} WHERE {cond}", args
