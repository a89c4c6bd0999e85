"""API keys on: every endpoint needs one, a key limited to some knowledge bases sees only those,
and a full queue answers 429 with Retry-After. One real server with keys required."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from hearth.serve import keys


@pytest.fixture(scope="module")
def server(serve_home: Path, server_cls: Any) -> Iterator[Any]:
    from hearth import config
    from hearth.kb.collection import create
    from hearth.serve.app import create_app

    settings = config.settings()
    settings.server.require_keys = True
    create("public", settings=settings)
    create("secret", settings=settings)
    # max_pending=2: one decoding + one waiting, the third is refused
    with server_cls(create_app(settings, mcp=False, ui=True, max_pending=2)) as s:
        yield s


@pytest.fixture(scope="module")
def admin(server: Any) -> str:
    return keys.create_key("admin")


@pytest.fixture(scope="module")
def limited(server: Any) -> str:
    return keys.create_key("guest", ["public"])


def test_keys_store_only_hashes(server: Any, admin: str) -> None:
    stored = keys.keys_file().read_text()
    assert admin not in stored and keys._hash(admin) in stored


def test_every_endpoint_needs_a_key(server: Any, admin: str) -> None:
    for path in ("/v1/models", "/api/kb", "/metrics", "/docs"):
        r = httpx.get(server.url + path)
        assert r.status_code == 401, path
        assert r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(server.url + "/v1/models", headers={"Authorization": "Bearer hth-wrong"}).status_code == 401
    assert httpx.get(server.url + "/ui/").status_code == 303  # the browser is sent to sign in
    assert httpx.get(server.url + "/health").status_code == 200  # probes stay open
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="hth-wrong", max_retries=0).models.list()
    ok = openai.OpenAI(base_url=server.url + "/v1", api_key=admin, max_retries=0)
    assert "smollm2" in [m.id for m in ok.models.list()]


def test_ui_sign_in_sets_a_cookie(server: Any, admin: str) -> None:
    with httpx.Client(base_url=server.url) as web:
        assert web.post("/login", data={"key": "hth-wrong", "next": "/ui"}).status_code == 401
        r = web.post("/login", data={"key": admin, "next": "/ui"})
        assert r.status_code == 303 and "hearth_key" in web.cookies
        assert web.get("/ui/").status_code == 200


def test_limited_key_sees_and_searches_only_its_kbs(server: Any, admin: str, limited: str) -> None:
    as_admin = {"Authorization": f"Bearer {admin}"}
    as_guest = {"Authorization": f"Bearer {limited}"}
    assert {c["name"] for c in httpx.get(server.url + "/api/kb", headers=as_admin).json()} == {"public", "secret"}
    assert [c["name"] for c in httpx.get(server.url + "/api/kb", headers=as_guest).json()] == ["public"]
    r = httpx.post(server.url + "/api/kb/secret/search", json={"query": "anything"}, headers=as_guest)
    # 403 whether or not the kb exists (the same words as on every surface), so nothing is learned
    assert r.status_code == 403 and set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert httpx.get(server.url + "/api/kb/secret", headers=as_guest).status_code == 403
    assert httpx.get(server.url + "/api/kb/no-such-kb", headers=as_guest).status_code == 403
    assert httpx.post(server.url + "/api/kb/public/search", json={"query": "x"}, headers=as_guest).status_code == 200
    guest = openai.OpenAI(base_url=server.url + "/v1", api_key=limited, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        guest.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "hi"}], extra_body={"hearth": {"kb": ["secret"]}}
        )


def test_full_queue_answers_429_with_retry_after(server: Any, admin: str) -> None:
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "Tell a story."}], "max_tokens": 60}
    headers = {"Authorization": f"Bearer {admin}"}
    started = threading.Barrier(3)
    answers: list[int] = []

    def hold() -> None:
        with httpx.stream(
            "POST", server.url + "/v1/chat/completions", json={**body, "stream": True}, headers=headers, timeout=120
        ) as r:
            started.wait()
            answers.append(r.status_code)
            for _ in r.iter_lines():
                pass

    holders = [threading.Thread(target=hold) for _ in range(2)]
    for t in holders:
        t.start()
    started.wait(60)  # both admitted: one decoding, one waiting
    r = httpx.post(server.url + "/v1/chat/completions", json=body, headers=headers, timeout=60)
    assert r.status_code == 429, r.text
    assert int(r.headers["Retry-After"]) >= 1
    assert json.loads(r.text)["error"]["type"] == "rate_limit_error"
    for t in holders:
        t.join(120)
    assert answers == [200, 200]
