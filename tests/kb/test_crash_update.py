"""kill -9 in the middle of UPDATING a document (re-adding a changed file) never loses the old version.

A real child process runs ``kc.add`` on a changed file and kills itself with SIGKILL at one point of the
update: before the store swaps the document's chunks, right after the swap commits (the manifest still
names the old version), and after the manifest has the new entry (nothing compacted or announced).
Reopened afterwards, the collection holds exactly one version of the document, whole; an ``add`` of an
unrelated file keeps it; an ``add`` of the file itself brings manifest and store back in step.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hearth.config import KBSettings, Settings
from hearth.kb import collection as kc
from hearth.kb.ingest import doc_id_for, source_of

S = Settings(kb=KBSettings(embed_threads=1))

# The child patches the store and the manifest so that it kills itself at one point of the update.
CHILD = """
import os, signal, sys
from hearth.config import KBSettings, Settings
from hearth.kb import collection as kc
from hearth.kb.manifest import Manifest
from hearth.kb.store_faiss import FaissStore
from hearth.kb.store_lancedb import LanceStore

name, path, point = sys.argv[1:4]
swapped = []

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def wrap_replace(cls):
    original = cls.replace_doc
    def replace_doc(self, doc_id, rows):
        if point == "before_swap":
            die()
        original(self, doc_id, rows)
        swapped.append(doc_id)
        if point == "after_swap":
            die()
    cls.replace_doc = replace_doc

wrap_replace(LanceStore)
wrap_replace(FaissStore)
original_put = Manifest.put
def put(self, entries):
    original_put(self, entries)
    if point == "after_put" and swapped and any(e.doc_id in swapped for e in entries):
        die()
Manifest.put = put
kc.add(name, [path], settings=Settings(kb=KBSettings(embed_threads=1)))
print("finished without being killed", flush=True)
"""

OLD = "# Falcon\n\n" + "\n\n".join(f"## Part {j}\n\nThe falcon roost {j} is cleaned on Mondays." for j in range(4))
NEW = "# Falcon\n\n" + "\n\n".join(f"## Part {j}\n\nThe heron pond {j} is drained on Fridays." for j in range(2))


def _texts(name: str, doc_id: str) -> list[str]:
    """Every chunk text of one document, read from a fresh open of the store (as a new process would)."""
    kc.forget(name)
    hits = kc.search(name, "falcon roost heron pond", k=50, mode="text", settings=S, threshold=0).results
    return sorted(h.text for h in hits if h.doc_id == doc_id)


def _one_version(name: str, doc_id: str) -> str:
    """'old' or 'new': the version the store holds, asserting it is whole and not mixed or doubled."""
    counts = kc.open_collection(name).store.doc_chunk_counts()
    texts = _texts(name, doc_id)
    if any("falcon" in t for t in texts):
        assert counts[doc_id] == 4 and len(texts) == 4 and not any("heron" in t for t in texts), texts
        return "old"
    assert counts.get(doc_id) == 2 and len(texts) == 2 and all("heron" in t for t in texts), (counts, texts)
    return "new"


def _consistent(name: str) -> None:
    coll = kc.open_collection(name)
    counts = coll.store.doc_chunk_counts()
    assert {d: e.n_chunks for d, e in coll.manifest.docs.items()} == counts
    assert not coll.manifest.pending


@pytest.mark.parametrize(
    ("engine", "point", "survivor"),
    [
        ("lancedb", "before_swap", "old"),
        ("lancedb", "after_swap", "new"),
        ("lancedb", "after_put", "new"),
        ("faiss", "after_swap", "new"),
    ],
)
def test_kill_9_mid_update_keeps_one_whole_version(
    home: Path, tmp_path: Path, engine: str, point: str, survivor: str
) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    note, other = folder / "falcon.md", folder / "parking.md"
    note.write_text(OLD, encoding="utf-8")
    other.write_text("# Parking\n\nVisitors park on level two of the garage.\n", encoding="utf-8")
    kc.create("upd", store=engine, settings=S)
    kc.add("upd", [note], settings=S)
    doc_id = doc_id_for(source_of(note))
    assert _one_version("upd", doc_id) == "old"

    note.write_text(NEW, encoding="utf-8")
    env = dict(os.environ, HEARTH_HOME=str(home))
    child = subprocess.run(
        [sys.executable, "-c", CHILD, "upd", str(note), point], env=env, capture_output=True, text=True, timeout=120
    )
    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr

    # reopened: one version, whole (never neither, never both)
    assert _one_version("upd", doc_id) == survivor
    # an ingest of another file repairs the manifest and keeps that version searchable
    rep = kc.add("upd", [other], settings=S)
    assert rep.added == [source_of(other)] and not rep.failed
    assert _one_version("upd", doc_id) == survivor
    _consistent("upd")
    # re-adding the changed file ends on the new version, in step with the manifest
    kc.add("upd", [note], settings=S)
    assert _one_version("upd", doc_id) == "new"
    _consistent("upd")
    entry = kc.open_collection("upd").manifest.docs[doc_id]
    assert entry.content_hash == hashlib.sha256(NEW.encode("utf-8")).hexdigest()
    again = kc.add("upd", [note, other], settings=S)
    assert again.chunks_added == 0 and len(again.unchanged) == 2
