"""Retrieval metrics (recall@k, MRR, nDCG@k) and the evaluation of a collection against a QA file.

A QA file is JSON lines: ``{"question": ..., "source": ..., "answer": ..., "lang": ...}``; ``source``
and/or ``answer`` say which passages are right. A retrieved passage is relevant when its source file
matches the gold source (path suffix, ``#anchor`` ignored) and, if a gold answer is given, when the
passage and the answer overlap (share at least half of the shorter one's character 8-grams).
Each question has one gold answer, so a question counts once even if several chunks cover it: the
metrics use the rank of the first relevant passage.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hearth.config import Settings
from hearth.errors import DataError
from hearth.text import language

# ---------------------------------------------------------------------------------------------
# metrics over relevance lists (1 = relevant, 0 = not), best-ranked first


def first_relevant_rank(relevance: Sequence[int]) -> int | None:
    """1-based rank of the first relevant item, or None."""
    for i, rel in enumerate(relevance, start=1):
        if rel:
            return i
    return None


def recall_at_k(relevance: Sequence[int], k: int, n_relevant: int = 1) -> float:
    """Fraction of the relevant items found in the top k (with one gold answer: hit rate)."""
    if n_relevant <= 0:
        return 0.0
    return min(sum(1 for r in relevance[:k] if r), n_relevant) / n_relevant


def mrr(relevance: Sequence[int]) -> float:
    """Reciprocal rank of the first relevant item (0 when none)."""
    rank = first_relevant_rank(relevance)
    return 1.0 / rank if rank else 0.0


def ndcg_at_k(relevance: Sequence[int], k: int, n_relevant: int | None = None) -> float:
    """Normalised discounted cumulative gain with binary gains; ideal = all relevant items ranked first."""
    dcg = sum(rel / math.log2(i + 1) for i, rel in enumerate(relevance[:k], start=1))
    n_ideal = min(k, n_relevant if n_relevant is not None else sum(1 for r in relevance if r))
    if n_ideal <= 0:
        return 0.0
    idcg = sum(1.0 / math.log2(i + 1) for i in range(1, n_ideal + 1))
    return dcg / idcg


def first_only(relevance: Sequence[int]) -> list[int]:
    """Keep only the first relevant item (one gold answer per question, however many chunks hold it)."""
    rank = first_relevant_rank(relevance)
    return [1 if rank == i else 0 for i in range(1, len(relevance) + 1)]


# ---------------------------------------------------------------------------------------------
# relevance judgement


def _grams(text: str, n: int = 8) -> set[str]:
    t = re.sub(r"\s+", " ", text.lower()).strip()
    return {t[i : i + n] for i in range(max(1, len(t) - n + 1))}


def overlap(a: str, b: str) -> float:
    ga, gb = _grams(a), _grams(b)
    return len(ga & gb) / max(1, min(len(ga), len(gb)))


def source_matches(hit_source: str, gold_source: str) -> bool:
    gold = gold_source.split("#", 1)[0].strip("/")
    return bool(gold) and (
        hit_source.endswith("/" + gold) or hit_source == gold or Path(hit_source).name == Path(gold).name
    )


def is_relevant(hit_source: str, hit_text: str, gold: dict, min_overlap: float = 0.5) -> bool:
    if gold.get("source") and not source_matches(hit_source, gold["source"]):
        return False
    if gold.get("answer"):
        return overlap(hit_text, gold["answer"]) >= min_overlap
    return True


# ---------------------------------------------------------------------------------------------
# evaluating a collection


@dataclass
class RetrievalReport:
    collection: str
    qa_file: str
    mode: str
    k: int
    n_questions: int
    metrics: dict[str, float]
    by_language: dict[str, dict[str, float]] = field(default_factory=dict)
    run_dir: str = ""


def read_qa(path: Path) -> list[dict]:
    if not path.exists():
        raise DataError(
            f"QA file {path} does not exist", "give a JSON-lines file with question and source/answer fields"
        )
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise DataError(f"{path}:{n} is not valid JSON", "one JSON object per line") from None
        if not row.get("question") or not (row.get("source") or row.get("answer")):
            raise DataError(
                f"{path}:{n} needs 'question' and 'source' or 'answer'", 'e.g. {"question": "...", "answer": "..."}'
            )
        rows.append(row)
    if not rows:
        raise DataError(f"{path} holds no questions", "one JSON object per line")
    return rows


def summarise(per_question: list[dict], k: int) -> dict[str, float]:
    n = max(1, len(per_question))
    return {
        f"recall@{k}": sum(q[f"recall@{k}"] for q in per_question) / n,
        "mrr": sum(q["mrr"] for q in per_question) / n,
        f"ndcg@{k}": sum(q[f"ndcg@{k}"] for q in per_question) / n,
        "not_found": sum(q["not_found"] for q in per_question) / n,
    }


def evaluate(
    name: str,
    qa_file: str | Path,
    k: int = 5,
    mode: str = "hybrid",
    save: bool = True,
    on_progress=None,  # type: ignore[no-untyped-def]
    *,
    settings: Settings,
) -> RetrievalReport:
    """Run every question against collection ``name``; saves ``runs/eval-<timestamp>/`` when ``save``.

    Besides the ranking metrics, ``not_found`` is the share of questions the collection's "not found"
    threshold refuses (their best dense similarity is under it): for questions the collection answers,
    lower is better; for an out-of-corpus set (``not_found_rate``), higher."""
    from hearth import paths
    from hearth.kb.collection import opened, threshold
    from hearth.kb.retrieve import search_collection

    qa = read_qa(Path(qa_file))
    coll = opened(name, settings)
    per_question = []
    for i, gold in enumerate(qa):
        res = search_collection(coll, gold["question"][:2000], k, mode=mode, threshold=0.0)
        rel = first_only([1 if is_relevant(r.source, r.text, gold) else 0 for r in res.results])
        limit = threshold(name, settings, gold["question"])
        refused = mode != "text" and limit > 0 and (res.top_similarity or 0.0) < limit
        per_question.append(
            {
                "question": gold["question"],
                "lang": gold.get("lang") or language(gold["question"]),
                f"recall@{k}": recall_at_k(rel, k),
                "mrr": mrr(rel),
                f"ndcg@{k}": ndcg_at_k(rel, k, 1),
                "rank": first_relevant_rank(rel),
                "not_found": float(refused),
                "top_similarity": res.top_similarity,
                "top_sources": [r.source for r in res.results],
            }
        )
        if on_progress:
            on_progress(i + 1, len(qa))
    by_lang: dict[str, list[dict]] = {}
    for q in per_question:
        by_lang.setdefault(q["lang"], []).append(q)
    report = RetrievalReport(
        collection=name,
        qa_file=str(qa_file),
        mode=mode,
        k=k,
        n_questions=len(qa),
        metrics=summarise(per_question, k),
        by_language={lang: summarise(qs, k) | {"n": len(qs)} for lang, qs in sorted(by_lang.items())},
    )
    if save:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        run = paths.runs_dir() / f"eval-{stamp}"
        run.mkdir(parents=True, exist_ok=True)
        report.run_dir = str(run)
        (run / "retrieval.json").write_text(json.dumps(asdict(report), indent=1, ensure_ascii=False), encoding="utf-8")
        with open(run / "questions.jsonl", "w", encoding="utf-8") as f:
            for q in per_question:
                f.write(json.dumps(q, ensure_ascii=False) + "\n")
    return report


def not_found_rate(name: str, questions: Sequence[str], *, settings: Settings) -> float:
    """Share of ``questions`` (asked of a collection that does not answer them) refused as "not found"
    at the collection's threshold."""
    from hearth.kb.retrieve import search

    refused = [not search(name, q, 1, settings=settings, mode="dense").found for q in questions]
    return sum(refused) / max(1, len(refused))
