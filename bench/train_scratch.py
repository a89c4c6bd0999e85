"""Benchmark the one training loop: its tokens/s against a minimal plain-PyTorch loop, and the
Transformer / LSTM / CNN comparison on the English example corpus.

    .venv/bin/python bench/train_scratch.py            # ~2-3 minutes on 2 CPU cores

Part 1 trains the same model (same seed, data, batch, optimizer, clipping, schedule) with
``hearth.train.loop.train`` and with the plain loop below, alternating, and compares throughput over the
training steps (target: ours ≥ 0.95 × plain). Part 2 trains each architecture on the same token budget
with ``hearth.train.scratch.train_scratch`` and prints validation loss and speed in one table.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHAKESPEARE = ROOT / "examples" / "data" / "shakespeare"


def setup_data(block_size: int):
    from hearth.scratch.corpus import CorpusConfig, build_datasets, read_documents, split_corpus
    from hearth.scratch.tokenizer import TokenizerConfig, as_transformers, train_tokenizer

    cfg = CorpusConfig(path=str(SHAKESPEARE))
    splits = split_corpus(read_documents(cfg.path), cfg)
    tok = as_transformers(train_tokenizer(splits.train, TokenizerConfig(kind="bpe", vocab_size=512)))
    return tok, build_datasets(tok, splits, block_size)["train"]


def plain_loop(model, data, train_cfg) -> list[float]:
    """The minimal loop a reader would write: same batches, AdamW, clipping, LambdaLR.

    Returns tokens/s of each ``log_every``-step interval, measured the way our loop measures its own.
    """
    from hearth.train.loop import EpochBatches, build_optimizer, lr_factor

    torch.manual_seed(train_cfg.seed)
    opt = build_optimizer(model.parameters(), train_cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, train_cfg))
    sampler = EpochBatches(len(data), train_cfg.batch_size, seed=train_cfg.seed)
    batches = iter(torch.utils.data.DataLoader(data, batch_sampler=sampler))
    model.train()
    rates, tokens, start = [], 0, time.perf_counter()
    for step in range(1, train_cfg.max_steps + 1):
        batch = next(batches)
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        tokens += batch["input_ids"].numel()
        if step % train_cfg.log_every == 0:
            loss.item()
            rates.append(tokens / (time.perf_counter() - start))
            tokens, start = 0, time.perf_counter()
    return rates


def part1() -> None:
    from hearth.scratch.model import ModelConfig, build_model
    from hearth.train.config import TrainingConfig
    from hearth.train.loop import train
    from hearth.train.runs import Run

    block = 64
    tok, data = setup_data(block)
    mcfg = ModelConfig(
        arch="transformer",
        vocab_size=len(tok),
        block_size=block,
        num_layers=2,
        hidden_size=64,
        num_heads=4,
        dropout=0.1,
    )
    tcfg = TrainingConfig(
        max_steps=30, batch_size=16, warmup_steps=5, eval_every=10**6, save_every=10**6, log_every=5, progress=False
    )
    print(
        f"Part 1 — loop overhead: transformer {build_model(mcfg).num_parameters():,} params, batch {tcfg.batch_size}×{block} tokens, {tcfg.max_steps} steps, {torch.get_num_threads()} threads"
    )
    # This machine may be shared: contention makes single timings noisy. So both loops run in alternating
    # rounds, each reports the throughput of every 5-step interval, and we compare the best and the median.
    ours, plain = [], []
    for rep in range(3):
        torch.manual_seed(tcfg.seed)
        p = plain_loop(build_model(mcfg), data, tcfg)
        torch.manual_seed(tcfg.seed)
        result = train(build_model(mcfg), Run.create("bench"), tcfg, data)
        o = [h["tokens_per_s"] for h in result.history if h["split"] == "train"]
        plain += p
        ours += o
        print(f"  round {rep}: plain best {max(p):,.0f} tok/s, hearth loop best {max(o):,.0f} tok/s")
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    print(
        f"  best interval:   plain {max(plain):,.0f}  hearth {max(ours):,.0f} tok/s → ratio {max(ours) / max(plain):.3f} (target ≥ 0.95)"
    )
    print(
        f"  median interval: plain {med(plain):,.0f}  hearth {med(ours):,.0f} tok/s → ratio {med(ours) / med(plain):.3f}"
    )


def part2() -> None:
    from hearth.train.scratch import load_config, train_scratch

    steps, batch, block = 120, 8, 64
    print(
        f"\nPart 2 — same data, same loop, same budget: {steps} steps × {batch} × {block} = {steps * batch * block:,} tokens each (English corpus, BPE 512)"
    )
    common = [
        f"data.path={SHAKESPEARE}",
        "tokenizer.vocab_size=512",
        f"model.block_size={block}",
        "model.hidden_size=64",
        "model.dropout=0.0",
        f"training.max_steps={steps}",
        f"training.batch_size={batch}",
        "training.learning_rate=0.002",
        "training.warmup_steps=15",
        f"training.eval_every={steps}",
        "training.eval_batches=20",
        "training.log_every=25",
        f"training.save_every={steps}",
        "training.progress=false",
    ]
    shapes = {
        "transformer": ["model.num_layers=4", "model.num_heads=4"],
        "lstm": ["model.num_layers=2"],
        "cnn": ["model.num_layers=6", "model.kernel_size=3"],
    }
    rows = []
    for arch, extra in shapes.items():
        run, r = train_scratch(load_config(None, [*common, f"model.arch={arch}", *extra]))
        rows.append((arch, run.meta.get("parameters", 0), r.val_loss, r.test_loss, r.tokens_per_s))
    print(f"  {'arch':<12}{'params':>10}{'val loss':>10}{'val ppl':>10}{'test loss':>11}{'tokens/s':>11}")
    for arch, params, val, test, tps in rows:
        print(f"  {arch:<12}{params:>10,}{val:>10.3f}{math.exp(val):>10.1f}{test:>11.3f}{tps:>11,.0f}")


if __name__ == "__main__":
    os.environ.setdefault("HEARTH_HOME", tempfile.mkdtemp(prefix="hearth-bench-"))
    started = time.perf_counter()
    if "--part2-only" not in sys.argv:
        part1()
    if "--part1-only" not in sys.argv:
        part2()
    print(f"\n(total {time.perf_counter() - started:.0f} s)")
