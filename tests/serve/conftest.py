"""Fixtures for the server tests: a real uvicorn server on a free 127.0.0.1 port, one per module."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from homes import using_home


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """uvicorn serving an app in a daemon thread; ``url`` is its base URL."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def serve_home(tmp_path_factory: pytest.TempPathFactory, session_home: Path) -> Iterator[Path]:
    """A Hearth home for one test module (a server lives that long); models/ shared with the session."""

    root = tmp_path_factory.mktemp("serve-home")
    shared = session_home / "models"
    shared.mkdir(exist_ok=True)
    (root / "models").symlink_to(shared, target_is_directory=True)
    with using_home(root):
        yield root


@pytest.fixture(scope="session")
def server_cls() -> type[Server]:
    """The Server class, for modules that start their own (test modules cannot import conftest)."""
    return Server
