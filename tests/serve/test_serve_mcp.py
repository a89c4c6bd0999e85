"""MCP at /mcp on the real `hearth serve` app (with the web UI mounted too), through the official client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="module")
def server(serve_home: Path, server_cls: Any) -> Iterator[Any]:
    from hearth.serve.app import create_app

    with server_cls(create_app(ui=True, mcp=True)) as s:
        yield s


def test_mcp_endpoint_lists_and_calls_tools(server: Any) -> None:
    from mcp import Client

    async def run() -> tuple[set[str], float, Any, Any]:
        t0 = time.perf_counter()
        async with Client(server.url + "/mcp") as client:
            connect = time.perf_counter() - t0
            names = {t.name for t in (await client.list_tools()).tools}
            listed = await client.call_tool("kb_list_documents", {})
            unknown = await client.call_tool("format_disk", {})
            return names, connect, listed, unknown

    names, connect, listed, unknown = asyncio.run(run())
    assert {"kb_search", "kb_list_documents", "kb_add_text", "ask"} <= names
    assert not listed.is_error and unknown.is_error
    assert connect < 1.0
