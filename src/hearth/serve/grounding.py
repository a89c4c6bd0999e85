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
    raise GenerationError(
        "tools, response_format and knowledge bases need the agent (hearth.agent), which is not installed here",
        "send a plain chat request",
    )
