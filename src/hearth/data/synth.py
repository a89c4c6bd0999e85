"""From documents to training data: knowledge-base chunks → question–answer pairs for ``hearth tune``.

Every pair is grounded: its answer is a sentence of one chunk, and it keeps where it came from
(``source``, ``doc_id``, ``chunk_index``), so a reader — and the tests — can check it against the chunk.

Questions come from one of two generators:

- ``template`` (default, offline, deterministic): sentence patterns in English and Chinese turn a
  statement into the question it answers — "X was founded by Y in 1987." → "Who founded X?" and "When was
  X founded?"; "X有340名员工。" → "X有多少名员工？". The part the question asks for is kept as the pair's
  ``fact``. A sentence no pattern fits gives no pair (counted as ``unmatched``).
- ``model``: a configured chat model writes the question for each sentence (a remote model writes far
  better ones than the bundled 135M model); the answer is still the sentence itself.

Then de-duplication (same normalised question, or the same fact asked twice in one phrasing) and a
quality filter (the question must end as a question, must not give away its answer, and the answer must
hold the fact). Each fact can be asked in several phrasings (``variants``) that share a ``fact_id``,
so an evaluation can hold back a phrasing of a trained fact, or a whole fact, without leaking it.

The output is JSON lines in the ``qa`` format ``hearth tune`` reads (``question`` / ``answer``; the
extra fields are ignored by training and used by evaluation).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from hearth.errors import DataError
from hearth.eval import answers
from hearth.eval.retrieval import language

Generator = Literal["template", "model"]


@dataclass
class Chunk:
    """One stored chunk of a collection, as ingest wrote it."""

    text: str
    source: str
    doc_id: str
    chunk_index: int
    headings: list[str]
    title: str

    @property
    def id(self) -> str:
        return f"{self.doc_id}:{self.chunk_index}"


@dataclass
class Pair:
    question: str
    answer: str
    fact: str | None
    source: str
    doc_id: str
    chunk_index: int
    lang: str
    fact_id: str  # shared by every phrasing of the same fact
    variant: int  # 0 = the plain question, 1.. = rephrasings
    generator: str


@dataclass
class SynthReport:
    collection: str
    chunks: int
    sentences: int
    generated: int
    duplicates: int
    rejected: int
    unmatched: int
    pairs: list[Pair] = field(default_factory=list)
    out: str = ""

    def counts(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "pairs"}


# ---------------------------------------------------------------------------------------------
# reading chunks


def iter_chunks(collection: str) -> list[Chunk]:
    """Every chunk of ``collection``, document by document in chunk order (any store engine)."""
    import numpy as np

    from hearth.kb.collection import open_collection
    from hearth.kb.store import Filter

    coll = open_collection(collection)
    # The store protocol has no "scan"; a search restricted to one document with k = its chunk count
    # returns all of them, whatever the engine. The query vector is arbitrary (the ranking is discarded).
    probe = np.full(coll.meta.dim, 1.0 / np.sqrt(coll.meta.dim), dtype=np.float32)
    out: list[Chunk] = []
    try:
        for entry in sorted(coll.manifest.docs.values(), key=lambda d: d.source):
            hits = coll.store.search_dense(probe, max(1, entry.n_chunks), Filter(doc_ids=[entry.doc_id]))
            for h in sorted(hits, key=lambda h: h.chunk_index):
                heads = [x for x in h.headings.split(" > ") if x] if h.headings else []
                out.append(Chunk(h.text, h.source, h.doc_id, h.chunk_index, heads, h.title))
    finally:
        coll.close()
    return out


# The chunker's sentence ends, plus an end inside closing quotes or brackets ('… is "Light that lasts." The …').
_QUOTED_END = re.compile(r"(?<=[.!?][\"”’)])\s+")


def sentences(text: str) -> list[str]:
    from hearth.kb.chunk import split_sentences

    out = [part.strip() for s in split_sentences(text) for part in _QUOTED_END.split(s)]
    return [s for s in out if len(s) >= 4]


# ---------------------------------------------------------------------------------------------
# template questions


def _lower_first(s: str) -> str:
    """'The CEO of X' → 'the CEO of X' (only a leading article; names keep their capitals)."""
    return re.sub(r"^(The|A|An)\b", lambda m: m.group(1).lower(), s)


def _base_verb(verb: str) -> str:
    irregular = {"has": "have", "does": "do", "goes": "go", "is": "be"}
    if verb in irregular:
        return irregular[verb]
    if re.search(r"(ch|sh|ss|x)es$", verb):
        return verb[:-2]
    return verb[:-1] if verb.endswith("s") else verb


_NUM = r"\d[\d.,]*"
_S_VERBS = r"makes|sells|offers|uses|repairs|produces|provides|builds|runs|burns|serves|ships|owns|supports|covers"
_P_VERBS = r"make|sell|offer|use|repair|produce|provide|build|run|burn|serve|ship|own|support|cover|come with"
_PREP = r"(?: (?:past|to|through|into|with|for|from))?"
_TIME = re.compile(
    r"^(?:in|on|every|each|at)\b.*(?:\d|January|February|March|April|May|June|July|August|September|October|November|December)",
    re.I,
)


def questions_en(sentence: str) -> list[tuple[str, str]]:
    """(question, fact) pairs for one English statement; [] when no pattern fits."""
    s = sentence.strip().rstrip(".!").strip()
    if not s or "?" in s:
        return []
    out: list[tuple[str, str]] = []

    # "X was founded by Y (in 1987)" → Who founded X? / When was X founded?
    m = re.match(
        r"^(?P<x>.+?) (?P<be>was|were|is|are) (?P<v>\w+(?:ed|en|wn|ld|lt|de)) by (?P<y>.+?)(?: in (?P<year>\d{4}))?$", s
    )
    if m:
        x, be, v, y = _lower_first(m["x"]), m["be"], m["v"], m["y"]
        q = f"Who {v} {x}?" if be in ("was", "were") else f"Who {be} {x} {v} by?"
        out.append((q, y))
        if m["year"]:
            out.append((f"When {be} {x} {v}?", m["year"]))
        return out
    # "X is based/located in Y" → Where is X based?
    m = re.match(r"^(?P<x>.+?) (?P<be>is|are|was|were) (?P<v>based|located|headquartered) (?:in|at) (?P<y>.+)$", s)
    if m:
        return [(f"Where {m['be']} {_lower_first(m['x'])} {m['v']}?", m["y"])]
    # "X was released in 2024" / "X is held every 14th of November" → When …?
    m = re.match(r"^(?P<x>.+?) (?P<be>is|are|was|were) (?P<v>\w+(?:ed|en|ld|wn)) (?P<when>.+)$", s)
    if m and _TIME.match(m["when"]):
        when = re.sub(r"^(?:in|on|at)\s+", "", m["when"])
        return [(f"When {m['be']} {_lower_first(m['x'])} {m['v']}?", when)]
    # "X is open from 8 to 17" → When is X open?
    m = re.match(r"^(?P<x>.+?) (?P<be>is|are) open (?P<y>.+)$", s)
    if m:
        return [(f"When {m['be']} {_lower_first(m['x'])} open?", m["y"])]
    # "X are made of Y" → What are X made of?
    m = re.match(r"^(?P<x>.+?) (?P<be>is|are|was|were) made (?P<p>of|from) (?P<y>.+)$", s)
    if m:
        return [(f"What {m['be']} {_lower_first(m['x'])} made {m['p']}?", m["y"])]
    # "X is called Y" → What is X called?
    m = re.match(r"^(?P<x>.+?) (?P<be>is|are|was|were) (?:called|named) (?P<y>.+)$", s)
    if m:
        return [(f"What {m['be']} {_lower_first(m['x'])} called?", m["y"])]
    # "X costs/weighs N unit" → How much does X cost?
    m = re.match(rf"^(?P<x>.+?) (?P<v>costs|weighs) (?P<y>{_NUM}.*)$", s)
    if m:
        return [(f"How much does {_lower_first(m['x'])} {_base_verb(m['v'])}?", m["y"])]
    # "X burns for 31 hours (on one filling)" → How long does X burn (on one filling)?
    m = re.match(
        rf"^(?P<x>.+?) (?P<v>\w+s) for (?P<n>{_NUM} (?:hours?|days?|weeks?|months?|years?|minutes?))(?P<rest>.*)$", s
    )
    if m:
        return [(f"How long does {_lower_first(m['x'])} {_base_verb(m['v'])}{m['rest']}?", m["n"])]
    # "X has 340 employees" / "X ships to 23 countries" → How many employees does X have?
    m = re.match(
        rf"^(?P<x>.+?) (?P<v>has|have|employs|{_S_VERBS})(?P<p>{_PREP}) (?P<n>{_NUM}) (?P<unit>[a-z][\w-]*)(?P<rest>.*)$",
        s,
    )
    if m:
        aux = "does" if m["v"].endswith("s") else "do"
        verb = _base_verb(m["v"]) if aux == "does" else m["v"]
        return [
            (f"How many {m['unit']} {aux} {_lower_first(m['x'])} {verb}{m['p']}{m['rest']}?", f"{m['n']} {m['unit']}")
        ]
    # "X makes Y" (singular) / "Xs use Y" (plural) → What does X make? / What do Xs use?
    m = re.match(rf"^(?P<x>.+?) (?P<v>{_S_VERBS})(?P<p>{_PREP}) (?P<y>.+)$", s)
    if m:
        return [(f"What does {_lower_first(m['x'])} {_base_verb(m['v'])}{m['p']}?", m["y"])]
    m = re.match(rf"^(?P<x>.+?) (?P<v>{_P_VERBS})(?P<p>{_PREP}) (?P<y>.+)$", s)
    if m:
        return [(f"What do {_lower_first(m['x'])} {m['v']}{m['p']}?", m["y"])]
    # "X won Y (in 2019)" → What did X win?
    m = re.match(r"^(?P<x>.+?) won (?P<y>.+?)(?: in (?P<year>\d{4}))?$", s)
    if m:
        out.append((f"What did {_lower_first(m['x'])} win?", m["y"]))
        return out
    # "The CEO of X is Tobiah Frennick." → Who is the CEO of X?  (a copula last: it matches the most)
    m = re.match(r"^(?P<x>(?:The|A|An) .+?) (?P<be>is|are|was|were) (?P<y>.+)$", s)
    if m:
        y = m["y"]
        who = bool(re.match(r"^(?:Dr\.|Mr\.|Ms\.|Mrs\.)?\s*[A-Z][a-z]+ [A-Z][a-z]+", y))
        return [(f"{'Who' if who else 'What'} {m['be']} {_lower_first(m['x'])}?", y)]
    return out


_ZH_NUM = r"\d+(?:\.\d+)?"
_ZH_ROLE = re.compile(r"(?:官|长|人|师|者|家|员|主席|经理|总裁)$")


def questions_zh(sentence: str) -> list[tuple[str, str]]:
    """(question, fact) pairs for one Chinese statement; [] when no pattern fits."""
    s = sentence.strip().rstrip("。！!.").strip()
    if not s or "？" in s or "?" in s:
        return []
    out: list[tuple[str, str]] = []
    # X由Y于1987年创立 → X由谁创立？ (people make, found and design; materials make lanterns)
    m = re.match(r"^(?P<x>.+?)由(?P<y>.+?)(?:于.+?)?(?P<v>创立|创办|设计|建立|拥有)$", s)
    if m:
        out.append((f"{m['x']}由谁{m['v']}？", m["y"]))
    m = re.match(r"^(?P<x>.+?)由(?P<y>.+?)(?P<v>制造|制成|制作)$", s)
    if m:
        out.append((f"{m['x']}由什么{m['v']}？", m["y"]))
    # a date or a number: ask for it — 于1987年 → 于哪一年; 11月14日 → 哪一天; 340名 → 多少名
    m = re.search(r"\d{1,2}月\d{1,2}日", s)
    if m:
        out.append((s[: m.start()] + "哪一天" + s[m.end() :] + "？", m.group()))
    else:
        m = re.search(r"(?P<n>\d{4})年", s)
        if m:
            out.append((s[: m.start()] + "哪一年" + s[m.end() :] + "？", m.group()))
        else:
            m = re.search(rf"(?P<n>{_ZH_NUM})(?P<unit>[^\d\s，。,]?)", s)
            if m:
                out.append((s[: m.start()] + "多少" + s[m.start("unit") :] + "？", m["n"] + m["unit"]))
    if out:
        return out
    m = re.match(r"^(?P<x>.+?)位于(?P<y>.+)$", s)
    if m:
        return [(f"{m['x']}位于哪里？", m["y"])]
    m = re.match(r"^(?P<x>.+?)是(?P<y>.+)$", s)
    if m:
        return [(f"{m['x']}是{'谁' if _ZH_ROLE.search(m['x']) else '什么'}？", m["y"])]
    m = re.match(r"^(?P<x>.+?)(?<!名)叫(?P<y>.+)$", s)
    if m:
        return [(f"{m['x']}叫什么？", m["y"])]
    m = re.match(r"^(?P<x>.+?)(?P<v>生产|提供|使用|销售|制造)(?P<y>.+)$", s)
    if m:
        return [(f"{m['x']}{m['v']}什么？", m["y"])]
    return out


def template_questions(sentence: str) -> list[tuple[str, str]]:
    return questions_zh(sentence) if language(sentence) == "zh" else questions_en(sentence)


# Rephrasings: the same question with another lead-in, so an evaluation can ask a trained fact in a
# phrasing the training data did not hold.
REPHRASE = {
    "en": ("Quick question: {q}", "I'd like to know: {q}", "Can you tell me this? {q}"),
    "zh": ("请问，{q}", "我想知道：{q}", "你能告诉我吗？{q}"),
}


def rephrase(question: str, lang: str, n: int) -> str:
    forms = REPHRASE["zh" if lang == "zh" else "en"]
    return forms[n % len(forms)].format(q=question)


# ---------------------------------------------------------------------------------------------
# model questions


MODEL_PROMPT = (
    "Write one short question that the sentence below answers. Reply with the question only.\n\nSentence: {s}"
)
MODEL_PROMPT_ZH = "请为下面这句话写一个它能回答的简短问题。只回复问题。\n\n句子：{s}"


def model_question(model: Any, sentence: str, max_tokens: int = 40) -> str:
    from hearth.models import generate

    params = generate.sampling(temperature=0, max_tokens=max_tokens, repetition_penalty=1.0)
    prompt = (MODEL_PROMPT_ZH if language(sentence) == "zh" else MODEL_PROMPT).format(s=sentence)
    text = model.complete([{"role": "user", "content": prompt}], params).text.strip()
    first = text.splitlines()[0].strip() if text else ""
    return re.sub(r"^(?:Question|问题)\s*[:：]\s*", "", first).strip().strip('"“”')


# ---------------------------------------------------------------------------------------------
# quality and duplicates


def quality_problem(question: str, answer: str, fact: str | None) -> str | None:
    """Why a pair is not worth training on, or None when it is."""
    q = question.strip()
    if not (6 <= len(q) <= 300) or not q.endswith(("?", "？")):
        return "not a question"
    if len(answer) > 600:
        return "answer too long"
    if fact is not None:
        if not answers.normalize(fact) or answers.normalize(fact) not in answers.normalize(answer):
            return "fact not in the answer"
        if answers.normalize(fact) in answers.normalize(q):
            return "question gives the answer away"
    if not answers.key_tokens(answer, q):
        return "question gives the answer away"
    if answers.normalize(q.rstrip("?？")) == answers.normalize(answer):
        return "question repeats the answer"
    return None


def _fact_id(source: str, sentence: str, fact: str | None) -> str:
    return hashlib.sha256(f"{Path(source).name}\0{sentence}\0{fact}".encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------------------------
# the whole step


def synthesize(
    collection: str,
    out: str | Path | None = None,
    *,
    generator: Generator = "template",
    model: str | None = None,
    variants: int = 2,
    max_pairs: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> SynthReport:
    """Turn every chunk of ``collection`` into grounded question–answer pairs; write JSONL to ``out``."""
    chunks = iter_chunks(collection)
    if not chunks:
        raise DataError(
            f"collection '{collection}' holds no chunks", f"add documents: `hearth kb add {collection} PATH`"
        )
    chat = None
    if generator == "model":
        from hearth.models import backends

        chat = backends.get_chat_model(model)
    report = SynthReport(collection, len(chunks), 0, 0, 0, 0, 0)
    seen_questions: set[str] = set()
    seen_facts: set[tuple[str, str]] = set()  # (normalised answer, normalised fact): chunk overlap repeats sentences
    for i, chunk in enumerate(chunks):
        for sentence in sentences(chunk.text):
            report.sentences += 1
            lang = language(sentence)
            if chat is not None:
                q = model_question(chat, sentence)
                found = [(q, None)] if q else []
            else:
                found = template_questions(sentence)
            if not found:
                report.unmatched += 1
                continue
            for question, fact in found:
                report.generated += 1
                fact_key = (answers.normalize(sentence), answers.normalize(fact or question))
                if quality_problem(question, sentence, fact):
                    report.rejected += 1
                    continue
                if fact_key in seen_facts or answers.normalize(question) in seen_questions:
                    report.duplicates += 1
                    continue
                seen_facts.add(fact_key)
                fid = _fact_id(chunk.source, sentence, fact or question)
                for v in range(max(1, variants)):
                    q = question if v == 0 else rephrase(question, lang, v - 1)
                    if answers.normalize(q) in seen_questions:
                        continue
                    seen_questions.add(answers.normalize(q))
                    report.pairs.append(
                        Pair(q, sentence, fact, chunk.source, chunk.doc_id, chunk.chunk_index, lang, fid, v, generator)
                    )
        if on_progress:
            on_progress(i + 1, len(chunks))
    if max_pairs is not None:
        keep = {p.fact_id for p in report.pairs[:max_pairs]}
        report.pairs = [p for p in report.pairs if p.fact_id in keep]
    if not report.pairs:
        raise DataError(
            f"no question–answer pairs came out of the {report.sentences} sentences of '{collection}'",
            'template questions need plain statements ("X is Y.", "X has 40 staff."); try --generator model',
        )
    if out is not None:
        report.out = str(write_pairs(report.pairs, out))
    return report


def write_pairs(pairs: Sequence[Pair], out: str | Path) -> Path:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for p in pairs:
            f.write(json.dumps(asdict(p), ensure_ascii=False) + "\n")
    return path


def read_pairs(path: str | Path) -> Iterator[dict[str, Any]]:
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            yield json.loads(line)
