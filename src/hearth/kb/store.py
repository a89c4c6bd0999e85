"""The ``VectorStore`` protocol every engine implements, the row and hit records, and metadata filters.

Engines live one per module (``store_lancedb.py``, ``store_milvus.py``, ``store_faiss.py``, ``store_chroma.py``) and
are opened by name with ``open_store``. The protocol is deliberately small: add rows, delete whole
documents (engines that can also swap a document's chunks in one commit offer ``replace_doc``), dense search, full-text search over the pre-tokenized column (see ``fulltext.py``), and the
per-document chunk counts that make the store the source of truth when the manifest is repaired.
Fusion, thresholds and embedder checks live above the store (``retrieve.py``, ``collection.py``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from hearth.errors import ConfigError, KBError

ENGINES = ("lancedb", "milvus", "faiss", "chroma")


@dataclass
class Row:
    """One chunk as stored. ``tags`` is kept as ``,a,b,`` so every engine can filter it with LIKE."""

    id: str  # "<doc_id>:<chunk_index>"
    doc_id: str
    source: str
    title: str
    headings: str  # heading path joined by " > "
    page: int  # 1-based page, 0 = none
    chunk_index: int
    text: str
    tokens: str  # full-text tokens, space-joined (fulltext.tokenize)
    tags: str
    date: int  # yyyymmdd, 0 = unknown
    content_hash: str
    embedder: str
    vector: np.ndarray


@dataclass
class Hit:
    id: str
    doc_id: str
    source: str
    title: str
    headings: str
    page: int
    chunk_index: int
    text: str
    tags: str
    date: int
    score: float  # engine score: cosine similarity (dense) or BM25 (full text)
    ref: int | None = None  # the engine's own row handle, set on light hits so ``fill`` can fetch them fast

    @classmethod
    def light(cls, id: str, doc_id: str, score: float, ref: int | None = None) -> Hit:
        """A hit that carries only its ranking facts; ``VectorStore.fill`` adds the text and metadata."""
        return cls(id, doc_id, "", "", "", 0, 0, "", "", 0, score, ref)


HIT_FIELDS = ("id", "doc_id", "source", "title", "headings", "page", "chunk_index", "text", "tags", "date")


@dataclass
class Filter:
    """Metadata filter. ``source`` is a substring or a glob with ``*``; dates are yyyymmdd integers."""

    source: str | None = None
    tag: str | None = None
    date_from: int | None = None
    date_to: int | None = None
    doc_ids: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.source or self.tag or self.date_from or self.date_to or self.doc_ids)

    def like_source(self) -> str | None:
        if not self.source:
            return None
        return self.source.replace("*", "%") if "*" in self.source else f"%{self.source}%"


def parse_filters(items: Sequence[str]) -> Filter:
    """``source=handbook``, ``tag=hr``, ``after=2024-01-01``, ``before=2024-12-31``, ``doc=<id>``."""
    f = Filter()
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or not value:
            raise KBError(
                f"filter {item!r} is not key=value",
                "use source=..., tag=..., after=YYYY-MM-DD, before=YYYY-MM-DD or doc=ID",
            )
        if key == "source":
            f.source = value
        elif key == "tag":
            f.tag = value
        elif key in ("after", "since", "date_from"):
            f.date_from = parse_date(value)
        elif key in ("before", "until", "date_to"):
            f.date_to = parse_date(value)
        elif key in ("doc", "doc_id"):
            f.doc_ids.append(value)
        else:
            raise KBError(
                f"unknown filter key {key!r}", "use source=..., tag=..., after=YYYY-MM-DD, before=YYYY-MM-DD or doc=ID"
            )
    return f


def parse_date(value: str) -> int:
    try:
        d = dt.date.fromisoformat(value)
    except ValueError:
        raise KBError(f"{value!r} is not a date", "write dates as YYYY-MM-DD") from None
    return d.year * 10000 + d.month * 100 + d.day


def safe_literal(value: str) -> str:
    """Filter values go into engine expressions: refuse quotes and backslashes rather than escape them."""
    if re.search(r"['\"\\]", value):
        raise KBError(f"filter value {value!r} contains a quote or backslash", "leave quotes out of filter values")
    return value


class VectorStore(Protocol):
    engine: str
    parallel_reads: bool  # dense and full-text searches may run at once from two threads

    def add(self, rows: Sequence[Row]) -> None:
        """Append rows (one document's chunks, or a batch of them)."""
        ...

    def delete_docs(self, doc_ids: Sequence[str]) -> None:
        """Remove every chunk of these documents in one operation."""
        ...

    def search_dense(
        self, vector: np.ndarray, k: int, where: Filter | None = None, *, light: bool = False
    ) -> list[Hit]:
        """The k nearest chunks by cosine similarity. ``light=True`` lets the engine skip reading text
        and metadata (hybrid search reads 2 × candidates but keeps only k); ``fill`` completes them."""
        ...

    def search_text(self, tokens: str, k: int, where: Filter | None = None, *, light: bool = False) -> list[Hit]:
        """The k best chunks by BM25 over the pre-tokenized column; ``light`` as in ``search_dense``."""
        ...

    def fill(self, hits: Sequence[Hit]) -> list[Hit]:
        """The same hits, in order, with text and metadata (engines that always return full hits: as is)."""
        ...

    def doc_chunk_counts(self) -> dict[str, int]:
        """doc_id → number of chunks actually stored (the truth the manifest is checked against)."""
        ...

    def count(self) -> int: ...

    def refresh(self) -> None:
        """See the latest commit, also one another process made (a writer calls it under the lock)."""
        ...

    def optimize(self) -> None:
        """Bring indexes up to date after a batch of writes (cheap when nothing changed)."""
        ...

    def drop(self) -> None:
        """Delete the store and all its data."""
        ...

    def close(self) -> None: ...


def open_store(engine: str, directory: Path, name: str, dim: int, uri: str | None = None) -> VectorStore:
    """Open (creating if needed) the store of collection ``name`` with vectors of ``dim``."""
    if engine == "lancedb":
        from hearth.kb.store_lancedb import LanceStore

        return LanceStore(directory / "lancedb", dim)
    if engine == "milvus":
        from hearth.kb.store_milvus import MilvusStore

        return MilvusStore(uri or str(directory / "milvus.db"), name, dim)
    if engine == "faiss":
        from hearth.kb.store_faiss import FaissStore

        return FaissStore(directory / "faiss", dim)
    if engine == "chroma":
        from hearth.kb.store_chroma import ChromaStore

        return ChromaStore(directory / "chroma", dim)
    raise ConfigError(f"kb.store '{engine}' is not available yet", f"use one of: {', '.join(ENGINES)}")
