"""The closed loop, one recipe: documents → knowledge base → Q&A pairs → LoRA adapter → measured → served.

    ingest      the folder into a collection (``kb.collection.add``)
    synthesize  grounded question–answer pairs from its chunks (``data.synth``)
    split       by fact: most facts train, some are held out entirely; each trained fact keeps one
                rephrasing back for evaluation
    tune        the bundled model with LoRA on the training pairs (``train.tune``) — this registers the
                adapter, so ``hearth serve`` and ``hearth chat -m smollm2+<name>`` offer it at once
    evaluate    base vs base + RAG vs tuned vs tuned + RAG (and any configured remote model) on four
                groups of questions: trained, rephrased (a trained fact asked another way), held-out
                (a fact the model never trained on) and out-of-corpus (the documents do not answer it)

The groups are the point: fine-tuning teaches the facts it saw (and a rephrasing of them); retrieval
answers any fact in the documents, cites it, and can say "not found". The report shows both.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from hearth import config as hconfig
from hearth.config import Section
from hearth.errors import ConfigError
from hearth.models import backends
from hearth.train.tune import TuneConfig


def _tune_defaults() -> TuneConfig:
    return TuneConfig.model_validate(
        {
            "name": "company-faq",
            "data": {"val_fraction": 0.0, "max_seq_len": 128},
            "method": {
                "name": "lora",
                "rank": 16,
                "alpha": 32,
                "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
            },
            "training": {
                "max_steps": 60,
                "batch_size": 4,
                "learning_rate": 2e-3,
                "warmup_steps": 3,
                "weight_decay": 0.0,
                "eval_every": 1000,
                "save_every": 1000,
                "log_every": 5,
            },
            "report": {"samples": 0},
        }
    )


class KBStep(Section):
    collection: str = Field("company-faq", description="collection the documents go into")
    recreate: bool = Field(True, description="drop the collection first, so the loop starts from the documents alone")


class SynthStep(Section):
    generator: str = Field("template", description="template (offline, EN + ZH sentence patterns) or model")
    model: str | None = Field(None, description="generator=model: the chat model that writes questions")
    variants: int = Field(2, ge=1, le=4, description="phrasings per fact (the second one is held back to test recall)")


class SplitStep(Section):
    heldout_fraction: float = Field(0.2, ge=0.0, lt=1.0, description="share of facts never trained on (RAG's ground)")
    seed: int = Field(0, description="seed of the fact split: same seed, same split")


class EvalStep(Section):
    max_tokens: int = Field(40, ge=1, description="most tokens per answer (greedy)")
    per_group: int | None = Field(8, ge=1, description="questions per group (trained, rephrased, held-out); None = all")
    out_of_corpus: list[str] = Field(
        default_factory=list, description="questions the documents do not answer: the right answer is a refusal"
    )
    extra_systems: list[str] = Field(
        default_factory=list, description="more systems to compare, e.g. remote:openai or remote:openai@company-faq"
    )
    judge: str | None = Field(None, description="LLM-as-judge model (e.g. remote:openai); None = token metrics only")


class LoopConfig(Section):
    """The closed loop recipe (``configs/loop/*.yaml``)."""

    name: str = Field(
        "company-faq", description="run name; also the adapter's registered name unless tune.adapter_name"
    )
    docs: str = Field("examples/docs/quillon", description="folder of documents to learn from")
    kb: KBStep = Field(default_factory=KBStep)
    synth: SynthStep = Field(default_factory=SynthStep)
    split: SplitStep = Field(default_factory=SplitStep)
    tune: TuneConfig = Field(
        default_factory=_tune_defaults, description="the fine-tuning recipe; data.path is set by the loop"
    )
    eval: EvalStep = Field(default_factory=EvalStep)


@dataclass
class LoopResult:
    run_dir: str
    collection: str
    pairs: int
    train_pairs: int
    eval_questions: dict[str, int]
    tune_run: str
    adapter: str | None
    report: str
    overall: dict[str, dict[str, float]]
    by_group: dict[str, dict[str, dict[str, float]]]
    summary: list[str]


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> LoopConfig:
    return hconfig.load(LoopConfig, path, overrides, env={})


def split_pairs(
    pairs: Sequence[dict[str, Any]], heldout_fraction: float, seed: int
) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """(training pairs, evaluation groups). Split by fact, so no phrasing of a held-out fact is trained."""
    facts = sorted({p["fact_id"] for p in pairs})
    random.Random(seed).shuffle(facts)
    n_held = round(len(facts) * heldout_fraction)
    held = set(facts[:n_held])
    train = [p for p in pairs if p["fact_id"] not in held and p["variant"] == 0]
    groups = {
        "trained": [dict(p, group="trained") for p in train],
        "rephrased": [dict(p, group="rephrased") for p in pairs if p["fact_id"] not in held and p["variant"] == 1],
        "held-out": [dict(p, group="held-out") for p in pairs if p["fact_id"] in held and p["variant"] == 0],
    }
    return train, groups


def _pick(rows: list[dict[str, Any]], n: int | None, seed: int) -> list[dict[str, Any]]:
    """Up to ``n`` rows, balanced over languages so Chinese is measured too."""
    if n is None or len(rows) <= n:
        return rows
    by_lang: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_lang.setdefault(r["lang"], []).append(r)
    rng = random.Random(seed)
    for v in by_lang.values():
        rng.shuffle(v)
    out: list[dict[str, Any]] = []
    while len(out) < n:
        for v in by_lang.values():
            if v and len(out) < n:
                out.append(v.pop())
    return out


def run_loop(
    cfg: LoopConfig,
    report_dir: str | Path | None = None,
    on_step: Callable[[str], None] | None = None,
    settings: hconfig.Settings | None = None,
) -> LoopResult:
    """Run the recipe end to end; the report lands in the loop's run folder (and a copy in ``report_dir``).
    ``settings``: the face's (the knowledge base and the grounded answers use them; default: the defaults)."""
    settings = settings or hconfig.Settings()
    from hearth.data import synth
    from hearth.eval import compare as cmp
    from hearth.eval.report import summarize, write_report
    from hearth.kb import collection as kbc
    from hearth.train import data as tdata
    from hearth.train import tune as tune_mod
    from hearth.train.runs import Run

    step = on_step or (lambda s: None)
    docs = Path(cfg.docs).expanduser()
    if not docs.is_dir():
        raise ConfigError(
            f"docs folder {docs} does not exist", "set docs: to a folder of documents (md, txt, pdf, docx, html)"
        )
    run = Run.create("loop", cfg.name)
    run.write_config(cfg)
    run.write_meta(status="running")

    step(f"ingest {docs} → collection '{cfg.kb.collection}'")
    name = cfg.kb.collection
    if cfg.kb.recreate and name in {c.name for c in kbc.list_collections()}:
        kbc.drop(name)
    if name not in {c.name for c in kbc.list_collections()}:
        kbc.create(name, settings=settings)
    ingest = kbc.add(name, [docs], settings=settings)
    if ingest.failed:
        step(f"  {len(ingest.failed)} file(s) failed: {ingest.failed[:3]}")

    step("synthesize question–answer pairs")
    synth_report = synth.synthesize(
        name,
        run.root / "pairs.jsonl",
        generator=cfg.synth.generator,
        model=cfg.synth.model,
        variants=cfg.synth.variants,  # type: ignore[arg-type]
    )
    pairs = list(synth.read_pairs(run.root / "pairs.jsonl"))
    train_pairs, groups = split_pairs(pairs, cfg.split.heldout_fraction, cfg.split.seed)
    if not train_pairs:
        raise ConfigError("every fact was held out: nothing to train on", "lower split.heldout_fraction")
    synth.write_pairs(
        [synth.Pair(**{k: p[k] for k in synth.Pair.__dataclass_fields__}) for p in train_pairs],
        run.root / "train.jsonl",
    )
    eval_rows: list[dict[str, Any]] = []
    for rows in groups.values():
        eval_rows += _pick(rows, cfg.eval.per_group, cfg.split.seed)
    eval_rows += [{"question": q, "answerable": False, "group": "out-of-corpus"} for q in cfg.eval.out_of_corpus]
    with open(run.root / "eval.jsonl", "w", encoding="utf-8") as f:
        for r in eval_rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    # The training file must be what `hearth tune` accepts: checked by its own validator.
    tdata.load_records(tdata.DataConfig(path=str(run.root / "train.jsonl"), format="qa"))

    step(f"LoRA-tune {cfg.tune.model} on {len(train_pairs)} pairs")
    tune_cfg = cfg.tune.model_copy(
        update={
            "name": cfg.name if cfg.tune.name == "tune" else cfg.tune.name,  # "tune" is the unset default
            "adapter_name": cfg.tune.adapter_name or cfg.name,
            "data": cfg.tune.data.model_copy(update={"path": str(run.root / "train.jsonl"), "format": "qa"}),
        }
    )
    tune_run, tune_report = tune_mod.tune(tune_cfg)
    adapter = tune_report.adapter
    tuned = f"{tune_cfg.model}+{adapter}" if adapter else str(Path(tune_report.output))
    backends.forget(tuned)  # an adapter of this name may have been loaded before it was retrained

    step(f"evaluate {len(eval_rows)} questions")
    systems = [
        cmp.System("base", tune_cfg.model),
        cmp.System("base + RAG", tune_cfg.model, name),
        cmp.System("tuned", tuned),
        cmp.System("tuned + RAG", tuned, name),
        *[cmp.parse_system(s) for s in cfg.eval.extra_systems],
    ]
    result = cmp.compare(
        eval_rows, systems, max_tokens=cfg.eval.max_tokens, judge=cfg.eval.judge, save=False, settings=settings
    )
    result.run_dir = str(run.root)
    result.summary = summarize(result)
    title = f"Closed loop '{cfg.name}': base vs fine-tuned vs RAG"
    report = write_report(result, run.root / "report", title)
    if report_dir is not None:
        target = Path(report_dir)
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(run.root / "report", target)
        report = target / "report.md"
    counts = {g: sum(1 for r in eval_rows if r["group"] == g) for g in [*groups, "out-of-corpus"]}
    out = LoopResult(
        run_dir=str(run.root),
        collection=name,
        pairs=len(pairs),
        train_pairs=len(train_pairs),
        eval_questions=counts,
        tune_run=tune_run.id,
        adapter=adapter,
        report=str(report),
        overall=result.overall,
        by_group=result.by_group,
        summary=result.summary,
    )
    (run.root / "loop.json").write_text(
        json.dumps(asdict(out) | {"synth": synth_report.counts()}, indent=1, ensure_ascii=False), encoding="utf-8"
    )
    run.write_summary(pairs=len(pairs), train_pairs=len(train_pairs), tune_run=tune_run.id, adapter=adapter)
    run.write_meta(status="finished", tune_run=tune_run.id, adapter=adapter)
    return out
