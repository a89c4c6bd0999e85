"""How one chat request is answered: plain generation, client-side tools, a response format, or an
answer grounded in knowledge bases. The work itself is the agent's (``hearth.agent``); this only picks
which of its functions a request needs and keeps what comes back besides text (citations).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from hearth.config import GenerationSettings
from hearth.errors import GenerationError
from hearth.models.backends import ChatModel
from hearth.models.generate import Delta


@dataclass
class Plan:
    produce: Callable[[], Iterator[Delta]]
    kbs: list[str] = field(default_factory=list)
    citations: list[dict[str, Any]] = field(default_factory=list)

    def extras(self) -> dict[str, Any]:
        """Hearth's extra top-level response fields (none for a plain request)."""
        return {"citations": self.citations} if self.kbs else {}


def plan(
    model: ChatModel,
    messages: list[dict[str, Any]],
    params: GenerationSettings,
    tools: list[dict[str, Any]] | None = None,
    tool_choice: str | dict[str, Any] | None = None,
    response_format: dict[str, Any] | None = None,
    kbs: list[str] | None = None,
    top_k: int | None = None,
) -> Plan:
    kbs = kbs or []
    wants_tools = bool(tools) and tool_choice != "none"
    wants_format = bool(response_format) and response_format.get("type") != "text"
    if not (wants_tools or wants_format or kbs):
        return Plan(lambda: model.stream(messages, params, None))
    if wants_tools or wants_format:
        if kbs:
            raise GenerationError(
                "knowledge bases and tools/response_format in one request are not supported yet",
                "send the knowledge-base question and the tool call as separate requests",
            )
        from hearth.agent.toolcall import complete_with_tools

        # grammar-constrained decoding on local models; passed through to remote servers
        return Plan(lambda: complete_with_tools(model, messages, params, tools, tool_choice, response_format))
    result = Plan(lambda: iter(()), kbs=kbs)
    result.produce = lambda: _grounded(model, messages, params, kbs, top_k, result)
    return result


def _grounded(
    model: ChatModel,
    messages: list[dict[str, Any]],
    params: GenerationSettings,
    kbs: list[str],
    top_k: int | None,
    plan: Plan,
) -> Iterator[Delta]:
    """The agent's grounded answer (retrieval within the context budget, "not found", [n] sources);
    its last delta's citations become the response's ``citations``."""
    from hearth.agent import engine

    for delta in engine.chat(messages, kb=kbs, model=model, params=params, top_k=top_k):
        if delta.citations is not None:
            plan.citations = delta.citations
        yield delta
