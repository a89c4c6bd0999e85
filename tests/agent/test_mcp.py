"""Hearth's MCP server with the official SDK clients of both generations (2.x in-process, 1.x from its own
venv) and the MCP Inspector CLI, over stdio and streamable HTTP; and Hearth's MCP client against a
third-party server from npm and against Hearth's own server."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from mcp import Client, StdioServerParameters

from hearth import config
from hearth.agent import engine, mcp_client, mcp_server, tools
from hearth.models import generate

SERVE = ["-m", "hearth.cli.main", "mcp", "serve"]  # the real `hearth mcp serve` command
QUERY = "How long is the ladder break at Quillberry?"
MCP1_CLIENT = Path(__file__).with_name("mcp1_client.py")


async def _exercise(client: Client) -> dict[str, object]:
    """List tools, search the KB, call an unknown tool and pass bad arguments; the server must survive."""
    listed_tools = {t.name: t for t in (await client.list_tools()).tools}
    assert {"kb_search", "kb_list_documents", "kb_add_text", "ask"} <= set(listed_tools)
    # one schema builder: a client sees what the chat loop offers a model for the same function
    for fn in mcp_server.tools(config.Settings()):
        ours = tools.from_function(fn)
        assert listed_tools[fn.__name__].input_schema == ours.parameters, fn.__name__
        assert listed_tools[fn.__name__].description == ours.description
    assert listed_tools["kb_search"].input_schema["properties"]["k"]["description"] == "how many passages (1-20)"
    found = await client.call_tool("kb_search", {"query": QUERY, "k": 2})
    assert not found.is_error
    data = found.structured_content or json.loads(found.content[0].text)
    assert data["found"] and data["passages"][0]["source"].endswith("orchard_handbook.md")
    assert data["passages"][0]["headings"][-1] == "Ladder safety"
    unknown = await client.call_tool("format_disk", {})
    assert unknown.is_error and "format_disk" in unknown.content[0].text
    bad = await client.call_tool("kb_search", {"k": "many"})
    assert bad.is_error and "query" in bad.content[0].text
    docs = await client.call_tool("kb_list_documents", {})
    listed = docs.structured_content or json.loads(docs.content[0].text)
    assert len(listed["documents"]) == 4
    uri = next(d["uri"] for d in listed["documents"] if d["source"].endswith("garden_notes.md"))
    page = await client.read_resource(uri)
    assert "Turn the compost pile" in page.contents[0].text
    again = await client.call_tool("kb_search", {"query": "compost"})  # still alive after the errors
    assert not again.is_error
    return data


def test_stdio_server_with_official_client(grounded: Path) -> None:
    params = StdioServerParameters(command=sys.executable, args=SERVE, env={"HEARTH_HOME": str(grounded)})

    async def run() -> float:
        t0 = time.perf_counter()
        async with Client(params) as client:  # default mode "auto": probes server/discover first
            connect = time.perf_counter() - t0
            await _exercise(client)
        return connect

    connect = asyncio.run(run())
    print(f"\nstdio: process start + handshake {connect:.2f} s")
    # includes starting Python; a server that ignored the discover probe would add ~10 s here
    assert connect < 5.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def http_url(grounded: Path):  # type: ignore[no-untyped-def]
    import contextlib

    import uvicorn
    from fastapi import FastAPI

    # mounted the way `hearth serve` mounts it: a FastAPI app, the MCP app at /mcp, its lifespan run by the host
    mcp_app = mcp_server.http_app(config.Settings())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        async with mcp_app.router.lifespan_context(mcp_app):
            yield

    host = FastAPI(lifespan=lifespan)
    host.mount("/mcp", mcp_app)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(host, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}/mcp"
    server.should_exit = True
    thread.join(10)


def test_http_server_with_official_client(http_url: str) -> None:
    async def run() -> list[float]:
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            async with Client(http_url) as client:
                times.append(time.perf_counter() - t0)
                await _exercise(client)
        return times

    times = asyncio.run(run())
    print(f"\nHTTP connect times: {', '.join(f'{t * 1000:.0f} ms' for t in times)}")
    assert max(times) < 1.0


def test_http_server_answers_unknown_methods_at_once(http_url: str) -> None:
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    body = {"jsonrpc": "2.0", "id": 7, "method": "no/such-method", "params": {}}
    t0 = time.perf_counter()
    r = httpx.post(http_url, json=body, headers=headers, timeout=10, follow_redirects=True)
    elapsed = time.perf_counter() - t0
    reply = r.json()
    assert reply["id"] == 7 and reply["error"]["code"] == -32601, reply
    assert elapsed < 1.0


def _run_json(cmd: list[str], timeout: float = 120) -> tuple[dict, float]:
    """Run a client process to completion; its stdout is one JSON document. Returns it and the wall time."""
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    elapsed = time.perf_counter() - t0
    assert done.returncode == 0, f"{cmd[1]} exited {done.returncode}:\n{done.stderr[-3000:]}\n{done.stdout[-2000:]}"
    return json.loads(done.stdout), elapsed


def _check_1x_report(report: dict) -> None:
    """What the 1.x client saw must match what the 2.x client sees in _exercise."""
    assert report["client_sdk"].startswith("1."), report["client_sdk"]
    assert report["server"] == "hearth"
    assert {"kb_search", "kb_list_documents", "kb_add_text", "ask"} <= set(report["tools"])
    search = report["search"]
    assert not search["is_error"], search
    passages = (search["structured"] or json.loads(search["text"]))["passages"]
    assert passages[0]["source"].endswith("orchard_handbook.md") and passages[0]["headings"][-1] == "Ladder safety"
    assert report["unknown"]["is_error"] and "format_disk" in report["unknown"]["text"]
    assert report["bad"]["is_error"] and "query" in report["bad"]["text"]
    assert report["resources"] == ["hearth://kb"] and report["templates"] == ["hearth://kb/{collection}/{doc_id}"]
    assert report["documents"] == 4 and "Turn the compost pile" in report["page"]
    assert not report["again"]["is_error"] and "garden_notes.md" in report["again"]["text"]  # alive after errors


def test_stdio_server_with_sdk_1x_client(grounded: Path, mcp1_python: Path) -> None:
    report, _ = _run_json([str(mcp1_python), str(MCP1_CLIENT), "stdio", str(grounded), sys.executable, *SERVE])
    _check_1x_report(report)
    print(f"\nmcp {report['client_sdk']} stdio (protocol {report['protocol_version']}): ", end="")
    print(f"process start + handshake {report['connect_s']:.2f} s")
    assert report["connect_s"] < 5.0  # includes starting Python, as in the 2.x stdio test


def test_http_server_with_sdk_1x_client(http_url: str, mcp1_python: Path) -> None:
    report, _ = _run_json([str(mcp1_python), str(MCP1_CLIENT), "http", http_url, "3"])
    _check_1x_report(report)
    times = report["connect_times_s"]
    print(f"\nmcp {report['client_sdk']} HTTP (protocol {report['protocol_version']}) connect times: ", end="")
    print(", ".join(f"{t * 1000:.0f} ms" for t in times))
    assert len(times) == 3 and max(times) < 1.0


def _check_inspector(inspector: tuple[str, list[str]], target: list[str], transport: str) -> None:
    """tools/list and a kb_search call, each one whole Inspector CLI run whose stdout is the JSON result."""
    release, command = inspector

    def _inspect(*method: str) -> tuple[dict, float]:
        return _run_json([*command, "--cli", *target, *method])

    listed, t_list = _inspect("--method", "tools/list")
    tools = {t["name"]: t for t in listed["tools"]}
    assert {"kb_search", "kb_list_documents", "kb_add_text", "ask"} <= set(tools)
    assert tools["kb_search"]["inputSchema"]["required"] == ["query"]
    called, t_call = _inspect(
        "--method", "tools/call", "--tool-name", "kb_search", "--tool-arg", f"query={QUERY}", "k=2"
    )
    assert called.get("isError") is not True, called
    data = called.get("structuredContent") or json.loads(called["content"][0]["text"])
    assert data["found"] and data["query"] == QUERY
    assert data["passages"][0]["source"].endswith("orchard_handbook.md")
    assert data["passages"][0]["headings"][-1] == "Ladder safety"
    print(
        f"\nInspector {release} {transport}: tools/list {t_list:.2f} s, tools/call {t_call:.2f} s (whole CLI run each)"
    )


def test_inspector_cli_stdio(grounded: Path, inspector: tuple[str, list[str]]) -> None:
    # the Inspector passes the server only a minimal environment plus what -e names
    _check_inspector(inspector, ["-e", f"HEARTH_HOME={grounded}", sys.executable, *SERVE], "stdio")


def test_inspector_cli_http(http_url: str, inspector: tuple[str, list[str]]) -> None:
    _check_inspector(inspector, [http_url, "--transport", "http"], "HTTP")


def test_mcp_client_uses_a_third_party_server(home: Path, npm_everything: Path, chat_model) -> None:  # type: ignore[no-untyped-def]
    settings = config.Settings(
        mcp_servers={
            "everything": {"command": str(npm_everything), "args": ["stdio"]},
            "broken": {"command": str(home / "no-such-server")},
        }
    )
    hub = mcp_client.Hub(mcp_client.specs(settings)).start()
    try:
        assert "broken" in hub.errors and "broken" not in hub.sessions  # reported, and the rest works
        reg = mcp_client.builtin_registry(settings)
        for tool in hub.registry_tools(10):
            reg.add(tool)
        assert "everything__echo" in reg.names() and "calculator" in reg.names()
        # the chat loop calls the third-party tool (forced, so the 135M model cannot skip it)
        request = engine.ChatRequest(
            [{"role": "user", "content": "Echo the message: hello from Hearth"}],
            model=chat_model,
            params=generate.sampling(max_tokens=24, temperature=0.0),
            server_tools=["everything__echo"],
            tool_choice={"type": "function", "function": {"name": "everything__echo"}},
            registry=reg,
            max_steps=2,
        )
        deltas = list(engine.respond(request, settings))
        results = [r for d in deltas for r in (d.tool_results or [])]
        assert results and results[0]["name"] == "everything__echo" and results[0]["ok"]
        sent = json.loads(results[0]["arguments"])["message"]
        assert results[0]["content"] == f"Echo: {sent}"
        # a bad call to the remote server comes back as a result, not an exception
        bad = reg.call({"id": "x", "function": {"name": "everything__get-sum", "arguments": '{"a": "x"}'}})
        assert not bad.ok and bad.content.startswith("error:")
    finally:
        hub.close()


def test_mcp_client_uses_hearths_own_server(grounded: Path) -> None:
    settings = config.Settings(
        mcp_servers={"hearth": {"command": sys.executable, "args": SERVE, "env": {"HEARTH_HOME": str(grounded)}}}
    )
    hub = mcp_client.Hub(mcp_client.specs(settings)).start()
    try:
        assert not hub.errors
        reg = mcp_client.builtin_registry(settings)
        for tool in hub.registry_tools(30):
            reg.add(tool)
        r = reg.call(
            {"id": "1", "function": {"name": "hearth__kb_search", "arguments": '{"query": "compost", "k": 1}'}}
        )
        assert r.ok and "garden_notes.md" in r.content
    finally:
        hub.close()
    with pytest.raises(Exception, match="either `command`"):
        mcp_client.ServerSpec.parse("x", {"args": []})
