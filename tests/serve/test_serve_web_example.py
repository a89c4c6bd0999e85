"""examples/web (Vite + React + the Vercel AI SDK) built for production and run against a real server.

The app's locked packages come from the npm cache (``npm_env``); ``vite build`` makes ``dist/`` and
``node server.mjs`` serves it with the app's /api functions, which call Hearth with the key. In
chromium: pick the knowledge base, upload a document, ask about it, and see the streamed answer with
its source as a link. The page only ever talks to the app (the key never reaches the browser). A
screenshot goes to docs/screenshots/web-example.png.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from npm_env import NODE, REPO, install, needs_node, run_node

APP = REPO / "examples" / "web"
SHOTS = REPO / "docs" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    *needs_node((20, 19)),  # Vite 8
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (make setup)"),
]


@pytest.fixture(scope="module")
def hearth(serve_home: Path, server_cls: Any, smol: Any) -> Iterator[Any]:
    from hearth import config
    from hearth.kb.collection import create
    from hearth.serve import keys
    from hearth.serve.app import create_app

    settings = config.settings()
    settings.generation.temperature = 0.0
    settings.generation.max_tokens = 40  # enough to see streaming; short enough for CI
    settings.server.require_keys = True
    create("notes", settings=settings)
    with server_cls(create_app(settings, ui=False, mcp=False)) as s:
        s.key = keys.create_key("web-example")
        yield s


@pytest.fixture(scope="module")
def app(hearth: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The production build served by ``node server.mjs`` on a free port."""
    work = tmp_path_factory.mktemp("web")
    for name in ("api", "lib", "src"):
        shutil.copytree(APP / name, work / name)
    for name in ("index.html", "package.json", "server.mjs", "vite.config.js"):
        shutil.copy(APP / name, work)
    (work / "node_modules").symlink_to(install(APP) / "node_modules", target_is_directory=True)
    built = run_node(["node_modules/vite/bin/vite.js", "build"], cwd=work, env={})
    assert built.returncode == 0, built.stdout + built.stderr
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {"HEARTH_BASE_URL": hearth.url, "HEARTH_API_KEY": hearth.key, "PORT": str(port)}
    proc = subprocess.Popen(
        [NODE, "server.mjs"],  # type: ignore[list-item]
        cwd=work,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(url, timeout=2)
            break
        except httpx.TransportError:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(10)


def test_upload_ask_and_see_a_cited_answer(app: str, hearth: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    doc = tmp_path / "zorblax-festival.md"
    doc.write_text(
        "# The Zorblax festival\n\nThe Zorblax festival is held every March in the town of Quillton. "
        "Visitors eat blue pancakes and watch the lantern parade on the river.\n",
        encoding="utf-8",
    )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 760})
        elsewhere: list[str] = []
        page.on("request", lambda r: elsewhere.append(r.url) if not r.url.startswith(app) else None)
        page.goto(app)

        page.get_by_label("Knowledge base").select_option("notes")
        page.get_by_label("Add a document").set_input_files(str(doc))
        page.get_by_role("button", name="Upload").click()
        expect(page.get_by_role("status")).to_contain_text("indexed zorblax-festival.md", timeout=120_000)

        page.get_by_label("Question").fill("When is the Zorblax festival held?")
        page.get_by_role("button", name="Send").click()
        answer = page.locator(".messages > li.assistant").last
        expect(answer.locator(".text")).not_to_be_empty(timeout=180_000)  # streaming has begun
        source = answer.get_by_role("link", name="[1] zorblax-festival.md › The Zorblax festival")
        expect(source).to_be_visible(timeout=180_000)
        assert source.get_attribute("href").startswith("#")  # a link to the passage, shown under the answer
        expect(answer.locator(".sources blockquote").first).to_contain_text("every March")
        expect(answer.locator(".text")).to_contain_text("March")
        expect(page.get_by_role("button", name="Send")).to_be_enabled(timeout=60_000)  # the stream has ended
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "web-example.png"))
        browser.close()
    assert elsewhere == [], f"the page called other origins: {elsewhere}"
