"""Two processes ingesting into one collection at once: the per-collection file lock serialises them,
and the collection ends with every document of both, each exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hearth.config import Settings
from hearth.kb import collection as kc
from hearth.kb.manifest import Manifest

S = Settings()

INGEST = """
import sys
from hearth.config import Settings
from hearth.kb import collection as kc, ingest
ingest.FLUSH_CHUNKS = 4  # many small commits, so two unlocked writers would interleave
rep = kc.add(sys.argv[1], [sys.argv[2]], settings=Settings())
print(len(rep.added), len(rep.failed), rep.chunks_added)
"""


def _folder(root: Path, tag: str, n: int) -> Path:
    root.mkdir()
    for i in range(n):
        body = "\n\n".join(
            f"## Part {j}\n\nNote {tag}{i} part {j}: procedure {tag}-{i}-{j} in plain words." for j in range(2)
        )
        (root / f"{tag}{i:02d}.md").write_text(f"# {tag} {i}\n\n{body}\n", encoding="utf-8")
    return root


@pytest.mark.slow
def test_two_processes_ingest_into_one_collection(home: Path, tmp_path: Path) -> None:
    kc.create("shared", settings=S)
    a, b = _folder(tmp_path / "a", "alpha", 15), _folder(tmp_path / "b", "beta", 15)
    env = dict(os.environ, HEARTH_HOME=str(home))
    procs = [
        subprocess.Popen([sys.executable, "-c", INGEST, "shared", str(d)], stdout=subprocess.PIPE, text=True, env=env)
        for d in (a, b)
    ]
    outs = [p.communicate(timeout=600)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert [o[:2] for o in outs] == [["15", "0"], ["15", "0"]]
    coll = kc.open_collection("shared")
    counts = coll.store.doc_chunk_counts()
    manifest = Manifest(coll.dir)
    assert len(manifest.docs) == 30 and {d: e.n_chunks for d, e in manifest.docs.items()} == counts
    assert coll.store.count() == sum(int(o[2]) for o in outs) == sum(counts.values())
    assert not list(coll.dir.glob("*.tmp"))  # no temporary file left behind
    # both writers' documents are searchable, and a third ingest finds nothing to do
    assert kc.search("shared", "procedure beta-3-1", settings=S, threshold=0).results
    assert kc.add("shared", [a, b], settings=S).chunks_added == 0
