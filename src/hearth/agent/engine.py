"""The chat engine: one answer = (optional) retrieval → prompt within the context window → model ⇄ tools.

``chat()`` is the one function the CLI (``hearth chat --kb``), the HTTP API and the web UI call. It
streams ``ChatDelta``s: text as it is generated, an event per round of tool results, and a last
delta whose ``citations`` list says which document, heading path and page each [n] in the answer
refers to. When retrieval finds nothing above the knowledge base's threshold the engine answers
"not found" itself, without asking the model — a small model asked to answer from nothing invents.

``Conversation`` keeps the history for faces that hold a session (the CLI, the web UI); the history
stores the user's questions as asked, not the prompt with passages, so old passages do not crowd
the context window.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from hearth import config
from hearth.agent import rag, toolcall
from hearth.agent.tools import Registry
from hearth.config import GenerationSettings
from hearth.errors import HearthError
from hearth.models.generate import Delta, Usage

TOOL_CALL_TOKENS = 128  # the least a forced tool-call turn may use, whatever the answer's max_tokens


@dataclass
class ChatDelta(Delta):
    """A ``Delta`` with what grounding and tools add: citations, tool results, retrieval outcome."""

    citations: list[dict[str, Any]] | None = None  # on the last delta of a grounded answer
    tool_results: list[dict[str, Any]] | None = None  # one event per round of tool calls
    found: bool | None = None  # grounded answers: did retrieval find anything above the threshold
    timings: dict[str, float] = field(default_factory=dict)  # seconds: retrieval, prompt, generation


def chat(
    messages: Sequence[dict[str, Any]],
    *,
    kb: Sequence[str] | None = None,
    model: Any = None,
    params: GenerationSettings | None = None,
    system: str | None = None,
    tools: Sequence[str] | bool | None = None,
    tool_choice: toolcall.ToolChoice = None,
    registry: Registry | None = None,
    max_steps: int | None = None,
    settings: config.Settings | None = None,
    top_k: int | None = None,
) -> Iterator[ChatDelta]:
    """Answer the last user message of ``messages`` (OpenAI-style dicts).

    kb: collections to ground the answer in (None or empty = no retrieval).
    model: a ChatModel, a model name, or None for ``settings.model``.
    system: system prompt when ``messages`` has none (default ``agent.system_prompt``).
    tools: tool names from ``registry`` the model may call, True for all enabled ones, None for none.
    registry: tools by name (default: the built-ins plus configured MCP servers' tools).
    top_k: passages to retrieve (default ``kb.top_k``).
    """
    from hearth.models import backends, generate

    settings = settings or config.settings()
    chat_model = model if model is not None and not isinstance(model, str) else backends.get_chat_model(model)
    params = params or generate.sampling(settings.generation)
    msgs = [dict(m) for m in messages]
    if not msgs or msgs[-1].get("role") != "user":
        raise HearthError("the last message must be the user's", "send the question as a user message")
    if msgs[0].get("role") != "system":
        msgs.insert(0, {"role": "system", "content": system or settings.agent.system_prompt})

    timings: dict[str, float] = {}
    grounding: rag.Grounding | None = None
    if kb:
        t0 = time.perf_counter()
        question = toolcall._text(msgs[-1].get("content"))
        found = rag.retrieve(question, kb, top_k)
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
        count = _counter(chat_model)
        kept, dropped = rag.fit(found, budget, count)
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

    registry, names = _tools(tools, registry, settings)
    steps = max_steps or settings.agent.max_steps
    t0 = time.perf_counter()
    text: list[str] = []
    last: Delta | None = None
    for delta in _loop(chat_model, msgs, params, registry, names, tool_choice, steps):
        if delta.finish_reason is None:
            text.append(delta.text)
            if "first_token" not in timings and delta.text:
                timings["first_token"] = time.perf_counter() - t0
            yield delta
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


def _tools(
    tools: Sequence[str] | bool | None, registry: Registry | None, settings: config.Settings
) -> tuple[Registry | None, list[str]]:
    if not tools:
        return None, []
    if registry is None:
        from hearth.agent import mcp_client

        registry = mcp_client.full_registry(settings)
    names = registry.names() if tools is True else list(tools)
    registry.select(names)  # unknown or disabled names fail here, before the model runs
    return registry, names


def _loop(
    chat_model: Any,
    msgs: list[dict[str, Any]],
    params: GenerationSettings,
    registry: Registry | None,
    names: list[str],
    tool_choice: toolcall.ToolChoice,
    max_steps: int,
) -> Iterator[ChatDelta]:
    """model → tool calls → results → model …, at most ``max_steps`` model turns; the last turn has
    no tools, so the loop always ends with an answer."""
    schemas = registry.schemas(names) if registry else []
    choice = tool_choice if schemas else None
    total = Usage()
    for step in range(max_steps):
        offer = schemas if step < max_steps - 1 else []
        turn = params
        if offer and choice not in (None, "auto", "none"):
            # max_tokens is about the answer; a forced call cut short would be no call at all
            turn = params.model_copy(update={"max_tokens": max(params.max_tokens, TOOL_CALL_TOKENS)})
        final: Delta | None = None
        for d in toolcall.complete_with_tools(chat_model, msgs, turn, offer, choice if offer else None):
            if d.finish_reason is None:
                yield ChatDelta(d.text)
            else:
                final = d
        assert final is not None
        if final.usage:
            total = Usage(
                total.prompt_tokens + final.usage.prompt_tokens, total.completion_tokens + final.usage.completion_tokens
            )
        if not final.tool_calls or registry is None:
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
    """A chat with history, for faces that keep a session open (CLI, web UI)."""

    def __init__(self, **options: Any) -> None:
        self.options = options  # passed to chat(): kb, model, params, system, tools, …
        self.messages: list[dict[str, Any]] = []

    def ask(self, text: str) -> Iterator[ChatDelta]:
        self.messages.append({"role": "user", "content": text})
        parts: list[str] = []
        try:
            for delta in chat(self.messages, **self.options):
                parts.append(delta.text)
                yield delta
        except BaseException:
            self.messages.pop()  # a failed turn leaves no half question behind
            raise
        self.messages.append({"role": "assistant", "content": "".join(parts)})
