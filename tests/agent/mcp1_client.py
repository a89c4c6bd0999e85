"""Drive Hearth's MCP server with the official SDK's 1.x client and print what happened as JSON.

The project's venv has mcp 2.x, so this script runs under a separate venv holding mcp 1.x (the
``mcp1_python`` fixture builds it) and must not import Hearth. The test reads the JSON and asserts;
the script only records, so a failure shows the whole exchange rather than the first difference.

    python mcp1_client.py stdio HEARTH_HOME PYTHON [ARG...]   # spawn the server over stdio
    python mcp1_client.py http URL [TIMES]                     # streamable HTTP, connecting TIMES times
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from contextlib import AbstractAsyncContextManager
from importlib.metadata import version
from typing import Any

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from pydantic import AnyUrl

QUERY = "How long is the ladder break at Quillberry?"


def _text(result: Any) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content)


async def _exercise(session: ClientSession) -> dict[str, Any]:
    """The same calls the 2.x test makes: list, search, two failing calls, resources, search again."""
    tools = await session.list_tools()
    found = await session.call_tool("kb_search", {"query": QUERY, "k": 2})
    unknown = await session.call_tool("format_disk", {})
    bad = await session.call_tool("kb_search", {"k": "many"})
    resources = await session.list_resources()
    templates = await session.list_resource_templates()
    docs = await session.call_tool("kb_list_documents", {})
    listed = docs.structuredContent or json.loads(_text(docs))
    uri = next(d["uri"] for d in listed["documents"] if d["source"].endswith("garden_notes.md"))
    page = await session.read_resource(AnyUrl(uri))
    again = await session.call_tool("kb_search", {"query": "compost", "k": 1})
    return {
        "tools": sorted(t.name for t in tools.tools),
        "search": {"is_error": found.isError, "structured": found.structuredContent, "text": _text(found)},
        "unknown": {"is_error": unknown.isError, "text": _text(unknown)},
        "bad": {"is_error": bad.isError, "text": _text(bad)},
        "resources": [str(r.uri) for r in resources.resources],
        "templates": [t.uriTemplate for t in templates.resourceTemplates],
        "documents": len(listed["documents"]),
        "page": page.contents[0].text if hasattr(page.contents[0], "text") else "",
        "again": {"is_error": again.isError, "text": _text(again)},
    }


async def _session(transport: AbstractAsyncContextManager[Any], exercise: bool) -> dict[str, Any]:
    """Connect through one transport (timing transport + initialize), then run the calls."""
    t0 = time.perf_counter()
    async with transport as streams, ClientSession(streams[0], streams[1]) as session:
        init = await session.initialize()
        out: dict[str, Any] = {
            "connect_s": time.perf_counter() - t0,
            "protocol_version": init.protocolVersion,
            "server": init.serverInfo.name,
        }
        if exercise:
            out.update(await _exercise(session))
        return out


async def main(argv: list[str]) -> dict[str, Any]:
    mode = argv[0]
    report: dict[str, Any] = {"client_sdk": version("mcp"), "mode": mode}
    if mode == "stdio":
        home, command, *args = argv[1:]
        params = StdioServerParameters(command=command, args=args, env={"HEARTH_HOME": home})
        report.update(await _session(stdio_client(params), exercise=True))
    elif mode == "http":
        url, times = argv[1], int(argv[2]) if len(argv) > 2 else 1
        # the first connection does the full exercise; the rest measure connecting alone
        runs = [await _session(streamable_http_client(url), exercise=i == 0) for i in range(times)]
        report.update(runs[0])
        report["connect_times_s"] = [r["connect_s"] for r in runs]
    else:
        raise SystemExit(f"unknown mode {mode!r}: use stdio or http")
    return report


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1:])), ensure_ascii=False))
