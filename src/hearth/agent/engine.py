"""The one chat path: ``respond(request, settings, principal)`` answers every face.

The CLI (``hearth chat``), the OpenAI and Anthropic APIs, MCP's ``ask`` and the web UI translate their
wire format into a ``ChatRequest`` and call ``respond``; it decides everything else: which model,
whether to retrieve (grounded answers with citations and "not found"), which tools the model may call
(client tools come back to the client as calls; server tools — built-ins and MCP servers — are run
here, in a loop), and whether the output is constrained to a JSON schema. Faces never route.

``respond`` checks the request at once (model, knowledge-base access, tool names), so a face can answer
an error before it starts streaming; the returned ``Reply`` then streams ``ChatDelta``s: text as it is
generated, an event per round of tool results, and a last delta whose ``citations`` say which
document, heading path and page each [n] in the answer refers to. When retrieval finds nothing above
the collection's threshold the engine answers "not found" itself, without asking the model — a small
model asked to answer from nothing invents.

``Conversation`` keeps the history for faces that hold a session (the CLI, the web UI); the history
stores the user's questions as asked and the model's answers as text, not the prompt with passages
or a face's own display of tool calls.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from hearth import config
from hearth.access import LOCAL, Principal
from hearth.agent import rag, toolcall
from hearth.agent.tools import Registry
from hearth.config import GenerationSettings
from hearth.errors import GenerationError, HearthError
from hearth.models.stream import Delta, Usage

TOOL_CALL_TOKENS = 128  # the least a forced tool-call turn may use, whatever the answer's max_tokens


@dataclass
class ChatDelta(Delta):
    """A ``Delta`` with what grounding and tools add: citations, tool results, retrieval outcome."""

    citations: list[dict[str, Any]] | None = None  # on the last delta of a grounded answer
    tool_results: list[dict[str, Any]] | None = None  # one event per round of tool calls
    found: bool | None = None  # grounded answers: did retrieval find anything above the threshold
    timings: dict[str, float] = field(default_factory=dict)  # seconds: retrieval, prompt, generation


@dataclass
class ChatRequest:
    """One chat request as every face hands it over (OpenAI-style messages, text content)."""

    messages: list[dict[str, Any]]
    model: Any = None  # a model name (None = settings.model) or a ChatModel already loaded
    engine: str | None = None  # how a local model runs (None = the models layer's default)
    params: GenerationSettings | None = None  # sampling (None = settings.generation)
    system: str | None = None  # system prompt when messages have none (None = agent.system_prompt)
    kb: list[str] = field(default_factory=list)  # knowledge bases to ground the answer in
    top_k: int | None = None  # passages to retrieve (None = kb.top_k)
    tools: list[dict[str, Any]] | None = None  # client tools (OpenAI schemas): calls go back to the caller
    tool_choice: toolcall.ToolChoice = None
    response_format: dict[str, Any] | None = None  # {"type": "json_schema", ...} constrains the output
    server_tools: Sequence[str] | bool | None = None  # tools Hearth runs itself; True = every enabled one
    registry: Registry | None = None  # where server tools come from (None = built-ins + MCP servers)
    max_steps: int | None = None  # most model turns with server tools (None = agent.max_steps)


class Reply:
    """A checked request, ready to stream: iterate it (or call ``deltas``) to run the model.

    ``model`` is the chat model that will answer, so a server can schedule the work (local models
    decode in its queue; remote ones run side by side).
    """

    def __init__(self, model: Any, run: Any) -> None:
        self.model = model
        self._run = run

    def deltas(self) -> Iterator[ChatDelta]:
        return self._run()

    def __iter__(self) -> Iterator[ChatDelta]:
        return self.deltas()


def respond(request: ChatRequest, settings: config.Settings, principal: Principal = LOCAL) -> Reply:
    """Check ``request`` for ``principal`` and return the ``Reply`` that answers it."""
    from hearth.models import backends, stream

    kbs = principal.check_kbs(request.kb)
    msgs = [dict(m) for m in request.messages]
    # the user asks; or a client sends back the results of the tool calls it was given (a round trip)
    if not msgs or msgs[-1].get("role") not in ("user", "tool"):
        raise HearthError(
            "the last message must be the user's (or a tool's result)", "send the question as a user message"
        )
    # Grounded and tool-using answers need the agent's instructions; a plain request is the caller's
    # conversation as it is (an API client's messages, a scratch model's prompt).
    if msgs[0].get("role") != "system" and (request.system or kbs or request.server_tools):
        msgs.insert(0, {"role": "system", "content": request.system or settings.agent.system_prompt})
    client_tools = list(request.tools or []) if request.tool_choice != "none" else []
    fmt = request.response_format if request.response_format and request.response_format.get("type") != "text" else None
    if request.server_tools and (client_tools or fmt):
        raise GenerationError(
            "server tools cannot be mixed with client tools or response_format in one request",
            "send the tools you run yourself, or let Hearth run its own, not both",
        )
    registry, names = _tools(request.server_tools, request.registry, settings, principal)
    model = request.model
    if model is None or isinstance(model, str):
        engine = {"engine": request.engine} if request.engine else {}
        model = backends.get_chat_model(model or settings.model, settings=settings, **engine)
    params = request.params or stream.sampling(settings.generation)
    steps = request.max_steps or settings.agent.max_steps

    def run() -> Iterator[ChatDelta]:
        yield from _answer(
            model, msgs, params, kbs, request, registry, names, client_tools, fmt, steps, settings, principal
        )

    return Reply(model, run)


def _answer(
    chat_model: Any,
    msgs: list[dict[str, Any]],
    params: GenerationSettings,
    kbs: list[str],
    request: ChatRequest,
    registry: Registry | None,
    names: list[str],
    client_tools: list[dict[str, Any]],
    fmt: dict[str, Any] | None,
    steps: int,
    settings: config.Settings,
    principal: Principal,
) -> Iterator[ChatDelta]:
    timings: dict[str, float] = {}
    grounding: rag.Grounding | None = None
    if kbs:
        t0 = time.perf_counter()
        question = toolcall._text(msgs[-1].get("content"))
        found = rag.retrieve(question, kbs, settings, principal, request.top_k)
        timings["retrieval"] = time.perf_counter() - t0
        if not found:
            yield ChatDelta(
                rag.not_found_message(question),
                finish_reason="stop",
                usage=Usage(),
                citations=[],
                found=False,
                timings=timings,
            )
            return
        t0 = time.perf_counter()
        budget = _passage_budget(chat_model, msgs, params, settings)
        kept, dropped = rag.fit(found, budget, _counter(chat_model))
        if not kept:
            raise HearthError(
                "the conversation leaves no room in the context window for retrieved passages",
                "start a new conversation, lower max_tokens, or use a model with a longer context",
            )
        grounding = rag.Grounding(question, kept, dropped)
        # The repetition penalty counts prompt tokens too, so it pushes a model away from the very
        # words of the passages; grounded answers copy facts, so they decode without it.
        params = params.model_copy(update={"repetition_penalty": 1.0})
        msgs[-1] = {**msgs[-1], "content": rag.grounded_question(question, kept)}
        timings["prompt"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    text: list[str] = []
    last: Delta | None = None
    if registry is not None:
        deltas: Iterator[Delta] = _loop(chat_model, msgs, params, registry, names, request.tool_choice, steps)
    elif client_tools or fmt:  # one turn: client tools come back as calls, a format constrains the text
        turn = _turn(params, client_tools, request.tool_choice)
        deltas = toolcall.complete_with_tools(chat_model, msgs, turn, client_tools, request.tool_choice, fmt)
    else:
        deltas = chat_model.stream(msgs, params)
    for delta in deltas:
        if delta.finish_reason is None:
            text.append(delta.text)
            if "first_token" not in timings and delta.text:
                timings["first_token"] = time.perf_counter() - t0
            yield delta if isinstance(delta, ChatDelta) else ChatDelta(delta.text, tool_calls=delta.tool_calls)
        else:
            last = delta
            text.append(delta.text)
    assert last is not None
    timings["generation"] = time.perf_counter() - t0
    tail = last.text
    if grounding is not None:
        cited = rag.cited_numbers("".join(text), len(grounding.passages))
        # Every grounded answer ends with its sources, so [n] always maps to a document in the text
        # itself (a small model rarely writes the markers; then all passages it was given are listed).
        tail += rag.sources_footer(grounding.passages, cited)
    out = ChatDelta(
        tail, finish_reason=last.finish_reason, usage=last.usage, tool_calls=last.tool_calls, timings=timings
    )
    if grounding is not None:
        out.citations = [{**p.citation(i), "cited": i in cited} for i, p in enumerate(grounding.passages, 1)]
        out.found = True
    yield out


def _turn(params: GenerationSettings, offer: list[dict[str, Any]], choice: toolcall.ToolChoice) -> GenerationSettings:
    """max_tokens is about the answer; a forced tool call cut short would be no call at all."""
    if offer and choice not in (None, "auto", "none"):
        return params.model_copy(update={"max_tokens": max(params.max_tokens, TOOL_CALL_TOKENS)})
    return params


def _tools(
    tools: Sequence[str] | bool | None, registry: Registry | None, settings: config.Settings, principal: Principal
) -> tuple[Registry | None, list[str]]:
    if not tools:
        return None, []
    if registry is None:
        from hearth.agent import mcp_client

        registry = mcp_client.full_registry(settings, principal)
    names = registry.names() if tools is True else list(tools)
    registry.select(names)  # unknown or disabled names fail here, before the model runs
    return registry, names


def _loop(
    chat_model: Any,
    msgs: list[dict[str, Any]],
    params: GenerationSettings,
    registry: Registry,
    names: list[str],
    tool_choice: toolcall.ToolChoice,
    max_steps: int,
) -> Iterator[ChatDelta]:
    """model → tool calls → results → model …, at most ``max_steps`` model turns; the last turn has
    no tools, so the loop always ends with an answer."""
    schemas = registry.schemas(names)
    choice = tool_choice if schemas else None
    total = Usage()
    for step in range(max_steps):
        offer = schemas if step < max_steps - 1 else []
        final: Delta | None = None
        for d in toolcall.complete_with_tools(
            chat_model, msgs, _turn(params, offer, choice), offer, choice if offer else None
        ):
            if d.finish_reason is None:
                yield ChatDelta(d.text)
            else:
                final = d
        assert final is not None
        if final.usage:
            total = Usage(
                total.prompt_tokens + final.usage.prompt_tokens, total.completion_tokens + final.usage.completion_tokens
            )
        if not final.tool_calls:
            yield ChatDelta(final.text, finish_reason=final.finish_reason, usage=total)
            return
        if final.text:
            yield ChatDelta(final.text)
        msgs.append({"role": "assistant", "content": final.text, "tool_calls": final.tool_calls})
        results = [registry.call(call, names) for call in final.tool_calls]
        msgs.extend(r.message() for r in results)
        yield ChatDelta(tool_results=[asdict(r) for r in results])
        # A forced choice applies to the first turn; after the results the model decides.
        if choice not in (None, "auto", "none"):
            choice = "auto"


def _counter(chat_model: Any) -> Any:
    count = getattr(chat_model, "count_tokens", None)
    return count if callable(count) else (lambda text: len(text) // 3 + 1)  # remote: a safe overestimate


def _passage_budget(chat_model: Any, msgs: list[dict[str, Any]], params: GenerationSettings, settings: Any) -> int:
    """Tokens the passages may use: the context share, minus the conversation and the answer."""
    context = int(getattr(chat_model, "context_length", 0) or 8192)
    count = _counter(chat_model)
    conversation = sum(count(toolcall._text(m.get("content"))) + 8 for m in msgs) + 80  # + template and instructions
    free = context - conversation - params.max_tokens
    return max(0, min(free, int(context * settings.agent.context_share)))


class Conversation:
    """A chat with history, for faces that keep a session open (the CLI, the web UI).

    ``request`` holds everything but the messages (model, kb, tools, sampling); each ``ask`` appends
    the question, streams the reply and appends the answer's text.
    """

    def __init__(self, request: ChatRequest, settings: config.Settings, principal: Principal = LOCAL) -> None:
        self.request = request
        self.settings = settings
        self.principal = principal
        self.messages: list[dict[str, Any]] = list(request.messages)

    def reset(self) -> None:
        self.messages = [m for m in self.messages if m.get("role") == "system"]

    def reply(self, text: str) -> Reply:
        """The reply to ``text``; the history grows when the reply has been read to its end."""
        question = {"role": "user", "content": text}
        reply = respond(replace(self.request, messages=[*self.messages, question]), self.settings, self.principal)
        inner = reply._run

        def run() -> Iterator[ChatDelta]:
            parts: list[str] = []
            for delta in inner():
                parts.append(delta.text)
                yield delta
            # only a finished turn enters the history: a failed one leaves no half question behind
            self.messages += [question, {"role": "assistant", "content": history_text("".join(parts))}]

        reply._run = run
        return reply

    def ask(self, text: str) -> Iterator[ChatDelta]:
        return self.reply(text).deltas()


def history_text(text: str) -> str:
    """The answer as the next turn's history keeps it: without the Sources footer (the passages are
    not in the history either, so their numbers would mean nothing)."""
    return text.split(rag.SOURCES_HEADER, 1)[0]
