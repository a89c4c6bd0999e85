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


GROUNDING = (
    "Answer the question using only the numbered passages below, and cite the passages you use like [1]. "
    "If they do not contain the answer, say that it is not in the knowledge base.\n\n{passages}"
)


def _grounded(
    model: ChatModel,
    messages: list[dict[str, Any]],
    params: GenerationSettings,
    kbs: list[str],
    top_k: int | None,
    plan: Plan,
) -> Iterator[Delta]:
    """Retrieve from each knowledge base (the kb library's hybrid search), put the best passages in a
    system message, and stream the answer; the passages become the response's ``citations``."""
    from hearth.kb.retrieve import search

    question = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    hits = []
    for kb in kbs:
        for r in search(kb, question, top_k).results:
            hits.append((kb, r))
    hits.sort(key=lambda h: h[1].score, reverse=True)
    hits = hits[: top_k or 4]
    plan.citations = [
        {
            "index": i,
            "kb": kb,
            "source": r.source,
            "title": r.title,
            "headings": list(r.headings),
            "page": r.page,
            "score": round(float(r.score), 4),
            "text": r.text,
        }
        for i, (kb, r) in enumerate(hits, start=1)
    ]
    passages = "\n\n".join(f"[{c['index']}] ({c['title'] or c['source']}) {c['text']}" for c in plan.citations)
    system = GROUNDING.format(passages=passages or "(no passages matched)")
    grounded = [{"role": "system", "content": system}, *(m for m in messages if m["role"] != "system")]
    yield from model.stream(grounded, params, None)
