"""remove, compact, reindex and drop in another process while an ingest runs on the same collection.

The ingest runs here; at its first store commit (holding the collection's write lock) it starts a real
child process that runs the other operation and gives it 1.5 s, which unlocked would be enough to
finish. The lock makes the child wait for the whole ingest: afterwards nothing either of them wrote is lost and the
manifest agrees with the store. The last test races the other way: an ingest waiting on a drop.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hearth.config import KBSettings, Settings
from hearth.errors import NotFound
from hearth.kb import collection as kc
from hearth.kb import ingest
from hearth.kb.ingest import doc_id_for, source_of

S = Settings(kb=KBSettings(embed_threads=1))

CHILD = """
import sys, time
from hearth.config import KBSettings, Settings
from hearth.kb import collection as kc, ingest, store_lancedb  # imported before "ready": the op is all that is left
name, op = sys.argv[1:3]
print("ready", flush=True)
if op == "remove":
    print(kc.remove(name, sys.argv[3]).doc_id, flush=True)
elif op == "compact":
    kc.compact(name)
elif op == "reindex":
    rep = kc.reindex(name, settings=Settings(kb=KBSettings(embed_threads=1)))
    print(len(rep.added), len(rep.failed), flush=True)
elif op == "drop":
    kc.drop(name)
elif op == "slow-drop":  # holds the lock for a second before it drops, so an ingest can queue behind it
    from hearth.kb.store_lancedb import LanceStore
    original = LanceStore.drop
    def drop(self):
        print("dropping", flush=True)
        time.sleep(1.0)
        original(self)
    LanceStore.drop = drop
    kc.drop(name)
print("finished", time.time(), flush=True)
"""


def _notes(folder: Path, tag: str, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        f = folder / f"{tag}{i:02d}.md"
        f.write_text(f"# {tag} {i}\n\nNote {tag} {i}: procedure {tag}-{i} in plain words.\n", encoding="utf-8")
        files.append(f)
    return files


def _child(home: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, HEARTH_HOME=str(home))
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _ingest_racing(home: Path, name: str, files: list[Path], *child_args: str) -> tuple[list[str], float]:
    """Ingest ``files`` here; at the first commit start the child and let it queue on the lock.

    Returns the child's output after "ready" and the time the ingest returned (it held the lock until then)."""
    started: list[subprocess.Popen] = []

    def on_event(e: ingest.IngestEvent) -> None:
        if e.kind == "commit" and not started:
            child = _child(home, name, *child_args)
            started.append(child)
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
            # the child is at the lock, which this ingest holds: unlocked, it would be done by now
            with pytest.raises(subprocess.TimeoutExpired):
                child.wait(timeout=1.5)

    rep = ingest.add(name, files, on_event=on_event, settings=S)
    ingest_done = time.time()
    assert started, "the ingest finished without a commit to race at"
    assert rep.added == [source_of(f) for f in files] and not rep.failed
    out, err = started[0].communicate(timeout=120)
    assert started[0].returncode == 0, err
    lines = out.splitlines()
    finished = float(lines[-1].split()[1])
    assert finished > ingest_done  # the child waited for the whole ingest
    return lines, finished


def _consistent(name: str) -> dict[str, int]:
    coll = kc.open_collection(name)
    counts = coll.store.doc_chunk_counts()
    assert {d: e.n_chunks for d, e in coll.manifest.docs.items()} == counts
    assert coll.store.count() == sum(counts.values())
    assert not list(coll.dir.glob("*.tmp"))
    return counts


def _found(name: str, text: str) -> bool:
    kc.forget(name)  # search from a fresh open, as another process would
    hits = kc.search(name, text, k=3, mode="text", settings=S, threshold=0).results
    return any(text in h.text for h in hits)


@pytest.fixture
def racing(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[Path], list[Path]]:
    """A collection holding two notes ('old'), and six more ('new') to ingest in small commits."""
    monkeypatch.setattr(ingest, "FLUSH_CHUNKS", 2)
    kc.create("shared", settings=S)
    old = _notes(tmp_path / "old", "old", 2)
    kc.add("shared", old, settings=S)
    return old, _notes(tmp_path / "new", "new", 6)


def test_remove_in_another_process_waits_for_the_ingest(home: Path, racing: tuple[list[Path], list[Path]]) -> None:
    old, new = racing
    lines, _ = _ingest_racing(home, "shared", new, "remove", "old01.md")
    assert lines[0] == doc_id_for(source_of(old[1]))
    counts = _consistent("shared")
    assert set(counts) == {doc_id_for(source_of(f)) for f in [old[0], *new]}
    assert _found("shared", "procedure new-5") and _found("shared", "procedure old-0")
    assert not _found("shared", "procedure old-1")


def test_compact_in_another_process_waits_for_the_ingest(home: Path, racing: tuple[list[Path], list[Path]]) -> None:
    old, new = racing
    _ingest_racing(home, "shared", new, "compact")
    counts = _consistent("shared")
    assert set(counts) == {doc_id_for(source_of(f)) for f in old + new}
    assert not (kc.collection_dir("shared") / "manifest.journal").exists()
    assert kc.stats("shared", settings=S).fragments == 1
    assert _found("shared", "procedure new-5") and _found("shared", "procedure old-1")


def test_reindex_in_another_process_waits_for_the_ingest(home: Path, racing: tuple[list[Path], list[Path]]) -> None:
    old, new = racing
    lines, _ = _ingest_racing(home, "shared", new, "reindex")
    assert lines[0] == "8 0"  # it re-embedded what the ingest had added as well
    counts = _consistent("shared")
    assert set(counts) == {doc_id_for(source_of(f)) for f in old + new}
    assert _found("shared", "procedure new-5") and _found("shared", "procedure old-1")


def test_drop_in_another_process_waits_for_the_ingest(home: Path, racing: tuple[list[Path], list[Path]]) -> None:
    _ingest_racing(home, "shared", racing[1], "drop")
    assert not kc.collection_dir("shared").exists() and kc.list_collections() == []
    with pytest.raises(NotFound):
        kc.search("shared", "procedure new-5", settings=S)


def test_ingest_waiting_on_a_drop_fails_cleanly(home: Path, racing: tuple[list[Path], list[Path]]) -> None:
    child = _child(home, "shared", "slow-drop")
    assert child.stdout is not None
    assert [child.stdout.readline().strip() for _ in range(2)] == ["ready", "dropping"]  # it holds the lock
    with pytest.raises(NotFound):
        kc.add("shared", racing[1], settings=S)
    assert child.wait(timeout=60) == 0
    assert not kc.collection_dir("shared").exists()  # the queued ingest recreated nothing
    assert kc.list_collections() == []
