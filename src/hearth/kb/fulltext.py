"""Full-text tokens: one tokenizer for documents and queries, so BM25 works for Chinese as well as English.

The stores' own full-text analyzers split on spaces and punctuation, which leaves a Chinese sentence
as one unsearchable "word". We therefore store a pre-tokenized column: jieba's search-mode
segmentation (words plus their shorter sub-words) for CJK runs, lower-cased Snowball-stemmed words for
the rest, joined by spaces. The store indexes that column with a plain whitespace/standard analyzer and
no stemming of its own (Milvus Lite ignores analyzer stemmers), and queries are tokenized the same way
before they reach the store, so every engine ranks the same tokens.
"""

from __future__ import annotations

import functools
import logging
import re

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]+")
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
    for m in _CJK.finditer(text):
        out.extend(_words(text[pos : m.start()]))
        out.extend(w for w in _jieba().cut_for_search(m.group()) if w.strip())
        pos = m.end()
    out.extend(_words(text[pos:]))
    return out


def tokenize(text: str) -> str:
    """The space-joined form stored in the full-text column and sent as the full-text query."""
    return " ".join(tokens(text))
