"""Anthropic's Messages API as a chat backend: Claude, or any server speaking it (Hearth's own /v1/messages).

``backends: {claude: {kind: anthropic, base_url: https://api.anthropic.com, model: claude-sonnet-4-5,
api_key_env: ANTHROPIC_API_KEY}}`` in hearth.yaml makes ``remote:claude`` a model name everywhere
(``hearth chat -m remote:claude``, grounded chat, tools, ``eval compare``). Like every backend it takes
OpenAI-style messages and streams ``Delta``s; the official ``anthropic`` SDK does the wire work.
Tools go over as Anthropic tools and come back as OpenAI-style calls (``stream_tools``, which the
agent's tool turn calls); a JSON-schema response format becomes one forced tool whose input is the
answer, the usual way to get schema-shaped output from the Messages API.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from typing import Any

from hearth.config import GenerationSettings, RemoteBackend
from hearth.errors import BackendError
from hearth.models.stream import Completion, Delta, Usage, collect

FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}
ANSWER_TOOL = "answer"  # the forced tool that carries a response_format's JSON


def anthropic_messages(messages: Sequence[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """OpenAI-style messages as Anthropic's (system, messages): tool calls → tool_use blocks, tool
    results → tool_result blocks in a user turn; neighbouring turns of one role are merged."""
    system: list[str] = []
    out: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})

    for m in messages:
        role, text = m.get("role"), m.get("content") or ""
        if not isinstance(text, str):
            text = "".join(str(p.get("text", "")) for p in text)
        if role == "system":
            system.append(text)
        elif role == "tool":
            add("user", [{"type": "tool_result", "tool_use_id": m.get("tool_call_id"), "content": text}])
        elif role == "assistant":
            blocks: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
            for call in m.get("tool_calls") or []:
                fn = call.get("function", {})
                args = fn.get("arguments") or "{}"
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call.get("id"),
                        "name": fn.get("name"),
                        "input": json.loads(args) if isinstance(args, str) else args,
                    }
                )
            add("assistant", blocks)
        else:
            add("user", [{"type": "text", "text": text}])
    return "\n\n".join(system), out


def anthropic_tools(tools: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "name": t["function"]["name"],
            "description": t["function"].get("description", ""),
            "input_schema": t["function"].get("parameters") or {"type": "object", "properties": {}},
        }
        for t in tools
    ]


def anthropic_choice(choice: Any) -> dict[str, Any]:
    if isinstance(choice, dict):
        return {"type": "tool", "name": (choice.get("function") or {}).get("name") or choice.get("name")}
    return {"type": {"required": "any", "none": "none"}.get(choice, "auto")}


class AnthropicChatModel:
    """A model behind an Anthropic Messages API."""

    kind = "remote"  # scheduled like any remote server: its requests run side by side

    def __init__(self, name: str, backend: RemoteBackend) -> None:
        import anthropic

        key = backend.api_key or (os.environ.get(backend.api_key_env) if backend.api_key_env else None)
        self.name = name
        self.backend = backend
        self.client = anthropic.Anthropic(
            base_url=backend.base_url, api_key=key or "not-needed", timeout=backend.timeout, max_retries=0
        )

    def stream(
        self,
        messages: Sequence[dict[str, Any]],
        params: GenerationSettings,
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> Iterator[Delta]:
        return self.stream_tools(messages, params, list(tools or []), "auto" if tools else "none")

    def complete(
        self,
        messages: Sequence[dict[str, Any]],
        params: GenerationSettings,
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> Completion:
        return collect(self.stream(messages, params, tools))

    def stream_tools(
        self,
        messages: Sequence[dict[str, Any]],
        params: GenerationSettings,
        tools: list[dict[str, Any]],
        choice: Any,
        response_format: dict[str, Any] | None = None,
    ) -> Iterator[Delta]:
        """One turn; the last delta carries OpenAI-style ``tool_calls`` when the model used tools."""
        import anthropic

        system, msgs = anthropic_messages(messages)
        body: dict[str, Any] = {
            "model": self.backend.model,
            "max_tokens": params.max_tokens,
            "messages": msgs,
        }  # no temperature/top_p/top_k: the Messages API (SDK 2.x) leaves sampling to the server
        if system:
            body["system"] = system
        if params.stop:
            body["stop_sequences"] = list(params.stop)
        shaped = bool(response_format) and response_format.get("type") in ("json_schema", "json_object")
        if shaped:
            schema = ((response_format or {}).get("json_schema") or {}).get("schema") or {"type": "object"}
            body["tools"] = [
                {"name": ANSWER_TOOL, "description": "Give the answer in this shape.", "input_schema": schema}
            ]
            body["tool_choice"] = {"type": "tool", "name": ANSWER_TOOL}
        elif tools and choice != "none":
            body["tools"] = anthropic_tools(tools)
            body["tool_choice"] = anthropic_choice(choice)
        try:
            with self.client.messages.stream(**body) as events:
                for event in events:
                    if event.type == "text" and not shaped:
                        yield Delta(event.text)
                final = events.get_final_message()
        except anthropic.APIConnectionError as exc:
            raise BackendError(
                f"cannot reach {self.backend.base_url}: {exc}", "is the server running? check base_url in hearth.yaml"
            ) from None
        except anthropic.APIStatusError as exc:
            raise BackendError(
                f"{self.backend.base_url} answered {exc.status_code}: {exc.message}",
                "check the model name and API key in hearth.yaml",
            ) from None
        uses = [b for b in final.content if b.type == "tool_use"]
        usage = Usage(final.usage.input_tokens, final.usage.output_tokens)
        if shaped:
            text = json.dumps(uses[0].input, ensure_ascii=False) if uses else ""
            yield Delta(text, finish_reason="stop", usage=usage)
            return
        calls = [
            {
                "id": b.id,
                "type": "function",
                "function": {"name": b.name, "arguments": json.dumps(b.input, ensure_ascii=False)},
            }
            for b in uses
        ]
        finish = FINISH.get(final.stop_reason or "end_turn", "stop")
        yield Delta("", finish_reason=finish, usage=usage, tool_calls=calls or None)
