"""Language facts about text, defined once for the whole package: which characters are CJK, and how
much of a text is written in them.

CJK scripts are written without spaces between words, so the full-text tokenizer segments them with
jieba, the chunker joins their sentences without a space, fusion leans on dense search when a CJK
question meets mostly non-CJK passages (or the reverse), and evaluation reports them as their own
language.
"""

from __future__ import annotations

import re

# Letters of the scripts written without spaces: CJK ideographs (with extension A and the
# compatibility block), Japanese kana and Hangul syllables.
CJK_LETTERS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af"
# ...plus their punctuation and full-width forms (、。「」，：), which also take no spaces around them.
CJK_MARKS = "\u2e80-\u2fdf\u3000-\u303f\uff00-\uffef"

CJK_RUN = re.compile(f"[{CJK_LETTERS}]+")
_CJK_LETTER = re.compile(f"[{CJK_LETTERS}]")
_CJK_ANY = re.compile(f"[{CJK_LETTERS}{CJK_MARKS}]")
_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)


def is_cjk(ch: str) -> bool:
    """True for a CJK letter, CJK punctuation or a full-width form (one character)."""
    return bool(_CJK_ANY.match(ch))


def has_cjk(text: str) -> bool:
    return bool(_CJK_LETTER.search(text))


def cjk_share(text: str) -> float:
    """Share of the letters in ``text`` that are CJK (0 = none or no letters, 1 = all)."""
    letters = _LETTER.findall(text)
    if not letters:
        return 0.0
    return sum(1 for c in letters if _CJK_LETTER.match(c)) / len(letters)


def language(text: str) -> str:
    """'zh' when CJK letters are at least a fifth of the letters (a Chinese question naming
    'Debian' or 'apt-get' is still Chinese), else 'en'."""
    return "zh" if cjk_share(text) >= 0.2 else "en"
