"""The tool registry: plain Python functions (and MCP servers' tools) offered to a model as tools.

A function's type hints and docstring become its JSON Schema (pydantic builds it), so a tool is
written once, as ordinary code. ``Registry.call`` is the only way a tool runs: arguments are
validated against the schema, the call has a timeout, and any failure comes back as the tool's
result text (``error: …``) for the model to read — a tool never raises into the chat loop.

Tool output is data: it is returned as a ``tool`` message and can never change which tools a
request may use (the allowed set is fixed by the caller before the loop starts).
"""

from __future__ import annotations

import ast
import concurrent.futures
import datetime as dt
import inspect
import json
import math
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, ValidationError, create_model

from hearth.access import LOCAL, Principal
from hearth.errors import HearthError

if TYPE_CHECKING:
    from hearth.config import Settings

# Tool threads are daemons in a shared pool: a call that times out keeps running in the background
# (Python cannot kill a thread) but never blocks the answer or the process exit.
_pool = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="hearth-tool")


@dataclass
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON Schema of the arguments object
    run: Callable[[dict[str, Any]], Any]  # takes the validated arguments
    source: str = "builtin"  # "builtin", "python", or the MCP server's name
    validate: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    def openai(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


def describe(fn: Callable[..., Any]) -> tuple[str, dict[str, str]]:
    """(summary, {parameter: description}) from a Google-style docstring ("Args:" section)."""
    doc = inspect.getdoc(fn) or ""
    summary, _, rest = doc.partition("\nArgs:")
    params: dict[str, str] = {}
    for line in rest.splitlines():
        m = re.match(r"\s+(\w+)(?:\s*\([^)]*\))?:\s*(.+)", line)
        if m:
            params[m.group(1)] = m.group(2).strip()
        elif line.strip() and not line.startswith(" "):
            break
    return " ".join(summary.split()), params


def from_function(fn: Callable[..., Any], name: str | None = None, source: str = "python") -> Tool:
    """A Tool from a typed function: its hints and docstring become the schema the model sees."""
    summary, docs = describe(fn)
    fields: dict[str, Any] = {}
    for pname, p in inspect.signature(fn).parameters.items():
        if p.annotation is inspect.Parameter.empty:
            raise TypeError(f"tool {fn.__name__}: parameter '{pname}' needs a type hint")
        from pydantic import Field

        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[pname] = (p.annotation, Field(default, description=docs.get(pname)))
    # extra="forbid": an argument the function does not take is the model's mistake, worth telling it
    model = create_model(f"{fn.__name__}_args", __config__=ConfigDict(extra="forbid"), **fields)  # type: ignore[call-overload]
    schema = model.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    schema["additionalProperties"] = False

    def validate(args: dict[str, Any]) -> dict[str, Any]:
        return model.model_validate(args).model_dump()

    return Tool(name or fn.__name__, summary, schema, lambda args: fn(**args), source, validate)


@dataclass
class ToolResult:
    call_id: str
    name: str
    arguments: str
    content: str
    ok: bool

    def message(self) -> dict[str, Any]:
        return {"role": "tool", "tool_call_id": self.call_id, "name": self.name, "content": self.content}


@dataclass
class Registry:
    tools: dict[str, Tool] = field(default_factory=dict)
    timeout: float = 30.0
    disabled: set[str] = field(default_factory=set)

    def add(self, tool: Tool | Callable[..., Any]) -> Tool:
        if not isinstance(tool, Tool):
            tool = from_function(tool)
        self.tools[tool.name] = tool
        return tool

    def names(self) -> list[str]:
        return [n for n in self.tools if n not in self.disabled]

    def select(self, names: Iterable[str] | None = None) -> list[Tool]:
        """The enabled tools, or the named ones; an unknown or disabled name is an error."""
        if names is None:
            return [self.tools[n] for n in self.names()]
        out = []
        for n in names:
            if n not in self.tools:
                raise HearthError(f"no tool named '{n}'", f"known tools: {', '.join(self.names()) or 'none'}")
            if n in self.disabled:
                raise HearthError(f"tool '{n}' is disabled in hearth.yaml", "remove it from agent.disabled_tools")
            out.append(self.tools[n])
        return out

    def schemas(self, names: Iterable[str] | None = None) -> list[dict[str, Any]]:
        return [t.openai() for t in self.select(names)]

    def call(self, call: dict[str, Any], allowed: Iterable[str] | None = None) -> ToolResult:
        """Run one OpenAI-shaped tool call; every failure becomes an ``error: …`` result."""
        fn = call.get("function") or {}
        name, raw = str(fn.get("name", "")), fn.get("arguments") or "{}"
        call_id = str(call.get("id") or "")

        def result(content: str, ok: bool = False) -> ToolResult:
            return ToolResult(call_id, name, raw if isinstance(raw, str) else json.dumps(raw), content, ok)

        allowed_set = set(self.names() if allowed is None else allowed) - self.disabled
        if name not in self.tools or name not in allowed_set:
            return result(f"error: tool '{name}' is not available; available tools: {', '.join(sorted(allowed_set))}")
        tool = self.tools[name]
        try:
            args = json.loads(raw) if isinstance(raw, str) else dict(raw)
            if not isinstance(args, dict):
                raise ValueError("arguments must be a JSON object")
            if tool.validate is not None:
                args = tool.validate(args)
        except (ValueError, ValidationError) as exc:
            return result(f"error: bad arguments for {name}: {_short(exc)}")
        future = _pool.submit(tool.run, args)
        try:
            value = future.result(timeout=self.timeout)
        except concurrent.futures.TimeoutError:
            return result(f"error: {name} did not finish within {self.timeout:g} s")
        except Exception as exc:  # a tool's own failure is information for the model, not a crash
            return result(f"error: {name} failed: {type(exc).__name__}: {_short(exc)}")
        return result(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str), True)


def _short(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return text if len(text) < 500 else text[:500] + "…"


# ---------------------------------------------------------------------------------------------
# built-in tools

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCS: dict[str, Callable[..., float]] = {
    "sqrt": math.sqrt,
    "log": math.log,
    "exp": math.exp,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
}
_CONSTS = {"pi": math.pi, "e": math.e}


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression exactly, e.g. "12 * (3 + 4) / 2" or "sqrt(2) ** 2".

    Args:
        expression: numbers, + - * / // % **, parentheses, and sqrt log exp sin cos tan abs round min max pi e
    """
    if len(expression) > 200:
        raise ValueError("expression longer than 200 characters")
    tree = ast.parse(expression, mode="eval")
    value = _eval(tree.body)
    return str(int(value)) if isinstance(value, float) and value.is_integer() and abs(value) < 1e15 else str(value)


def _eval(node: ast.AST) -> Any:
    # Walk the syntax tree ourselves: only numbers, arithmetic and a few math functions exist here,
    # so no input can reach names, attributes, calls of other functions or eval.
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 1000:
            raise ValueError("exponent too large")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.Name) and node.id in _CONSTS:
        return _CONSTS[node.id]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS and not node.keywords:
        return _FUNCS[node.func.id](*[_eval(a) for a in node.args])
    raise ValueError(f"not allowed in a calculation: {ast.unparse(node)!r}")


def current_time(timezone: str = "UTC") -> str:
    """The current date and time in ISO 8601.

    Args:
        timezone: an IANA time zone name such as UTC, Europe/Paris or Asia/Shanghai
    """
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {timezone!r}") from None
    return dt.datetime.now(zone).isoformat(timespec="seconds")


def kb_tools(settings: Settings, principal: Principal = LOCAL) -> list[Tool]:
    """``kb_search`` and ``kb_list_documents`` for one caller: they see only the knowledge bases
    ``principal`` may use, and search with ``settings``."""

    def kb_search(query: str, collection: str = "", k: int = 3) -> str:
        """Search the knowledge base and return the best passages with their sources.

        Args:
            query: what to look for, in the user's words
            collection: the collection to search (empty = every collection)
            k: how many passages to return (1-10)
        """
        from hearth.agent import rag

        names = [collection] if collection else None
        found = rag.retrieve(query, names, settings, principal, k=max(1, min(k, 10)))
        if not found:
            return "not found in the knowledge base"
        return "\n\n".join(p.render(i) for i, p in enumerate(found, 1))

    def kb_list_documents(collection: str = "") -> str:
        """List the documents in the knowledge base.

        Args:
            collection: the collection to list (empty = every collection)
        """
        from hearth.kb import collection as kbc

        if collection:
            names = [principal.check_kb(collection)]
        else:
            names = principal.visible(m.name for m in kbc.list_collections())
        lines = []
        for name in names:
            for doc in kbc.list_docs(name):
                lines.append(f"{name}: {doc.source} ({doc.n_chunks} chunks) id={doc.doc_id}")
        return "\n".join(lines) or "the knowledge base is empty"

    return [from_function(kb_search, source="builtin"), from_function(kb_list_documents, source="builtin")]


def read_file_tool(folders: list[str]) -> Tool:
    """A ``read_file`` tool confined to ``folders`` (resolved, so ``..`` and symlinks cannot escape)."""
    roots = [Path(f).expanduser().resolve() for f in folders]

    def read_file(path: str, max_chars: int = 4000) -> str:
        """Read a text file from the folders Hearth was allowed to read.

        Args:
            path: the file, relative to an allowed folder or absolute inside one
            max_chars: most characters to return
        """
        for root in roots:
            target = (root / path).resolve()
            if target.is_relative_to(root) and target.is_file():
                return target.read_text(encoding="utf-8", errors="replace")[:max_chars]
        raise PermissionError(f"{path!r} is not a file inside the allowed folders ({', '.join(map(str, roots))})")

    return from_function(read_file, source="builtin")


def builtin_registry(settings: Settings, principal: Principal = LOCAL) -> Registry:
    """The built-in tools for one caller, with the timeout and disabled list from ``agent:`` in hearth.yaml."""
    reg = Registry(timeout=settings.agent.tool_timeout, disabled=set(settings.agent.disabled_tools))
    for tool in kb_tools(settings, principal):
        reg.add(tool)
    for fn in (calculator, current_time):
        reg.add(from_function(fn, source="builtin"))
    if settings.agent.folders:
        reg.add(read_file_tool(settings.agent.folders))
    return reg
