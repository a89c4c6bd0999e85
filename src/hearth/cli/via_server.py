"""`hearth chat` through a running `hearth serve`: the server's engine is already warm, so the CLI loads
no model and imports no torch — a question costs the HTTP round trip and the tokens.

The CLI is still only a face: it translates its request into the OpenAI wire format (Hearth's ``hearth``
extras for knowledge bases) and the server answers it with the one chat path, exactly as it answers
any other client. Used when a server answers ``/health`` on the configured address and the request
is one the server can take (a model by name, no server-side tools); otherwise the CLI answers locally.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from hearth import config
from hearth.agent.engine import ChatRequest
from hearth.errors import BackendError, HearthError

KEY_ENV = "HEARTH_API_KEY"  # the key the CLI sends when the server requires one


@dataclass
class Piece:
    """What the CLI prints of a streamed answer (the same fields it reads from a local ``ChatDelta``)."""

    text: str
    tool_results: list[dict[str, Any]] | None = None


def running_server(settings: config.Settings, timeout: float = 0.3) -> str | None:
    """The base URL of a `hearth serve` answering on the configured host and port, else None."""
    host = settings.server.host
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    url = f"http://{host}:{settings.server.port}"
    try:
        r = httpx.get(url + "/health", timeout=timeout, verify=False)  # http: no CA bundle to load (~70 ms)
        return url if r.status_code == 200 and r.json().get("status") == "ok" else None
    except (httpx.HTTPError, ValueError):
        return None


def can_serve(request: ChatRequest) -> bool:
    """A server takes models by name only (never a path on this machine) and runs no tools for a client."""
    from hearth.models.load import is_plain_name

    model = request.model
    named = model is None or all(is_plain_name(part.removeprefix("remote:")) for part in model.split("+"))
    return not request.server_tools and request.engine is None and named


class ServerConversation:
    """``Conversation``'s interface over HTTP: the history stays here, the server answers each turn."""

    def __init__(self, url: str, request: ChatRequest, settings: config.Settings) -> None:
        self.url = url
        self.request = request
        self.settings = settings
        self.messages: list[dict[str, Any]] = list(request.messages)

    def reset(self) -> None:
        self.messages = [m for m in self.messages if m.get("role") == "system"]

    def body(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        p = self.request.params or self.settings.generation
        body: dict[str, Any] = {
            "model": self.request.model or self.settings.model,
            "messages": messages,
            "stream": True,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "top_k": p.top_k,
            "max_tokens": p.max_tokens,
            "repetition_penalty": p.repetition_penalty,
        }
        if p.seed is not None:
            body["seed"] = p.seed
        if p.stop:
            body["stop"] = list(p.stop)
        if self.request.kb:
            body["hearth"] = {"kb": list(self.request.kb)}
        return body

    def ask(self, text: str) -> Iterator[Piece]:
        from hearth.agent.engine import history_text

        question = {"role": "user", "content": text}
        headers = {"Authorization": f"Bearer {os.environ[KEY_ENV]}"} if os.environ.get(KEY_ENV) else {}
        parts: list[str] = []
        try:
            with httpx.stream(
                "POST",
                self.url + "/v1/chat/completions",
                json=self.body([*self.messages, question]),
                headers=headers,
                timeout=httpx.Timeout(10.0, read=None),
            ) as r:
                if r.status_code != 200:
                    raise _error(r)
                for line in r.iter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    if "error" in chunk:
                        err = chunk["error"]
                        raise HearthError(err.get("message", "the server failed"), err.get("hint", ""))
                    for choice in chunk.get("choices", []):
                        piece = choice.get("delta", {}).get("content") or ""
                        if piece:
                            parts.append(piece)
                            yield Piece(piece)
        except httpx.HTTPError as exc:
            raise BackendError(
                f"the server at {self.url} stopped answering: {exc}", "is `hearth serve` still running?"
            ) from None
        self.messages += [question, {"role": "assistant", "content": history_text("".join(parts))}]


def _error(r: httpx.Response) -> HearthError:
    r.read()
    try:
        err = r.json().get("error", {})
    except ValueError:
        err = {}
    message = err.get("message") or f"the server answered {r.status_code}"
    hint = err.get("hint", "")
    if r.status_code == 401:
        hint = f"this server requires a key: export {KEY_ENV}=<key> (or run with --local)"
    return HearthError(message, hint)
