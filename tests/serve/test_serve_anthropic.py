"""The Anthropic Messages API (``/v1/messages``) against a real server and the bundled model, through the
official ``anthropic`` SDK, unmodified: create, stream, stop sequences, tool use round trips, grounding,
errors. Greedy decoding, so an answer can be compared with the OpenAI face's answer to the same chat.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

pytestmark = pytest.mark.slow

ASK = [{"role": "user", "content": "Name a colour."}]
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"],
    },
}
FESTIVAL = (
    "# The Zorblax festival\n\nThe Zorblax festival is held every March in the town of Quillton. "
    "Visitors eat blue pancakes and watch the lantern parade on the river.\n"
)


@pytest.fixture(scope="module")
def server(serve_home: Path, server_cls: Any, smol: Any) -> Iterator[Any]:
    # smol: the bundled model converted and loaded before the clients start their timers
    from hearth import config
    from hearth.kb import collection, ingest
    from hearth.serve import keys
    from hearth.serve.app import create_app

    docs = serve_home / "docs"
    docs.mkdir()
    (docs / "zorblax.md").write_text(FESTIVAL, encoding="utf-8")
    settings = config.settings()
    settings.generation.temperature = 0.0
    settings.server.require_keys = True
    collection.create("festival", settings=settings)
    assert ingest.add("festival", [docs], settings=settings).failed == []
    with server_cls(create_app(settings, ui=False, mcp=False)) as s:
        s.key = keys.create_key("anthropic-tests")
        yield s


@pytest.fixture(scope="module")
def client(server: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key=server.key, max_retries=0)  # sends x-api-key


def test_create_matches_the_openai_face(client: anthropic.Anthropic, server: Any) -> None:
    msg = client.messages.create(model="smollm2", max_tokens=8, system="Answer in one sentence.", messages=ASK)
    assert msg.type == "message" and msg.role == "assistant" and msg.id.startswith("msg_")
    assert msg.model == "smollm2" and [b.type for b in msg.content] == ["text"]
    assert msg.stop_reason in ("end_turn", "max_tokens") and msg.stop_sequence is None
    assert 0 < msg.usage.output_tokens <= 8 and msg.usage.input_tokens > 0
    oa = openai.OpenAI(base_url=server.url + "/v1", api_key=server.key, max_retries=0)
    same = oa.chat.completions.create(
        model="smollm2", max_tokens=8, messages=[{"role": "system", "content": "Answer in one sentence."}, *ASK]
    )
    assert msg.content[0].text == same.choices[0].message.content  # one chat path behind both faces
    assert msg.usage.input_tokens == same.usage.prompt_tokens


def test_stream_event_sequence_and_helper(client: anthropic.Anthropic) -> None:
    events = list(client.messages.create(model="smollm2", max_tokens=6, messages=ASK, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["message_start", "content_block_start"] and kinds[-3:] == [
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert set(kinds[2:-3]) == {"content_block_delta"} and len(kinds) > 6
    delta = events[-2]
    assert delta.delta.stop_reason == "max_tokens" and delta.usage.output_tokens == 6 and delta.usage.input_tokens

    with client.messages.stream(model="smollm2", max_tokens=6, messages=ASK) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 1 and "".join(pieces) == final.content[0].text
    assert final.stop_reason == "max_tokens" and final.usage.output_tokens == 6 and final.usage.input_tokens > 0


def test_stop_sequences(client: anthropic.Anthropic) -> None:
    full = client.messages.create(model="smollm2", max_tokens=12, messages=ASK).content[0].text
    words = full.split(" ")
    assert len(words) > 3, full
    stop = " " + words[2]  # a sequence the greedy answer is known to contain
    expected = full[: full.index(stop)]
    cut = client.messages.create(model="smollm2", max_tokens=12, messages=ASK, stop_sequences=["zzz", stop])
    assert cut.content[0].text == expected
    assert cut.stop_reason == "stop_sequence" and cut.stop_sequence == stop
    assert 0 < cut.usage.output_tokens <= 12 and cut.usage.input_tokens > 0
    with client.messages.stream(model="smollm2", max_tokens=12, messages=ASK, stop_sequences=[stop]) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == expected and final.stop_sequence == stop


def test_tool_use_round_trip(client: anthropic.Anthropic) -> None:
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    msg = client.messages.create(
        model="smollm2",
        max_tokens=64,
        messages=ask,
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
    )
    assert msg.stop_reason == "tool_use"
    use = next(b for b in msg.content if b.type == "tool_use")
    assert use.name == "get_weather" and isinstance(use.input["city"], str)
    assert use.input["unit"] in ("celsius", "fahrenheit")  # grammar-constrained to the schema
    answer = client.messages.create(
        model="smollm2",
        max_tokens=20,
        tools=[WEATHER],
        messages=[
            *ask,
            {"role": "assistant", "content": msg.content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny, 21 °C"}]},
        ],
    )
    assert answer.stop_reason in ("end_turn", "max_tokens")
    assert answer.content[0].type == "text" and answer.content[0].text

    # streamed: the SDK assembles the tool_use block from input_json_delta events
    with client.messages.stream(
        model="smollm2", max_tokens=64, messages=ask, tools=[WEATHER], tool_choice={"type": "any"}
    ) as stream:
        final = stream.get_final_message()
    streamed = next(b for b in final.content if b.type == "tool_use")
    assert final.stop_reason == "tool_use" and streamed.name == "get_weather" and "city" in streamed.input


def test_grounded_answer_has_citations(client: anthropic.Anthropic) -> None:
    msg = client.messages.create(
        model="smollm2",
        max_tokens=40,
        messages=[{"role": "user", "content": "When is the Zorblax festival held?"}],
        extra_body={"hearth": {"kb": ["festival"]}},
    )
    citations = msg.model_extra["citations"]
    assert citations and citations[0]["source"].endswith("zorblax.md") and "March" in citations[0]["text"]
    assert "[1]" in msg.content[0].text


def test_errors_have_anthropic_shape(client: anthropic.Anthropic, server: Any) -> None:
    with pytest.raises(anthropic.NotFoundError) as err:
        client.messages.create(model="no-such-model", max_tokens=5, messages=ASK)
    assert err.value.body["type"] == "error" and err.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=server.url, api_key="hth-wrong", max_retries=0).messages.create(
            model="smollm2", max_tokens=5, messages=ASK
        )
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(model="smollm2", max_tokens=5, messages=[{"role": "user", "content": [image]}])
    assert "image" in err.value.message
    headers = {"x-api-key": server.key, "anthropic-version": "1999-01-01"}
    for body, headers_, status, kind in [
        (
            {"model": "smollm2", "messages": ASK},
            {"x-api-key": server.key},
            400,
            "invalid_request_error",
        ),  # no max_tokens
        ({"model": "smollm2", "max_tokens": 5, "messages": ASK}, headers, 400, "invalid_request_error"),
        ({"model": "smollm2", "max_tokens": 5, "messages": ASK}, {}, 401, "authentication_error"),
        (  # the server's limits hold here as on /v1/chat/completions
            {"model": "smollm2", "max_tokens": 5, "messages": ASK, "hearth": {"kb": ["festival"], "top_k": 10_000}},
            {"x-api-key": server.key},
            400,
            "invalid_request_error",
        ),
    ]:
        r = httpx.post(server.url + "/v1/messages", json=body, headers=headers_, timeout=30)
        assert r.status_code == status and r.json()["error"]["type"] == kind, r.text


# ---------------------------------------------------------------------------------------------
# Anthropic as a backend: `kind: anthropic` pointed at this server's /v1/messages (no hosted API here)


@pytest.fixture(scope="module")
def claude(server: Any) -> Any:
    """Client-side settings whose `remote:claude` is this server's /v1/messages."""
    from hearth import config

    settings = config.settings()
    settings.generation.temperature = 0.0
    settings.backends = {
        "claude": config.RemoteBackend(kind="anthropic", base_url=server.url, model="smollm2", api_key=server.key)
    }
    return settings


def answer(settings: Any, **request: Any) -> tuple[str, Any]:
    from hearth.agent.engine import ChatRequest, respond

    deltas = list(respond(ChatRequest(**request), settings))
    return "".join(d.text for d in deltas), deltas[-1]


def test_cli_chat_with_remote_claude(server: Any, claude: Any, tmp_path: Path) -> None:
    local, _ = answer(
        claude, messages=ASK, model="smollm2", params=claude.generation.model_copy(update={"max_tokens": 8})
    )
    (tmp_path / "hearth.yaml").write_text(
        f"backends:\n  claude:\n    kind: anthropic\n    base_url: {server.url}\n    model: smollm2\n"
        "    api_key_env: CLAUDE_KEY\n"
    )
    chat = ["chat", "-m", "remote:claude", "-t", "0", "--max-tokens", "8", ASK[0]["content"]]
    out = subprocess.run(
        [sys.executable, "-m", "hearth.cli.main", "--home", str(tmp_path), *chat],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "CLAUDE_KEY": server.key},
    )
    assert out.returncode == 0, out.stderr
    assert local.strip() and local.strip() in out.stdout  # the same greedy answer, by way of /v1/messages


def test_grounded_chat_through_claude(claude: Any) -> None:
    text, last = answer(
        claude,
        messages=[{"role": "user", "content": "When is the Zorblax festival held?"}],
        model="remote:claude",
        kb=["festival"],
    )
    assert "March" in text and last.citations and last.citations[0]["source"].endswith("zorblax.md")


def test_tools_and_schema_through_claude(claude: Any) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": WEATHER["name"],
            "description": WEATHER["description"],
            "parameters": WEATHER["input_schema"],
        },
    }
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    _, last = answer(
        claude,
        messages=ask,
        model="remote:claude",
        tools=[tool],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    assert last.finish_reason == "tool_calls"
    call = last.tool_calls[0]
    assert call["function"]["name"] == "get_weather" and isinstance(
        json.loads(call["function"]["arguments"])["city"], str
    )
    text, last = answer(
        claude,
        model="remote:claude",
        tools=[tool],
        messages=[
            *ask,
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": "sunny, 21 °C"},
        ],
    )
    assert text and not last.tool_calls

    schema = {"type": "object", "properties": {"colour": {"type": "string"}}, "required": ["colour"]}
    text, _ = answer(
        claude,
        messages=ASK,
        model="remote:claude",
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
    )
    assert isinstance(json.loads(text)["colour"], str)
