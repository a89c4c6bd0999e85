"""LoRA step time and peak memory: `hearth tune`'s path (the one loop) vs a plain Hugging Face Trainer + peft.

Both sides train the same bundled model with the same LoRA config (rank, alpha, targets), the same
rendered and masked rows (company Q&A), batch size, sequence length, optimizer (AdamW), schedule and
step count. Each runs in a fresh child process so its peak resident memory (ru_maxrss) is its own.
The first ``--warmup`` steps are excluded from seconds/step (allocator and thread-pool warm-up).

    .venv/bin/python bench/lora_step.py [--steps 12] [--warmup 2] [--batch 4] [--seq 128] [--rank 16] [--rounds 1]

With ``--rounds R`` the two sides alternate R times and each side's median is used, so a machine that
is busy with other work for part of the run does not decide the comparison. Prints one JSON object per
child run and then the medians and the ratio hearth / trainer (target ≤ 1.0); writes
bench/results/lora_step-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data" / "company-qa.jsonl"


def _prepare(args: argparse.Namespace):
    """Shared by both sides: the recipe, the base model (private copy), the encoded rows, the LoRA model."""
    from hearth.train import methods, tune

    cfg = tune.load_config(
        None,
        [
            f"data.path={DATA}",
            "data.val_fraction=0",
            f"data.max_seq_len={args.seq}",
            f"method.rank={args.rank}",
            "method.alpha=32",
            f"training.max_steps={args.steps}",
            f"training.batch_size={args.batch}",
            "training.learning_rate=2e-3",
            "training.warmup_steps=3",
            "training.progress=false",
            f"training.save_every={args.steps}",
            f"training.log_every={args.steps}",
            # Hearth's default is deterministic kernels (exact resume); Trainer's default is not.
            f"training.deterministic={str(args.deterministic).lower()}",
        ],
    )
    prep = tune.setup(cfg)
    model = methods.setup(prep.base, cfg.method, prep.tokenizer)
    return cfg, prep, model


def fixed_width_collator(pad_id: int, width: int):  # type: ignore[no-untyped-def]
    """Hearth's collator, padded on to ``width``: the two sides draw batches in different orders, and
    with pad-to-longest a side that happens to meet the longest rows early would pay for it in time and
    peak memory. Padded tokens are masked out of attention and loss, as before."""
    import torch.nn.functional as F

    from hearth.train import data as tdata

    collate = tdata.collator(pad_id)
    fill = {"input_ids": pad_id, "labels": tdata.IGNORE_INDEX, "attention_mask": 0}

    def fixed(batch: list[dict[str, list[int]]]) -> dict:
        out = collate(batch)
        extra = width - out["input_ids"].shape[1]
        return {k: F.pad(v, (0, extra), value=fill[k]) for k, v in out.items()}

    return fixed


class _StepClock:
    """Wall time of each optimizer step, read from the loop's / Trainer's step boundaries."""

    def __init__(self) -> None:
        self.marks: list[float] = []

    def tick(self) -> None:
        self.marks.append(time.perf_counter())

    def seconds_per_step(self, warmup: int) -> float:
        gaps = [b - a for a, b in zip(self.marks, self.marks[1:], strict=False)][warmup:]
        return sum(gaps) / len(gaps)


def run_hearth(args: argparse.Namespace) -> dict:
    from torch.optim.optimizer import register_optimizer_step_post_hook

    from hearth.train import tune
    from hearth.train.runs import Run

    _, prep, model = _prepare(args)
    clock = _StepClock()
    # Step boundaries: the loop builds its own optimizer, whose step() runs exactly once per loop step.
    hook = register_optimizer_step_post_hook(lambda *_: clock.tick())
    with tempfile.TemporaryDirectory() as tmp:
        run = Run.create("bench", "lora", root=Path(tmp))
        collate = fixed_width_collator(prep.tokenizer.pad_token_id, args.seq)
        tune.fit(model, run, prep, collate, resume=False)  # `hearth tune`'s call
    hook.remove()
    return {"side": "hearth", "seconds_per_step": clock.seconds_per_step(args.warmup)}


def run_trainer(args: argparse.Namespace) -> dict:
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from hearth.train import data as tdata

    cfg, prep, model = _prepare(args)
    clock = _StepClock()
    model.config.use_cache = False  # as `hearth tune` trains (and HF fine-tuning scripts): no KV cache in training

    class Clock(TrainerCallback):
        # Like the hearth side: a mark at the end of every step, so gaps start at step 2.
        def on_step_end(self, *a: object, **k: object) -> None:
            clock.tick()

    with tempfile.TemporaryDirectory() as tmp:
        targs = TrainingArguments(
            output_dir=tmp,
            max_steps=args.steps,
            per_device_train_batch_size=args.batch,
            learning_rate=2e-3,
            lr_scheduler_type="cosine",
            warmup_steps=3,
            weight_decay=0.0,
            adam_beta2=0.99,
            max_grad_norm=1.0,
            logging_steps=args.steps,
            save_strategy="no",
            report_to=[],
            use_cpu=not torch.cuda.is_available(),
            dataloader_num_workers=0,
            remove_unused_columns=False,
            disable_tqdm=True,
            seed=cfg.training.seed,
        )
        trainer = Trainer(
            model=model,
            args=targs,
            train_dataset=tdata.Rows(prep.train_rows.rows),
            data_collator=fixed_width_collator(prep.tokenizer.pad_token_id, args.seq),
            callbacks=[Clock()],
        )
        trainer.train()
    return {"side": "trainer", "seconds_per_step": clock.seconds_per_step(args.warmup)}


def child(side: str, args: argparse.Namespace) -> None:
    import resource

    result = run_hearth(args) if side == "hearth" else run_trainer(args)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--deterministic", action="store_true", help="hearth side with deterministic kernels (its default)"
    )
    parser.add_argument("--child", choices=["hearth", "trainer"])
    args = parser.parse_args()
    if args.child:
        child(args.child, args)
        return
    passed = [f"--{k}={getattr(args, k)}" for k in ("steps", "warmup", "batch", "seq", "rank")]
    passed += ["--deterministic"] if args.deterministic else []
    runs: dict[str, list[dict]] = {"trainer": [], "hearth": []}
    for _ in range(args.rounds):
        for side in ("trainer", "hearth"):
            proc = subprocess.run(
                [sys.executable, __file__, "--child", side, *passed],
                capture_output=True,
                text=True,
                env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
            )
            lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                sys.exit(f"{side} failed:\n{proc.stderr[-3000:]}")
            runs[side].append(json.loads(lines[-1][len("RESULT ") :]))
            print(json.dumps(runs[side][-1]), flush=True)
    med = {
        side: {k: statistics.median(r[k] for r in rs) for k in ("seconds_per_step", "peak_rss_mib")}
        for side, rs in runs.items()
    }
    summary = {
        "median": med,
        "seconds_per_step_ratio": med["hearth"]["seconds_per_step"] / med["trainer"]["seconds_per_step"],
        "peak_rss_ratio": med["hearth"]["peak_rss_mib"] / med["trainer"]["peak_rss_mib"],
        "settings": {
            k: getattr(args, k) for k in ("steps", "warmup", "batch", "seq", "rank", "rounds", "deterministic")
        },
        "load_average": os.getloadavg(),
    }
    summary["runs"] = runs
    print(json.dumps(summary))
    out = ROOT / "bench" / "results" / f"lora_step-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(summary, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
