"""Who is asking, and what they may touch: the one access check every surface calls.

The server resolves a request's key once into a ``Principal`` (the CLI is the local user: ``LOCAL``,
an admin). Every surface — the OpenAI and Anthropic APIs, the Hearth API, MCP tools and resources, the
web UI, jobs, retrieval, grounding — asks the same methods, so a key limited to some knowledge bases
is limited the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hearth.errors import HearthError


class Forbidden(HearthError):
    status = 403
    code = "forbidden"


@dataclass(frozen=True)
class Principal:
    """A caller: ``admin`` may do everything; otherwise ``kbs`` lists the knowledge bases it may use."""

    name: str
    admin: bool = True
    kbs: frozenset[str] | None = None  # None = every knowledge base

    def allows_kb(self, kb: str) -> bool:
        return self.kbs is None or kb in self.kbs

    def check_kb(self, kb: str) -> str:
        """``kb`` if this caller may use it, else Forbidden (the same words on every surface)."""
        if not self.allows_kb(kb):
            raise Forbidden(
                f"this API key may not use knowledge base '{kb}'", "ask the server's admin for a key that includes it"
            )
        return kb

    def check_kbs(self, kbs: Iterable[str]) -> list[str]:
        return [self.check_kb(kb) for kb in kbs]

    def visible(self, kbs: Iterable[str]) -> list[str]:
        """The knowledge bases of ``kbs`` this caller may see (listings leave the others out)."""
        return [kb for kb in kbs if self.allows_kb(kb)]

    def check_admin(self, action: str) -> None:
        """Training, settings, the inspector and server-wide jobs need an admin key."""
        if not self.admin:
            raise Forbidden(f"this API key may not {action}", "ask the server's admin for an admin key")


LOCAL = Principal("local")  # the user at the CLI, and a server without keys: trusted like its owner


def of_request(request: object) -> Principal:
    """The principal the server's key middleware resolved for ``request`` (``request.state.principal``).

    A server without keys has no middleware verdict to read: its caller is its owner (``LOCAL``)."""
    principal = getattr(getattr(request, "state", None), "principal", None)
    return principal if isinstance(principal, Principal) else LOCAL
