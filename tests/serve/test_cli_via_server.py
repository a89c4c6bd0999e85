"""`hearth chat` with a `hearth serve` running: the CLI asks the server (its model is warm) instead of
loading one, imports no torch, and prints the same greedy answer the API gives."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

CLI = """
import sys
from hearth.cli.main import app
try:
    app(sys.argv[1:])
except SystemExit as exc:
    if exc.code:
        raise
print("\\n[torch imported]" if "torch" in sys.modules else "\\n[no torch]")
"""


@pytest.fixture(scope="module")
def server(serve_home: Path, server_cls: Any) -> Iterator[Any]:
    from hearth import config
    from hearth.serve.app import create_app

    with server_cls(create_app(config.settings(), ui=False, mcp=False)) as s:
        yield s


def hearth(server: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HEARTH_SERVER__PORT": str(server.port)}
    return subprocess.run(
        [sys.executable, "-c", CLI, *args], env=env, capture_output=True, text=True, timeout=600, check=False
    )


def test_chat_asks_the_running_server(server: Any) -> None:
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6, "temperature": 0}
    expected = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=300).json()
    expected_text = expected["choices"][0]["message"]["content"]

    out = hearth(server, "chat", "--max-tokens", "6", "-t", "0", "Hi")
    assert out.returncode == 0, out.stderr
    answer, _, marker = out.stdout.rstrip().rpartition("\n[")
    assert marker == "no torch]", out.stdout  # the answer came over HTTP: no model in this process
    assert answer.strip() == expected_text.strip()


def test_paths_and_local_tools_stay_in_the_cli() -> None:
    from hearth.agent.engine import ChatRequest
    from hearth.cli.via_server import can_serve

    assert can_serve(ChatRequest([], model=None)) and can_serve(ChatRequest([], model="smollm2+quillon"))
    assert can_serve(ChatRequest([], model="remote:claude"))
    assert not can_serve(ChatRequest([], model="./my-model.gguf"))  # a path means this machine's file
    assert not can_serve(ChatRequest([], model="runs/abc123"))
    assert not can_serve(ChatRequest([], server_tools=True))  # tools run here, with this user's rights
