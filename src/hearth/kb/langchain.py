"""A LangChain retriever over a Hearth knowledge base: ``HearthRetriever(collection="handbook")``.

It calls the same library function as the CLI, the HTTP API and the chat engine
(``hearth.kb.collection.search``: dense + BM25 fused by reciprocal rank, filters, "not found"
threshold), so a LangChain chain sees exactly the passages ``hearth kb search`` shows, in the same
order. Each passage becomes a ``Document`` whose metadata carries its citation: source, headings,
page, score, doc_id (plus title and chunk_index).

LangChain is an optional extra (``pip install 'hearth[langchain]'``); nothing else in Hearth imports
this module. ``examples/langchain_chain.py`` builds a full chain: this retriever, a prompt, and
``ChatOpenAI`` pointed at ``hearth serve``.
"""

from __future__ import annotations

from typing import Literal

from hearth.errors import ConfigError

try:
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
except ImportError as exc:  # raised where the user imports it, with the fix
    raise ConfigError(
        "hearth.kb.langchain needs langchain-core, which is not installed",
        "install the extra: pip install 'hearth[langchain]'",
    ) from exc
from pydantic import Field

from hearth import config
from hearth.kb.store import parse_filters


class HearthRetriever(BaseRetriever):
    """Top-k passages of a Hearth collection for a query, as LangChain ``Document`` objects."""

    collection: str = Field(description="name of the Hearth collection (`hearth kb list`)")
    k: int = Field(4, ge=1, description="how many passages to return")
    mode: Literal["hybrid", "dense", "text"] = Field("hybrid", description="dense + BM25 fused, or one of them")
    filters: list[str] = Field(
        default_factory=list,
        description="metadata filters as in the CLI: source=..., tag=..., after=YYYY-MM-DD, before=..., doc=ID",
    )
    threshold: float | None = Field(None, description="minimum cosine similarity; None = the collection's own")
    # This retriever is a face (LangChain code calls it directly), so like the CLI it builds the settings
    # once, when it is made, unless the caller passes its own.
    settings: config.Settings = Field(default_factory=config.settings, description="Hearth settings to search with")

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        from hearth.kb.collection import search

        where = parse_filters(self.filters) if self.filters else None
        found = search(
            self.collection,
            query,
            self.k,
            filters=where,
            mode=self.mode,
            threshold=self.threshold,
            settings=self.settings,
        )
        # "not found" has no passages: the chain's prompt then sees an empty context, not an unrelated one
        return [
            Document(
                page_content=r.text,
                id=f"{r.doc_id}:{r.chunk_index}",
                metadata={
                    "source": r.source,
                    "headings": r.headings,
                    "page": r.page,
                    "score": r.score,
                    "doc_id": r.doc_id,
                    "title": r.title,
                    "chunk_index": r.chunk_index,
                },
            )
            for r in found.results
        ]
