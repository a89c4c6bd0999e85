"""The web UI's handlers as plain functions (no browser): each asks the one access check, chat goes
through the one chat path, and the model's history never holds the chat window's decorations.

Also the settings thread: what ``hearth serve --set`` builds is what retrieval under
``/v1/chat/completions`` uses (no library re-reads hearth.yaml).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import httpx
import pytest
from starlette.requests import Request

from hearth import config
from hearth.access import Principal
from hearth.serve import ui

FACTS = {
    "moss.md": "# Moss\n\nThe moss garden of Quillton is watered every Tuesday by the caretaker.\n",
    "bells.md": "# Bells\n\nThe bell tower of Quillton rings thirteen times at noon on the first of May.\n",
    "ferry.md": "# Ferry\n\nThe Quillton ferry crosses the river every forty minutes from the north pier.\n",
    "bakery.md": "# Bakery\n\nThe Quillton bakery sells walnut bread only on Saturdays before nine.\n",
    "lamps.md": "# Lamps\n\nThe street lamps of Quillton are lit by hand each evening at dusk.\n",
}


def gr_request(principal: Principal | None) -> gr.Request:
    """A gradio request whose underlying HTTP request carries what the key middleware decided."""
    scope: dict[str, Any] = {"type": "http", "method": "POST", "path": "/ui", "headers": [], "query_string": b""}
    if principal is not None:
        scope["state"] = {"principal": principal}
    return gr.Request(request=Request(scope))


@pytest.fixture(scope="module")
def town(serve_home: Path) -> Path:
    from hearth.kb import collection, ingest

    settings = config.Settings()
    docs = serve_home / "town-docs"
    docs.mkdir(exist_ok=True)
    for name, text in FACTS.items():
        (docs / name).write_text(text, encoding="utf-8")
    collection.create("town", settings=settings)
    collection.create("hr", settings=settings)
    ingest.add("town", [docs], settings=settings)
    return serve_home


def test_kb_listing_and_access_follow_the_principal(town: Path) -> None:
    scoped = gr_request(Principal("partner", admin=False, kbs=frozenset({"town"})))
    assert ui.kb_names(scoped) == ["town"]
    assert set(ui.kb_names(gr_request(None))) >= {"town", "hr"}  # no keys: the owner sees everything
    with pytest.raises(gr.Error, match="may not use knowledge base 'hr'"):
        ui.kb_docs("hr", scoped)
    assert len(ui.kb_docs("town", scoped)) == len(FACTS)


def test_admin_only_handlers_refuse_scoped_keys(town: Path) -> None:
    from hearth.serve.app import create_app

    scoped = gr_request(Principal("partner", admin=False, kbs=frozenset({"town"})))
    with pytest.raises(gr.Error, match="may not train"):
        next(ui.train_start("scratch-shakespeare", 1e-3, 4, 1, 1, 16, 0.0, "adamw", 0.0, scoped))
    with pytest.raises(gr.Error, match="may not inspect"):
        ui.inspect_model(create_app(config.Settings(), ui=False, mcp=False), "smollm2", 512, scoped)


def test_chat_history_holds_text_not_the_window(town: Path, smol: Any) -> None:
    from hearth.serve.app import create_app

    settings = config.Settings()
    app = create_app(settings, ui=False, mcp=False)
    decorated = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!\n\n🔧 `calculator({})`"},  # the window's display
    ]
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]

    async def run() -> list[Any]:
        outs = []
        async for out in ui.chat(
            app, "When does the ferry cross?", decorated, history, "smollm2", 0.0, 1.0, 8, ["town"], gr_request(None)
        ):
            outs.append(out)
        return outs

    outs = asyncio.run(run())
    shown, new_history, box, citations = outs[-1]
    assert box == "" and "ferry" in citations.lower()
    assert shown[:2] == decorated and shown[-1]["role"] == "assistant" and shown[-1]["content"]
    assert [m["role"] for m in new_history] == ["user", "assistant", "user", "assistant"]
    assert all("🔧" not in m["content"] for m in new_history)
    assert "Sources:" not in new_history[-1]["content"]  # the footer names passages the history lacks
    with pytest.raises(gr.Error, match="may not use knowledge base 'hr'"):
        scoped = gr_request(Principal("partner", admin=False, kbs=frozenset({"town"})))

        async def forbidden() -> None:
            async for _ in ui.chat(app, "Who?", [], [], "smollm2", 0.0, 1.0, 8, ["hr"], scoped):
                pass

        asyncio.run(forbidden())


@pytest.fixture
def served(town: Path, server_cls: Any) -> Iterator[Any]:
    from hearth.serve.app import create_app

    # the file says 5 passages; the command line (`hearth serve --set kb.top_k=3`) says 3
    (town / "hearth.yaml").write_text("kb:\n  top_k: 5\n", encoding="utf-8")
    try:
        settings = config.settings(["kb.top_k=3", "kb.score_threshold=0.01"])  # every passage counts as found
        with server_cls(create_app(settings, ui=False, mcp=False)) as s:
            yield s
    finally:
        (town / "hearth.yaml").unlink()


def test_serve_set_top_k_reaches_retrieval(served: Any) -> None:
    body = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": "What happens in Quillton?"}],
        "max_tokens": 4,
        "temperature": 0,
        "hearth": {"kb": ["town"]},
    }
    r = httpx.post(served.url + "/v1/chat/completions", json=body, timeout=300)
    assert r.status_code == 200, r.text
    assert len(r.json()["citations"]) == 3  # not 5 (the file) and not 5 (the default)
