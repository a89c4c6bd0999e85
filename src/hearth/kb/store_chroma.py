"""Chroma engine (``kb.store: chroma``): Chroma's embedded persistent client, one directory per collection.

Chroma keeps the vectors (HNSW, cosine), the chunk text as its document and our fields as metadata,
in ``kb/<collection>/chroma/``. Telemetry is switched off in the client settings: Hearth never phones
home.

Full text is Chroma's weak side: the local engine only filters documents by substring or regex
(``where_document``), with no ranking, and its BM25/hybrid ``search()`` API runs only on distributed
and hosted Chroma. So ``search_text`` ranks with ``bm25s`` over the stored pre-tokenized column (see
``fulltext.py``), from an in-memory mirror of the collection's metadata that is rebuilt on the first
search after a write. That mirror also answers the filters Chroma's ``where`` cannot express (source
substring or glob, tags): they become an explicit id list. The cost is memory (tokens of every chunk)
and a rebuild of a few seconds per 100k chunks after each batch of writes; see docs/vector-stores.md.
Chroma's persistent client serves one process at a time, like Milvus Lite.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hearth.errors import KBError
from hearth.kb.store import HIT_FIELDS, Filter, Hit, Row

COLLECTION = "chunks"
_META = (
    "doc_id",
    "source",
    "title",
    "headings",
    "page",
    "chunk_index",
    "tokens",
    "tags",
    "date",
    "content_hash",
    "embedder",
)
_PAGE = 5000  # rows per get() when the mirror is built


@dataclass
class _Mirror:
    """What Chroma cannot search itself: every chunk's id, filter fields and a BM25 index of its tokens."""

    ids: list[str]
    doc_ids: np.ndarray
    sources: list[str]
    tags: list[str]
    dates: np.ndarray
    bm25: object  # bm25s.BM25

    def mask(self, f: Filter) -> np.ndarray:
        keep = np.ones(len(self.ids), bool)
        if f.source:
            pattern = _like_regex(f.like_source() or "")
            keep &= np.fromiter((bool(pattern.fullmatch(s)) for s in self.sources), bool, len(self.ids))
        if f.tag:
            needle = f",{f.tag},"
            keep &= np.fromiter((needle in t for t in self.tags), bool, len(self.ids))
        if f.date_from:
            keep &= self.dates >= int(f.date_from)
        if f.date_to:
            keep &= self.dates <= int(f.date_to)
        if f.doc_ids:
            keep &= np.isin(self.doc_ids, list(f.doc_ids))
        return keep


class ChromaStore:
    engine = "chroma"
    parallel_reads = False  # its BM25 mirror is rebuilt lazily, not thread-safe

    def __init__(self, path: Path, dim: int) -> None:
        import chromadb
        from chromadb.config import Settings

        self.path = path
        self.dim = dim
        path.mkdir(parents=True, exist_ok=True)
        self._client = chromadb.PersistentClient(path=str(path), settings=Settings(anonymized_telemetry=False))
        # embedding_function=None: Hearth embeds; Chroma's default would load (and download) its own model
        self._col = self._client.get_or_create_collection(
            COLLECTION, embedding_function=None, configuration={"hnsw": {"space": "cosine"}}, metadata={"dim": dim}
        )
        stored = (self._col.metadata or {}).get("dim", dim)
        if int(stored) != dim:
            raise KBError(
                f"the store at {path} holds {stored}-d vectors, not {dim}-d", "run `hearth kb reindex NAME` to re-embed"
            )
        self._mirror: _Mirror | None = None
        self._closed = False

    # -- writes ---------------------------------------------------------------------------------

    def add(self, rows: Sequence[Row]) -> None:
        if not rows:
            return
        step = self._client.get_max_batch_size()
        for i in range(0, len(rows), step):
            part = rows[i : i + step]
            # upsert: re-adding a chunk id replaces it, as a re-ingest after a crash expects
            self._col.upsert(
                ids=[r.id for r in part],
                embeddings=np.stack([np.asarray(r.vector, np.float32) for r in part]),
                documents=[r.text for r in part],
                metadatas=[{m: getattr(r, m) for m in _META} for r in part],
            )
        self._mirror = None

    def refresh(self) -> None:
        self._mirror = None  # rebuilt from Chroma's current rows on next use

    def delete_docs(self, doc_ids: Sequence[str]) -> None:
        for i in range(0, len(doc_ids), 500):
            self._col.delete(where={"doc_id": {"$in": list(doc_ids[i : i + 500])}})
        self._mirror = None

    def optimize(self) -> None:
        pass  # Chroma folds writes into its HNSW index itself; the BM25 mirror is rebuilt on demand

    def drop(self) -> None:
        if not self._closed:
            self._client.delete_collection(COLLECTION)
            self.close()
        shutil.rmtree(self.path, ignore_errors=True)

    def close(self) -> None:
        self._mirror = None
        if not self._closed:
            self._client.close()  # releases the shared Chroma system (and its SQLite) for this path
            self._closed = True

    # -- reads ----------------------------------------------------------------------------------

    def _get_mirror(self) -> _Mirror:
        if self._mirror is None:
            import bm25s

            ids: list[str] = []
            metas: list[dict] = []
            offset = 0
            while True:
                page = self._col.get(include=["metadatas"], limit=_PAGE, offset=offset)
                ids += page["ids"]
                metas += page["metadatas"] or []
                offset += _PAGE
                if len(page["ids"]) < _PAGE:
                    break
            bm25 = bm25s.BM25()
            if ids:
                bm25.index([str(m.get("tokens", "")).split() for m in metas], show_progress=False)
            self._mirror = _Mirror(
                ids=ids,
                doc_ids=np.asarray([m["doc_id"] for m in metas], dtype=object),
                sources=[m["source"] for m in metas],
                tags=[m["tags"] for m in metas],
                dates=np.asarray([int(m["date"]) for m in metas], np.int64),
                bm25=bm25,
            )
        return self._mirror

    def search_dense(
        self, vector: np.ndarray, k: int, where: Filter | None = None, *, light: bool = False
    ) -> list[Hit]:
        kwargs: dict = {}
        if where is not None and not where.empty():
            if where.source or where.tag:
                # LIKE-style filters Chroma's where cannot express: search only the ids the mirror allows
                mirror = self._get_mirror()
                allowed = [mirror.ids[i] for i in np.flatnonzero(mirror.mask(where))]
                if not allowed:
                    return []
                kwargs["ids"] = allowed
            else:
                kwargs["where"] = _where(where)
        n = self._col.count()
        if n == 0:
            return []
        res = self._col.query(
            query_embeddings=[np.asarray(vector, np.float32)],
            n_results=min(k, n),
            include=["metadatas", "documents", "distances"],
            **kwargs,
        )
        # cosine distance = 1 - cosine similarity
        return [
            _hit(i, doc, meta, 1.0 - float(d))
            for i, doc, meta, d in zip(
                res["ids"][0], res["documents"][0], res["metadatas"][0], res["distances"][0], strict=True
            )
        ]

    def search_text(self, tokens: str, k: int, where: Filter | None = None, *, light: bool = False) -> list[Hit]:
        words = tokens.split()
        if not words:
            return []
        mirror = self._get_mirror()
        if not mirror.ids:
            return []
        mask = None if where is None or where.empty() else mirror.mask(where).astype(np.float32)
        scores = mirror.bm25.get_scores(words, weight_mask=mask)  # type: ignore[attr-defined]
        top = np.flatnonzero(scores > 0)
        top = top[np.argsort(-scores[top], kind="stable")][:k]
        if not len(top):
            return []
        ids = [mirror.ids[i] for i in top]
        got = self._col.get(ids=ids, include=["metadatas", "documents"])
        by_id = {i: (doc, meta) for i, doc, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True)}
        return [_hit(i, *by_id[i], float(scores[j])) for i, j in zip(ids, top, strict=True) if i in by_id]

    def doc_chunk_counts(self) -> dict[str, int]:
        ids, counts = np.unique(self._get_mirror().doc_ids.astype(str), return_counts=True)
        return {str(d): int(n) for d, n in zip(ids, counts, strict=True)}

    def count(self) -> int:
        return int(self._col.count())

    def fill(self, hits: Sequence[Hit]) -> list[Hit]:
        return list(hits)  # Chroma returns documents with the ids in one call; light searches are full already


def _hit(chunk_id: str, text: str, meta: dict, score: float) -> Hit:
    fields = {f: meta.get(f) for f in HIT_FIELDS if f not in ("id", "text")}
    return Hit(id=chunk_id, text=text, **fields, score=score)


def _where(f: Filter) -> dict:
    parts: list[dict] = []
    if f.date_from:
        parts.append({"date": {"$gte": int(f.date_from)}})
    if f.date_to:
        parts.append({"date": {"$lte": int(f.date_to)}})
    if f.doc_ids:
        parts.append({"doc_id": {"$in": list(f.doc_ids)}})
    return parts[0] if len(parts) == 1 else {"$and": parts}


def _like_regex(like: str) -> re.Pattern[str]:
    """SQL LIKE (``%`` any run, ``_`` one character) as a regex, matching LanceDB's and SQLite's filters."""
    return re.compile("".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in like), re.DOTALL)
