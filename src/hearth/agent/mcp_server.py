"""Hearth as an MCP server (official ``mcp`` SDK): the knowledge base and grounded answers as tools.

``build_server()`` returns the SDK's ``MCPServer``; ``hearth mcp serve`` runs it over stdio and the
HTTP server mounts ``http_app()`` (streamable HTTP) at ``/mcp``. Tools: ``kb_search``,
``kb_list_documents``, ``kb_add_text``, ``ask`` (a grounded answer with its citations). Documents are
resources: ``hearth://kb`` lists them, ``hearth://kb/{collection}/{doc_id}`` reads one.

The SDK does the protocol: it validates arguments against each tool's schema, turns a tool's
exception into an ``isError`` result, answers an unknown tool with an error result, and answers
unknown methods (including the 2.x clients' ``server/discover`` probe, when talking the older
protocol) with JSON-RPC -32601 at once, so clients connect without a timeout.

Every tool and resource works for one caller: ``principal_of`` says who sent the MCP request (the
HTTP server's key, resolved once by its middleware; over stdio, the local user), and the same
``Principal`` checks as on every other surface decide which knowledge bases it may see.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from hearth import __version__, config
from hearth.access import LOCAL, Principal
from hearth.errors import HearthError

INSTRUCTIONS = (
    "Hearth's knowledge base. Use kb_search to find passages (each with its source, heading path and page), "
    "ask for a grounded answer with numbered citations, kb_list_documents to see what is there, and "
    "kb_add_text to store a note."
)


def local_principal() -> Principal:
    return LOCAL


# Who sent the MCP request being handled. The SDK hands each tool call and resource read a Context
# whose request is the HTTP request (``request.state.principal``, set by the server's key middleware);
# ``_Server`` copies that principal here, and tools, which the SDK runs in worker threads with this
# context copied, read it through ``caller()``. Over stdio there is no request: the local user.
_caller: ContextVar[Principal] = ContextVar("hearth_mcp_caller", default=LOCAL)


def caller() -> Principal:
    """The principal of the MCP request being handled (``LOCAL`` over stdio)."""
    return _caller.get()


def _principal_of_context(context: Any) -> Principal:
    from hearth.access import of_request

    try:
        request = context.request_context.request
    except (AttributeError, ValueError):  # no request context: called in-process or over stdio
        return LOCAL
    return LOCAL if request is None else of_request(request)


def tools(settings: config.Settings, principal_of: Callable[[], Principal] = caller) -> list[Callable[..., Any]]:
    """The MCP tools, bound to ``settings``; each asks ``principal_of()`` who is calling."""

    def kb_search(query: str, collection: str = "", k: int = 5) -> dict[str, Any]:
        """Search the knowledge base; passages come best first with source, heading path, page and score.

        Args:
            query: what to look for
            collection: one collection to search (empty = all)
            k: how many passages (1-20)
        """
        from hearth.agent import rag

        found = rag.retrieve(
            query, [collection] if collection else None, settings, principal_of(), k=max(1, min(int(k), 20))
        )
        return {
            "query": query,
            "found": bool(found),
            "passages": [p.citation(i) for i, p in enumerate(found, 1)],
        }

    def kb_list_documents(collection: str = "") -> dict[str, Any]:
        """List the knowledge base's documents (all collections, or one).

        Args:
            collection: one collection (empty = all)
        """
        return {"documents": _documents(principal_of(), collection)}

    def kb_add_text(collection: str, title: str, text: str) -> dict[str, Any]:
        """Store a piece of text as a document in a collection (created if missing) and index it.

        Args:
            collection: the collection to add to
            title: a short title; it becomes the document's file name
            text: the text (Markdown headings are kept as the heading path)
        """
        from hearth.errors import NotFound
        from hearth.kb import collection as kbc

        principal_of().check_kb(collection)
        if not text.strip():
            raise ValueError("text is empty")
        try:
            kbc.read_meta(collection)
        except NotFound:
            kbc.create(collection, settings=settings)
        name = title if title.endswith((".md", ".txt")) else f"{title}.md"
        path = kbc.save_upload(collection, name, text.encode("utf-8"))
        report = kbc.add(collection, [path], settings=settings)
        if report.failed:
            raise ValueError(f"could not index the text: {report.failed}")
        return {"collection": collection, "source": path.name, "chunks_added": report.chunks_added}

    def ask(question: str, collection: str = "", max_tokens: int = 128) -> dict[str, Any]:
        """Answer a question from the knowledge base with Hearth's own model, citing sources as [1], [2].

        Args:
            question: the question
            collection: the collection to answer from (empty = all)
            max_tokens: longest answer in tokens (1-1024)
        """
        from hearth.agent.engine import ChatRequest, respond
        from hearth.kb import collection as kbc
        from hearth.models import generate

        principal = principal_of()
        names = [collection] if collection else principal.visible(m.name for m in kbc.list_collections())
        params = generate.sampling(settings.generation, max_tokens=max(1, min(int(max_tokens), 1024)), temperature=0.0)
        request = ChatRequest([{"role": "user", "content": question}], kb=names, params=params)
        parts: list[str] = []
        last = None
        for delta in respond(request, settings, principal):
            parts.append(delta.text)
            last = delta
        citations = [{k: v for k, v in c.items() if k != "text"} for c in (last.citations or [])] if last else []
        return {"answer": "".join(parts), "found": bool(last and last.found), "citations": citations}

    return [kb_search, kb_list_documents, kb_add_text, ask]


def _documents(principal: Principal, collection: str = "") -> list[dict[str, Any]]:
    from hearth.kb import collection as kbc

    if collection:
        names = [principal.check_kb(collection)]
    else:
        names = principal.visible(m.name for m in kbc.list_collections())
    return [
        {
            "collection": name,
            "doc_id": d.doc_id,
            "source": Path(d.source).name,  # the file's name: server paths stay on the server
            "title": d.title,
            "chunks": d.n_chunks,
            "uri": f"hearth://kb/{name}/{d.doc_id}",
        }
        for name in names
        for d in kbc.list_docs(name)
    ]


def read_document(principal: Principal, collection: str, doc_id: str) -> str:
    """The document's text as the knowledge base parsed it (headings kept)."""
    from hearth.errors import NotFound
    from hearth.kb import collection as kbc
    from hearth.kb import parse

    principal.check_kb(collection)
    coll = kbc.open_collection(collection)
    try:
        entry = kbc.find_doc(coll, doc_id)
    finally:
        coll.close()
    path = Path(entry.source)
    if not path.is_file():
        raise NotFound(f"the source file of {doc_id} is gone: {path.name}", "re-add the document")
    doc = parse.parse_file(path)
    return "\n\n".join(
        ("#" * len(s.headings) + " " + s.headings[-1] + "\n\n" if s.headings else "") + s.text for s in doc.sections
    )


def build_server(
    settings: config.Settings, principal_of: Callable[[], Principal] = caller, name: str = "hearth"
) -> Any:
    """The MCP server with Hearth's tools and document resources (the SDK's ``MCPServer``)."""
    server = _server_class()(
        name,
        instructions=INSTRUCTIONS,
        version=__version__,
        log_level="WARNING",
        tools=[_sdk_tool(fn) for fn in tools(settings, principal_of)],
    )

    @server.resource("hearth://kb", name="documents", mime_type="application/json")
    def documents() -> str:
        """Every document in the knowledge base, with the URI that reads it."""
        return json.dumps(_documents(principal_of()), ensure_ascii=False)

    @server.resource("hearth://kb/{collection}/{doc_id}", name="document", mime_type="text/markdown")
    def document(collection: str, doc_id: str) -> str:
        """One document's text."""
        return read_document(principal_of(), collection, doc_id)

    return server


def _sdk_tool(fn: Callable[..., Any]) -> Any:
    """The SDK's tool for ``fn``, advertising the schema and description the tool registry builds.

    One builder for both surfaces: the chat loop offers a model the same schema an MCP client sees
    (left to itself the SDK would publish the whole docstring and no parameter descriptions).
    """
    from mcp.server.mcpserver.tools import Tool as SdkTool

    from hearth.agent import tools as registry_tools

    ours = registry_tools.from_function(fn, source="mcp")
    return SdkTool.from_function(fn, description=ours.description).model_copy(update={"parameters": ours.parameters})


def _server_class() -> type:
    """The SDK's ``MCPServer``, telling every tool call and resource read who sent it (``caller()``)."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import (
        ResourceError,
        ToolError,
        UnexpectedResourceError,
        UnexpectedToolError,
    )

    def _said(exc: Exception) -> str:
        """A HearthError's words (message and hint) for the client; the SDK would hide them as unexpected."""
        cause = exc.__cause__
        if not isinstance(cause, HearthError):
            return ""
        return f"{cause.message} (hint: {cause.hint})" if cause.hint else cause.message

    class _Server(MCPServer):
        async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
            token = _caller.set(_principal_of_context(context))
            try:
                return await super().call_tool(name, arguments, context)
            except UnexpectedToolError as exc:
                if not (said := _said(exc)):
                    raise
                raise ToolError(said) from exc.__cause__
            finally:
                _caller.reset(token)

        async def read_resource(self, uri: Any, context: Any = None) -> Any:
            token = _caller.set(_principal_of_context(context))
            try:
                return await super().read_resource(uri, context)
            except UnexpectedResourceError as exc:
                if not (said := _said(exc)):
                    raise
                raise ResourceError(said) from exc.__cause__
            finally:
                _caller.reset(token)

    return _Server


def http_app(settings: config.Settings, path: str = "/", server: Any = None, behind_guard: bool = False) -> Any:
    """A Starlette ASGI app serving MCP over streamable HTTP at ``path`` inside the app.

    The HTTP server mounts it with ``app.mount("/mcp", http_app())`` (so the endpoint is ``/mcp``),
    and must run its lifespan (the SDK's session manager): enter
    ``mcp_app.router.lifespan_context(mcp_app)`` inside the FastAPI app's own lifespan.
    Standalone: ``uvicorn.run(http_app("/mcp"))``. Stateless with JSON responses: every request is
    answered on its own, so it works behind any number of workers.
    """
    from mcp.server.transport_security import TransportSecuritySettings

    server = server or build_server(settings)
    # Standalone, the SDK's own DNS-rebinding check (loopback names only) stays on. Inside `hearth serve`
    # the server-wide guard has checked Host and Origin already, by rules that also let LAN clients in
    # (IP addresses, server.allowed_hosts), which the SDK's list of exact names could not express.
    security = TransportSecuritySettings(enable_dns_rebinding_protection=False) if behind_guard else None
    return server.streamable_http_app(
        streamable_http_path=path, stateless_http=True, json_response=True, transport_security=security
    )


def serve_stdio(settings: config.Settings) -> None:
    """Run the server on stdin/stdout until the client closes them (``hearth mcp serve``); the local
    user is the caller."""
    build_server(settings).run("stdio")
