"""Tool calls in OpenAI format: the Hermes text format, and grammar-constrained calls from the 135M model."""

from __future__ import annotations

import json
import time

import jsonschema
import pytest

from hearth.agent import toolcall
from hearth.errors import GenerationError
from hearth.models import generate

FORECAST = {
    "type": "function",
    "function": {
        "name": "get_forecast",
        "description": "Weather forecast for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "minLength": 1, "maxLength": 12},
                "days": {"type": "integer", "minimum": 1, "maximum": 14},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "days", "unit"],
            "additionalProperties": False,
        },
    },
}
CALC = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate arithmetic",
        "parameters": {
            "type": "object",
            "properties": {"expression": {"type": "string", "maxLength": 30}},
            "required": ["expression"],
            "additionalProperties": False,
        },
    },
}

PROMPTS = [
    "What's the weather in Paris for the next 3 days?",
    "Will it rain in Tokyo this week?",
    "Forecast for Berlin, five days, in fahrenheit please.",
    "I am travelling to Nairobi tomorrow. What should I pack?",
    "How cold will Montreal be over the weekend?",
    "Tell me a joke about cats.",
    "Is it sunny in Lima?",
    "Weather for São Paulo for two weeks",
    "北京明天天气怎么样？",
    "Give me the forecast.",
]


def test_parse_hermes_calls() -> None:
    text = (
        'Let me check.\n<tool_call>\n{"name": "get_forecast", "arguments": {"city": "Oslo", "days": 2}}\n</tool_call>'
    )
    content, calls = toolcall.parse_calls(text)
    assert content == "Let me check."
    assert calls[0]["type"] == "function" and calls[0]["id"].startswith("call_")
    assert calls[0]["function"]["name"] == "get_forecast"
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Oslo", "days": 2}
    assert toolcall.parse_calls("<tool_call>{not json}</tool_call>")[1] == []


def test_messages_for_a_template_without_tools() -> None:
    call = toolcall.new_call("calculator", {"expression": "1+1"})
    msgs = [
        {"role": "user", "content": "1+1?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "2"},
    ]
    out = toolcall.local_messages(msgs, [CALC], native_tools=False)
    assert out[0]["role"] == "system" and '"name": "calculator"' in out[0]["content"]
    assert out[2] == {
        "role": "assistant",
        "content": '<tool_call>\n{"name": "calculator", "arguments": {"expression": "1+1"}}\n</tool_call>',
    }
    assert out[3] == {"role": "user", "content": "<tool_response>\n2\n</tool_response>"}


def test_tool_choice_is_checked() -> None:
    with pytest.raises(GenerationError, match="not among the tools"):
        toolcall.normalize_choice({"type": "function", "function": {"name": "rm"}}, [CALC])
    with pytest.raises(GenerationError):
        toolcall.normalize_choice("sometimes", [CALC])
    assert toolcall.normalize_choice(None, [CALC]) == "auto"
    assert toolcall.normalize_choice(None, []) == "none"


CALLS = 30


@pytest.mark.slow
def test_forced_tool_call_validates_every_time(torch_model) -> None:  # type: ignore[no-untyped-def]
    """The 135M model on torch (xgrammar), sampling at temperature 0.9, emits schema-valid arguments
    every time: 30 of 30 here (3 s each on 2 cores), 100 of 100 on the serving engine, where calls are
    ~10x faster (tests/models/test_llama_engine.py)."""
    chat_model = torch_model
    schema = FORECAST["function"]["parameters"]
    choice = {"type": "function", "function": {"name": "get_forecast"}}
    valid = 0
    seen: set[str] = set()
    t0 = time.perf_counter()
    for i in range(CALLS):
        params = generate.sampling(max_tokens=64, temperature=0.9, seed=i)
        msgs = [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]
        out = generate.collect(toolcall.complete_with_tools(chat_model, msgs, params, [FORECAST], choice))
        assert out.finish_reason == "tool_calls" and out.tool_calls and len(out.tool_calls) == 1
        call = out.tool_calls[0]
        assert call["type"] == "function" and call["function"]["name"] == "get_forecast"
        args = json.loads(call["function"]["arguments"])
        jsonschema.validate(args, schema)
        valid += 1
        seen.add(call["function"]["arguments"])
    print(f"\n{CALLS} forced calls in {time.perf_counter() - t0:.1f} s, {len(seen)} distinct argument sets")
    assert valid == CALLS
    assert len(seen) > 5  # sampling really varied: the grammar, not a fixed answer, makes them valid


def test_required_and_auto_and_json_schema(chat_model) -> None:  # type: ignore[no-untyped-def]
    params = generate.sampling(max_tokens=96, temperature=0.8, seed=7)  # 30 digits can be 30+ tokens
    msgs = [{"role": "user", "content": "What is 12 times 7?"}]
    out = generate.collect(toolcall.complete_with_tools(chat_model, msgs, params, [FORECAST, CALC], "required"))
    assert out.finish_reason == "tool_calls"
    name = out.tool_calls[0]["function"]["name"]
    tool = {"get_forecast": FORECAST, "calculator": CALC}[name]
    jsonschema.validate(json.loads(out.tool_calls[0]["function"]["arguments"]), tool["function"]["parameters"])

    # "none": no tools shown, plain text back
    out = generate.collect(
        toolcall.complete_with_tools(chat_model, msgs, generate.sampling(params, max_tokens=24), [CALC], "none")
    )
    assert out.tool_calls is None and out.finish_reason in ("stop", "length")

    schema = {
        "type": "object",
        "properties": {"answer": {"type": "integer"}, "sure": {"type": "boolean"}},
        "required": ["answer", "sure"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "result", "schema": schema}}
    out = generate.collect(
        toolcall.complete_with_tools(chat_model, msgs, generate.sampling(params, max_tokens=30), response_format=fmt)
    )
    jsonschema.validate(json.loads(out.text), schema)


def test_auto_mode_streams_text_and_holds_back_the_call() -> None:
    """Text before a call streams as content; a call split across deltas is never shown as text."""
    pieces = [
        "Let me ",
        "check. <tool",
        '_call>\n{"name": "calculator", ',
        '"arguments": {"expression": "2+2"}}\n</tool_call>',
    ]
    deltas = [generate.Delta(p) for p in pieces] + [
        generate.Delta("", finish_reason="stop", usage=generate.Usage(5, 9))
    ]
    out = list(toolcall._parse_stream(iter(deltas)))
    shown = "".join(d.text for d in out)
    assert "<tool" not in shown and shown.strip() == "Let me check."
    last = out[-1]
    assert last.finish_reason == "tool_calls" and last.usage.completion_tokens == 9
    assert json.loads(last.tool_calls[0]["function"]["arguments"]) == {"expression": "2+2"}
    plain = list(toolcall._parse_stream(iter([generate.Delta("a < b"), generate.Delta("", finish_reason="length")])))
    assert "".join(d.text for d in plain) == "a < b" and plain[-1].finish_reason == "length"


def test_lazy_call_grammar_wraps_the_engines_grammar() -> None:
    """The engine's grammar for a call's JSON becomes rule `call` inside one <tool_call> block; `root`
    inside a literal or a character class is text, not the rule, and stays."""
    engine_grammar = 'root ::= "{" space name "}"\nname ::= "\\"root\\"" | [root]\nself ::= root\nspace ::= " "?\n'
    grammar = toolcall._lazy_call_grammar(engine_grammar)
    rules = dict(line.split(" ::= ", 1) for line in grammar.splitlines())
    assert rules["root"] == '"<tool_call>" [ \\n]? call [ \\n]? "</tool_call>"'
    assert rules["call"] == '"{" space name "}"' and rules["self"] == "call"
    assert rules["name"] == '"\\"root\\"" | [root]'


def test_grammar_jump_forward_reads_forced_tokens_in_one_pass(torch_model) -> None:  # type: ignore[no-untyped-def]
    """Fixed parts of the JSON (keys, punctuation) are not sampled one forward pass at a time (torch)."""
    chat_model = torch_model
    passes = {"n": 0}
    forward = chat_model.model.forward

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        passes["n"] += 1
        return forward(*args, **kwargs)

    chat_model.model.forward = counting
    try:
        choice = {"type": "function", "function": {"name": "get_forecast"}}
        msgs = [{"role": "user", "content": PROMPTS[0]}]
        out = generate.collect(
            toolcall.complete_with_tools(
                chat_model, msgs, generate.sampling(max_tokens=64, temperature=0), [FORECAST], choice
            )
        )
    finally:
        del chat_model.model.forward  # back to the class's forward
    jsonschema.validate(json.loads(out.tool_calls[0]["function"]["arguments"]), FORECAST["function"]["parameters"])
    assert passes["n"] < 0.7 * out.usage.completion_tokens
