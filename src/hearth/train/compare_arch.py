"""The five architectures side by side, measured: ``hearth train compare configs/compare-architectures.yaml``.

One recipe trains the Transformer, LSTM, CNN, Mamba and RWKV at a matched parameter count (each gets the
width whose parameter count is nearest the target, at its own depth) and the same token budget on the same
corpus, each through the one loop into its own run folder, then measures what the seed's table only
claims, and writes ``docs/results/architectures/``:

1. language modelling: validation loss against tokens seen, and training tokens/s;
2. decoding cost as the context grows: time and memory per new token, each model on its own decode path
   (the recurrent ones step from their carried state; the Transformer and CNN re-read the context, as
   ``hearth chat`` runs them);
3. a long-range task: a sequence starts with a value token and goes on with noise; at every later position
   the model must name the value, g tokens after it appeared; accuracy against g.

Every number in the report is written by this module from these measurements. ``parts=[recall]`` measures
only that part again and reads the others back from the report's ``results.json`` (each part's numbers
keep the run that measured them).
"""

from __future__ import annotations

import json
import math
import platform
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field

from hearth import config as hconfig
from hearth.config import Section
from hearth.errors import ConfigError
from hearth.scratch.corpus import read_documents, split_corpus
from hearth.scratch.model import ARCH_NAMES, IGNORE_INDEX, LanguageModel, ModelConfig, build_model
from hearth.scratch.tokenizer import train_tokenizer
from hearth.train.config import TrainingConfig
from hearth.train.loop import train
from hearth.train.runs import Run
from hearth.train.scratch import ScratchConfig, train_scratch

# The seed's table: era, weakness, why each was replaced (or what it offers).
SEED_TABLE = {
    "lstm": ("RNN / LSTM", "1997–2017", "no parallelism over time; weak long-range memory", "replaced by attention"),
    "cnn": ("CNN", "2014–2017", "sees only local patterns (a fixed receptive field)", "replaced by attention"),
    "transformer": ("Transformer", "2017–", "attention costs O(n²) in the context length", "the current standard"),
    "mamba": ("Mamba", "2023–", "simple structure, saves memory", "a post-Transformer line"),
    "rwkv": ("RWKV", "2023–", "simple structure, saves memory", "a post-Transformer line"),
}


class ArchSpec(Section):
    """One contestant: its architecture and depth (its width is chosen to match the parameter target)."""

    arch: str = Field(..., description="one of " + ", ".join(ARCH_NAMES))
    num_layers: int = Field(2, ge=1, description="depth; the width follows from parameters")


class RecallConfig(Section):
    """The long-range task: a value token, then noise; every later position must name that value."""

    max_gap: int = Field(512, ge=2, description="longest gap measured; sequences are max_gap + 8 tokens long")
    eval_gaps: list[int] = Field(
        default_factory=lambda: [2, 16, 32, 64, 128, 256, 384, 512], description="gaps whose accuracy is measured"
    )
    noise_tokens: int = Field(16, ge=2, description="distinct filler tokens")
    value_tokens: int = Field(8, ge=2, description="distinct values to recall (chance = 1 / this)")
    train_examples: int = Field(4096, ge=16, description="training sequences")
    eval_examples: int = Field(128, ge=8, description="test sequences (every gap is read from each)")
    eval_batch: int = Field(32, ge=1, description="test sequences read at once (bounds the Transformer's T×T memory)")
    training: TrainingConfig = Field(default_factory=TrainingConfig)


class InferenceConfig(Section):
    """Decoding cost per new token at growing context lengths."""

    contexts: list[int] = Field(default_factory=lambda: [128, 256, 512, 1024, 2048, 4096], description="lengths")
    repeats: int = Field(10, ge=1, description="timed tokens per length (the fastest is reported: least disturbed)")


PARTS = ("lm", "inference", "recall")


class CompareConfig(Section):
    """The recipe of `hearth train compare`."""

    name: str = Field("compare", description="prefix of the run ids")
    out: str = Field("docs/results/architectures", description="folder for the report and the plots")
    parameters: int = Field(100_000, ge=1000, description="target parameter count of every model")
    threads: int = Field(1, ge=0, description="torch threads (0 = torch's default); 1 = steadier on a shared machine")
    architectures: list[ArchSpec] = Field(default_factory=list, description="the contestants")
    base: ScratchConfig = Field(default_factory=ScratchConfig, description="the shared language-model recipe")
    recall: RecallConfig = Field(default_factory=RecallConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    parts: list[Literal["lm", "inference", "recall"]] = Field(
        default_factory=lambda: list(PARTS),
        description="what to measure now; the others are read back from out/results.json (parts=[recall]: only recall)",
    )


def load_config(path: str | Path, overrides: list[str] | None = None) -> CompareConfig:
    cfg = hconfig.load(CompareConfig, path, overrides or [], env={})
    unknown = [a.arch for a in cfg.architectures if a.arch not in ARCH_NAMES]
    if unknown or not cfg.architectures:
        raise ConfigError(
            f"architectures {unknown or '(none)'} are not known",
            "list some of: " + ", ".join(ARCH_NAMES) + " under architectures:",
        )
    return cfg


# ---------------------------------------------------------------------------------------------
# matching the parameter count


def matched_model(base: ModelConfig, spec: ArchSpec, vocab_size: int, target: int) -> ModelConfig:
    """The model config for ``spec`` whose parameter count is nearest ``target`` (width in steps of 4)."""
    step = 4 if spec.arch != "transformer" else math.lcm(4, base.num_heads)
    widths = list(range(step, 2049, step))

    def config(width: int) -> ModelConfig:
        return base.model_copy(
            update={"arch": spec.arch, "num_layers": spec.num_layers, "hidden_size": width, "vocab_size": vocab_size}
        )

    def count(width: int) -> int:
        return build_model(config(width)).num_parameters()  # milliseconds at these sizes

    # The count grows with the width: bisect for the first width at or above the target, then take the nearer.
    lo, hi = 0, len(widths) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if count(widths[mid]) < target:
            lo = mid + 1
        else:
            hi = mid
    candidates = widths[max(0, lo - 1) : lo + 1]
    return config(min(candidates, key=lambda w: abs(count(w) - target)))


# ---------------------------------------------------------------------------------------------
# 1. language modelling


def language_modelling(cfg: CompareConfig, progress: Callable[[str], None]) -> dict[str, Any]:
    splits = split_corpus(read_documents(cfg.base.data.path, cfg.base.data.doc_separator), cfg.base.data)
    vocab = len(train_tokenizer(splits.train, cfg.base.tokenizer).get_vocab())
    tokens_per_step = cfg.base.training.batch_size * cfg.base.training.grad_accum_steps * cfg.base.model.block_size
    results: dict[str, Any] = {}
    for spec in cfg.architectures:
        model_cfg = matched_model(cfg.base.model, spec, vocab, cfg.parameters)
        progress(f"language model: {spec.arch} (hidden_size {model_cfg.hidden_size}, {spec.num_layers} layers)")
        run_cfg = cfg.base.model_copy(update={"name": f"{cfg.name}-{spec.arch}", "model": model_cfg})
        run, result = train_scratch(run_cfg)
        val = [(h["step"] * tokens_per_step, h["loss"]) for h in result.history if h["split"] == "val"]
        results[spec.arch] = {
            "run": run.id,
            "hidden_size": model_cfg.hidden_size,
            "num_layers": model_cfg.num_layers,
            "parameters": run.meta.get("parameters"),
            "tokens": result.tokens,
            "tokens_per_s": result.tokens_per_s,
            "best_val_loss": result.best_val_loss,
            "test_loss": result.test_loss,
            "val_curve": val,
            "model": model_cfg.model_dump(),
        }
    return results


# ---------------------------------------------------------------------------------------------
# 2. decoding cost against context length


def _allocated_bytes(fn: Callable[[], Any]) -> tuple[Any, int]:
    """Run ``fn`` and count the bytes torch allocated on the CPU while it ran (the profiler's memory events)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
    return out, sum(max(e.self_cpu_memory_usage, 0) for e in prof.events())


@torch.inference_mode()
def decode_cost(model: LanguageModel, contexts: list[int], repeats: int, seed: int = 0) -> list[dict[str, float]]:
    """Milliseconds and bytes allocated for one new token after ``n`` tokens of context, for each n.

    Recurrent models (``supports_kv_cache``) read the context once, growing it from one length to the
    next, then step one token from the carried state. The others run the forward pass over the last n
    tokens and keep the last position, as the generation path does for them."""
    # Denormal floats (a decaying state underflowing towards 0) take a slow path on x86; inference engines
    # flush them to zero, and so does this measurement.
    flushed = torch.set_flush_denormal(True)
    try:
        return _decode_cost(model, contexts, repeats, seed)
    finally:
        if flushed:
            torch.set_flush_denormal(False)


def _decode_cost(model: LanguageModel, contexts: list[int], repeats: int, seed: int) -> list[dict[str, float]]:
    g = torch.Generator().manual_seed(seed)
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (1, max(contexts) + repeats + 1), generator=g)
    recurrent = bool(getattr(model, "supports_kv_cache", False))
    rows, cache, read = [], None, 0
    for n in sorted(contexts):
        if recurrent:
            out = model(input_ids=ids[:, read:n], cache=cache, use_cache=True, logits_to_keep=1)
            cache, read = out.cache, n

            def step(t: int, n: int = n, c: Any = cache) -> Any:
                return model(input_ids=ids[:, n + t : n + t + 1], cache=c, use_cache=True, logits_to_keep=1)
        else:

            def step(t: int, n: int = n) -> Any:
                return model(input_ids=ids[:, t + 1 : n + t + 1]).logits[:, -1]

        step(0)  # warm-up (twice: the first call of a new shape allocates and picks kernels)
        step(0)
        times = []
        for t in range(repeats):
            start = time.perf_counter()
            step(t)
            times.append((time.perf_counter() - start) * 1000)
        _, allocated = _allocated_bytes(lambda: step(0))
        state = cache.nbytes() if recurrent else None
        rows.append({"context": n, "ms": min(times), "allocated_bytes": allocated, "state_bytes": state})
    return rows


def inference(cfg: CompareConfig, lm: dict[str, Any], progress: Callable[[str], None]) -> dict[str, Any]:
    """Each trained model's shape, freshly initialised with block_size = the longest context (the cost of a
    token does not depend on the weights' values; the Transformer and CNN need position embeddings that long)."""
    results = {}
    longest = max(cfg.inference.contexts)
    for arch, row in lm.items():
        progress(f"decoding cost: {arch}")
        model_cfg = ModelConfig.model_validate(
            {**row["model"], "block_size": max(longest + 1, row["model"]["block_size"])}
        )
        torch.manual_seed(0)
        model = build_model(model_cfg).eval()
        results[arch] = decode_cost(model, cfg.inference.contexts, cfg.inference.repeats)
    return results


# ---------------------------------------------------------------------------------------------
# 3. the long-range task


def recall_example(position: int, length: int, rc: RecallConfig, rng: random.Random) -> dict[str, torch.Tensor]:
    """Noise with one value token at ``position``; every later prediction's label is that value.

    Token ids: noise 0..noise_tokens-1, values after them. The prediction made at position t (it sees the
    tokens up to t) is labelled at t + 1, so the model answers g = t - position tokens after the value."""
    value = rc.noise_tokens + rng.randrange(rc.value_tokens)
    seq = [rng.randrange(rc.noise_tokens) for _ in range(length)]
    seq[position] = value
    ids = torch.tensor(seq)
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[position + 1 :] = value
    return {"input_ids": ids, "labels": labels}


def long_range(cfg: CompareConfig, lm: dict[str, Any], progress: Callable[[str], None]) -> dict[str, Any]:
    rc = cfg.recall
    length = rc.max_gap + 8
    rng = random.Random(rc.training.seed)
    start = 0  # the value comes first: the gap is the position, and every gap is read from each sequence
    train_set = [recall_example(start, length, rc, rng) for _ in range(rc.train_examples)]
    test = torch.stack([recall_example(start, length, rc, rng)["input_ids"] for _ in range(rc.eval_examples)])
    vocab = rc.noise_tokens + rc.value_tokens
    results = {}
    for spec in cfg.architectures:
        progress(f"long-range recall: {spec.arch}")
        model_cfg = matched_model(
            ModelConfig.model_validate({**lm[spec.arch]["model"], "block_size": length}), spec, vocab, cfg.parameters
        )
        torch.manual_seed(rc.training.seed)
        model = build_model(model_cfg)
        run = Run.create("compare-recall", f"{cfg.name}-recall-{spec.arch}")
        run.write_config(model_cfg)
        run.write_meta(parameters=model.num_parameters(), arch=spec.arch)
        result = train(model, run, rc.training, train_set)
        model.eval()
        with torch.inference_mode():
            guess = torch.cat([model(input_ids=rows).logits.argmax(-1) for rows in test.split(rc.eval_batch)])
        accuracy = {g: float((guess[:, start + g] == test[:, start]).float().mean()) for g in rc.eval_gaps}
        results[spec.arch] = {
            "run": run.id,
            "parameters": model.num_parameters(),
            "final_loss": result.train_loss,
            "accuracy": accuracy,
        }
    return results


# ---------------------------------------------------------------------------------------------
# the report


def run_comparison(cfg: CompareConfig, progress: Callable[[str], None] = print) -> Path:
    """Train, measure, and write the report and plots into ``cfg.out``; returns the report's path."""
    out = Path(cfg.out)
    data = _previous(cfg, out)
    seconds = data.get("seconds") if isinstance(data.get("seconds"), dict) else {}
    measure = {"lm": language_modelling, "inference": inference, "recall": long_range}
    previous_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        for part in PARTS:  # in this order: the decode and recall models take the language models' shapes
            if part in cfg.parts:
                start = time.perf_counter()
                args = (cfg, progress) if part == "lm" else (cfg, data["lm"], progress)
                data[part] = measure[part](*args)  # type: ignore[operator]
                seconds[part] = time.perf_counter() - start
    finally:
        torch.set_num_threads(previous_threads)
    out.mkdir(parents=True, exist_ok=True)
    data.update(chance=1 / cfg.recall.value_tokens, seconds=seconds, machine=_machine(cfg))
    (out / "results.json").write_text(json.dumps(data, indent=1, default=float), encoding="utf-8")
    _plots(data, out)
    report = out / "README.md"
    report.write_text(_markdown(cfg, data), encoding="utf-8")
    return report


def _previous(cfg: CompareConfig, out: Path) -> dict[str, Any]:
    """The numbers of the parts not measured now, from the last full run's results.json."""
    keep = [p for p in PARTS if p not in cfg.parts]
    if not keep:
        return {}
    path = out / "results.json"
    old = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    missing = [p for p in keep if p not in old]
    if missing:
        raise ConfigError(
            f"parts={cfg.parts} reuses {', '.join(missing)} from {path}, which has no such numbers",
            "run all parts once first (leave parts out)",
        )
    return {p: old[p] for p in keep} | {"seconds": old.get("seconds")}


def _machine(cfg: CompareConfig) -> str:
    return f"{platform.machine()}, {torch.get_num_threads() if not cfg.threads else cfg.threads} torch thread(s), torch {torch.__version__}"


COLORS = {"transformer": "#1f77b4", "lstm": "#d62728", "cnn": "#8c564b", "mamba": "#2ca02c", "rwkv": "#9467bd"}


def _label(arch: str) -> str:
    return SEED_TABLE.get(arch, (arch,))[0]


def _plots(data: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lm, cost, recall = data["lm"], data["inference"], data["recall"]

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [2, 1]})
    for arch, row in lm.items():
        xs, ys = zip(*row["val_curve"], strict=True) if row["val_curve"] else ((), ())
        ax1.plot([x / 1000 for x in xs], ys, marker="o", ms=3, color=COLORS.get(arch), label=_label(arch))
    ax1.set(
        xlabel="training tokens (thousands)", ylabel="validation loss (nats/token)", title="Validation loss vs tokens"
    )
    ax1.grid(alpha=0.3)
    ax1.legend()
    archs = list(lm)
    speeds = [lm[a]["tokens_per_s"] for a in archs]
    bars = ax2.bar([_label(a) for a in archs], speeds, color=[COLORS.get(a) for a in archs])
    ax2.bar_label(bars, labels=[f"{s:,.0f}" for s in speeds], fontsize=8)
    ax2.set(ylabel="tokens / s", title="Training speed")
    ax2.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(out / "loss_vs_tokens.png", dpi=110)
    plt.close(fig)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for arch, rows in cost.items():
        n = [r["context"] for r in rows]
        ax1.plot(n, [r["ms"] for r in rows], marker="o", color=COLORS.get(arch), label=_label(arch))
        ax2.plot(n, [r["allocated_bytes"] / 1e6 for r in rows], marker="o", color=COLORS.get(arch), label=_label(arch))
    for ax, ylabel, title in (
        (ax1, "ms per new token", "Decode time per token"),
        (ax2, "MB allocated per new token", "Decode memory per token"),
    ):
        ax.set(xscale="log", yscale="log", xlabel="context length (tokens)", ylabel=ylabel, title=title)
        ax.set_xticks([r["context"] for r in next(iter(cost.values()))])
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # log-axis minor labels overlap
        ax.grid(alpha=0.3, which="both")
        ax.legend(loc="upper left", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "decode_cost.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4.8))
    # Lines at 100% lie on top of each other: each gets its own marker, size and dash so all stay visible.
    styles = [("o", 11, "-"), ("s", 8, "--"), ("^", 8, "-."), ("D", 6, ":"), ("v", 6, "-")]
    for (arch, row), (marker, size, dash) in zip(recall.items(), styles * 2, strict=False):
        gaps = [int(g) for g in row["accuracy"]]
        ax.plot(
            gaps,
            list(row["accuracy"].values()),
            marker=marker,
            ms=size,
            ls=dash,
            mfc="none" if size > 6 else None,
            mew=1.5,
            color=COLORS.get(arch),
            label=_label(arch),
        )
    ax.axhline(data["chance"], color="gray", ls="--", lw=1, label="chance")
    ax.set(xlabel="gap: tokens since the value appeared", ylabel="recall accuracy", ylim=(-0.02, 1.02))
    gaps = sorted({int(g) for row in recall.values() for g in row["accuracy"]})
    if gaps and gaps[0] > 0:  # gaps from a few tokens to hundreds: a log axis keeps the short ones apart
        ax.set_xscale("log", base=2)
        ax.set_xticks(gaps)
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_title("Long-range recall: accuracy vs gap")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(out / "recall_vs_gap.png", dpi=110)
    plt.close(fig)


def _markdown(cfg: CompareConfig, data: dict[str, Any]) -> str:
    lm, cost, recall = data["lm"], data["inference"], data["recall"]
    b = cfg.base
    lines = [
        "# Five architectures, measured",
        "",
        "Written by `hearth train compare configs/compare-architectures.yaml` — every number below comes from "
        "that command (`results.json` holds them all); run it again to regenerate this page "
        "(`parts=[recall]` measures only the recall task again and keeps the other numbers).",
        "",
        f"Setup: {b.data.path} ({b.tokenizer.kind} tokens), block_size {b.model.block_size}, "
        f"{b.training.max_steps} steps × batch {b.training.batch_size} = "
        f"{b.training.max_steps * b.training.batch_size * b.model.block_size:,} training tokens per model; "
        f"target {cfg.parameters:,} parameters; {data['machine']}; {_timing(data['seconds'])}.",
        "",
        "## The seed's table, next to the measurements",
        "",
        "| architecture | era | weakness (seed) | why replaced | params | layers × width | best val loss | "
        "train tokens/s | ms/token @ "
        + f"{min(cfg.inference.contexts)} → {max(cfg.inference.contexts)}"
        + f" | recall @ gap {max(cfg.recall.eval_gaps)} |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    longest_gap = max(cfg.recall.eval_gaps)
    for arch, row in lm.items():
        name, era, weakness, why = SEED_TABLE.get(arch, (arch, "", "", ""))
        c = cost[arch]
        acc = recall[arch]["accuracy"]
        lines.append(
            f"| {name} | {era} | {weakness} | {why} | {row['parameters']:,} | {row['num_layers']} × {row['hidden_size']} | "
            f"{row['best_val_loss']:.3f} | {row['tokens_per_s']:,.0f} | {c[0]['ms']:.2f} → {c[-1]['ms']:.2f} | "
            f"{acc.get(longest_gap, acc.get(str(longest_gap), math.nan)):.0%} |"
        )
    lines += [
        "",
        "## Validation loss vs tokens, and training speed",
        "",
        "![validation loss against training tokens; training tokens per second](loss_vs_tokens.png)",
        "",
        "| architecture | run | best val loss | test loss | tokens/s |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for arch, row in lm.items():
        lines.append(
            f"| {_label(arch)} | `{row['run']}` | {row['best_val_loss']:.3f} | {row['test_loss']:.3f} | {row['tokens_per_s']:,.0f} |"
        )
    lines += [
        "",
        "Same corpus, split, tokenizer, optimizer, schedule and token budget; only `model.arch`, depth and "
        "width differ. The runs stay under `runs/` (`hearth runs compare …`, `hearth chat -m runs/<id>`).",
        "",
        "## Decoding cost as the context grows",
        "",
        "![time and memory per new token against context length](decode_cost.png)",
        "",
        "Each model on its own decode path: LSTM, Mamba and RWKV step one token from their carried state "
        "(the path `hearth chat` uses for them); the Transformer and the CNN run their forward pass over the "
        "whole context (as `hearth chat` runs them: they keep no cache). Time is the fastest of "
        f"{cfg.inference.repeats} tokens (the least disturbed by the shared machine), denormals flushed to "
        "zero as inference engines do; memory is every byte torch allocated while producing one token "
        "(the profiler's memory events). Models are freshly initialised copies of the trained shapes with "
        "block_size = the longest context: the cost of a token does not depend on the weights' values.",
        "",
        "| architecture | " + " | ".join(f"{n:,}" for n in cfg.inference.contexts) + " | state carried |",
        "| --- | " + " | ".join("---:" for _ in cfg.inference.contexts) + " | ---: |",
    ]
    for arch, rows in cost.items():
        state = rows[-1]["state_bytes"]
        lines.append(
            f"| {_label(arch)} ms | "
            + " | ".join(f"{r['ms']:.2f}" for r in rows)
            + f" | {f'{state / 1024:.1f} KiB' if state else '— (re-reads the context)'} |"
        )
        lines.append(f"| {_label(arch)} MB | " + " | ".join(f"{r['allocated_bytes'] / 1e6:.2f}" for r in rows) + " | |")
    rc = cfg.recall
    lines += [
        "",
        "## Long-range recall",
        "",
        "![recall accuracy against the gap](recall_vs_gap.png)",
        "",
        f"Each sequence is a value token (one of {rc.value_tokens}) followed by {rc.max_gap + 7} tokens of noise "
        f"(from {rc.noise_tokens} filler tokens); at every position the model must name the value, g tokens "
        f"after it appeared. Trained on {rc.train_examples:,} sequences "
        f"({rc.training.max_steps} steps × batch {rc.training.batch_size}; loss only where a value is to be "
        f"named), through the same loop; tested on {rc.eval_examples} fresh sequences, each read at every gap. "
        f"Chance is {1 / rc.value_tokens:.1%}. The CNN sees the last "
        f"{_receptive_field(cfg)} tokens, so it cannot answer beyond that gap.",
        "",
        "| architecture | params | final train loss | " + " | ".join(f"gap {g}" for g in rc.eval_gaps) + " |",
        "| --- | ---: | ---: | " + " | ".join("---:" for _ in rc.eval_gaps) + " |",
    ]
    for arch, row in recall.items():
        acc = {int(k): v for k, v in row["accuracy"].items()}
        lines.append(
            f"| {_label(arch)} | {row['parameters']:,} | {row['final_loss']:.3f} | "
            + " | ".join(f"{acc[g]:.0%}" for g in rc.eval_gaps)
            + " |"
        )
    lines += [
        "",
        f"A final train loss near ln {rc.value_tokens} = {math.log(rc.value_tokens):.3f} means the model only "
        "learned that a value is due, not which one: it never learned the task at this budget, so its row "
        "measures the training, not how far its memory reaches.",
        "",
        *_findings(cfg, data),
        "",
    ]
    return "\n".join(lines)


def _timing(seconds: dict[str, float]) -> str:
    names = {"lm": "language models", "inference": "decoding cost", "recall": "recall"}
    parts = [f"{names[p]} {seconds[p] / 60:.1f} min" for p in PARTS if p in seconds]
    return "time: " + (", ".join(parts) if parts else "not recorded")


def _receptive_field(cfg: CompareConfig) -> str:
    layers = [a.num_layers for a in cfg.architectures if a.arch == "cnn"]
    if not layers:
        return "—"
    return str(1 + (cfg.base.model.kernel_size - 1) * (2 ** layers[0] - 1))


def _findings(cfg: CompareConfig, data: dict[str, Any]) -> list[str]:
    """Sentences computed from the numbers (so they change when the numbers do)."""
    lm, cost, recall = data["lm"], data["inference"], data["recall"]
    out = ["## What the numbers say", ""]
    best = min(lm, key=lambda a: lm[a]["best_val_loss"])
    fastest = max(lm, key=lambda a: lm[a]["tokens_per_s"])
    out.append(
        f"- Lowest validation loss at this budget: {_label(best)} ({lm[best]['best_val_loss']:.3f}); "
        f"fastest to train: {_label(fastest)} ({lm[fastest]['tokens_per_s']:,.0f} tokens/s)."
    )
    for arch, rows in cost.items():
        growth_t = rows[-1]["ms"] / rows[0]["ms"]
        growth_m = rows[-1]["allocated_bytes"] / max(1, rows[0]["allocated_bytes"])
        out.append(
            f"- {_label(arch)}: from {rows[0]['context']:,} to {rows[-1]['context']:,} tokens of context, time per "
            f"token × {growth_t:.1f}, memory per token × {growth_m:.1f}."
        )
    longest = max(cfg.recall.eval_gaps)
    for arch, row in recall.items():
        acc = {int(k): v for k, v in row["accuracy"].items()}
        gaps = sorted(acc)
        fails = [g for g in gaps if acc[g] < 0.5]
        where = f"first below 50% at gap {fails[0]}" if fails else "at least 50% at every gap"
        held = [g for g in gaps if all(acc[h] >= 0.9 for h in gaps if h <= g)]
        holds = f"at least 90% up to gap {held[-1]}" if held else "under 90% already at the shortest gap"
        untrained = row["final_loss"] > 0.95 * math.log(cfg.recall.value_tokens)
        note = f" (train loss {row['final_loss']:.3f}: it did not learn the task)" if untrained else ""
        out.append(f"- Recall, {_label(arch)}: {acc[longest]:.0%} at gap {longest}; {holds}; {where}{note}.")
    return out
