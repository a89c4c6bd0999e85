"""How much one HTTP request may ask of the server, each limit refused with a 400 that names its setting.

The body size is checked before anything reads the body (``guard``); these check what is inside it:
embedding inputs and their tokens, the client's timeout (never above the server's), passages asked
of the knowledge base, and the size of JSON schemas the server would compile into a grammar.
"""

from __future__ import annotations

import json
from typing import Any

from hearth import config
from hearth.errors import HearthError


class OverLimit(HearthError):
    status = 400
    code = "over_limit"


def check_timeout(timeout: float | None, server_timeout: float) -> float | None:
    """A client may ask to give up sooner than the server would, never later (``hearth serve --timeout``)."""
    if timeout is not None and timeout > server_timeout:
        raise OverLimit(
            f"timeout {timeout:g} s is over this server's {server_timeout:g} s",
            "ask for less, or leave `timeout` out",
        )
    return timeout


def check_top_k(k: int | None, settings: config.Settings) -> int | None:
    limit = settings.server.max_top_k
    if k is not None and k > limit:
        raise OverLimit(
            f"top_k {k} is over this server's limit of {limit} passages", "ask for fewer (server.max_top_k)"
        )
    return k


def check_schemas(response_format: dict[str, Any] | None, tools: list[Any] | None, settings: config.Settings) -> None:
    """JSON schemas become grammars the engine compiles; a huge one would hold a worker."""
    limit = settings.server.max_schema_bytes
    for what, schema in (("response_format", response_format), *(("tools", t) for t in tools or [])):
        size = len(json.dumps(schema, separators=(",", ":"))) if schema is not None else 0
        if size > limit:
            raise OverLimit(
                f"a schema in `{what}` is {size:,} bytes, over this server's {limit:,}",
                "send a smaller schema (server.max_schema_bytes)",
            )


def check_embedding_inputs(texts: list[str], settings: config.Settings) -> None:
    limit = settings.server.max_embedding_inputs
    if len(texts) > limit:
        raise OverLimit(
            f"{len(texts):,} inputs in one embeddings request, over this server's {limit:,}",
            "send them in several requests (server.max_embedding_inputs)",
        )


def check_embedding_tokens(tokens: int, settings: config.Settings) -> None:
    limit = settings.server.max_embedding_tokens
    if tokens > limit:
        raise OverLimit(
            f"{tokens:,} tokens in one embeddings request, over this server's {limit:,}",
            "send them in several requests (server.max_embedding_tokens)",
        )
