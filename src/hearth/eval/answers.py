"""Answer metrics: how close a system's answer is to a gold answer.

    exact_match    the normalised answer equals the normalised gold answer
    token_f1       SQuAD-style F1 over tokens; Chinese is compared character by character (no spaces to split on)
    contains_fact  the answer holds the key fact: the gold ``fact`` if given, else every content token of
                   the gold answer that the question does not already contain ("1987" and "Vantree" for
                   "Who founded Quillon?" → "…founded by Marisol Vantree in 1987.")
    citation       the first source the answer cites is the gold source (grounded systems only)
    refusal        on a question the documents cannot answer, the answer declines instead of inventing

A gold record is a dict: ``question``, ``answer``, optional ``fact``, ``source``, ``lang`` and
``answerable`` (false for out-of-corpus questions, whose right answer is a refusal).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import Any

from hearth.eval.retrieval import language, source_matches
from hearth.text import CJK_LETTERS

# A token is a run of letters/digits (with inner . , - : @ kept, so 2.6, 0441-7730 and e-mail addresses
# stay whole) or one CJK character.
_W = rf"[^\W_{CJK_LETTERS}]+"  # letters and digits, but not CJK characters
_TOKEN = re.compile(rf"[{CJK_LETTERS}]|{_W}(?:[.,:@'\-]{_W})*")
_ARTICLES = {"a", "an", "the"}
# Words that carry no fact: a gold answer's key tokens are what remains after these and the question's words.
_STOP = _ARTICLES | {
    *[
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "am",
        "do",
        "does",
        "did",
        "has",
        "have",
        "had",
        "of",
        "in",
        "on",
        "at",
        "to",
        "for",
        "by",
        "with",
        "from",
        "and",
        "or",
        "as",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "there",
        "their",
        "they",
        "he",
        "she",
        "his",
        "her",
        "we",
        "our",
        "you",
        "your",
        "i",
        "my",
        "me",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "when",
        "where",
        "why",
        "how",
        "much",
        "many",
        "long",
        "yes",
        "no",
        "not",
        "can",
        "could",
        "will",
        "would",
        "should",
        "called",
        "named",
    ],
}
# Chinese function characters (particles, copulas, question words) that carry no fact.
_STOP_ZH = set("的了是在有和与及由于为吗呢吧啊么什谁哪几多少个一名叫")
REFUSAL_PATTERNS = (
    r"could not find",
    r"couldn't find",
    r"can ?not find",
    r"not (?:found )?in the knowledge base",
    r"\bi don'?t know\b",
    r"\bi do not know\b",
    r"\bno information\b",
    r"\bnot sure\b",
    r"\bwon'?t guess\b",
    r"\bunable to (?:answer|find)\b",
    r"没有找到",
    r"找不到",
    r"不知道",
    r"无法回答",
    r"不作猜测",
)
_REFUSAL = re.compile("|".join(REFUSAL_PATTERNS), re.IGNORECASE)


def normalize(text: str) -> str:
    """Lower case, NFKC (full-width → half-width), no punctuation or articles, single spaces."""
    return " ".join(t for t in tokens(text) if t not in _ARTICLES)


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens; every CJK character is its own token."""
    text = unicodedata.normalize("NFKC", text).lower()
    return [t.rstrip(".,:'-") or t for t in _TOKEN.findall(text)]


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize(prediction) == normalize(gold))


def token_f1(prediction: str, gold: str) -> float:
    """F1 of the token overlap (a token counts as often as it occurs in both)."""
    pred = [t for t in tokens(prediction) if t not in _ARTICLES]
    ref = [t for t in tokens(gold) if t not in _ARTICLES]
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def key_tokens(gold: str, question: str = "") -> list[str]:
    """The tokens of ``gold`` that carry its fact: not stop words, not already in the question."""
    asked = set(tokens(question))
    out = []
    for t in tokens(gold):
        if t in asked or t in _STOP or t in _STOP_ZH or t in out:
            continue
        out.append(t)
    return out


def contains_fact(prediction: str, gold: str, question: str = "", fact: str | None = None) -> float:
    """1 when the answer holds the key fact (the explicit ``fact``, else all key tokens of ``gold``)."""
    if fact:
        want = normalize(fact)
        return float(bool(want) and want in normalize(prediction))
    keys = key_tokens(gold, question)
    if not keys:  # the gold answer only repeats the question: fall back to containing the answer
        return float(normalize(gold) in normalize(prediction))
    have = set(tokens(prediction))
    return float(all(k in have for k in keys))


def is_refusal(text: str) -> bool:
    """Does the answer decline (not found / don't know) rather than answer?"""
    return bool(_REFUSAL.search(text))


def citation_correct(cited_sources: Sequence[str], gold_source: str) -> float:
    """1 when the first cited source is the gold source (file name or path suffix; ``#anchor`` ignored)."""
    return float(bool(cited_sources) and source_matches(cited_sources[0], gold_source))


def strip_sources(answer: str) -> str:
    """The answer without the engine's "Sources:" footer (scored separately, as citations)."""
    return re.split(r"\n\s*Sources:\n", answer, maxsplit=1)[0].strip()


def score(answer: str, gold: dict[str, Any], cited_sources: Sequence[str] | None = None) -> dict[str, float]:
    """All metrics that apply to one answer. Answerable questions get exact_match, f1, contains_fact
    (and citation when the system cites and the gold names a source); unanswerable ones get refusal."""
    text = strip_sources(answer)
    if gold.get("answerable") is False:
        return {"refusal": float(is_refusal(text))}
    ref = gold["answer"]
    out = {
        "exact_match": exact_match(text, ref),
        "f1": token_f1(text, ref),
        "contains_fact": contains_fact(text, ref, gold.get("question", ""), gold.get("fact")),
        # Refusing a question the documents do answer is a failure too; it is counted, not hidden.
        "false_refusal": float(is_refusal(text)),
    }
    if cited_sources is not None and gold.get("source"):
        out["citation"] = citation_correct(cited_sources, gold["source"])
    return out


def lang_of(gold: dict[str, Any]) -> str:
    return gold.get("lang") or language(gold.get("question", ""))


def mean_by(rows: Sequence[dict[str, Any]], metrics: Sequence[str]) -> dict[str, float]:
    """Mean of each metric over the rows that have it (a metric no row has is left out)."""
    out: dict[str, float] = {}
    for m in metrics:
        values = [r[m] for r in rows if r.get(m) is not None]
        if values:
            out[m] = sum(values) / len(values)
    return out
