"""`hearth serve` on the llama.cpp engine (the default for the bundled GGUF), through the openai SDK:
streaming, concurrent requests decoded together, tools and JSON schemas, a disconnect freeing its
slot, 429 with Retry-After, an engine crash restarted (and shown in /metrics), /health saying which
engine serves the model and why."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from hearth.config import EngineSettings
from hearth.models import engine

pytestmark = pytest.mark.skipif(
    engine.find_binary(EngineSettings()) is None,
    reason="llama-server is not built: `make setup` builds it (needs cmake and a C++ compiler)",
)

ASK = [{"role": "user", "content": "Name a colour."}]
LONG = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]


@pytest.fixture(scope="module")
def server(serve_home: Path, server_cls: Any) -> Iterator[Any]:
    from hearth import config
    from hearth.serve.app import create_app

    settings = config.settings()
    settings.generation.temperature = 0.0
    with server_cls(create_app(settings, ui=False, mcp=False)) as s:
        yield s


@pytest.fixture(scope="module")
def client(server: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="not-needed", max_retries=0)


def test_health_says_which_engine_and_why(server: Any, client: openai.OpenAI) -> None:
    client.chat.completions.create(model="smollm2", messages=ASK, max_tokens=2)
    info = httpx.get(server.url + "/health").json()["engine"]
    assert info["engine"] == "llamacpp" and "GGUF" in info["why"]
    procs = [p for p in info["processes"] if p["model"] == "smollm2"]
    assert procs and procs[0]["pid"] and procs[0]["slots"] >= 1


def test_streaming_with_usage_equals_the_whole_answer(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model="smollm2", messages=ASK, max_tokens=8)
    chunks = list(
        client.chat.completions.create(
            model="smollm2", messages=ASK, max_tokens=8, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens > 0


def test_concurrent_streams_are_decoded_together(client: openai.OpenAI) -> None:
    """Each of four streams has its first token before any of them ends: they share the engine's
    slots instead of waiting for each other (the torch lane would run them one after another)."""
    spans: list[tuple[float, float]] = []

    def one(i: int) -> None:
        stream = client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": f"Tell me about the number {i}."}],
            max_tokens=40,
            stream=True,
        )
        first = None
        for chunk in stream:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.monotonic()
        spans.append((first or time.monotonic(), time.monotonic()))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(spans) == 4
    assert max(first for first, _ in spans) < min(end for _, end in spans)


def test_forced_tool_call_and_json_schema_over_http(client: openai.OpenAI) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "get_forecast",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1, "maximum": 7}},
                "required": ["city", "days"],
            },
        },
    }
    r = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Weather in Oslo for 3 days?"}],
        tools=[tool],
        tool_choice={"type": "function", "function": {"name": "get_forecast"}},
        temperature=0.9,
    )
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls" and call.function.name == "get_forecast"
    jsonschema.validate(json.loads(call.function.arguments), tool["function"]["parameters"])

    schema = {"type": "object", "properties": {"colour": {"type": "string"}}, "required": ["colour"]}
    r = client.chat.completions.create(
        model="smollm2",
        messages=ASK,
        max_tokens=40,
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
    )
    jsonschema.validate(json.loads(r.choices[0].message.content), schema)


def test_disconnect_frees_the_slot(server: Any, client: openai.OpenAI) -> None:
    before = _metric(server, "hearth_requests_cancelled_total")
    body = {"model": "smollm2", "messages": LONG, "max_tokens": 2000, "stream": True}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=60) as r:
        lines = r.iter_lines()
        got = [next(lines) for _ in range(6)]
        assert any(line.startswith("data: ") for line in got)
    # the engine's slot is idle again long before 2000 tokens could have been written
    eng = next(e for e in engine.running() if e.spec.name == "smollm2")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (_processing(eng) or eng.busy):
        time.sleep(0.05)
    assert not _processing(eng) and eng.busy == 0
    assert _metric(server, "hearth_requests_cancelled_total") == before + 1
    assert client.chat.completions.create(model="smollm2", messages=ASK, max_tokens=2).choices[0].message.content


def test_engine_crash_restarts_and_metrics_say_so(server: Any, client: openai.OpenAI) -> None:
    eng = next(e for e in engine.running() if e.spec.name == "smollm2")
    before = eng.restarts
    os.kill(eng.pid, signal.SIGKILL)
    r = client.chat.completions.create(model="smollm2", messages=ASK, max_tokens=3)
    assert r.choices[0].message.content
    assert eng.restarts == before + 1
    assert _metric(server, 'hearth_engine_restarts_total{model="smollm2"}') >= 1
    text = httpx.get(server.url + "/metrics").text
    for name in ("hearth_time_to_first_token_seconds_bucket", "hearth_engine_slots_busy", "hearth_engine_slots"):
        assert name in text


def test_a_full_queue_answers_429_with_retry_after(serve_home: Path, server_cls: Any) -> None:
    from hearth import config
    from hearth.serve.app import create_app

    with server_cls(create_app(config.settings(), ui=False, mcp=False, max_pending=2)) as s:
        body = {"model": "smollm2", "messages": LONG, "max_tokens": 400, "stream": True}
        started = threading.Barrier(3)
        refused = threading.Event()
        statuses: list[int] = []

        def hold() -> None:
            with httpx.stream("POST", s.url + "/v1/chat/completions", json=body, timeout=120) as r:
                statuses.append(r.status_code)
                lines = r.iter_lines()
                next(lines)
                started.wait()
                refused.wait(60)  # then hang up: the slots are freed for the next test

        holders = [threading.Thread(target=hold) for _ in range(2)]
        for t in holders:
            t.start()
        started.wait(60)
        r = httpx.post(s.url + "/v1/chat/completions", json={**body, "stream": False}, timeout=60)
        refused.set()
        for t in holders:
            t.join(60)
    assert statuses == [200, 200]
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1


def _processing(eng: Any) -> bool:
    return any(slot.get("is_processing") for slot in httpx.get(eng.url + "/slots").json())


def _metric(server: Any, name: str) -> float:
    for line in httpx.get(server.url + "/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} missing from /metrics")
