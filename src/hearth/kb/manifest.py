"""The manifest of a collection: which documents it holds (doc id, source, content hash, embedder, chunks).

Kept as a snapshot (``manifest.json``, replaced atomically) plus an append-only journal
(``manifest.journal``, one JSON line per change, fsynced): an ingest of 10,000 files appends 10,000
short lines instead of rewriting the whole file each time, and a kill -9 loses at most a torn last
line. ``compact()`` folds the journal into a new snapshot at the end of every job.
The store, not the manifest, is the truth: ``collection.recover()`` checks one against the other.

Updating a document is journaled in two steps around the store's swap of its chunks: ``begin_swap``
(the new entry, pending) before it, ``put`` after it. A writer killed between them leaves the entry
pending, and ``recover()`` keeps whichever version the store ended up holding.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class DocEntry:
    doc_id: str
    source: str
    content_hash: str
    embedder: str
    n_chunks: int
    title: str = ""
    size: int = 0
    added: str = ""  # ISO timestamp of the ingest
    tags: list[str] = field(default_factory=list)
    date: int = 0  # yyyymmdd: the file's modification date


class Manifest:
    def __init__(self, directory: Path) -> None:
        self.snapshot = directory / "manifest.json"
        self.journal = directory / "manifest.journal"
        self.docs: dict[str, DocEntry] = {}
        self.pending: dict[str, DocEntry] = {}  # new versions whose swap in the store may or may not have committed
        self._load()

    def _load(self) -> None:
        if self.snapshot.exists():
            data = json.loads(self.snapshot.read_text(encoding="utf-8"))
            self.docs = {d["doc_id"]: DocEntry(**d) for d in data.get("docs", [])}
            self.pending = {d["doc_id"]: DocEntry(**d) for d in data.get("pending", [])}
        if self.journal.exists():
            for line in self.journal.read_text(encoding="utf-8").splitlines():
                try:
                    op = json.loads(line)
                except json.JSONDecodeError:
                    break  # a torn last line from a killed writer: everything before it stands
                if op["op"] == "put":
                    self.docs[op["doc"]["doc_id"]] = DocEntry(**op["doc"])
                    self.pending.pop(op["doc"]["doc_id"], None)
                elif op["op"] == "del":
                    self.docs.pop(op["doc_id"], None)
                    self.pending.pop(op["doc_id"], None)
                elif op["op"] == "swap":
                    self.pending[op["doc"]["doc_id"]] = DocEntry(**op["doc"])

    def by_source(self) -> dict[str, DocEntry]:
        return {d.source: d for d in self.docs.values()}

    def put(self, entries: list[DocEntry]) -> None:
        for e in entries:
            self.docs[e.doc_id] = e
            self.pending.pop(e.doc_id, None)
        self._append([{"op": "put", "doc": asdict(e)} for e in entries])

    def begin_swap(self, entry: DocEntry) -> None:
        """Journal the new version of a document before the store swaps its chunks (``put`` confirms it)."""
        self.pending[entry.doc_id] = entry
        self._append([{"op": "swap", "doc": asdict(entry)}])

    def delete(self, doc_ids: list[str]) -> None:
        for d in doc_ids:
            self.docs.pop(d, None)
            self.pending.pop(d, None)
        self._append([{"op": "del", "doc_id": d} for d in doc_ids])

    def _append(self, ops: list[dict]) -> None:
        if not ops:
            return
        with open(self.journal, "a", encoding="utf-8") as f:
            f.write("".join(json.dumps(op, ensure_ascii=False) + "\n" for op in ops))
            f.flush()
            os.fsync(f.fileno())

    def compact(self) -> None:
        """Write the snapshot atomically (temp file + fsync + rename), then drop the journal."""
        write_json_atomic(
            self.snapshot,
            {
                "version": 1,
                "docs": [asdict(d) for d in self.docs.values()],
                "pending": [asdict(d) for d in self.pending.values()],
            },
        )
        self.journal.unlink(missing_ok=True)


def write_json_atomic(path: Path, data: object) -> None:
    """Temp file (a unique name: two writers never share one) + fsync + rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with open(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
