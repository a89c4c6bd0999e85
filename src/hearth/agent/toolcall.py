"""One model turn with tools, in the OpenAI tool-call format, for any backend.

``complete_with_tools`` is what the HTTP server calls for ``/v1/chat/completions`` with ``tools``:
it streams ``Delta``s whose last one carries ``tool_calls`` in OpenAI shape (``id``, ``type:
function``, ``function: {name, arguments}`` with arguments as a JSON string) and
``finish_reason='tool_calls'``. The client runs the tools; the chat loop in ``loop.py`` runs them
itself.

Local models speak the Hermes/Qwen format (``<tool_call>{"name": …, "arguments": …}</tool_call>``,
results in ``<tool_response>``). Their chat template renders the tools when it knows how; otherwise
(SmolLM2's template has no tools) we describe them in the system message. Calls are
grammar-constrained with xgrammar, so even the 135M default emits arguments that parse against the
schema: a forced call (``required`` or a named tool) is decoded as JSON only, starting after a
prefix written into the prompt (no decode steps spent on text the grammar fixes anyway); ``auto``
lets the model write text until it opens ``<tool_call>``. ``response_format: json_schema`` uses the
same machinery. On the llama.cpp engine the same prompts and prefixes are used, and the engine's own
JSON-schema grammar (llama-server's ``json_schema``) constrains forced calls and response formats; in
``auto`` the engine's grammar for the tools' schemas waits, lazily, until the model writes ``<tool_call>``.
A call that ``max_tokens`` cuts off (a small model can run on inside a string) is never returned as a
call: it raises ``ToolCallCutOff``, whose finish_reason is ``length``.
Remote OpenAI-compatible servers get ``tools``/``tool_choice``/``response_format`` passed through.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from hearth.config import GenerationSettings
from hearth.errors import GenerationError
from hearth.models.stream import Delta, Usage

log = logging.getLogger(__name__)

CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"
_CALL_RE = re.compile(r"<tool_call>\s*(\{.*?\})\s*(?:</tool_call>|$)", re.DOTALL)

ToolChoice = str | dict[str, Any] | None
_GBNF_WORD = re.compile(r'"(?:\\.|[^"\\])*"|\[(?:\\.|[^\]\\])*\]|[A-Za-z0-9_-]+')  # literal, class or name


class ToolCallCutOff(GenerationError):
    """A tool call that max_tokens ended before its JSON closed: no call, finish_reason 'length'."""

    code = "tool_call_cut_off"
    finish_reason = "length"

    def __init__(self, tokens: int, text: str) -> None:
        shown = text if len(text) <= 120 else f"{text[:100]}…{text[-20:]}"
        super().__init__(
            f"the tool call was cut off at max_tokens (finish_reason 'length') after {tokens} tokens, "
            f"before its arguments closed: {shown!r}",
            "raise max_tokens if the arguments are long; if the model ran on inside a string, bound it in the "
            "tool's JSON Schema (maxLength, enum or pattern: the grammar enforces them) or sample with temperature > 0",
        )


# ---------------------------------------------------------------------------------------------
# tool_choice and tool lists


def chosen_tool(tool_choice: ToolChoice) -> str | None:
    """The tool name a named ``tool_choice`` forces ({"type": "function", "function": {"name": …}})."""
    if isinstance(tool_choice, dict):
        fn = tool_choice.get("function") or {}
        name = fn.get("name") or tool_choice.get("name")
        if not name:
            raise GenerationError(
                f"tool_choice {tool_choice!r} names no function",
                'use "auto", "none", "required" or {"type": "function", "function": {"name": "…"}}',
            )
        return str(name)
    return None


def normalize_choice(tool_choice: ToolChoice, tools: Sequence[dict[str, Any]] | None) -> ToolChoice:
    """Check ``tool_choice`` against the tools given; default 'auto' with tools, 'none' without."""
    if not tools:
        if tool_choice not in (None, "none", "auto"):
            raise GenerationError(
                "tool_choice asks for a tool but no tools were given", "send `tools` with the request"
            )
        return "none"
    if tool_choice is None:
        return "auto"
    name = chosen_tool(tool_choice)
    if name is not None:
        if name not in tool_names(tools):
            raise GenerationError(
                f"tool_choice names '{name}', which is not among the tools given",
                f"choose one of: {', '.join(tool_names(tools))}",
            )
        return tool_choice
    if tool_choice not in ("auto", "none", "required"):
        raise GenerationError(
            f"tool_choice {tool_choice!r} is not valid", 'use "auto", "none", "required" or a named function'
        )
    return tool_choice


def tool_names(tools: Sequence[dict[str, Any]]) -> list[str]:
    return [t["function"]["name"] for t in tools]


def _parameters(tool: dict[str, Any]) -> dict[str, Any]:
    return tool["function"].get("parameters") or {"type": "object", "properties": {}}


def new_call(name: str, arguments: Any) -> dict[str, Any]:
    """A tool call in OpenAI shape; ``arguments`` is always a JSON string."""
    args = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function", "function": {"name": name, "arguments": args}}


def parse_calls(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Split model text into (content before the first call, OpenAI tool calls) — Hermes/Qwen format.

    A block whose JSON does not parse is left as text: it is not a call we could run.
    """
    calls: list[dict[str, Any]] = []
    for match in _CALL_RE.finditer(text):
        try:
            data = json.loads(match.group(1))
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            calls.append(new_call(data["name"], data.get("arguments", data.get("parameters", {}))))
    if not calls:
        return text, []
    return text[: text.find(CALL_OPEN)].rstrip(), calls


# ---------------------------------------------------------------------------------------------
# messages for a local template


def tools_system_text(tools: Sequence[dict[str, Any]], forced: bool = False) -> str:
    """How Hermes-format models are told about tools (the same words Qwen's template uses).

    When the grammar forces the call, the format needs no explaining: only the signatures are sent,
    which saves ~100 prompt tokens per call.
    """
    listing = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
    if forced:
        return f"# Tools\n\nCall one of these functions with arguments taken from the user's message:\n<tools>\n{listing}\n</tools>"
    return (
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
        f"{listing}\n</tools>\n\n"
        "For each function call, return a json object with function name and arguments within "
        '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n'
        "</tool_call>"
    )


def template_knows_tools(tokenizer: Any) -> bool:
    return "tools" in str(getattr(tokenizer, "chat_template", "") or "")


def local_messages(
    messages: Sequence[dict[str, Any]],
    tools: Sequence[dict[str, Any]] | None,
    native_tools: bool,
    forced: bool = False,
) -> list[dict[str, Any]]:
    """OpenAI messages → messages a plain ChatML template can render.

    Assistant ``tool_calls`` become ``<tool_call>`` text and ``tool`` results become user turns in
    ``<tool_response>`` — what Hermes-format models were trained on. Content is always a string.
    """
    out: list[dict[str, Any]] = []
    for m in messages:
        role = m.get("role", "user")
        content = _text(m.get("content"))
        if role == "assistant" and m.get("tool_calls") and not native_tools:
            blocks = [
                f'{CALL_OPEN}\n{{"name": "{c["function"]["name"]}", "arguments": {c["function"].get("arguments") or "{}"}}}\n{CALL_CLOSE}'
                for c in m["tool_calls"]
            ]
            out.append({"role": "assistant", "content": "\n".join([content, *blocks]).strip()})
        elif role == "tool" and not native_tools:
            block = f"<tool_response>\n{content}\n</tool_response>"
            if out and out[-1]["role"] == "user" and out[-1]["content"].startswith("<tool_response>"):
                out[-1]["content"] += "\n" + block  # consecutive results share one turn, as in Qwen's template
            else:
                out.append({"role": "user", "content": block})
        else:
            item = {k: v for k, v in m.items() if k != "content"}
            item["content"] = content
            if item.get("tool_calls"):  # native templates (Qwen, Llama 3) write arguments with tojson
                item["tool_calls"] = [_dict_arguments(c) for c in item["tool_calls"]]
            out.append(item)
    if tools and not native_tools:
        text = tools_system_text(tools, forced)
        if out and out[0]["role"] == "system":
            out[0] = {**out[0], "content": f"{out[0]['content']}\n\n{text}"}
        else:
            out.insert(0, {"role": "system", "content": text})
    return out


def _dict_arguments(call: dict[str, Any]) -> dict[str, Any]:
    fn = dict(call.get("function") or {})
    if isinstance(fn.get("arguments"), str):
        with contextlib.suppress(json.JSONDecodeError):  # not JSON: leave it as the model wrote it
            fn["arguments"] = json.loads(fn["arguments"] or "{}")
    return {**call, "function": fn}


def _text(content: Any) -> str:
    """OpenAI content may be a string, None, or a list of parts; we keep the text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type", "text") == "text")
    return str(content)


# ---------------------------------------------------------------------------------------------
# one turn


def complete_with_tools(
    chat_model: Any,
    messages: Sequence[dict[str, Any]],
    params: GenerationSettings,
    tools: Sequence[dict[str, Any]] | None = None,
    tool_choice: ToolChoice = None,
    response_format: dict[str, Any] | None = None,
) -> Iterator[Delta]:
    """Stream one assistant turn. The last Delta carries ``tool_calls`` (OpenAI shape) if the model
    called tools, with ``finish_reason='tool_calls'``; text deltas before it are the content."""
    tools = list(tools or [])
    choice = normalize_choice(tool_choice, tools)
    if hasattr(chat_model, "stream_tools"):  # an API that takes tools itself (Anthropic's)
        yield from chat_model.stream_tools(messages, params, tools, choice, response_format)
        return
    if getattr(chat_model, "kind", "") == "remote":
        yield from _remote(chat_model, messages, params, tools, choice, response_format)
        return
    if getattr(chat_model, "kind", "") == "llamacpp":
        yield from _engine(chat_model, messages, params, tools, choice, response_format)
        return
    if hasattr(chat_model, "tokenizer") and hasattr(chat_model, "model"):
        yield from _local(chat_model, messages, params, tools, choice, response_format)
        return
    # Any other ChatModel: describe the tools in the prompt and parse what comes back.
    shown = tools if choice != "none" else []
    yield from _parse_stream(chat_model.stream(local_messages(messages, shown, False), params))


def _local(
    chat_model: Any,
    messages: Sequence[dict[str, Any]],
    params: GenerationSettings,
    tools: list[dict[str, Any]],
    choice: ToolChoice,
    response_format: dict[str, Any] | None,
) -> Iterator[Delta]:
    from hearth.agent import constrain
    from hearth.models import generate

    tokenizer = chat_model.tokenizer
    native = template_knows_tools(tokenizer)
    shown = tools if choice != "none" else []
    forced = chosen_tool(choice)
    if forced:  # the model sees only the tool it must call
        shown = [t for t in tools if t["function"]["name"] == forced]
    msgs = local_messages(messages, shown, native, forced=bool(forced) or choice == "required")
    prompt = generate.render_prompt(tokenizer, msgs, shown if native else None)
    eos = generate.stop_token_ids(chat_model.model, tokenizer)
    comp = constrain.compiler(tokenizer, int(chat_model.model.config.vocab_size), eos)

    if choice == "required" or forced:
        prefix, schema = _forced_call(tools, forced)
        try:
            proc = constrain.GrammarProcessor(constrain.json_grammar(comp, schema))
        except Exception as exc:  # xgrammar refuses some schema features (e.g. odd $ref forms)
            raise GenerationError(
                f"cannot build a grammar for the tool's parameters: {exc}",
                "simplify the tool's JSON Schema, or let the model choose (tool_choice auto)",
            ) from None
        completion = generate.collect(chat_model.stream(msgs, params, logits_processors=[proc], prompt=prompt + prefix))
        yield _call_delta(completion, forced)
        return

    processors = []
    if shown:
        try:
            processors.append(constrain.GrammarProcessor(constrain.tool_call_grammar(comp, shown)))
        except Exception:  # a schema xgrammar cannot compile: fall back to parsing what the model writes
            log.warning("tool-call grammar failed to compile; parsing unconstrained output", exc_info=True)
    elif _wants_json(response_format):
        processors.append(constrain.GrammarProcessor(constrain.json_grammar(comp, _format_schema(response_format))))
    stream = chat_model.stream(msgs, params, logits_processors=processors, prompt=prompt)
    yield from _parse_stream(stream) if shown else stream


def _engine(
    chat_model: Any,
    messages: Sequence[dict[str, Any]],
    params: GenerationSettings,
    tools: list[dict[str, Any]],
    choice: ToolChoice,
    response_format: dict[str, Any] | None,
) -> Iterator[Delta]:
    """The same turn on the llama.cpp engine: its template renders the prompt (``/apply-template``),
    and its own JSON-schema grammar constrains forced calls and response formats."""
    from hearth.models.stream import collect  # no torch on the engine's path

    native = "tools" in chat_model.chat_template
    shown = tools if choice != "none" else []
    forced = chosen_tool(choice)
    if forced:
        shown = [t for t in tools if t["function"]["name"] == forced]
    msgs = local_messages(messages, shown, native, forced=bool(forced) or choice == "required")
    prompt = chat_model.render(msgs, shown if native else None)
    if choice == "required" or forced:
        prefix, schema = _forced_call(tools, forced)
        completion = collect(chat_model.stream(msgs, params, prompt=prompt + prefix, json_schema=schema))
        yield _call_delta(completion, forced)
        return
    if shown:  # auto: free text, but a call the model opens must follow the tools' schemas
        try:
            grammar = _lazy_call_grammar(chat_model.schema_grammar({"anyOf": [_call_schema(t) for t in shown]}))
        except GenerationError:  # a schema llama.cpp's converter refuses: parse what the model writes, as torch does
            log.warning(
                "the engine cannot build a grammar for these tools; parsing unconstrained output", exc_info=True
            )
            yield from _parse_stream(chat_model.stream(msgs, params, prompt=prompt))
            return
        yield from _parse_stream(chat_model.stream(msgs, params, prompt=prompt, grammar=grammar, trigger=CALL_OPEN))
        return
    schema = _format_schema(response_format) if _wants_json(response_format) else None
    if schema is None and _wants_json(response_format):
        schema = {}  # json_object: any JSON object
    yield from chat_model.stream(msgs, params, prompt=prompt, json_schema=schema)


def _lazy_call_grammar(call_grammar: str) -> str:
    """A GBNF grammar for one Hermes call block, ``<tool_call>`` included (a lazy grammar applies from
    its trigger on), around the engine's grammar for the call's JSON. Its ``root`` becomes ``call``
    (renamed wherever it is a rule name, never inside a literal or a character class)."""
    body = _GBNF_WORD.sub(lambda m: "call" if m.group(0) == "root" else m.group(0), call_grammar)
    return f'root ::= "{CALL_OPEN}" [ \\n]? call [ \\n]? "{CALL_CLOSE}"\n{body}'


def _forced_call(tools: list[dict[str, Any]], forced: str | None) -> tuple[str, dict[str, Any]]:
    """(text written after the prompt, JSON schema of what the model must write next) for a call
    that must happen: a named tool writes only its arguments; ``required`` writes name and arguments."""
    if forced:
        tool = next(t for t in tools if t["function"]["name"] == forced)
        return f'{CALL_OPEN}\n{{"name": "{forced}", "arguments": ', _parameters(tool)
    return f"{CALL_OPEN}\n", {"anyOf": [_call_schema(t) for t in tools]}


def _call_delta(completion: Any, forced: str | None) -> Delta:
    """The constrained JSON as the turn's one tool call."""
    usage = completion.usage
    try:
        data = json.loads(completion.text)
    except json.JSONDecodeError:
        # Only possible when max_tokens cut the JSON short: say so rather than invent a call.
        raise ToolCallCutOff(usage.completion_tokens, completion.text) from None
    call = new_call(forced, data) if forced else new_call(data["name"], data.get("arguments", {}))
    return Delta("", finish_reason="tool_calls", usage=usage, tool_calls=[call])


def _wants_json(response_format: dict[str, Any] | None) -> bool:
    return bool(response_format) and response_format.get("type") in ("json_schema", "json_object")  # type: ignore[union-attr]


def _format_schema(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    """The schema of ``response_format: json_schema`` (None for json_object: any JSON)."""
    if not response_format or response_format.get("type") != "json_schema":
        return None
    spec = response_format.get("json_schema") or {}
    return spec.get("schema", spec if "properties" in spec or "type" in spec else None)


def _call_schema(tool: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"name": {"const": tool["function"]["name"]}, "arguments": _parameters(tool)},
        "required": ["name", "arguments"],
    }


def _parse_stream(deltas: Iterator[Delta]) -> Iterator[Delta]:
    """Pass text through until a ``<tool_call>`` may be starting; then hold it, and parse at the end."""
    text = ""
    sent = 0
    last = Delta(finish_reason="stop", usage=Usage())
    for delta in deltas:
        text += delta.text
        if delta.finish_reason is not None:
            last = delta
            break
        cut = text.find(CALL_OPEN)
        if cut == -1:
            cut = len(text) - _partial_open(text)
        if cut > sent:
            yield Delta(text[sent:cut])
            sent = cut
    content, calls = parse_calls(text)
    if not calls and last.finish_reason == "length" and CALL_OPEN in text[sent:]:
        raise ToolCallCutOff(last.usage.completion_tokens if last.usage else 0, text[text.find(CALL_OPEN) :])
    if calls:
        rest = content[sent:] if len(content) > sent else ""
        yield Delta(rest, finish_reason="tool_calls", usage=last.usage, tool_calls=calls)
    else:
        yield Delta(text[sent:], finish_reason=last.finish_reason, usage=last.usage)


def _partial_open(text: str) -> int:
    for n in range(min(len(CALL_OPEN) - 1, len(text)), 0, -1):
        if text.endswith(CALL_OPEN[:n]):
            return n
    return 0


def _remote(
    chat_model: Any,
    messages: Sequence[dict[str, Any]],
    params: GenerationSettings,
    tools: list[dict[str, Any]],
    choice: ToolChoice,
    response_format: dict[str, Any] | None,
) -> Iterator[Delta]:
    """Pass tools through to an OpenAI-compatible server; the backend already parses streamed calls."""
    if not tools and not response_format:
        yield from chat_model.stream(messages, params)
        return
    from hearth.errors import BackendError

    body: dict[str, Any] = dict(chat_model._request(params))
    if tools:
        body["tools"] = tools
        body["tool_choice"] = choice
    if response_format:
        body["response_format"] = response_format
    try:
        resp = chat_model.client.chat.completions.create(messages=list(messages), stream=False, **body)
    except Exception as exc:  # the openai client's errors: connection, status
        raise BackendError(f"{chat_model.backend.base_url} failed: {exc}", "check the backend in hearth.yaml") from None
    choice0 = resp.choices[0]
    calls = [
        {"id": c.id, "type": "function", "function": {"name": c.function.name, "arguments": c.function.arguments}}
        for c in (choice0.message.tool_calls or [])
    ]
    usage = Usage(resp.usage.prompt_tokens, resp.usage.completion_tokens) if resp.usage else Usage()
    if choice0.message.content:
        yield Delta(choice0.message.content)
    yield Delta("", finish_reason=choice0.finish_reason or "stop", usage=usage, tool_calls=calls or None)
