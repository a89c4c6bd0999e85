"""The Anthropic-compatible API: ``POST /v1/messages``, a translator onto the one chat path.

The shapes follow Anthropic's Messages API, so the official ``anthropic`` SDK works unmodified:
content blocks in and out, ``system`` apart from the messages, ``tool_use``/``tool_result`` blocks
(mapped onto the OpenAI-style tool calls ``agent.respond`` speaks, so local models decode them under
a grammar), ``stop_sequences`` with the one that matched reported back, streaming as Anthropic's event
sequence, and errors as ``{"type": "error", "error": {"type", "message"}}``. A key comes as
``x-api-key`` (what the SDK sends) or ``Authorization: Bearer``. Hearth's extras are those of
``/v1/chat/completions``: ``hearth: {kb: [...]}`` in the body (the SDK's ``extra_body``) grounds the
answer, and ``citations`` come back as an extra top-level field (streamed: on ``message_delta``).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette.sse import EventSourceResponse, ServerSentEvent

from hearth import access, config
from hearth.agent.engine import ChatRequest, respond
from hearth.errors import GenerationError
from hearth.models import stream
from hearth.models.stream import Delta, Usage
from hearth.serve import errors, limits
from hearth.serve.openai_api import PING_SECONDS, HearthOptions, model_name
from hearth.serve.queue import GenerationQueue

# anthropic-version: the Messages API's shape (2023-06-01) is what newer versions extend, so any later
# date is answered in it; the SDK sends its own date, so a fixed list would refuse the next release
FIRST_VERSION = "2023-06-01"
_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}")

# Anthropic's error `type` for each status
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def error_body(message: str, status: int) -> dict[str, Any]:
    return {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message}}


def error_from(exc: BaseException) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Any exception in Anthropic's error shape: the OpenAI face's message and status, re-wrapped."""
    data, status, headers = errors.from_exception(exc)
    return error_body(data["error"]["message"], status), status, headers


class AnthropicRoute(APIRoute):
    """Errors on these routes (bad body, HearthError, anything) answer in Anthropic's shape."""

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body')}: {e.get('msg')}" for e in exc.errors()
                )
                return JSONResponse(error_body(problems or "invalid request", 400), status_code=400)
            except Exception as exc:
                data, status, headers = error_from(exc)
                return JSONResponse(data, status_code=status, headers=headers)

        return route


router = APIRouter(prefix="/v1", tags=["Anthropic-compatible"], route_class=AnthropicRoute)


class InMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class MessagesRequest(BaseModel):
    # Anthropic adds fields often; unknown ones are accepted and ignored rather than refused.
    model_config = ConfigDict(extra="allow")

    model: str
    max_tokens: int = Field(ge=1)
    messages: list[InMessage] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    stop_sequences: list[str] | None = None
    stream: bool = False
    temperature: float | None = Field(None, ge=0.0, le=1.0)
    top_p: float | None = None
    top_k: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    hearth: HearthOptions | None = None
    timeout: float | None = Field(None, gt=0, description="seconds this request may take (waiting + decoding)")


# ---------------------------------------------------------------------------------------------
# request: Anthropic → the chat path's OpenAI-style messages and tools


def _text_of(blocks: str | list[dict[str, Any]], where: str) -> str:
    if isinstance(blocks, str):
        return blocks
    parts = []
    for block in blocks:
        if block.get("type") != "text":
            raise GenerationError(
                f"{where}: content blocks of type '{block.get('type')}' are not supported", "send text blocks"
            )
        parts.append(str(block.get("text", "")))
    return "".join(parts)


def chat_messages(req: MessagesRequest) -> list[dict[str, Any]]:
    """Anthropic's system + messages as OpenAI-style ones: tool_use → tool_calls, tool_result → tool."""
    out: list[dict[str, Any]] = []
    if req.system:
        out.append({"role": "system", "content": _text_of(req.system, "system")})
    for i, m in enumerate(req.messages):
        where = f"messages.{i}"
        if isinstance(m.content, str):
            out.append({"role": m.role, "content": m.content})
            continue
        text: list[str] = []
        calls: list[dict[str, Any]] = []
        for block in m.content:
            kind = block.get("type")
            if kind == "text":
                text.append(str(block.get("text", "")))
            elif kind == "tool_use" and m.role == "assistant":
                arguments = json.dumps(block.get("input") or {}, ensure_ascii=False)
                calls.append(
                    {"id": block["id"], "type": "function", "function": {"name": block["name"], "arguments": arguments}}
                )
            elif kind == "tool_result" and m.role == "user":
                result = _text_of(block.get("content") or "", f"{where}.tool_result")
                if block.get("is_error"):
                    result = f"Error: {result}"
                out.append({"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": result})
            elif kind in ("thinking", "redacted_thinking"):
                continue  # a model's own reasoning from another turn: not part of the conversation text
            else:
                raise GenerationError(
                    f"{where}: content blocks of type '{kind}' are not supported in a {m.role} message",
                    "send text, tool_use (assistant) and tool_result (user) blocks",
                )
        if m.role == "assistant":
            item: dict[str, Any] = {"role": "assistant", "content": "".join(text)}
            if calls:
                item["tool_calls"] = calls
            out.append(item)
        elif text:
            out.append({"role": "user", "content": "".join(text)})
    return out


def chat_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    if not tools:
        return None
    out = []
    for tool in tools:
        if tool.get("type") not in (None, "custom"):
            raise GenerationError(
                f"tool '{tool.get('name')}' is Anthropic's server tool '{tool['type']}', which Hearth does not run",
                "describe your own tools with name, description and input_schema",
            )
        schema = tool.get("input_schema") or {"type": "object", "properties": {}}
        out.append(
            {
                "type": "function",
                "function": {"name": tool["name"], "description": tool.get("description", ""), "parameters": schema},
            }
        )
    return out


def chat_tool_choice(choice: dict[str, Any] | None) -> str | dict[str, Any] | None:
    if choice is None:
        return None
    kind = choice.get("type")
    if kind == "tool":
        return {"type": "function", "function": {"name": choice.get("name")}}
    if kind in ("auto", "none"):
        return kind
    if kind == "any":
        return "required"
    raise GenerationError(f"tool_choice type '{kind}' is not valid", "use auto, any, tool (with name) or none")


def chat_request(req: MessagesRequest, settings: config.Settings) -> ChatRequest:
    """The wire request as the one chat path takes it."""
    params = stream.sampling(
        settings.generation,
        temperature=req.temperature,
        top_p=req.top_p,
        top_k=req.top_k,
        max_tokens=req.max_tokens,
        stop=[],  # stop_sequences are matched here, so the answer can say which one it was
    )
    return ChatRequest(
        messages=chat_messages(req),
        model=model_name(req.model, settings),
        params=params,
        kb=req.hearth.kb if req.hearth else [],
        top_k=req.hearth.top_k if req.hearth else None,
        tools=chat_tools(req.tools),
        tool_choice=chat_tool_choice(req.tool_choice),
    )


def check_version(request: Request) -> None:
    version = request.headers.get("anthropic-version")
    if version is not None and (not _VERSION.fullmatch(version) or version < FIRST_VERSION):
        raise GenerationError(
            f"anthropic-version '{version}' is not supported", f"send anthropic-version: {FIRST_VERSION} or later"
        )


# ---------------------------------------------------------------------------------------------
# response: deltas → Anthropic's content blocks and events


class StopScan:
    """Cuts the text at the first stop sequence and remembers which one it was (Anthropic reports it);
    text that may still grow into one is held back until the next delta decides."""

    def __init__(self, sequences: list[str] | None) -> None:
        self.sequences = [s for s in sequences or [] if s]
        self.pending = ""
        self.matched: str | None = None

    def feed(self, text: str) -> str:
        """The part of ``text`` that is safe to send now."""
        if not self.sequences:
            return text
        self.pending += text
        hits = [(i, s) for s in self.sequences if (i := self.pending.find(s)) != -1]
        if hits:
            at, self.matched = min(hits)
            out, self.pending = self.pending[:at], ""
            return out
        hold = max((k for s in self.sequences for k in range(1, len(s)) if self.pending.endswith(s[:k])), default=0)
        out = self.pending[: len(self.pending) - hold]
        self.pending = self.pending[len(out) :]
        return out

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


def _tool_use(call: dict[str, Any]) -> dict[str, Any]:
    fn = call.get("function", {})
    args = fn.get("arguments") or "{}"
    return {
        "type": "tool_use",
        "id": call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
        "name": fn.get("name", ""),
        "input": json.loads(args) if isinstance(args, str) else args,
    }


def _usage(usage: Usage | None) -> dict[str, int]:
    usage = usage or Usage()
    return {
        "input_tokens": usage.prompt_tokens,
        "output_tokens": usage.completion_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def _extras(last: Delta | None, grounded: bool) -> dict[str, Any]:
    """Hearth's extra field, as on /v1/chat/completions: a grounded answer's citations."""
    return {"citations": getattr(last, "citations", None) or []} if grounded else {}


async def _answer(deltas: AsyncIterator[Delta], scan: StopScan) -> AsyncIterator[tuple[str, Any]]:
    """("text", str) and ("tool", call) as they come, then ("end", (last delta, stop_reason))."""
    last: Delta | None = None
    calls = 0
    async for d in deltas:
        if d.finish_reason is not None:
            last = d
        if d.text:
            text = scan.feed(d.text)
            if text:
                yield "text", text
            if scan.matched is not None:
                break
        for call in d.tool_calls or []:
            calls += 1
            yield "tool", call
    if scan.matched is not None:
        await deltas.aclose()  # type: ignore[attr-defined]  # the queue frees the model at the next token
    elif rest := scan.flush():
        yield "text", rest
    if scan.matched is not None:
        reason = "stop_sequence"
    elif calls:
        reason = "tool_use"
    else:
        reason = STOP_REASONS.get(last.finish_reason or "stop", "end_turn") if last else "end_turn"
    yield "end", (last, reason)


def _rough_count(text: str) -> int:
    return len(text) // 3 + 1


def _cut_usage(model: Any, messages: list[dict[str, Any]], last: Delta | None, text: str) -> dict[str, int]:
    """Usage of an answer; one cut at a stop sequence never got its last delta (which counts the
    tokens), so the model's tokenizer counts them: the prompt without its template's few tokens."""
    if last is not None:
        return _usage(last.usage)
    count = getattr(model, "count_tokens", None)
    if not callable(count):
        count = _rough_count  # a remote model
    prompt = sum(count(str(m.get("content") or "")) for m in messages)
    return _usage(Usage(prompt, count(text) if text else 0))


@router.post("/messages")
async def messages(req: MessagesRequest, request: Request) -> Any:
    check_version(request)
    settings: config.Settings = request.app.state.settings
    queue: GenerationQueue = request.app.state.queue
    limits.check_timeout(req.timeout, queue.timeout)  # the same limits as on /v1/chat/completions
    limits.check_top_k(req.hearth.top_k if req.hearth else None, settings)
    limits.check_schemas(None, req.tools, settings)
    chat = await run_in_threadpool(chat_request, req, settings)
    reply = await run_in_threadpool(respond, chat, settings, access.of_request(request))
    ticket = queue.admit(req.timeout)
    deltas = queue.stream(ticket, reply.deltas, model=reply.model)
    mid = f"msg_{uuid.uuid4().hex[:24]}"
    grounded = bool(chat.kb)
    scan = StopScan(req.stop_sequences)
    if req.stream:
        return EventSourceResponse(
            _events(
                _answer(deltas, scan),
                mid,
                req.model,
                grounded,
                scan,
                lambda last, text: _cut_usage(reply.model, chat.messages, last, text),
            ),
            ping=PING_SECONDS,
            sep="\n",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    content: list[dict[str, Any]] = []
    text: list[str] = []
    end: tuple[Delta | None, str] = (None, "end_turn")
    async for kind, value in _answer(deltas, scan):
        if kind == "text":
            text.append(value)
        elif kind == "tool":
            content.append(_tool_use(value))
        else:
            end = value
    last, reason = end
    answer = "".join(text)
    if answer or not content:
        content.insert(0, {"type": "text", "text": answer})
    body = {
        "id": mid,
        "type": "message",
        "role": "assistant",
        "model": req.model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": scan.matched,
        "usage": _cut_usage(reply.model, chat.messages, last, answer),
        **_extras(last, grounded),
    }
    return JSONResponse(body)


def _event(data: dict[str, Any]) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps(data, ensure_ascii=False), event=data["type"])


async def _events(
    answer: AsyncIterator[tuple[str, Any]],
    mid: str,
    model: str,
    grounded: bool,
    scan: StopScan,
    usage_of: Callable[[Delta | None, str], dict[str, int]],
) -> AsyncIterator[ServerSentEvent]:
    """message_start, a content block per text run or tool call (start, deltas, stop), message_delta
    with stop_reason and usage, message_stop; an error after the 200 is an ``error`` event."""
    start = {
        "id": mid,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": _usage(None),  # the counts come with message_delta (the prompt is read after this)
    }
    yield _event({"type": "message_start", "message": start})
    index = -1
    open_text = False
    text: list[str] = []
    try:
        async for kind, value in answer:
            if kind == "text":
                if not open_text:
                    index += 1
                    open_text = True
                    block = {"type": "text", "text": ""}
                    yield _event({"type": "content_block_start", "index": index, "content_block": block})
                text.append(value)
                delta = {"type": "text_delta", "text": value}
                yield _event({"type": "content_block_delta", "index": index, "delta": delta})
            elif kind == "tool":
                if open_text:
                    yield _event({"type": "content_block_stop", "index": index})
                    open_text = False
                index += 1
                use = _tool_use(value)
                head = {**use, "input": {}}
                yield _event({"type": "content_block_start", "index": index, "content_block": head})
                delta = {"type": "input_json_delta", "partial_json": json.dumps(use["input"], ensure_ascii=False)}
                yield _event({"type": "content_block_delta", "index": index, "delta": delta})
                yield _event({"type": "content_block_stop", "index": index})
            else:
                last, reason = value
    except Exception as exc:  # an error after the 200: said in the stream, as Anthropic does
        data, _, _ = error_from(exc)
        yield _event(data)
        return
    if index == -1:  # an empty answer is still one (empty) text block
        index, open_text = 0, True
        yield _event({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    if open_text:
        yield _event({"type": "content_block_stop", "index": index})
    usage = usage_of(last, "".join(text))
    delta = {"stop_reason": reason, "stop_sequence": scan.matched}
    yield _event({"type": "message_delta", "delta": delta, "usage": usage, **_extras(last, grounded)})
    yield _event({"type": "message_stop"})
