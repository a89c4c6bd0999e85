"""The one server: OpenAI-compatible API at ``/v1``, the Hearth API at ``/api``, the web UI at ``/ui``,
MCP at ``/mcp``, plus ``/health``, ``/metrics`` and OpenAPI docs at ``/docs``.

``create_app(settings)`` builds it; ``hearth serve`` runs it with uvicorn. With keys required, one
ASGI middleware in front of everything (mounted apps included) checks the key, so no endpoint can
forget to.
"""

from __future__ import annotations

import contextlib
import html
import ipaddress
import logging
import os
from collections.abc import AsyncIterator
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from hearth import __version__, config
from hearth.access import LOCAL, Principal
from hearth.serve import errors, guard, keys
from hearth.serve.queue import GenerationQueue

# Gradio must not phone home (analytics, version check) — set before it is imported anywhere.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

log = logging.getLogger("hearth.serve")

COOKIE = "hearth_key"
PUBLIC = ("/health", "/login")  # reachable without a key: probes and the page that asks for one
NOBODY = Principal("anonymous", admin=False, kbs=frozenset())  # who calls PUBLIC paths without a key


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def key_from_scope(scope: Scope) -> str | None:
    """The key a request carries: ``Authorization: Bearer``, ``X-API-Key`` or the UI's cookie (never the
    URL: ``guard`` refuses keys there)."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    if headers.get("x-api-key"):
        return headers["x-api-key"].strip()
    if "cookie" in headers:
        jar: SimpleCookie = SimpleCookie()
        with contextlib.suppress(CookieError):
            jar.load(headers["cookie"])
        if COOKIE in jar:
            return jar[COOKIE].value
    return None


class KeyMiddleware:
    """Resolves the request's key once into an ``access.Principal`` in ``scope["state"]["principal"]``
    (what ``access.of_request`` reads on every surface). With keys required, every request but PUBLIC
    ones needs a valid key; with keys off, every caller is the server's owner (``LOCAL``)."""

    def __init__(self, app: ASGIApp, required: bool) -> None:
        self.app = app
        self.required = required

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        if not self.required:  # clients send placeholder keys ("sk-none") to open servers: ignore them
            state["principal"] = LOCAL
            await self.app(scope, receive, send)
            return
        try:
            state["principal"] = keys.principal(key_from_scope(scope))
        except keys.AuthError as exc:
            path = scope.get("path", "")
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            if path in PUBLIC:
                state["principal"] = NOBODY  # the sign-in page and probes touch nothing
                await self.app(scope, receive, send)
                return
            response: Any
            if path == "/ui" or path.startswith("/ui/"):
                response = RedirectResponse(f"/login?next={quote(path)}", status_code=303)
            else:
                data, status, _ = errors.from_exception(exc)
                if path.startswith("/v1/messages"):  # Anthropic's clients read their own error shape
                    from hearth.serve.anthropic_api import error_body

                    data = error_body(data["error"]["message"], status)
                response = JSONResponse(data, status_code=status, headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


LOGIN_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Hearth — sign in</title>
<style>body{{font-family:system-ui,sans-serif;display:grid;place-items:center;height:100vh;margin:0;background:#f6f7f9}}
form{{background:#fff;padding:2rem;border-radius:12px;box-shadow:0 1px 4px #0002;min-width:22rem}}
input{{width:100%;padding:.6rem;margin:.6rem 0;box-sizing:border-box;border:1px solid #ccd;border-radius:8px}}
button{{padding:.6rem 1.2rem;border:0;border-radius:8px;background:#e8590c;color:#fff;font-weight:600}}
.err{{color:#c92a2a}}</style></head><body><form method="post" action="/login">
<h2>Hearth</h2><p>This server needs an API key (<code>hearth keys create NAME</code>).</p>
<p class="err">{error}</p><input type="password" name="key" placeholder="hth-…" autofocus>
<input type="hidden" name="next" value="{next}"><button type="submit">Sign in</button></form></body></html>"""


def create_app(
    settings: config.Settings | None = None,
    ui: bool = True,
    mcp: bool = True,
    max_pending: int = 64,
    timeout: float = 300.0,
    demo: bool = False,
) -> FastAPI:
    from hearth.jobs import manager
    from hearth.serve import anthropic_api, hearth_api, openai_api

    settings = settings or config.settings()
    mcp_app = _mcp_app(settings) if mcp else None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The MCP app keeps a session manager that must run for the server's whole life.
        if mcp_app is None:
            yield
            return
        async with mcp_app.router.lifespan_context(mcp_app):
            yield

    app = FastAPI(
        lifespan=lifespan,
        title="Hearth",
        version=__version__,
        description="A private, self-hosted AI stack: OpenAI-compatible API, knowledge bases, training jobs.",
    )
    app.state.settings = settings
    app.state.queue = GenerationQueue(max_pending=max_pending, timeout=timeout)
    app.state.jobs = manager()
    errors.install(app)
    app.include_router(openai_api.router)
    app.include_router(anthropic_api.router)
    app.include_router(hearth_api.router)

    @app.get("/health", tags=["server"])
    async def health(request: Request) -> dict[str, Any]:
        q: GenerationQueue = request.app.state.queue
        from hearth.models.backends import engine_info

        info = {"status": "ok", "version": __version__, "model": settings.model, "queue": q.pending}
        return {**info, "engine": engine_info(settings)}  # which engine serves the model, why, its processes

    @app.get("/metrics", tags=["server"], response_class=PlainTextResponse)
    async def metrics(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.app.state.queue.prometheus(), media_type="text/plain; version=0.0.4")

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/ui" if ui else "/docs")

    @app.get("/login", include_in_schema=False)
    async def login_page(next: str = "/ui", error: str = "") -> HTMLResponse:
        return HTMLResponse(LOGIN_PAGE.format(error=html.escape(error), next=html.escape(next)))

    @app.post("/login", include_in_schema=False)
    async def login(key: str = Form(""), next: str = Form("/ui")) -> Any:
        try:
            keys.check_key(key)
        except keys.AuthError as exc:
            return HTMLResponse(LOGIN_PAGE.format(error=html.escape(exc.message), next=html.escape(next)), 401)
        target = next if next.startswith("/") and not next.startswith("//") else "/ui"
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(COOKIE, key, httponly=True, samesite="strict")
        return response

    if demo:
        start_demo_kb(app.state.jobs, settings)
    if mcp_app is not None:
        app.mount("/mcp", mcp_app)
    if ui:
        from hearth.serve import ui as web

        app = web.mount(app)
    app.add_middleware(KeyMiddleware, required=settings.server.require_keys)
    app.add_middleware(guard.Guard, settings=settings)  # outside the key check: Host, Origin, URL keys, size
    if settings.server.cors_origins:
        # Outside the key check: a browser's preflight carries no key and must still be answered.
        # The real request after it needs a key as any other (sent as a header, so no credentials mode).
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.server.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["Retry-After"],
        )
    return app


DEMO_KB = "hearth-docs"


def start_demo_kb(jobs: Any, settings: config.Settings) -> None:
    """At first start, ingest Hearth's own README and docs as the 'hearth-docs' knowledge base
    (in the background: the server answers meanwhile), so there is something to ask right away."""
    from hearth.jobs import recipes_dir, start_ingest
    from hearth.kb.collection import create, list_collections

    if any(c.name == DEMO_KB for c in list_collections()):
        return
    root = recipes_dir().parent
    files = [p for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))] if p.is_file()]
    if not files:
        return
    create(DEMO_KB, settings=settings)
    start_ingest(jobs, DEMO_KB, list(files), settings=settings)
    log.info("ingesting %d docs into the demo knowledge base '%s'", len(files), DEMO_KB)


def _mcp_app(settings: config.Settings) -> Any:
    """The agent's MCP server as a streamable-HTTP ASGI app, to mount at /mcp."""
    from hearth.agent import mcp_server

    return mcp_server.http_app(settings, behind_guard=True)
