"""Full-text tokens: one tokenizer for documents and queries, so BM25 works for Chinese as well as English.

The stores' own full-text analyzers split on spaces and punctuation, which leaves a Chinese sentence
as one unsearchable "word". We therefore store a pre-tokenized column: jieba's search-mode
segmentation (words plus their shorter sub-words) for CJK runs, lower-cased Snowball-stemmed words for
the rest, joined by spaces. The store indexes that column with a plain whitespace/standard analyzer and
no stemming of its own (Milvus Lite ignores analyzer stemmers), and queries are tokenized the same way
before they reach the store, so every engine ranks the same tokens.

Queries lose their stopwords first (English and Chinese lists shipped with ``bm25s``): "When does the
canteen open?" must not rank passages by how often they say "the" and "does". A Chinese question asked
of passages that are not (all) Chinese also carries the English senses of its words (``glossed_query_tokens``,
from the dictionary in ``lexicon.py``), stemmed like any English word.
"""

from __future__ import annotations

import functools
import logging
import re

from hearth.text import CJK_RUN

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)


@functools.cache
def _jieba():  # type: ignore[no-untyped-def]
    import jieba

    jieba.setLogLevel(logging.WARNING)  # jieba prints its dictionary loading to stderr otherwise
    jieba.initialize()
    return jieba


@functools.cache
def _stemmer():  # type: ignore[no-untyped-def]
    import Stemmer

    return Stemmer.Stemmer("english")


def _words(text: str) -> list[str]:
    return _stemmer().stemWords([w.lower() for w in _WORD.findall(text)])


def tokens(text: str) -> list[str]:
    """Search tokens of ``text``: jieba words for CJK runs, lower-cased stemmed words otherwise."""
    out: list[str] = []
    pos = 0
    for m in CJK_RUN.finditer(text):
        out.extend(_words(text[pos : m.start()]))
        out.extend(w for w in _jieba().cut_for_search(m.group()) if w.strip())
        pos = m.end()
    out.extend(_words(text[pos:]))
    return out


def tokenize(text: str) -> str:
    """The space-joined form stored in the full-text column."""
    return " ".join(tokens(text))


@functools.cache
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_CHINESE, STOPWORDS_EN_PLUS

    return frozenset(STOPWORDS_EN_PLUS) | frozenset(STOPWORDS_CHINESE)


def query_tokens(text: str) -> list[str]:
    """The distinct search tokens of a query, stopwords removed (all kept if nothing else is left)."""
    stop = _stopwords()
    words: list[str] = []
    pos = 0
    for m in CJK_RUN.finditer(text):
        words.extend(_query_words(text[pos : m.start()], stop))
        words.extend(w for w in _jieba().cut_for_search(m.group()) if w.strip() and w not in stop)
        pos = m.end()
    words.extend(_query_words(text[pos:], stop))
    return list(dict.fromkeys(words)) or list(dict.fromkeys(tokens(text)))


def _query_words(text: str, stop: frozenset[str]) -> list[str]:
    kept = [w.lower() for w in _WORD.findall(text) if w.lower() not in stop]
    return _stemmer().stemWords(kept)


def query_text(text: str) -> str:
    """The full-text query sent to the store: ``query_tokens`` joined by spaces."""
    return " ".join(query_tokens(text))


def glossed_query_tokens(text: str) -> list[str]:
    """``query_tokens`` plus the English glosses of the query's Chinese words (stemmed, stopwords out),
    so the query can match passages in either language. A word the dictionary lacks is glossed by the
    shorter words jieba finds inside it ("发行版" → "发行" publish, release · "版" edition)."""
    from hearth.kb import lexicon

    stop = _stopwords()
    english: list[str] = []
    for m in CJK_RUN.finditer(text):
        for word in _jieba().cut(m.group()):
            if not word.strip() or word in stop:
                continue
            senses = lexicon.glosses(word) or tuple(
                s for part in _jieba().cut_for_search(word) if part != word for s in lexicon.glosses(part)
            )
            english.extend(_query_words(" ".join(senses), stop))
    return list(dict.fromkeys(query_tokens(text) + english))
