"""CORS for browser clients: off by default; with ``server.cors_origins`` set, preflights are answered
for those origins only, and the requests after them still need a key.

The browser part is a page on another origin (``http://localhost:<port>``, served by Python's
http.server) calling the API with ``fetch`` in Debian's chromium, as a web app would.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
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


@pytest.fixture(scope="module")
def page_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A static page on its own origin: the browser app calling Hearth."""
    root = tmp_path_factory.mktemp("site")
    (root / "index.html").write_text("<!doctype html><title>app</title><p>app</p>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://localhost:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def servers(serve_home: Path, server_cls: Any, page_site: str) -> Iterator[dict[str, Any]]:
    """``cors``: keys required, the page's origin allowed; ``plain``: the defaults (CORS off)."""
    from hearth import config
    from hearth.serve import keys
    from hearth.serve.app import create_app

    settings = config.settings()
    settings.server.require_keys = True
    settings.server.cors_origins = [page_site]
    plain = config.settings()
    plain.server.require_keys = True
    with (
        server_cls(create_app(settings, ui=False, mcp=False)) as cors,
        server_cls(create_app(plain, ui=False, mcp=False)) as off,
    ):
        yield {"cors": cors, "plain": off, "key": keys.create_key("browser")}


def preflight(url: str, origin: str) -> httpx.Response:
    return httpx.options(
        url + "/v1/chat/completions",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )


def test_preflight_answered_for_allowed_origins_only(servers: dict[str, Any], page_site: str) -> None:
    ok = preflight(servers["cors"].url, page_site)
    assert ok.status_code == 200, ok.text
    assert ok.headers["access-control-allow-origin"] == page_site
    assert "authorization" in ok.headers["access-control-allow-headers"].lower()
    assert "POST" in ok.headers["access-control-allow-methods"]

    other = preflight(servers["cors"].url, "http://evil.example")
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers

    off = preflight(servers["plain"].url, page_site)  # CORS off: no allow header, whatever the status
    assert "access-control-allow-origin" not in off.headers


def test_keys_still_required_across_origins(servers: dict[str, Any], page_site: str) -> None:
    url = servers["cors"].url + "/v1/models"
    refused = httpx.get(url, headers={"Origin": page_site})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == page_site  # so the page can read why
    assert refused.json()["error"]["code"] == "invalid_api_key"
    ok = httpx.get(url, headers={"Origin": page_site, "Authorization": f"Bearer {servers['key']}"})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == page_site


FETCH = """async ([url, key]) => {
  try {
    const r = await fetch(url, { headers: key ? { Authorization: `Bearer ${key}` } : {} });
    const body = await r.json();
    return { status: r.status, ids: (body.data || []).map((m) => m.id), code: body.error && body.error.code };
  } catch (e) {
    return { blocked: String(e) };
  }
}"""


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (make setup)")
def test_browser_fetch_from_another_origin(servers: dict[str, Any], page_site: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page()
        page.goto(page_site + "/index.html")
        allowed = page.evaluate(FETCH, [servers["cors"].url + "/v1/models", servers["key"]])
        no_key = page.evaluate(FETCH, [servers["cors"].url + "/v1/models", None])
        cors_off = page.evaluate(FETCH, [servers["plain"].url + "/v1/models", servers["key"]])
        browser.close()
    assert allowed["status"] == 200 and "smollm2" in allowed["ids"]  # preflighted (Authorization header)
    assert no_key == {"status": 401, "ids": [], "code": "invalid_api_key"}
    assert "Failed to fetch" in cors_off["blocked"]  # the browser itself refuses to hand over the answer
