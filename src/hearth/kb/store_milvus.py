"""Milvus engine: the scale-out store (``kb.store: milvus``, ``kb.uri: http://host:19530``).

The same pymilvus client talks to a cluster or to Milvus Lite (``uri`` = a local ``.db`` file, one
process per file); the tests run against Lite. Full text uses Milvus' built-in BM25 function over the
pre-tokenized ``tokens`` column (the standard analyzer keeps jieba's words whole). Collections are created with Strong consistency so a search right after an ingest sees it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hearth.errors import KBError
from hearth.kb.store import HIT_FIELDS, Filter, Hit, Row, safe_literal

MAX_VARCHAR = 65535  # Milvus' VARCHAR limit in bytes
_clients: dict[str, object] = {}
_lock = threading.Lock()


def _client(uri: str):  # type: ignore[no-untyped-def]
    """One client per URI per process: Milvus Lite serves a file to one process only."""
    from pymilvus import MilvusClient

    with _lock:
        if uri not in _clients:
            if not uri.startswith(("http://", "https://", "tcp://", "unix:")):
                Path(uri).parent.mkdir(parents=True, exist_ok=True)
            try:
                _clients[uri] = MilvusClient(uri)
            except Exception as exc:  # pymilvus raises several types for "cannot connect"
                raise KBError(
                    f"cannot open Milvus at {uri}: {exc}",
                    "check kb.uri; Milvus Lite files can be opened by one process at a time",
                ) from None
        return _clients[uri]


def _clip(text: str, limit: int = MAX_VARCHAR - 16) -> str:
    data = text.encode("utf-8")
    return text if len(data) <= limit else data[:limit].decode("utf-8", errors="ignore")


class MilvusStore:
    engine = "milvus"
    parallel_reads = False  # one Milvus Lite server per file; not measured concurrent

    def __init__(self, uri: str, name: str, dim: int) -> None:
        self.uri = uri
        self.dim = dim
        self.collection = "hearth_" + re.sub(r"[^0-9A-Za-z_]", "_", name)
        self._c = _client(uri)
        if self._c.has_collection(self.collection):
            desc = self._c.describe_collection(self.collection)
            stored = next((f["params"].get("dim") for f in desc["fields"] if f["name"] == "vector"), dim)
            if int(stored) != dim:
                raise KBError(
                    f"the Milvus collection {self.collection} holds {stored}-d vectors, not {dim}-d",
                    "run `hearth kb reindex NAME` to re-embed",
                )
            self._c.load_collection(self.collection)
        else:
            self._create()

    def _create(self) -> None:
        from pymilvus import DataType, Function, FunctionType

        s = self._c.create_schema(auto_id=False, enable_dynamic_field=False)
        s.add_field("id", DataType.VARCHAR, is_primary=True, max_length=256)
        s.add_field("doc_id", DataType.VARCHAR, max_length=64)
        s.add_field("source", DataType.VARCHAR, max_length=4096)
        s.add_field("title", DataType.VARCHAR, max_length=1024)
        s.add_field("headings", DataType.VARCHAR, max_length=4096)
        s.add_field("page", DataType.INT32)
        s.add_field("chunk_index", DataType.INT32)
        s.add_field("text", DataType.VARCHAR, max_length=MAX_VARCHAR)
        analyzer = {"tokenizer": "standard"}  # tokens arrive pre-segmented, lower-cased and stemmed
        s.add_field("tokens", DataType.VARCHAR, max_length=MAX_VARCHAR, enable_analyzer=True, analyzer_params=analyzer)
        s.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        s.add_field("tags", DataType.VARCHAR, max_length=1024)
        s.add_field("date", DataType.INT32)
        s.add_field("content_hash", DataType.VARCHAR, max_length=128)
        s.add_field("embedder", DataType.VARCHAR, max_length=256)
        s.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        s.add_function(
            Function(
                name="bm25",
                function_type=FunctionType.BM25,
                input_field_names=["tokens"],
                output_field_names=["sparse"],
            )
        )
        ix = self._c.prepare_index_params()
        # AUTOINDEX lets a cluster choose (HNSW/IVF); Lite maps it to what it supports.
        ix.add_index("vector", index_type="AUTOINDEX", metric_type="IP")
        ix.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
        ix.add_index("doc_id", index_type="INVERTED")
        self._c.create_collection(self.collection, schema=s, index_params=ix, consistency_level="Strong")

    # -- writes ---------------------------------------------------------------------------------

    def add(self, rows: Sequence[Row]) -> None:
        data = []
        for r in rows:
            d = {f: getattr(r, f) for f in (*HIT_FIELDS, "content_hash", "embedder")}
            d["text"] = _clip(r.text)
            d["tokens"] = _clip(r.tokens)
            d["vector"] = np.asarray(r.vector, np.float32).tolist()
            data.append(d)
        for i in range(0, len(data), 2000):
            self._c.insert(self.collection, data[i : i + 2000])

    def refresh(self) -> None:
        pass  # every call reads the current data

    def delete_docs(self, doc_ids: Sequence[str]) -> None:
        ids = [safe_literal(d) for d in doc_ids]
        for i in range(0, len(ids), 500):
            inside = ", ".join(f'"{d}"' for d in ids[i : i + 500])
            self._c.delete(self.collection, filter=f"doc_id in [{inside}]")

    def optimize(self) -> None:
        self._c.flush(self.collection)  # seal growing segments so indexes cover them

    def drop(self) -> None:
        self._c.drop_collection(self.collection)

    def close(self) -> None:
        pass  # the client is shared per process (see _client)

    # -- reads ----------------------------------------------------------------------------------

    def search_dense(
        self, vector: np.ndarray, k: int, where: Filter | None = None, *, light: bool = False
    ) -> list[Hit]:
        v = np.asarray(vector, np.float32)
        v = v / max(float(np.linalg.norm(v)), 1e-12)  # inner product = cosine only for unit vectors
        res = self._c.search(
            self.collection,
            [v.tolist()],
            anns_field="vector",
            limit=k,
            filter=_where(where),
            output_fields=list(HIT_FIELDS),
            search_params={"metric_type": "IP"},
        )
        return [_hit(r, float(r["distance"])) for r in res[0]]

    def search_text(self, tokens: str, k: int, where: Filter | None = None, *, light: bool = False) -> list[Hit]:
        if not tokens.strip():
            return []
        res = self._c.search(
            self.collection,
            [tokens],
            anns_field="sparse",
            limit=k,
            filter=_where(where),
            output_fields=list(HIT_FIELDS),
            search_params={"metric_type": "BM25"},
        )
        # Milvus Lite reports BM25 as a negative distance; the magnitude is the BM25 score.
        return [_hit(r, abs(float(r["distance"]))) for r in res[0]]

    def doc_chunk_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        it = self._c.query_iterator(
            self.collection, batch_size=4096, filter="chunk_index >= 0", output_fields=["doc_id"]
        )
        while True:
            batch = it.next()
            if not batch:
                it.close()
                break
            for r in batch:
                counts[r["doc_id"]] = counts.get(r["doc_id"], 0) + 1
        return counts

    def count(self) -> int:
        res = self._c.query(self.collection, filter="", output_fields=["count(*)"])
        return int(res[0]["count(*)"])

    def fill(self, hits: Sequence[Hit]) -> list[Hit]:
        return list(hits)  # Milvus returns the output fields with the ids in one call; light searches are full already


def _hit(r: dict, score: float) -> Hit:
    e = r["entity"]
    return Hit(**{f: e.get(f, r.get("id") if f == "id" else None) for f in HIT_FIELDS}, score=score)


def _where(f: Filter | None) -> str:
    if f is None or f.empty():
        return ""
    parts = []
    if f.source:
        parts.append(f'source like "{safe_literal(f.like_source() or "")}"')
    if f.tag:
        parts.append(f'tags like "%,{safe_literal(f.tag)},%"')
    if f.date_from:
        parts.append(f"date >= {int(f.date_from)}")
    if f.date_to:
        parts.append(f"date <= {int(f.date_to)}")
    if f.doc_ids:
        parts.append("doc_id in [" + ", ".join(f'"{safe_literal(d)}"' for d in f.doc_ids) + "]")
    return " and ".join(parts)
