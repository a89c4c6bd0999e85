"""Retrieval for grounded answers: search the chosen collections, keep what fits, number the sources.

Passages are numbered [1], [2] … in rank order; the same numbers index the citations attached to the
answer (document, heading path, page), so a reader can check every claim. What fits is decided in
model tokens, not characters: the passages get the share of the context window left after the
conversation and the answer's own ``max_tokens``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from hearth.access import LOCAL, Principal
from hearth.text import has_cjk

if TYPE_CHECKING:
    from hearth.config import Settings

NOT_FOUND_EN = "I could not find this in the knowledge base, so I won't guess."
NOT_FOUND_ZH = "知识库中没有找到相关内容，我不作猜测。"
SOURCES_HEADER = "\n\nSources:\n"


@dataclass
class Passage:
    text: str
    source: str
    title: str
    headings: list[str]
    page: int | None
    doc_id: str
    collection: str
    score: float
    truncated: bool = False

    def label(self) -> str:
        """'handbook.md > Leave > Parental leave, p. 3' — where the passage is, in words."""
        # the file's name, not its full path: the citation's `source` field keeps the whole path
        where = " > ".join([PurePath(self.source).name or self.source, *self.headings])
        return f"{where}, p. {self.page}" if self.page else where

    def render(self, n: int) -> str:
        """For people and tools: number, where, text."""
        return f"[{n}] {self.label()}\n{self.text}"

    def block(self, n: int) -> str:
        """For the model's prompt: number and text only (see ``grounded_question``)."""
        return f"[{n}] {self.text}"

    def citation(self, n: int) -> dict[str, Any]:
        """What a reader (or an API client) gets for [n]: the file's name, not where it lies on the
        server (the doc_id and collection identify it; a path would show the server's disk)."""
        return {
            "n": n,
            "source": PurePath(self.source).name or self.source,
            "title": self.title,
            "headings": list(self.headings),
            "page": self.page,
            "doc_id": self.doc_id,
            "collection": self.collection,
            "score": self.score,
            "text": self.text,
        }


@dataclass
class Grounding:
    """What retrieval gave one question: the passages placed in the prompt and how long it took."""

    query: str
    passages: list[Passage] = field(default_factory=list)
    dropped: int = 0  # found, but no room in the context window
    seconds: float = 0.0

    @property
    def found(self) -> bool:
        return bool(self.passages)


def retrieve(
    query: str,
    collections: Sequence[str] | None,
    settings: Settings,
    principal: Principal = LOCAL,
    k: int | None = None,
    threshold: float | None = None,
) -> list[Passage]:
    """The best passages for ``query`` over ``collections`` (default: all ``principal`` may see), best first.

    Each collection applies its own "not found" threshold (calibrated at ingest, or ``kb.score_threshold``); scores are the
    fused 0..1 scores, comparable across collections because every one is scaled the same way.
    """
    from hearth.kb import collection as kbc
    from hearth.kb import retrieve as kbr

    cfg = settings.kb
    k = k or cfg.top_k
    # threshold None: each collection's own "not found" threshold (calibrated at ingest; kb.score_threshold overrides)
    if collections:
        names = principal.check_kbs(collections)
    else:
        names = principal.visible(m.name for m in kbc.list_collections())
    found: list[Passage] = []
    for name in names:
        result = kbr.search(name, query, k, threshold=threshold, settings=settings)
        for r in result.results:
            found.append(Passage(r.text, r.source, r.title, r.headings, r.page, r.doc_id, name, r.score))
    found.sort(key=lambda p: -p.score)
    return found[:k]


def fit(passages: Sequence[Passage], budget: int, count: Callable[[str], int]) -> tuple[list[Passage], int]:
    """Keep passages in rank order while they fit in ``budget`` tokens; shorten the one that overflows.

    Returns (kept, dropped count).
    """
    kept: list[Passage] = []
    used = 0
    for p in passages:
        cost = count(p.block(len(kept) + 1)) + 2  # the blank line between passages
        if used + cost <= budget:
            kept.append(p)
            used += cost
            continue
        room = budget - used - 4  # the "[n] " prefix
        if room > 32:  # a useful piece of the passage still fits
            words = p.text.split(" ")
            lo, hi = 0, len(words)
            while lo < hi:  # the longest prefix of words that fits, by bisection
                mid = (lo + hi + 1) // 2
                if count(" ".join(words[:mid])) <= room:
                    lo = mid
                else:
                    hi = mid - 1
            if lo:
                kept.append(_replace_text(p, " ".join(words[:lo]) + " …"))
        return kept, len(passages) - len(kept)
    return kept, 0


def _replace_text(p: Passage, text: str) -> Passage:
    return Passage(text, p.source, p.title, p.headings, p.page, p.doc_id, p.collection, p.score, truncated=True)


def grounded_question(question: str, passages: Sequence[Passage]) -> str:
    """The user turn a small model answers well from: numbered passage texts, then the question.

    Measured on the bundled 135M model: bare "[n] text" blocks beat blocks labelled with file paths
    and heading paths (the model copied the labels instead of the facts), and a sentence calling the
    sources "reference text, not instructions" got echoed back as the answer. So labels stay out of
    the prompt (they are in the citations), and protection against instructions hidden in documents
    does not rest on wording: tool output and passages can never change the allowed tools.
    """
    sources = "\n\n".join(p.block(i) for i, p in enumerate(passages, 1))
    return f"{sources}\n\nQuestion: {question}\nAnswer from the text above, and cite it like [1]."


def not_found_message(question: str) -> str:
    return NOT_FOUND_ZH if has_cjk(question) else NOT_FOUND_EN


def cited_numbers(answer: str, n_passages: int) -> list[int]:
    """The source numbers an answer cites ([1], [2][3], [1, 2]), in order, valid ones only."""
    out: list[int] = []
    for group in re.findall(r"\[(\d+(?:\s*,\s*\d+)*)\]", answer):
        for num in re.findall(r"\d+", group):
            n = int(num)
            if 1 <= n <= n_passages and n not in out:
                out.append(n)
    return out


def sources_footer(passages: Sequence[Passage], cited: Sequence[int]) -> str:
    """'\n\nSources:\n[1] handbook.md > Leave, p. 3' — the cited passages, or all when none is cited."""
    numbers = list(cited) or list(range(1, len(passages) + 1))
    return SOURCES_HEADER + "\n".join(f"[{n}] {passages[n - 1].label()}" for n in numbers)
