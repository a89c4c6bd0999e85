"""Hearth as an MCP client: tools of the servers in ``mcp_servers:`` join the tool registry.

The config has the shape desktop assistants use::

    mcp_servers:
      everything: {command: npx, args: [-y, "@modelcontextprotocol/server-everything"]}
      files: {command: npx, args: [-y, "@modelcontextprotocol/server-filesystem", /srv/docs], env: {}}
      wiki: {url: "http://10.0.0.5:8000/mcp", headers: {Authorization: "Bearer …"}}

Each server's tools are registered as ``<server>__<tool>`` (e.g. ``everything__echo``). The chat
loop is synchronous and the SDK is async, so a ``Hub`` keeps one event loop on a daemon thread with
every session open on it; tool calls are submitted to that loop. A server that fails to start, or
dies later, is reported (``Hub.errors``) and its tools answer with an error result; the chat goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hearth.access import LOCAL, Principal
from hearth.agent.tools import Registry, Tool, builtin_registry
from hearth.errors import ConfigError

SEPARATOR = "__"


@dataclass
class ServerSpec:
    name: str
    command: str | None = None
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 30.0  # seconds to connect

    @classmethod
    def parse(cls, name: str, raw: Mapping[str, Any]) -> ServerSpec:
        known = {"command", "args", "env", "cwd", "url", "headers", "timeout", "type", "transport", "disabled"}
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(
                f"mcp_servers.{name}: unknown key(s) {', '.join(sorted(unknown))}",
                "use command/args/env (stdio) or url/headers (HTTP)",
            )
        if bool(raw.get("command")) == bool(raw.get("url")):
            raise ConfigError(
                f"mcp_servers.{name} needs either `command` (stdio) or `url` (HTTP)",
                'e.g. {command: npx, args: [-y, "@modelcontextprotocol/server-everything"]}',
            )
        if SEPARATOR in name:
            raise ConfigError(f"mcp_servers.{name}: the name may not contain '{SEPARATOR}'", "rename the server")
        return cls(
            name,
            raw.get("command"),
            [str(a) for a in raw.get("args", [])],
            {str(k): str(v) for k, v in (raw.get("env") or {}).items()},
            raw.get("cwd"),
            raw.get("url"),
            {str(k): str(v) for k, v in (raw.get("headers") or {}).items()},
            float(raw.get("timeout", 30.0)),
        )


def specs(settings: Any) -> list[ServerSpec]:
    return [ServerSpec.parse(n, raw) for n, raw in settings.mcp_servers.items() if not raw.get("disabled")]


class Hub:
    """Open sessions to MCP servers on a background event loop; call their tools from any thread."""

    def __init__(self, servers: list[ServerSpec]) -> None:
        self.servers = {s.name: s for s in servers}
        self.sessions: dict[str, Any] = {}
        self.tools: dict[str, list[Any]] = {}  # server → the SDK's Tool objects
        self.errors: dict[str, str] = {}  # server → why it is not available
        self._stops: dict[str, tuple[asyncio.Event, asyncio.Task[None]]] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="hearth-mcp", daemon=True)
        self._thread.start()

    def _run(self, coro: Any, timeout: float | None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> Hub:
        for spec in self.servers.values():
            try:
                self._run(self._open(spec), spec.timeout + 5)
            except Exception as exc:  # any failure to start: report it, go on without this server
                self.errors[spec.name] = _describe(exc)
        return self

    async def _open(self, spec: ServerSpec) -> None:
        ready: asyncio.Future[None] = self._loop.create_future()
        stop = asyncio.Event()
        task = self._loop.create_task(self._hold(spec, ready, stop))
        try:
            await asyncio.wait_for(asyncio.shield(ready), spec.timeout)
        except BaseException:
            task.cancel()
            raise
        self._stops[spec.name] = (stop, task)

    async def _hold(self, spec: ServerSpec, ready: asyncio.Future[None], stop: asyncio.Event) -> None:
        """Keep one server's session open in one task: the SDK's task groups must be entered and left
        by the same task, so opening and closing both happen here."""
        from mcp import Client, StdioServerParameters

        if spec.command:
            # The SDK passes only a minimal environment to servers; PATH must reach npx and friends.
            env = {"PATH": os.environ.get("PATH", ""), **spec.env}
            target: Any = StdioServerParameters(command=spec.command, args=spec.args, env=env, cwd=spec.cwd)
        else:
            target = _http_transport(spec)
        try:
            async with Client(target) as client:
                listed = await client.list_tools()
                self.sessions[spec.name] = client
                self.tools[spec.name] = list(listed.tools)
                ready.set_result(None)
                await stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else RuntimeError(_describe(exc)))
            elif not stop.is_set():
                self.errors[spec.name] = f"died: {_describe(exc)}"
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self.sessions.pop(spec.name, None)

    def call(self, server: str, tool: str, arguments: dict[str, Any], timeout: float) -> str:
        """Call a tool; an MCP error result or a dead server raises (the registry turns that into text)."""
        if server not in self.sessions:
            raise RuntimeError(f"MCP server '{server}' is not running: {self.errors.get(server, 'not started')}")
        try:
            result = self._run(self.sessions[server].call_tool(tool, arguments), timeout)
        except TimeoutError:
            raise
        except Exception as exc:
            self.errors[server] = f"died: {_describe(exc)}"
            raise RuntimeError(f"MCP server '{server}' failed: {_describe(exc)}") from None
        text = _content_text(result)
        if result.is_error:
            raise RuntimeError(text or "the tool reported an error")
        return text

    def registry_tools(self, timeout: float) -> list[Tool]:
        out = []
        for server, tools in self.tools.items():
            for t in tools:

                def run(args: dict[str, Any], _s: str = server, _t: str = t.name) -> str:
                    return self.call(_s, _t, args, timeout)

                schema = dict(t.input_schema or {"type": "object", "properties": {}})
                out.append(Tool(f"{server}{SEPARATOR}{t.name}", t.description or "", schema, run, source=server))
        return out

    def close(self) -> None:
        async def shut() -> None:
            for stop, task in self._stops.values():
                stop.set()
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(task, 10)

        with contextlib.suppress(Exception):
            self._run(shut(), 30)
        self._stops.clear()
        self._loop.call_soon_threadsafe(self._loop.stop)


def _http_transport(spec: ServerSpec) -> Any:
    if not spec.headers:
        return spec.url
    import httpx2  # the SDK's HTTP client; headers (e.g. Authorization) go on the client
    from mcp.client.streamable_http import streamable_http_client

    return streamable_http_client(spec.url, http_client=httpx2.AsyncClient(headers=spec.headers, timeout=spec.timeout))


def _content_text(result: Any) -> str:
    parts = []
    for block in result.content or []:
        text = getattr(block, "text", None)
        parts.append(text if text is not None else f"[{getattr(block, 'type', 'content')}]")
    if not parts and result.structured_content is not None:
        import json

        return json.dumps(result.structured_content, ensure_ascii=False)
    return "\n".join(parts)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return "timed out while connecting"
    return f"{type(exc).__name__}: {exc}".strip()


_hub: Hub | None = None
_hub_lock = threading.Lock()


def hub(settings: Any) -> Hub:
    """The process's hub for the configured servers, started once."""
    global _hub
    with _hub_lock:
        wanted = specs(settings)
        if _hub is None or set(_hub.servers) != {s.name for s in wanted}:
            if _hub is not None:
                _hub.close()
            _hub = Hub(wanted).start()
        return _hub


def full_registry(settings: Any, principal: Principal = LOCAL) -> Registry:
    """Built-in tools for ``principal`` plus every configured MCP server's tools (disabled ones excluded)."""
    reg = builtin_registry(settings, principal)
    if settings.mcp_servers:
        for tool in hub(settings).registry_tools(settings.agent.tool_timeout):
            reg.add(tool)
    return reg
