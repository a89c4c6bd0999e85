"""What every engine streams, without the engines: ``Delta``s, their ``Usage``, the joined ``Completion``,
and validated sampling parameters.

Kept apart from ``generate`` (torch's decoding) so the chat path, the server and the CLI can speak
this language without importing torch: a request served by llama.cpp or a remote backend never needs it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from hearth.config import GenerationSettings
from hearth.errors import GenerationError


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Delta:
    """One piece of a streamed answer; the last one carries ``finish_reason`` ('stop' or 'length') and usage."""

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    tool_calls: list[dict[str, Any]] | None = None


@dataclass
class Completion:
    text: str
    finish_reason: str
    usage: Usage = field(default_factory=Usage)
    tool_calls: list[dict[str, Any]] | None = None


def sampling(base: GenerationSettings | None = None, **changes: Any) -> GenerationSettings:
    """Sampling parameters = defaults (or ``base``) with ``changes`` (None values ignored), validated."""
    data = (base or GenerationSettings()).model_dump()
    data.update({k: v for k, v in changes.items() if v is not None})
    try:
        return GenerationSettings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})" for e in exc.errors()
        )
        raise GenerationError(
            f"invalid sampling parameters: {problems}",
            "temperature is 0–5 (0 = greedy), top_p is in (0, 1], top_k ≥ 0, max_tokens ≥ 1",
        ) from None


def collect(deltas: Iterable[Delta]) -> Completion:
    parts: list[str] = []
    last = Delta(finish_reason="stop")
    calls: list[dict[str, Any]] | None = None
    for delta in deltas:
        parts.append(delta.text)
        if delta.tool_calls:
            calls = (calls or []) + delta.tool_calls
        if delta.finish_reason is not None:
            last = delta
    return Completion("".join(parts), last.finish_reason or "stop", last.usage or Usage(), calls)
