"""Chunk: split parsed sections into overlapping pieces measured in the embedder's tokens.

Sections are split at sentence ends (English and Chinese punctuation, line breaks) and sentences are
packed greedily up to ``chunk_tokens``; the last sentences of a chunk (up to ``overlap`` tokens) start
the next one. A chunk never spans two sections, so its heading path and page are exact, and a
section's first sentence is cut only when it alone is longer than a chunk. Sentences longer than a
chunk are cut at spaces, or between characters for text without spaces (Chinese, Japanese).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from hearth.kb.parse import ParsedDoc
from hearth.text import is_cjk

CountTokens = Callable[[list[str]], list[int]]

# A sentence ends after . ! ? (followed by space) or after 。！？；… (no space in CJK), or at a line break.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？；…])|\n+")


@dataclass
class TextChunk:
    text: str
    headings: tuple[str, ...]
    page: int | None
    index: int  # position in the document, 0-based
    n_tokens: int


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def chunk_document(
    doc: ParsedDoc, count_tokens: CountTokens, chunk_tokens: int = 256, overlap: int = 32
) -> list[TextChunk]:
    """All chunks of one document, in order, numbered from 0."""
    if overlap >= chunk_tokens:
        overlap = chunk_tokens // 4  # an overlap as long as the chunk would never advance
    chunks: list[TextChunk] = []
    for section in doc.sections:
        for text, n in pack(section.text, count_tokens, chunk_tokens, overlap):
            chunks.append(TextChunk(text, section.headings, section.page, len(chunks), n))
    return chunks


def pack(text: str, count_tokens: CountTokens, chunk_tokens: int, overlap: int) -> list[tuple[str, int]]:
    """Greedy sentence packing with overlap; returns (chunk text, token count) pairs."""
    sentences = split_sentences(text)
    if not sentences:
        return []
    counts = count_tokens(sentences)
    units: list[tuple[str, int]] = []
    for sentence, n in zip(sentences, counts, strict=True):
        if n <= chunk_tokens:
            units.append((sentence, n))
        else:
            units.extend(_split_long(sentence, count_tokens, chunk_tokens))

    out: list[tuple[str, int]] = []
    current: list[tuple[str, int]] = []
    size = 0
    for unit in units:
        if current and size + unit[1] > chunk_tokens:
            out.append((_join([u for u, _ in current]), size))
            # carry whole trailing sentences worth at most `overlap` tokens into the next chunk
            carried: list[tuple[str, int]] = []
            carry = 0
            for prev in reversed(current):
                if carry + prev[1] > overlap or carry + prev[1] + unit[1] > chunk_tokens:
                    break
                carried.insert(0, prev)
                carry += prev[1]
            current, size = carried, carry
        current.append(unit)
        size += unit[1]
    if current:
        out.append((_join([u for u, _ in current]), size))
    return out


def _join(parts: list[str]) -> str:
    out = parts[0]
    for part in parts[1:]:
        # CJK text has no spaces between sentences; Latin text needs one
        out += part if is_cjk(out[-1]) or is_cjk(part[0]) else " " + part
    return out


def _split_long(sentence: str, count_tokens: CountTokens, chunk_tokens: int) -> list[tuple[str, int]]:
    """Cut one over-long sentence into pieces of at most ``chunk_tokens`` tokens."""
    words = sentence.split(" ") if " " in sentence.strip() else list(sentence)
    sep = " " if " " in sentence.strip() else ""
    # counting each word alone overestimates slightly (word-initial pieces), which keeps pieces safe
    counts = count_tokens(words)
    pieces: list[tuple[str, int]] = []
    buf: list[str] = []
    size = 0
    for word, n in zip(words, counts, strict=True):
        if buf and size + n > chunk_tokens:
            pieces.append((sep.join(buf).strip(), size))
            buf, size = [], 0
        buf.append(word)
        size += n
    if buf and sep.join(buf).strip():
        pieces.append((sep.join(buf).strip(), size))
    return pieces
