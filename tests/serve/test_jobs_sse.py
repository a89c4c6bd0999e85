"""A job's events over HTTP (sse-starlette on a real uvicorn server): ids, pings on a quiet stream, and a
client that reconnects with Last-Event-ID goes on where it left off."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hearth.jobs import Event, Job


@pytest.fixture(scope="module")
def server(serve_home: Path, server_cls: Any) -> Iterator[Any]:
    from hearth.serve.app import create_app

    app = create_app(ui=False, mcp=False)
    with server_cls(app) as srv:
        srv.app = app
        yield srv


def read_sse(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """Parse a text/event-stream: yields {"id", "event", "data"} per event and {"ping": True} per comment."""
    fields: dict[str, Any] = {}
    for line in response.iter_lines():
        if line.startswith(":"):
            yield {"ping": True}
        elif not line:
            if fields:
                yield {**fields, "data": json.loads(fields["data"])}
                fields = {}
        else:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


def test_events_stream_with_pings_and_resume_after_last_event_id(server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from hearth.serve import hearth_api

    monkeypatch.setattr(hearth_api, "SSE_PING", 0.2)  # a quiet stream gets a ping every 0.2 s
    gate = threading.Event()

    def work(job: Job) -> str:
        for i in range(5):
            job.emit(Event(done=i + 1, total=10, message=f"step {i + 1}", data={"loss": 1.0 / (i + 1)}))
        gate.wait(60)  # quiet until the test lets it go on
        for i in range(5, 10):
            job.emit(Event(done=i + 1, total=10, message=f"step {i + 1}"))
        return "finished"

    job = server.app.state.jobs.start("test", "ten steps", work)
    url = f"{server.url}/api/jobs/{job.id}/events"
    seen: list[dict[str, Any]] = []
    pings = 0
    with httpx.Client(timeout=30) as client:
        with client.stream("GET", url) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            for item in read_sse(response):
                if "ping" in item:
                    pings += 1
                else:
                    seen.append(item)
                if len(seen) == 6 and pings >= 2:  # started + 5 steps, then quiet: pinged
                    break
        assert [int(e["id"]) for e in seen] == list(range(6))
        assert seen[0]["event"] == "started" and seen[3]["data"]["loss"] == pytest.approx(1 / 3)
        assert all(int(e["id"]) == e["data"]["seq"] for e in seen)

        gate.set()  # the job goes on while nobody listens; the client comes back after event 5
        with client.stream("GET", url, headers={"Last-Event-ID": "5"}) as response:
            rest = [item for item in read_sse(response) if "ping" not in item]
        assert [int(e["id"]) for e in rest] == list(range(6, 12))
        assert [e["data"]["done"] for e in rest[:-1]] == list(range(6, 11))
        assert rest[-1]["event"] == "done" and job.status == "done"  # the stream ended with the job

        bad = client.get(url, headers={"Last-Event-ID": "five"})
        assert bad.status_code == 400 and "Last-Event-ID" in bad.text
