"""Every error leaves the server in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.

FastAPI's own ``{"detail": ...}`` answers (validation, 404 routes, 405) are replaced too, so clients
written for OpenAI (the SDK, LangChain) read our errors as they read theirs.

Nothing about the server's disk leaves in an error: ``scrub`` turns the home folder into
``$HEARTH_HOME`` and other absolute paths into their file names, and drops traceback lines; an
unexpected exception is logged and answered with a plain "internal error".
"""

from __future__ import annotations

import logging
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hearth import paths
from hearth.errors import HearthError

log = logging.getLogger("hearth.serve")

# OpenAI's `type` for each status
TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",  # what OpenAI sends for an unknown model
    405: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    502: "server_error",
    504: "timeout",
}


def body(message: str, status: int, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": TYPES.get(status, "server_error"), "param": param, "code": code}}


def response(
    message: str, status: int, code: str | None = None, param: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(body(message, status, code, param), status_code=status, headers=headers)


# first folders of absolute paths that are file-system paths (routes like /v1/models are not among them)
_ROOTS = {"home", "root", "tmp", "usr", "etc", "var", "opt", "srv", "mnt", "media", "work", "private", "Users", "nix"}
_PATH = re.compile(r"(?<![\w.:/~$-])/([^\s/'\"`]+)((?:/[^\s/'\"`]*)*)")
_TRACE = re.compile(r"^(Traceback \(most recent call last\):|\s+File \"|\s{4,}\S)")


def scrub(text: str) -> str:
    """``text`` without server paths or traceback lines, for an HTTP answer."""
    if not text:
        return text
    home = str(paths.home())
    text = text.replace(home, "$HEARTH_HOME")
    roots = _ROOTS | {Path(p).parts[1] for p in (sys.prefix, Path.cwd(), Path.home(), tempfile.gettempdir())}

    def short(m: re.Match[str]) -> str:
        if m.group(1) not in roots:
            return m.group(0)
        return Path(m.group(0).rstrip("/.,")).name + m.group(0)[len(m.group(0).rstrip("/.,")) :]

    text = text.replace("Traceback (most recent call last):", "")
    lines = [line for line in text.splitlines() if not _TRACE.match(line)]
    return _PATH.sub(short, "\n".join(lines)).strip()


def from_exception(exc: BaseException) -> tuple[dict[str, Any], int, dict[str, str]]:
    """The OpenAI-shaped body, status and extra headers for any exception."""
    if isinstance(exc, HearthError):
        message = f"{exc.message} (hint: {exc.hint})" if exc.hint else exc.message
        message = scrub(message)
        headers = {}
        retry = getattr(exc, "retry_after", None)
        if retry is not None:
            headers["Retry-After"] = str(retry)
        return body(message, exc.status, exc.code, getattr(exc, "param", None)), exc.status, headers
    log.error("unexpected error", exc_info=exc)  # the whole story goes to the log, none of it to the client
    return body("internal error (the server's log has the details)", 500, "internal_error"), 500, {}


def install(app: FastAPI) -> None:
    @app.exception_handler(HearthError)
    async def _hearth(request: Request, exc: HearthError) -> JSONResponse:
        data, status, headers = from_exception(exc)
        return JSONResponse(data, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        where = ".".join(loc)
        message = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body')}: {e.get('msg')}" for e in errors
        )
        # OpenAI answers a malformed request with 400; the Hearth API keeps FastAPI's 422.
        status = 400 if request.url.path.startswith("/v1/") else 422
        return response(message or "invalid request", status, "invalid_request", where or None)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = scrub(exc.detail if isinstance(exc.detail, str) else str(exc.detail))
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}"
        return response(message, exc.status_code, "http_error", headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _any(request: Request, exc: Exception) -> JSONResponse:
        data, status, headers = from_exception(exc)
        return JSONResponse(data, status_code=status, headers=headers)
