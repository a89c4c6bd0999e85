"""`hearth tune`: fine-tune an open model on your data in one command — setup → main → fit → report.

    setup   read the recipe, load the base model, read + validate + split + render the data, apply the method
    main    measure the base model (validation loss, sample answers), create the run, hand off to the loop
    fit     the one training loop (``loop.train``) — the same one from-scratch training uses
    report  save the adapter (or full model), register it under ``adapters/<name>``, measure the tuned
            model the same way, write report.md / report.json in the run and return the numbers

The adapter is registered only after training finished, through a temp folder and a rename, so a
failed run never leaves a half-written adapter behind under its name.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from hearth import config as hconfig
from hearth.config import Section
from hearth.errors import ConfigError, TrainError
from hearth.train import data as tdata
from hearth.train import methods
from hearth.train.config import TrainingConfig
from hearth.train.loop import TrainResult, train
from hearth.train.methods import MethodConfig
from hearth.train.runs import Run

KIND = "tune"


class TuneTraining(TrainingConfig):
    """The loop's settings with fine-tuning defaults: a few dozen steps at an adapter-sized learning rate."""

    max_steps: int = Field(40, ge=1, description="optimizer steps to train for")
    batch_size: int = Field(4, ge=1, description="examples per forward pass, per process")
    learning_rate: float = Field(2e-3, gt=0, description="peak step size (LoRA ~1e-3, prefix/IA³ ~3e-2, full ~5e-5)")
    warmup_steps: int = Field(3, ge=0, description="steps over which the learning rate rises linearly from 0")
    weight_decay: float = Field(0.0, ge=0, description="pull weights toward zero each step (adapters: usually 0)")
    eval_every: int = Field(10, ge=1, description="evaluate on the validation split every N steps")
    log_every: int = Field(5, ge=1, description="write train loss / lr / tokens per second every N steps")
    save_every: int = Field(20, ge=1, description="write a checkpoint every N steps (and always at the end)")


class ReportConfig(Section):
    samples: int = Field(4, ge=0, description="validation questions answered by base and tuned model (greedy)")
    max_tokens: int = Field(40, ge=1, description="most tokens per sample answer")


class TuneConfig(Section):
    """A fine-tuning recipe (``configs/tune/*.yaml``): every setting of the run, in one file."""

    name: str = Field("tune", description="short name: part of the run id, and the adapter's registered name")
    model: str = Field("smollm2", description="base model: bundled name, folder under models/, or a path")
    adapter_name: str | None = Field(None, description="register the adapter under this name (default: name)")
    data: tdata.DataConfig = Field(default_factory=tdata.DataConfig)
    method: MethodConfig = Field(default_factory=MethodConfig)
    training: TuneTraining = Field(default_factory=TuneTraining)
    report: ReportConfig = Field(default_factory=ReportConfig)


@dataclass
class Sample:
    question: str
    reference: str
    base: str
    tuned: str


@dataclass
class TuneReport:
    run_id: str
    method: str
    trainable: int
    total: int
    train_examples: int
    val_examples: int
    truncated: int
    dropped: int
    skipped_records: int
    base_val_loss: float | None
    tuned_val_loss: float | None
    steps: int
    seconds_per_step: float | None
    adapter: str | None  # registered name (``base+adapter`` to chat with it)
    output: str  # adapter or model folder in the run
    samples: list[Sample] = field(default_factory=list)

    @property
    def base_perplexity(self) -> float | None:
        return _ppl(self.base_val_loss)

    @property
    def tuned_perplexity(self) -> float | None:
        return _ppl(self.tuned_val_loss)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["base_perplexity"], out["tuned_perplexity"] = self.base_perplexity, self.tuned_perplexity
        return out


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TuneConfig:
    # Only nested variables: a flat HEARTH_MODEL=... (meant for chat) must not become the base model here.
    env = {k: v for k, v in os.environ.items() if "__" in k}
    return hconfig.load(TuneConfig, path, overrides, env=env)


# ---------------------------------------------------------------------------------------------
# setup


@dataclass
class Prepared:
    cfg: TuneConfig
    base: Any  # the plain base model (changed in place by the method)
    tokenizer: Any
    model_path: Path
    train_rows: tdata.Encoded
    val_rows: tdata.Encoded
    val_records: list[tdata.Record]
    skipped: int


def setup(cfg: TuneConfig) -> Prepared:
    """Everything that can fail on bad input fails here, before a run folder exists."""
    from hearth.models import load as mload

    if cfg.method.name == "qlora":
        methods.qlora_backend()  # refuses before the minutes of loading and tokenizing
    ref = mload.resolve(cfg.model)
    if ref.kind == "remote" or ref.adapter is not None:
        raise ConfigError(
            f"cannot fine-tune '{cfg.model}': the base must be local weights without an adapter",
            "name a bundled model, a folder under models/, or a path (merge an adapter first with `hearth tune merge`)",
        )
    folder = mload.hf_dir(ref).resolve()
    base, tokenizer = _load_base(folder, cfg)

    loaded = tdata.load_records(cfg.data)
    tdata.prepare_tokenizer(tokenizer, cfg.data, cfg.model, chat=loaded.format != "text")
    context = _context_length(base)
    if cfg.data.max_seq_len > context:
        raise ConfigError(
            f"data.max_seq_len is {cfg.data.max_seq_len} but '{cfg.model}' reads at most {context} tokens",
            f"set data.max_seq_len to {context} or less (longer examples are truncated and counted)",
        )
    train_records, val_records = tdata.split(loaded.records, cfg.data)
    train_rows = tdata.encode(tokenizer, train_records, cfg.data)
    val_cfg = cfg.data.model_copy(update={"packing": False})  # validation measures whole examples
    val_rows = tdata.encode(tokenizer, val_records, val_cfg)
    if not train_rows.rows:
        raise TrainError(
            f"every training example lost its answer to truncation at data.max_seq_len={cfg.data.max_seq_len}",
            "raise data.max_seq_len (up to the model's context), or shorten the prompts",
        )
    if len(train_rows.rows) < cfg.training.batch_size:
        raise TrainError(
            f"{len(train_rows.rows)} training rows are fewer than one batch of {cfg.training.batch_size}",
            "add examples, or lower training.batch_size",
        )
    return Prepared(cfg, base, tokenizer, folder, train_rows, val_rows, val_records, skipped=len(loaded.problems))


def _load_base(folder: Path, cfg: TuneConfig) -> tuple[Any, Any]:
    """A private copy of the base (the method changes it in place; the chat cache must not see that)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    kwargs: dict[str, Any] = {"dtype": "auto"}
    backend = methods.qlora_backend() if cfg.method.name == "qlora" else None
    if backend == "bitsandbytes":
        kwargs = {"quantization_config": methods.quantization_config(), "device_map": {"": 0}}
    elif backend == "torchao":
        kwargs = {"dtype": torch.bfloat16}  # NF4's compute dtype, as bitsandbytes' config sets it
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, **kwargs)
    if backend == "torchao":
        from hearth.train import nf4

        nf4.quantize(model)
    return model, tokenizer


def _context_length(model: Any) -> int:
    for attr in ("max_position_embeddings", "n_positions"):
        value = getattr(model.config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return 2048


# ---------------------------------------------------------------------------------------------
# main


def tune(cfg: TuneConfig, resume: str | None = None, run: Run | None = None) -> tuple[Run, TuneReport | None]:
    """Run a recipe end to end into a new run folder (or ``run``, made by a job's parent), or continue
    run ``resume`` from its last checkpoint.

    Under ``accelerate launch`` every process trains; only the main one measures, saves and reports
    (the others return None for the report).
    """
    import torch
    from accelerate import PartialState
    from rich.console import Console

    # The first PartialState fixes the process group for the whole run (the loop's Accelerator reuses
    # it): cpu=True as there, or on a GPU-less host every `accelerate launch` process runs alone.
    proc = PartialState(cpu=not torch.cuda.is_available())
    main = proc.is_main_process
    if resume is not None:
        run = Run.open(resume, writable=main)
        if run.meta.get("kind") != KIND:
            raise TrainError(
                f"run {run.id} is a '{run.meta.get('kind')}' run, not a fine-tuning one",
                "resume from-scratch runs with `hearth train --resume`",
            )
        run.require_checkpoint()
        cfg = run.read_config(TuneConfig)
    prep = setup(cfg)
    collate = tdata.collator(prep.tokenizer.pad_token_id)

    # The base model's numbers, measured before the method touches it.
    base_loss = val_loss(prep.base, prep.val_rows.rows, collate, cfg.training.batch_size) if main else None
    base_answers = answers(prep.base, prep.tokenizer, prep.val_records, cfg.report) if main else []

    # The adapter's initial weights come from the global RNG: seed it, or they depend on whatever drew
    # from it before (measured: merely having torchao installed changed them, and what LoRA learned).
    torch.manual_seed(cfg.training.seed)
    model = methods.setup(prep.base, cfg.method, prep.tokenizer)
    trainable, total = methods.count_parameters(model)
    if resume is None:
        run = _share_run(proc, (run or Run.create(KIND, cfg.name)) if main else None)
        run.write_config(cfg)
    run.write_meta(
        base_model=cfg.model,
        method=cfg.method.name,
        parameters=total,
        trainable_parameters=trainable,
        train_examples=len(prep.train_rows.rows),
        val_examples=len(prep.val_rows.rows),
    )
    if main:
        Console(stderr=True).print(
            f"[cyan]{cfg.method.name}[/]: training {trainable:,} of {total:,} parameters "
            f"({100 * trainable / total:.2f}%) on {len(prep.train_rows.rows)} examples "
            f"({prep.train_rows.truncated} truncated, {prep.train_rows.dropped} dropped)"
        )
    result = fit(model, run, prep, collate, resume=resume is not None)
    if not main:
        return run, None
    return run, report(model, run, prep, collate, result, base_loss, base_answers, trainable, total)


def _share_run(proc: Any, run: Run | None) -> Run:
    """The main process created the run folder; the others open the same one, read-only."""
    if proc.num_processes == 1:
        assert run is not None
        return run
    from accelerate.utils import broadcast_object_list

    box = [str(run.root) if run is not None else None]
    broadcast_object_list(box, from_process=0)
    return run if run is not None else Run(Path(box[0]), writable=False)


# ---------------------------------------------------------------------------------------------
# fit


def fit(model: Any, run: Run, prep: Prepared, collate: Any, resume: bool) -> TrainResult:
    """The one loop; peft methods checkpoint only their own (trainable) weights."""
    val = tdata.Rows(prep.val_rows.rows) if prep.val_rows.rows else None
    # A training forward needs no KV cache (the prefix method passes its own); building one every step
    # costs time and memory. Generation asks for a cache explicitly, and the saved config keeps it on.
    config = prep.base.config
    use_cache, config.use_cache = config.use_cache, False
    try:
        return train(
            model,
            run,
            prep.cfg.training,
            tdata.Rows(prep.train_rows.rows),
            val,
            collate_fn=collate,
            resume=resume,
            trainable_only=prep.cfg.method.name != "full",
        )
    finally:
        config.use_cache = use_cache


# ---------------------------------------------------------------------------------------------
# report


def report(
    model: Any,
    run: Run,
    prep: Prepared,
    collate: Any,
    result: TrainResult,
    base_loss: float | None,
    base_answers: list[str],
    trainable: int,
    total: int,
) -> TuneReport:
    cfg = prep.cfg
    model.eval()
    output, adapter = save_output(model, run, prep)
    if not getattr(model, "is_loaded_in_4bit", False):
        # Hearth's generation path (for the sample answers) decodes on the CPU; a 4-bit QLoRA base
        # cannot move there, so its report has losses but no sample answers.
        model.to("cpu")
    tuned_loss = val_loss(model, prep.val_rows.rows, collate, cfg.training.batch_size)
    tuned_answers = answers(model, prep.tokenizer, prep.val_records, cfg.report)
    samples = [
        Sample(_question(r), _reference(r), b, t)
        for r, b, t in zip(prep.val_records, base_answers, tuned_answers, strict=False)
    ]
    sec_per_step = _seconds_per_step(run)
    rep = TuneReport(
        run_id=run.id,
        method=cfg.method.name,
        trainable=trainable,
        total=total,
        train_examples=len(prep.train_rows.rows),
        val_examples=len(prep.val_rows.rows),
        truncated=prep.train_rows.truncated + prep.val_rows.truncated,
        dropped=prep.train_rows.dropped + prep.val_rows.dropped,
        skipped_records=prep.skipped,
        base_val_loss=base_loss,
        tuned_val_loss=tuned_loss,
        steps=result.steps,
        seconds_per_step=sec_per_step,
        adapter=adapter,
        output=str(output),
        samples=samples,
    )
    (run.root / "report.json").write_text(json.dumps(rep.to_dict(), indent=2, ensure_ascii=False))
    (run.root / "report.md").write_text(render_markdown(rep, cfg), encoding="utf-8")
    run.write_summary(base_val_loss=base_loss, tuned_val_loss=tuned_loss, adapter=adapter)
    return rep


def save_output(model: Any, run: Run, prep: Prepared) -> tuple[Path, str | None]:
    """Write the adapter (peft methods) or the whole model (full) into the run; register adapters."""
    from hearth.models import adapters

    cfg = prep.cfg
    if cfg.method.name == "full":
        out = run.root / "model"
        tmp = run.root / ".model.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        prep.tokenizer.save_pretrained(tmp)
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
        return out, None
    out = run.root / "adapter"
    tmp = run.root / ".adapter.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    # The catalog and `hearth models` show the base by the name the user gave, not a cache path.
    model.active_peft_config.base_model_name_or_path = cfg.model
    # Our methods never train the embeddings; "auto" would look for the base's files under that name.
    model.save_pretrained(tmp, save_embedding_layers=False)
    if cfg.data.chat_template:  # the base's tokenizer lacks this template: serve with ours
        prep.tokenizer.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    name = cfg.adapter_name or cfg.name
    adapters.register(name, out, base=cfg.model, method=cfg.method.name, run=run.id)
    return out, name


def val_loss(model: Any, rows: Sequence[dict[str, list[int]]], collate: Any, batch_size: int) -> float | None:
    """Mean loss per answer token over ``rows`` (the loop's evaluation, for a model outside the loop)."""
    import torch

    if not rows:
        return None
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = {k: v.to(device) for k, v in collate(list(rows[start : start + batch_size])).items()}
            n = int((batch["labels"][:, 1:] != tdata.IGNORE_INDEX).sum())
            total += float(model(**batch).loss) * n
            count += n
    model.train(was_training)
    return total / count if count else None


def answers(model: Any, tokenizer: Any, records: Sequence[tdata.Record], cfg: ReportConfig) -> list[str]:
    """Greedy answers to the first ``cfg.samples`` validation questions, through the serving path."""
    from hearth.models import generate

    if next(model.parameters()).device.type != "cpu":
        return []  # see report(): the generation path decodes on the CPU
    params = generate.sampling(temperature=0, max_tokens=cfg.max_tokens, repetition_penalty=1.0)
    out = []
    was_training = model.training
    model.eval()
    for record in [r for r in records if r.messages][: cfg.samples]:
        prompt = _prompt_messages(record)
        deltas = generate.stream_chat(model, tokenizer, prompt, params, _context_length(model))
        out.append(generate.collect(deltas).text.strip())
    model.train(was_training)
    return out


def render_markdown(rep: TuneReport, cfg: TuneConfig) -> str:
    def num(x: float | None, digits: int = 3) -> str:
        return "–" if x is None else f"{x:.{digits}f}"

    lines = [
        f"# Fine-tuning report — run {rep.run_id}",
        "",
        f"- base model: `{cfg.model}`; method: **{rep.method}**; trained {rep.trainable:,} of {rep.total:,} "
        f"parameters ({100 * rep.trainable / max(rep.total, 1):.2f}%) for {rep.steps} steps",
        f"- data: `{cfg.data.path}` — {rep.train_examples} training / {rep.val_examples} validation rows; "
        f"{rep.truncated} truncated at {cfg.data.max_seq_len} tokens, {rep.dropped} dropped, "
        f"{rep.skipped_records} bad records skipped",
        f"- output: `{rep.output}`"
        + (f"; chat with it: `hearth chat -m {cfg.model}+{rep.adapter}`" if rep.adapter else ""),
        "",
        "| model | validation loss | perplexity |",
        "| --- | --- | --- |",
        f"| base | {num(rep.base_val_loss)} | {num(rep.base_perplexity, 2)} |",
        f"| tuned | {num(rep.tuned_val_loss)} | {num(rep.tuned_perplexity, 2)} |",
    ]
    if rep.samples:
        lines += ["", "## Sample answers (greedy, validation set)", "", "| question | reference | base | tuned |"]
        lines.append("| --- | --- | --- | --- |")
        for s in rep.samples:
            cells = [_cell(s.question), _cell(s.reference), _cell(s.base), _cell(s.tuned)]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _ppl(loss: float | None) -> float | None:
    return None if loss is None else math.exp(min(loss, 50.0))


def _prompt_messages(record: tdata.Record) -> list[dict[str, str]]:
    assert record.messages is not None
    last = max(i for i, m in enumerate(record.messages) if m["role"] == "assistant")
    return record.messages[:last]


def _question(record: tdata.Record) -> str:
    users = [m["content"] for m in _prompt_messages(record) if m["role"] == "user"]
    return users[-1] if users else ""


def _reference(record: tdata.Record) -> str:
    assert record.messages is not None
    return [m["content"] for m in record.messages if m["role"] == "assistant"][-1]


def _seconds_per_step(run: Run) -> float | None:
    # tokens / steps = tokens per step; tokens_per_s is the loop's measured training speed.
    steps, tokens, tps = (run.summary.get(k) for k in ("steps", "tokens", "tokens_per_s"))
    if not steps or not tokens or not tps:
        return None
    return (tokens / steps) / tps
