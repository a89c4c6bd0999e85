"""Checks every request passes before anything reads it: Host, Origin, keys in URLs, body size.

- **Host**: a DNS-rebinding page reaches a loopback server under the attacker's own name, so a request
  is answered only for IP addresses, ``localhost``, the bound host and ``server.allowed_hosts``
  (421 otherwise). IP literals are always fine: rebinding needs a name.
- **Origin**: a browser marks every cross-site POST with its page's origin; a state-changing request
  (or a websocket) from another origin is refused with 403 unless ``server.cors_origins`` lists it.
  That stops cross-site form posts and uploads (CSRF), with keys off as well as on.
- **Keys in URLs** end up in access logs and browser history: ``?key=`` is blanked before anything
  (uvicorn's access log included) sees it, and the request is refused with a hint to send a header.
- **Body size**: ``server.max_body_mb`` (``server.max_upload_mb`` for multipart uploads), checked on
  ``Content-Length`` and again while the body streams in, so a lying or chunked client is cut off too.
"""

from __future__ import annotations

import contextlib
import ipaddress
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hearth import config
from hearth.errors import HearthError
from hearth.serve import errors

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
URL_KEY_PARAMS = ("key", "api_key", "token")


class BadHost(HearthError):
    status = 421
    code = "invalid_host"


class CrossOrigin(HearthError):
    status = 403
    code = "cross_origin"


class KeyInURL(HearthError):
    status = 401
    code = "key_in_url"


class PayloadTooLarge(HearthError):
    status = 413
    code = "request_too_large"


def split_host(value: str) -> str:
    """``example.com:8000`` → ``example.com``; ``[::1]:8000`` → ``::1`` (lower case)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def host_allowed(host: str, server: config.ServerSettings) -> bool:
    """Whether the server answers to ``host`` (the Host header's name, without the port)."""
    allowed = [h.lower() for h in server.allowed_hosts]
    return (
        "*" in allowed
        or is_ip(host)
        or host == "localhost"
        or host.endswith(".localhost")  # browsers resolve these to loopback themselves
        or host == server.host.lower()
        or host in allowed
    )


def origin_allowed(origin: str, host_header: str, forwarded_host: str, server: config.ServerSettings) -> bool:
    """Same origin as the request's Host (or the Host a reverse proxy forwarded), a name the admin listed
    in ``server.allowed_hosts``, or an origin listed in ``server.cors_origins``."""
    if origin in server.cors_origins or "*" in server.cors_origins:
        return True
    netloc = urlsplit(origin).netloc.lower()
    if origin == "null" or not netloc:
        return False
    # A page cannot set X-Forwarded-Host on a cross-site request without a CORS preflight, which fails.
    same = {host_header.strip().lower(), forwarded_host.strip().lower()} - {""}
    named = {h.lower() for h in server.allowed_hosts} - {"*"}
    return netloc in same or split_host(netloc) in named


class Guard:
    """ASGI middleware in front of the key check; see the module docstring."""

    def __init__(self, app: ASGIApp, settings: config.Settings) -> None:
        self.app = app
        self.server = settings.server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        try:
            self.check_headers(scope)
        except HearthError as exc:
            await refuse(scope, receive, send, exc)
            return
        if scope["type"] == "http":
            await self.limit_body(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def check_headers(self, scope: Scope) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host_header = headers.get("host", "")
        host = split_host(host_header)
        if host_header and not host_allowed(host, self.server):
            raise BadHost(
                f"this server does not answer to the host name '{host}'",
                "if the name is yours, add it to server.allowed_hosts in hearth.yaml",
            )
        origin = headers.get("origin")
        unsafe = scope["type"] == "websocket" or scope.get("method", "GET") not in SAFE_METHODS
        forwarded = headers.get("x-forwarded-host", "")
        if origin is not None and unsafe and not origin_allowed(origin, host_header, forwarded, self.server):
            raise CrossOrigin(
                f"a page from {origin} may not send requests here",
                "open Hearth's own UI, or list the page's origin in server.cors_origins in hearth.yaml",
            )
        query = scope.get("query_string", b"").decode("latin-1")
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(k.lower() in URL_KEY_PARAMS for k, _ in pairs):
                # blank it in the scope itself: the access log line is written from this scope later
                scope["query_string"] = urlencode(
                    [(k, "REDACTED" if k.lower() in URL_KEY_PARAMS else v) for k, v in pairs]
                ).encode()
                raise KeyInURL(
                    "API keys are not accepted in the URL (they end up in logs and browser history)",
                    "send it as 'Authorization: Bearer <key>' or 'X-API-Key', or sign in at /login",
                )

    async def limit_body(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        upload = headers.get("content-type", "").lower().startswith("multipart/")
        mb = self.server.max_upload_mb if upload else self.server.max_body_mb
        limit = int(mb * 1024 * 1024)
        too_large = PayloadTooLarge(
            f"the request body is over the {mb:g} MB limit",
            "send less (split uploads into several requests), or raise "
            + ("server.max_upload_mb" if upload else "server.max_body_mb"),
        )
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await refuse(scope, receive, send, too_large)
            return

        received = 0
        refused = False
        started = False

        async def counted() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    raise too_large
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if refused:  # whatever the app makes of the cut-off body, the client hears 413
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        with contextlib.suppress(PayloadTooLarge):  # raised in `counted`, answered just below
            await self.app(scope, counted, guarded)
        if refused and not started:
            await refuse(scope, receive, send, too_large)


async def refuse(scope: Scope, receive: Receive, send: Send, exc: HearthError) -> None:
    """Answer ``exc`` in the API's error shape (a websocket is closed with a policy-violation code)."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    data, status, headers = errors.from_exception(exc)
    await JSONResponse(data, status_code=status, headers=headers or None)(scope, receive, send)
