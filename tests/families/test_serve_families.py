"""`hearth serve` with every family in the models folder: listed by /v1/models, answered through the openai SDK."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from tiny_families import FAMILIES

from homes import using_home

NAMES = list(FAMILIES)
ASK = [{"role": "user", "content": "Where is Oddly Creek?"}]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, family_dirs: dict[str, Path]) -> Iterator[str]:
    """A real uvicorn server on a free port, its home's models/ holding tiny-<family> for each family."""
    import uvicorn

    from hearth import config
    from hearth.serve.app import create_app

    home = tmp_path_factory.mktemp("serve-families")
    for name, folder in family_dirs.items():
        shutil.copytree(folder, home / "models" / f"tiny-{name}")
    with using_home(home):
        settings = config.settings()
        settings.generation.temperature = 0.0
        port = _free_port()
        uv = uvicorn.Server(
            uvicorn.Config(create_app(settings, ui=False, mcp=False), host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=uv.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while not uv.started:
            assert time.monotonic() < deadline and thread.is_alive(), "the test server did not start"
            time.sleep(0.05)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            uv.should_exit = True
            thread.join(10)


@pytest.fixture(scope="module")
def client(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server + "/v1", api_key="not-needed", max_retries=0)


def test_every_family_is_listed(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {f"tiny-{name}" for name in NAMES} <= ids


@pytest.mark.parametrize("name", NAMES)
def test_chat_completion_per_family(name: str, client: openai.OpenAI) -> None:
    from hearth.models import backends, generate

    model = f"tiny-{name}"
    r = client.chat.completions.create(model=model, messages=ASK, max_tokens=4, temperature=0)  # type: ignore[arg-type]
    assert r.model == model and r.choices[0].finish_reason in ("stop", "length")
    assert 1 <= r.usage.completion_tokens <= 4
    # The server's answer is the generation path's greedy answer, rendered with the family's template.
    chat = backends.get_chat_model(model)
    expected = chat.complete(ASK, generate.sampling(temperature=0, max_tokens=4))
    assert r.choices[0].message.content == expected.text
    assert r.usage.prompt_tokens == expected.usage.prompt_tokens


@pytest.mark.parametrize("name", ["mistral", "gemma3"])
def test_a_conversation_the_template_refuses_is_a_400_with_its_reason(name: str, client: openai.OpenAI) -> None:
    """Mistral's and Gemma's templates demand alternating user/assistant turns; two user turns in a row
    must come back as a client error carrying the template's own words, not a 500."""
    twice = [{"role": "user", "content": "Hello"}, {"role": "user", "content": "Again"}]
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=f"tiny-{name}", messages=twice, max_tokens=2)  # type: ignore[arg-type]
    assert "alternate" in str(err.value)
    # A stream has already answered 200 when the prompt renders: the reason comes as its error event.
    with pytest.raises(openai.APIError, match="alternate"):
        list(client.chat.completions.create(model=f"tiny-{name}", messages=twice, max_tokens=2, stream=True))  # type: ignore[arg-type]
