"""The web UI in a real browser: Playwright drives Debian's chromium (headless) against the real server.

Upload a document into a knowledge base, ask about it in Chat, and see a streamed answer with a
citation to that document. A screenshot goes to docs/screenshots/ui-chat.png.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (make setup)"),
]


@pytest.fixture(scope="module")
def server(serve_home: Path, server_cls: Any) -> Iterator[Any]:
    from hearth import config
    from hearth.kb.collection import create
    from hearth.serve.app import create_app

    settings = config.settings()
    settings.generation.temperature = 0.0
    settings.generation.max_tokens = 40  # enough to see streaming; short enough for CI
    create("notes", settings=settings)
    with server_cls(create_app(settings, mcp=False)) as s:
        yield s


def test_upload_ask_and_cite(server: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    doc = tmp_path / "zorblax-festival.md"
    doc.write_text(
        "# The Zorblax festival\n\nThe Zorblax festival is held every March in the town of Quillton. "
        "Visitors eat blue pancakes and watch the lantern parade on the river.\n",
        encoding="utf-8",
    )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        external: list[str] = []
        page.on(
            "request",
            lambda r: external.append(r.url) if not r.url.startswith((server.url, "data:", "blob:")) else None,
        )
        page.goto(server.url + "/ui/")

        page.get_by_role("tab", name="Knowledge").click()
        # Wait on state, not on rendered text: the upload request's answer, then the file in the
        # component (Gradio may render "zorblax-festival" and ".md" as separate pieces).
        with page.expect_response(lambda r: "/gradio_api/upload" in r.url, timeout=120_000) as uploaded:
            page.locator("#kb-files input[type=file]").set_input_files(str(doc))
        assert uploaded.value.ok
        expect(page.locator("#kb-files")).to_contain_text("zorblax", timeout=120_000)
        expect(page.locator("#kb-name input")).to_have_value("notes")
        page.locator("#kb-upload").click()
        expect(page.locator("#kb-progress")).to_contain_text("indexed zorblax-festival.md", timeout=300_000)
        expect(page.locator("#kb-docs")).to_contain_text("Zorblax", timeout=60_000)

        page.get_by_role("tab", name="Chat").click()
        page.locator("#chat-kbs").get_by_label("notes").check()
        # Streamed: record the answer's length at every change the page makes to the chat window, in
        # the page itself. Polling from here missed it: on llama.cpp the 40 tokens arrive in ~0.5 s.
        page.evaluate(
            """() => {
                window.__answerLengths = [];
                const box = document.querySelector('#chatbot');
                new MutationObserver(() => {
                    const bots = box.querySelectorAll('.bot');
                    if (bots.length) window.__answerLengths.push(bots[bots.length - 1].textContent.length);
                }).observe(box, {childList: true, subtree: true, characterData: true});
            }"""
        )
        page.locator("#chat-input textarea").fill("When is the Zorblax festival held?")
        page.locator("#chat-send").click()

        citations = page.locator("#citations")
        # a bound, not a speed check: a busy machine decodes slowly
        expect(citations).to_contain_text("[1]", timeout=600_000)
        lengths: list[int] = page.evaluate("window.__answerLengths")
        grown = sorted({n for n in lengths if n > 0})
        assert len(grown) >= 3, f"the answer did not stream: lengths seen {grown}"
        expect(page.locator("#chatbot .bot").last).to_contain_text("Sources")

        expect(citations).to_contain_text("Zorblax")
        citations.locator("summary").first.click()  # citations open to show the passage
        expect(citations).to_contain_text("blue pancakes")

        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "ui-chat.png"), full_page=True)
        browser.close()
    assert not external, f"the UI reached outside the server: {external[:5]}"
