"""Ingest as a job: files → parse → chunk → embed → store, incremental, idempotent and resumable.

Per file: hash the bytes; an unchanged file (same hash, same embedder) is skipped; a changed one has
its chunks swapped for the new version's in one store commit (journaled as pending before, confirmed
after), so a kill -9 or a cancel mid-update leaves the old version or the new one, whole, never
neither (LanceDB and FAISS; Chroma and Milvus have no such commit: they delete, then add). Chunks of
several new files are written to the store in one commit, and only after that commit are their
manifest entries journaled, so after a kill -9 the store holds whole documents only and
``Collection.recover()`` drops any document the manifest does not vouch for. ``sync=True`` also
removes documents whose files are gone from the given folders.
Progress goes to ``on_event`` (the CLI draws a rich bar; the HTTP API streams the same events).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import os
import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hearth.config import Settings
from hearth.errors import DataError, KBError
from hearth.kb import calibrate
from hearth.kb.chunk import chunk_document
from hearth.kb.fulltext import tokenize
from hearth.kb.manifest import DocEntry
from hearth.kb.parse import SUFFIXES, parse_file
from hearth.kb.store import Row

FLUSH_CHUNKS = 512  # chunks buffered before one store commit (fewer, larger LanceDB fragments)
FLUSH_SECONDS = 2.0  # ...or this long, so a slow ingest still commits steadily
COMPACT_EVERY = 64  # commits between compactions of the store during one long ingest


@dataclass
class IngestEvent:
    """One progress step. kinds: start, file (done), skip, fail, remove, commit, done."""

    kind: str
    path: str = ""
    message: str = ""
    files_done: int = 0
    files_total: int = 0
    chunks_done: int = 0
    elapsed: float = 0.0

    @property
    def files_per_s(self) -> float:
        return self.files_done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def chunks_per_s(self) -> float:
        return self.chunks_done / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    repaired: list[str] = field(default_factory=list)  # doc ids dropped by recovery from an earlier crash
    chunks_added: int = 0
    seconds: float = 0.0

    @property
    def chunks_per_s(self) -> float:
        return self.chunks_added / self.seconds if self.seconds > 0 else 0.0


def doc_id_for(source: str) -> str:
    return hashlib.sha1(source.encode("utf-8")).hexdigest()[:16]


def source_of(path: Path) -> str:
    """The stable name of a file: its absolute path, Unicode-normalised (NFC) so NFD names from macOS match."""
    return unicodedata.normalize("NFC", str(path.expanduser().resolve()))


def collect_files(
    paths: Sequence[str | Path], include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files under ``paths`` (folders recursively) with a supported suffix, filtered by globs.

    Globs match the path relative to the folder given (``docs/*.md``, ``**/drafts/**``) or the file name.
    Inside a folder, symbolic links are followed only to files inside that folder: a link to
    ``/etc/passwd`` or a link loop is reported as failed and its target is never read. Linked
    folders are not entered. Returns (files, failed as (path, reason)).
    """
    files: list[Path] = []
    failed: list[tuple[str, str]] = []
    for p in map(Path, paths):
        p = p.expanduser()
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            root = p.resolve()
            for f in sorted(_walk(p)):
                if f.suffix.lower() not in SUFFIXES:
                    continue
                rel = f.relative_to(p).as_posix()
                if include and not _matches(rel, f.name, include):
                    continue
                if exclude and _matches(rel, f.name, exclude):
                    continue
                if f.is_symlink():
                    try:
                        target = f.resolve(strict=True)
                    except (OSError, RuntimeError):
                        failed.append((str(f), "a symbolic link that loops or points nowhere"))
                        continue
                    if not target.is_relative_to(root):
                        failed.append((str(f), f"a symbolic link to a file outside {p} (not read)"))
                        continue
                    if not target.is_file():
                        continue
                elif not f.is_file():
                    continue
                files.append(f)
        else:
            failed.append((str(p), "no such file or folder"))
    seen: set[str] = set()
    unique = []
    for f in files:
        key = source_of(f)
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique, failed


def _walk(folder: Path) -> Iterable[Path]:
    """Every entry under ``folder`` that is not a directory, without entering linked directories."""
    for dirpath, _dirs, names in os.walk(folder, followlinks=False):
        for name in names:
            yield Path(dirpath) / name


def _matches(rel: str, name: str, globs: Iterable[str]) -> bool:
    return any(
        fnmatch.fnmatch(rel, g) or fnmatch.fnmatch(name, g) or (g.startswith("**/") and fnmatch.fnmatch(rel, g[3:]))
        for g in globs
    )


def add(
    name: str,
    paths: Sequence[str | Path],
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    sync: bool = False,
    tags: Sequence[str] = (),
    on_event: Callable[[IngestEvent], None] | None = None,
    settings: Settings,
) -> IngestReport:
    """Add files and folders to collection ``name``; see the module docstring for the guarantees.

    One writer at a time per collection (a file lock shared by processes): a second ``add`` waits."""
    from hearth.kb.collection import write_lock

    with write_lock(name):
        return _add_locked(name, paths, include, exclude, sync, tags, on_event, settings)


def _add_locked(
    name: str,
    paths: Sequence[str | Path],
    include: Sequence[str],
    exclude: Sequence[str],
    sync: bool,
    tags: Sequence[str],
    on_event: Callable[[IngestEvent], None] | None,
    settings: Settings,
) -> IngestReport:
    from hearth.kb.collection import bump_generation, for_writing

    cfg = settings.kb
    coll = for_writing(name, settings)
    emb = coll.embedder
    report = IngestReport()
    start = time.perf_counter()
    emit = on_event or (lambda e: None)

    report.repaired = coll.recover()
    files, missing = collect_files(paths, include, exclude)
    report.failed.extend(missing)
    total = len(files)
    emit(IngestEvent("start", files_total=total, message=f"{total} files"))

    max_bytes = int(cfg.max_file_mb * 1024 * 1024)
    pending_rows: list[Row] = []
    pending_entries: list[DocEntry] = []
    last_flush = time.perf_counter()
    done = 0
    chunks_done = 0

    def event(kind: str, path: str = "", message: str = "") -> IngestEvent:
        return IngestEvent(kind, path, message, done, total, chunks_done, time.perf_counter() - start)

    def flush() -> None:
        nonlocal pending_rows, pending_entries, last_flush
        if pending_rows:
            coll.store.add(pending_rows)  # one commit for the whole buffer
        if pending_entries:
            coll.manifest.put(pending_entries)  # journaled only after the store holds the chunks
        if pending_rows or pending_entries:
            bump_generation(coll)
        pending_rows, pending_entries = [], []
        last_flush = time.perf_counter()

    seen_sources: set[str] = set()
    flushes = 0
    try:
        for path in files:
            source = source_of(path)
            seen_sources.add(source)
            doc_id = doc_id_for(source)
            try:
                size = path.stat().st_size
                if size > max_bytes:
                    raise DataError(
                        f"{path.name} is {size / 1e6:.0f} MB, over the {cfg.max_file_mb:g} MB limit",
                        "raise kb.max_file_mb in hearth.yaml, or split the file",
                    )
                data = path.read_bytes()
                digest = hashlib.sha256(data).hexdigest()
                old = coll.manifest.docs.get(doc_id)
                if old is not None and old.content_hash == digest and old.embedder == emb.id:
                    raise _Unchanged
                doc = parse_file(path, data)
                chunks = chunk_document(doc, emb.count_tokens, coll.meta.chunk_tokens, coll.meta.chunk_overlap)
                if not chunks:
                    raise DataError(f"{path.name}: no text to index", "the file holds no readable text")
                # headings travel with the text into the vector and the full-text index: a passage is
                # found by the section it belongs to as well as by its own words
                embed_texts = [_with_headings(c.text, c.headings) for c in chunks]
                vectors = emb.embed(embed_texts, kind="passage")
                if not np.isfinite(vectors).all():
                    raise KBError(
                        f"{path.name}: the embedder returned invalid numbers", "check the embedder (kb.embedder)"
                    )
            except _Unchanged:
                report.unchanged.append(source)
                done += 1
                emit(event("skip", source, "unchanged"))  # outside the catch-all below: a cancel stops the job
                continue
            except Exception as exc:  # one bad file never stops the ingest: it is reported with its reason
                if isinstance(exc, DataError | KBError):
                    reason = exc.message
                else:
                    reason = f"cannot read it ({type(exc).__name__}: {str(exc)[:200]})"
                report.failed.append((source, reason))
                done += 1
                emit(event("fail", source, reason))
                continue

            mtime = dt.date.fromtimestamp(path.stat().st_mtime)
            tag_str = "," + ",".join(tags) + "," if tags else ""
            doc_rows = [
                Row(
                    id=f"{doc_id}:{c.index}",
                    doc_id=doc_id,
                    source=source,
                    title=doc.title,
                    headings=" > ".join(c.headings),
                    page=c.page or 0,
                    chunk_index=c.index,
                    text=c.text,
                    tokens=tokenize(doc.title + " " + t),
                    tags=tag_str,
                    date=mtime.year * 10000 + mtime.month * 100 + mtime.day,
                    content_hash=digest,
                    embedder=emb.id,
                    vector=v,
                )
                for c, v, t in zip(chunks, vectors, embed_texts, strict=True)
            ]
            entry = DocEntry(
                doc_id=doc_id,
                source=source,
                content_hash=digest,
                embedder=emb.id,
                n_chunks=len(chunks),
                title=doc.title,
                size=size,
                added=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                tags=list(tags),
                date=mtime.year * 10000 + mtime.month * 100 + mtime.day,
            )
            if old is not None or doc_id in _pending_ids(pending_entries):
                flush()  # the old version's journal entry must not outlive its chunks
                coll.manifest.begin_swap(entry)  # recover() adopts it if the swap below commits
                replace = getattr(coll.store, "replace_doc", None)
                if replace is not None:
                    # one commit swaps the versions: a crash or cancel before it keeps the old one whole
                    replace(doc_id, doc_rows)
                else:  # engines without an atomic swap (Chroma, Milvus): delete, then add at once
                    coll.store.delete_docs([doc_id])
                    coll.store.add(doc_rows)
                coll.manifest.put([entry])
                bump_generation(coll)
                report.updated.append(source)
            else:
                pending_rows.extend(doc_rows)
                pending_entries.append(entry)
                report.added.append(source)
            done += 1
            chunks_done += len(chunks)
            report.chunks_added += len(chunks)
            emit(event("file", source, f"{len(chunks)} chunks"))
            if len(pending_rows) >= FLUSH_CHUNKS or time.perf_counter() - last_flush > FLUSH_SECONDS:
                flush()
                flushes += 1
                if flushes % COMPACT_EVERY == 0:
                    coll.store.optimize()  # a long ingest stays searchable at full speed while it runs
                emit(event("commit"))
        flush()

        if sync:
            roots = [source_of(Path(p)) for p in paths if Path(p).expanduser().is_dir()]
            gone = [
                d.doc_id
                for d in coll.manifest.docs.values()
                if d.source not in seen_sources and any(d.source.startswith(r.rstrip("/") + "/") for r in roots)
            ]
            if gone:
                removed_sources = [coll.manifest.docs[g].source for g in gone]
                coll.store.delete_docs(gone)
                coll.manifest.delete(gone)
                report.removed.extend(removed_sources)
                for s in removed_sources:
                    emit(event("remove", s, "file gone from the folder"))
    finally:
        coll.manifest.compact()
    coll.store.optimize()
    calibrate.measure(coll)  # the "not found" threshold follows what the collection now holds
    bump_generation(coll)
    report.seconds = time.perf_counter() - start
    emit(
        event("done", message=f"{len(report.added)} added, {len(report.updated)} updated, {len(report.failed)} failed")
    )
    return report


class _Unchanged(Exception):
    """The file's bytes and embedder match the stored version: nothing to do."""


def _pending_ids(entries: list[DocEntry]) -> set[str]:
    return {e.doc_id for e in entries}


def _with_headings(text: str, headings: tuple[str, ...]) -> str:
    return f"{' > '.join(headings)}\n{text}" if headings else text


def reindex(
    name: str,
    embedder: str | None = None,
    *,
    on_event: Callable[[IngestEvent], None] | None = None,
    settings: Settings,
) -> IngestReport:
    """Re-embed every document (e.g. with a new embedder) from its source file.

    The store is rebuilt from the files listed in the manifest; documents whose files are gone
    cannot be re-embedded, so reindex refuses to start until they are removed.
    """
    from hearth.kb import collection as kc
    from hearth.kb.embed import get_embedder
    from hearth.kb.manifest import write_json_atomic

    with kc.write_lock(name):
        coll = kc.for_writing(name)
        manifest = coll.manifest
        sources = [d.source for d in manifest.docs.values()]
        gone = [s for s in sources if not Path(s).is_file()]
        if gone:
            raise KBError(
                f"{len(gone)} source files of '{name}' no longer exist (e.g. {gone[0]})",
                f"remove them first with `hearth kb remove {name} DOC`, then reindex",
            )
        spec = embedder or coll.meta.embedder
        emb = get_embedder(spec, settings)
        kc.forget(name)
        coll.store.drop()
        coll.close()
        manifest.docs.clear()
        manifest.pending.clear()
        manifest.compact()
        meta = coll.meta
        meta.embedder, meta.embedder_id, meta.dim = spec, emb.id, emb.dim
        write_json_atomic(coll.dir / "collection.json", kc.asdict(meta))
        return _add_locked(name, sources, (), (), False, (), on_event, settings)
