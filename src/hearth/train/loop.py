"""The one training loop, for from-scratch models and fine-tuning alike.

    batch → model(**batch) → .loss → backward → clip → optimizer step → schedule → log → eval → checkpoint

Interface (Hugging Face's convention, so any causal LM fits): a dataset yields dicts of tensors
(``input_ids``, ``labels`` with -100 where no loss is wanted, optional ``attention_mask``); the model's
``forward(**batch)`` returns an object with ``.loss`` and ``.logits``. The caller builds the model and the
datasets; the loop owns the optimizer, the schedule, batching, evaluation, checkpoints and resume.

Accelerate wraps the model and optimizer (DDP over gloo on CPUs, NCCL on GPUs, mixed precision), so the
same code runs as one process or under ``accelerate launch --num_processes N``. Batching is ours: a seeded
per-epoch permutation cut into global batches of ``batch_size × processes``, each process taking its slice,
so the data position is just (epoch, batch) and a resumed run reads exactly the batches the killed one
would have read. Only the main process writes logs and checkpoints.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from hearth.errors import DataError, TrainError
from hearth.progress import Bar, Event
from hearth.train.config import TrainingConfig
from hearth.train.runs import Run

IGNORE_INDEX = -100


@dataclass
class TrainState:
    """Where training stands; saved in every checkpoint as trainer_state.json."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of this epoch already consumed (per process)
    tokens: int = 0  # input tokens seen, all processes together
    best_val_loss: float = math.inf
    bad_evals: int = 0  # evaluations in a row without a better validation loss
    train_seconds: float = 0.0


@dataclass
class TrainResult:
    run_id: str
    steps: int
    stopped: str  # "max_steps" or "early_stop"
    train_loss: float
    best_val_loss: float | None
    val_loss: float | None
    test_loss: float | None
    tokens: int
    tokens_per_s: float
    checkpoint: str
    history: list[dict[str, Any]] = field(default_factory=list)


class EpochBatches(Sampler[list[int]]):
    """Seeded batches: epoch e shuffles with seed+e; global batch g is split across processes by rank."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        rank: int = 0,
        world: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        limit: int | None = None,
    ) -> None:
        self.n, self.batch_size, self.rank, self.world, self.seed, self.shuffle = (
            n,
            batch_size,
            rank,
            world,
            seed,
            shuffle,
        )
        self.limit = limit
        self.epoch = 0
        self.start = 0

    def set_position(self, epoch: int, start: int) -> None:
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        full = self.n // (self.batch_size * self.world)  # drop the ragged end: every step sees a full batch
        return min(full, self.limit) if self.limit else full

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist()
        else:
            order = list(range(self.n))
        g = self.batch_size * self.world
        for b in range(self.start, len(self)):
            lo = b * g + self.rank * self.batch_size
            yield order[lo : lo + self.batch_size]


def lr_factor(step: int, cfg: TrainingConfig) -> float:
    """Multiplier on learning_rate after ``step`` optimizer steps: linear warmup, then the chosen decay."""
    if step < cfg.warmup_steps:
        return (step + 1) / (cfg.warmup_steps + 1)
    if cfg.schedule == "constant":
        return 1.0
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    if cfg.schedule == "linear":
        return 1.0 - (1.0 - cfg.min_lr_ratio) * progress
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(params: Iterable[Any], cfg: TrainingConfig) -> torch.optim.Optimizer:
    """Matrices get weight decay; biases and norm gains don't (decaying them only hurts)."""
    params = list(params)
    if params and not isinstance(params[0], dict):
        trainable = [p for p in params if p.requires_grad]
        params = [
            {"params": [p for p in trainable if p.dim() >= 2], "weight_decay": cfg.weight_decay},
            {"params": [p for p in trainable if p.dim() < 2], "weight_decay": 0.0},
        ]
        params = [g for g in params if g["params"]]
    if not params:
        raise TrainError("the model has no trainable parameters", "check which parameters the method freezes")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.learning_rate, momentum=cfg.momentum)
    # One fused kernel per step instead of a chain of foreach ops: what Trainer uses by default too
    # (adamw_torch_fused); it exists for floating-point tensors on CPU and CUDA.
    fused = all(p.is_floating_point() for g in params for p in g["params"])
    if cfg.optimizer == "adam":
        # Adam's weight_decay is L2 added to the gradient (coupled); AdamW's is decoupled.
        return torch.optim.Adam(params, lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2), fused=fused)
    return torch.optim.AdamW(params, lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2), fused=fused)


def token_weights(batches: list[dict[str, torch.Tensor]], world: int, acc: Any) -> torch.Tensor:
    """The divisor that makes one optimizer step's loss the mean over *every* answer token of the step.

    Rows differ in length, so a mean per micro-batch (or per process) would weigh a short batch's tokens
    more than a long one's: the loss would change with batch_size × grad_accum_steps × processes even
    when their product is the same. DDP then averages gradients over processes, hence the ``/ world``.
    Every model the loop trains takes ``num_items_in_batch`` (transformers' causal LMs, through peft
    too, and Hearth's scratch models) and divides its summed token loss by it.
    """
    local = sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in batches)
    total = torch.tensor(float(local), device=acc.device)
    if world > 1:
        total = acc.reduce(total, "sum")
    return total.clamp(min=1.0) / world


@contextmanager
def deterministic(enabled: bool) -> Iterator[None]:
    """Deterministic kernels (exact resume) for one run; the switch is process-wide, so restore it after."""
    previous = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    if enabled:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])


def train(
    model: torch.nn.Module,
    run: Run,
    cfg: TrainingConfig,
    train_data: Dataset,
    val_data: Dataset | None = None,
    test_data: Dataset | None = None,
    *,
    params: Iterable[Any] | None = None,
    collate_fn: Callable[[list[Any]], dict[str, torch.Tensor]] | None = None,
    resume: bool = False,
    trainable_only: bool = False,
) -> TrainResult:
    """Train ``model`` for ``cfg.max_steps`` steps, recording into ``run``; with ``resume``, continue its last checkpoint.

    ``trainable_only``: checkpoints hold only the parameters that require grad (adapter fine-tuning: a
    few MB instead of the frozen base), and resume loads them onto the freshly built base.
    """
    with deterministic(cfg.deterministic):
        from accelerate import Accelerator

        # cpu=True when there is no GPU: under torchrun / accelerate launch that selects DDP over gloo.
        acc = Accelerator(mixed_precision=cfg.mixed_precision, cpu=not torch.cuda.is_available())
        rank, world, main = acc.process_index, acc.num_processes, acc.is_main_process
        run.writable = run.writable and main

        sampler = EpochBatches(len(train_data), cfg.batch_size, rank, world, cfg.seed, shuffle=True)  # type: ignore[arg-type]
        if len(sampler) == 0:
            raise DataError(
                f"the training data has {len(train_data)} examples, fewer than one batch of {cfg.batch_size * world}",  # type: ignore[arg-type]
                "add text to the corpus, or lower training.batch_size (or model.block_size)",
            )
        # The loader gets its own generator, so starting an epoch never draws from the global RNG dropout uses.
        loader = DataLoader(train_data, batch_sampler=sampler, collate_fn=collate_fn, generator=torch.Generator())

        optimizer = build_optimizer(params if params is not None else model.parameters(), cfg)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
        state = TrainState()
        checkpoint = run.require_checkpoint() if resume else None
        if checkpoint is not None:
            load_weights(model, checkpoint / "model.safetensors", partial=trainable_only)
        model, optimizer = acc.prepare(model, optimizer)
        if checkpoint is not None:
            optimizer.load_state_dict(load_state(checkpoint / "optimizer.pt", map_location=acc.device))
            scheduler.load_state_dict(load_state(checkpoint / "scheduler.pt"))
            state = TrainState(**json.loads((checkpoint / "trainer_state.json").read_text())["state"])
            run.truncate_metrics(state.step)  # points logged after the checkpoint will be logged again
            if run.writable:
                run.tensorboard(purge_step=state.step + 1)  # TensorBoard drops its points after the checkpoint too
        else:
            torch.manual_seed(cfg.seed + rank)  # dropout differs per process; data order does not depend on it

        sampler.set_position(state.epoch, state.batch_in_epoch)
        batches = iter(loader)
        if checkpoint is not None:
            # Restore the RNG *after* the iterator exists: the uninterrupted run drew nothing between here and its save.
            _set_rng(load_state(_rng_file(checkpoint, rank, world)))

        def next_batch() -> dict[str, torch.Tensor]:
            nonlocal batches
            while True:
                try:
                    batch = next(batches)
                    state.batch_in_epoch += 1
                    return {k: v.to(acc.device) if torch.is_tensor(v) else v for k, v in batch.items()}
                except StopIteration:
                    state.epoch, state.batch_in_epoch = state.epoch + 1, 0
                    sampler.set_position(state.epoch, 0)
                    batches = iter(loader)

        def save() -> Path:
            tmp = run.checkpoint_tmp(state.step)
            if main:
                run.begin_checkpoint(state.step)
            acc.wait_for_everyone()
            torch.save(_get_rng(), _rng_file(tmp, rank, world))  # every process keeps its own dropout stream
            if main:
                from safetensors.torch import save_file, save_model

                if trainable_only:
                    weights = {
                        n: p.detach().contiguous()
                        for n, p in acc.unwrap_model(model).named_parameters()
                        if p.requires_grad
                    }
                    save_file(weights, str(tmp / "model.safetensors"))
                else:
                    save_model(acc.unwrap_model(model), str(tmp / "model.safetensors"))
                torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
                torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
                info = {
                    "state": asdict(state),
                    "processes": world,
                    "model_class": type(acc.unwrap_model(model)).__name__,
                }
                (tmp / "trainer_state.json").write_text(json.dumps(info, indent=2, default=float))
            acc.wait_for_everyone()
            final = run.commit_checkpoint(state.step, cfg.keep_last)
            acc.wait_for_everyone()
            return final

        def evaluate(data: Dataset | None, limit: int | None) -> float | None:
            if data is None:
                return None
            eval_sampler = EpochBatches(len(data), cfg.batch_size, rank, world, shuffle=False, limit=limit)  # type: ignore[arg-type]
            if len(eval_sampler) == 0:  # smaller than one global batch: read it all on every process
                eval_sampler = EpochBatches(len(data), len(data), 0, 1, shuffle=False)  # type: ignore[arg-type]
            model.eval()
            total = torch.zeros(2, dtype=torch.float64, device=acc.device)  # (sum of token losses, tokens)
            with torch.no_grad():
                for batch in DataLoader(data, batch_sampler=eval_sampler, collate_fn=collate_fn):
                    batch = {k: v.to(acc.device) if torch.is_tensor(v) else v for k, v in batch.items()}
                    with acc.autocast():
                        loss = model(**batch).loss
                    n = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
                    total += torch.tensor([loss.item() * n, n], dtype=torch.float64, device=acc.device)
            model.train()
            if world > 1:
                total = acc.reduce(total, "sum")
            return float(total[0] / total[1]) if total[1] > 0 else None

        if main:
            run.write_meta(status="running", resumed_from=checkpoint.name if checkpoint else None)
            run.write_environment(
                device=str(acc.device), processes=world, mixed_precision=cfg.mixed_precision, seed=cfg.seed
            )

        history: list[dict[str, Any]] = []
        stopped = "max_steps"
        interval_loss = torch.zeros((), device=acc.device)
        interval_steps, interval_tokens, interval_start = 0, 0, time.perf_counter()
        last_loss, last_val, last_saved = math.nan, None, -1
        session_tokens, session_start = 0, time.perf_counter()
        progress = Bar("train", cfg.max_steps, state.step, transient=False, enabled=main and cfg.progress)
        # Per-layer-group gradient norms and update/weight ratios (train/debug.py), when asked for.
        grad_stats = None
        if cfg.grad_stats_every and main:
            from hearth.train.debug import GradStats

            grad_stats = GradStats(acc.unwrap_model(model), cfg.grad_stats_every)
        model.train()
        try:
            while state.step < cfg.max_steps:
                step_loss = torch.zeros((), device=acc.device)
                step_tokens = 0
                micro_batches = [next_batch() for _ in range(cfg.grad_accum_steps)]
                per_token = token_weights(micro_batches, world, acc)
                for micro, batch in enumerate(micro_batches):
                    last_micro = micro == cfg.grad_accum_steps - 1
                    # Between accumulation passes DDP need not average gradients: only the last one syncs.
                    with nullcontext() if last_micro or world == 1 else acc.no_sync(model):
                        with acc.autocast():
                            loss = model(**batch, num_items_in_batch=per_token).loss
                        acc.backward(loss)
                    step_loss += loss.detach()
                    step_tokens += batch["input_ids"].numel() * world

                bad = ~torch.isfinite(step_loss)
                if world > 1:
                    bad = acc.reduce(bad.float(), "sum") > 0
                if bad:
                    good = run.latest_checkpoint()
                    raise TrainError(
                        f"the loss became {step_loss.item()} at step {state.step + 1}; training stopped",
                        f"the last good checkpoint is {good.name if good else 'none'}; lower training.learning_rate, "
                        "raise training.warmup_steps or set training.max_grad_norm, then start again",
                    )
                if grad_stats is not None:
                    grad_stats.before_step(state.step + 1)  # the raw gradient, before clipping
                if cfg.max_grad_norm > 0:
                    acc.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                if grad_stats is not None and (row := grad_stats.after_step()) is not None:
                    run.log(state.step + 1, "grads", **row)
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state.step += 1
                state.tokens += step_tokens
                session_tokens += step_tokens
                interval_loss += step_loss
                interval_steps += 1
                interval_tokens += step_tokens

                if state.step % cfg.log_every == 0 or state.step == cfg.max_steps:
                    mean = interval_loss / interval_steps
                    if world > 1:
                        mean = acc.reduce(mean, "mean")
                    seconds = time.perf_counter() - interval_start
                    state.train_seconds += seconds
                    last_loss = float(mean)
                    row = {
                        "loss": last_loss,
                        "lr": scheduler.get_last_lr()[0],
                        "tokens_per_s": interval_tokens / max(seconds, 1e-9),
                        "tokens": state.tokens,
                    }
                    run.log(state.step, "train", **row)
                    history.append({"step": state.step, "split": "train", **row})
                    note = f"loss {last_loss:.4f}  lr {row['lr']:.2e}  {row['tokens_per_s']:,.0f} tok/s"
                    progress(Event(done=state.step, message=note))
                    interval_loss.zero_()
                    interval_steps, interval_tokens = 0, 0
                    interval_start = time.perf_counter()
                else:
                    progress(Event(done=state.step))

                if val_data is not None and (state.step % cfg.eval_every == 0 or state.step == cfg.max_steps):
                    eval_start = time.perf_counter()
                    last_val = evaluate(val_data, cfg.eval_batches)
                    if last_val is not None:
                        run.log(state.step, "val", loss=last_val, perplexity=math.exp(min(last_val, 50)))
                        history.append({"step": state.step, "split": "val", "loss": last_val})
                        if last_val < state.best_val_loss:
                            state.best_val_loss, state.bad_evals = last_val, 0
                        else:
                            state.bad_evals += 1
                    interval_start += time.perf_counter() - eval_start  # evaluation time is not training time
                    if cfg.early_stop_patience and state.bad_evals >= cfg.early_stop_patience:
                        stopped = "early_stop"
                        break

                if state.step % cfg.save_every == 0:
                    save_start = time.perf_counter()
                    save()
                    last_saved = state.step
                    interval_start += time.perf_counter() - save_start
        except TrainError:
            run.write_meta(status="failed")
            progress.close()
            run.close()
            raise
        progress.close()
        session_seconds = time.perf_counter() - session_start
        final = save() if last_saved != state.step else run.checkpoints_dir / f"step-{state.step}"
        test_loss = evaluate(test_data, None)
        if test_loss is not None:
            run.log(state.step, "test", loss=test_loss, perplexity=math.exp(min(test_loss, 50)))
        best = state.best_val_loss if math.isfinite(state.best_val_loss) else None
        result = TrainResult(
            run_id=run.id,
            steps=state.step,
            stopped=stopped,
            train_loss=last_loss,
            best_val_loss=best,
            val_loss=last_val,
            test_loss=test_loss,
            tokens=state.tokens,
            tokens_per_s=session_tokens / max(session_seconds, 1e-9),
            checkpoint=str(final),
            history=history,
        )
        run.write_summary(**{k: v for k, v in asdict(result).items() if k != "history"})
        run.write_meta(status="finished" if stopped == "max_steps" else "stopped early")
        run.close()
        acc.wait_for_everyone()
        return result


def load_weights(model: torch.nn.Module, file: Path, partial: bool = False) -> None:
    """Load a safetensors checkpoint into ``model``, refusing one made for a different architecture.

    ``partial``: the checkpoint holds only some of the weights (the trainable ones); the rest stay as they are.
    """
    from safetensors import safe_open
    from safetensors.torch import load_model

    with safe_open(str(file), framework="pt") as f:
        saved = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    problems = [
        f"{n} is {s} in the checkpoint but {expected[n]} in the model"
        for n, s in saved.items()
        if n in expected and expected[n] != s
    ]
    problems += [f"the checkpoint has {n}, the model does not" for n in saved if n not in expected]
    if problems:
        raise TrainError(
            f"checkpoint {file.parent.name} was made for a different architecture: " + "; ".join(problems[:3]),
            "resume with the run's own config.yaml (model section unchanged), or start a new run",
        )
    try:
        load_model(model, str(file), strict=not partial)
    except RuntimeError as exc:
        raise TrainError(
            f"checkpoint {file.parent.name} does not fit the model: {exc}", "start a new run with this architecture"
        ) from None


def _rng_file(folder: Path, rank: int, world: int) -> Path:
    return folder / (f"rng-rank{rank}.pt" if world > 1 else "rng.pt")


def _get_rng() -> dict[str, Any]:
    import numpy as np

    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def load_state(path: Path, map_location: Any = None) -> Any:
    """A checkpoint's optimizer, scheduler or RNG state, loaded with ``weights_only=True``: a run folder
    may come from anywhere, and a full pickle runs code on load. Only tensors, plain containers and
    numpy's RNG state (what ``_get_rng`` saves) are let through; anything else is refused clearly."""
    import pickle

    import numpy as np

    core = getattr(np, "_core", None) or np.core  # numpy 2 renamed it
    numpy_rng = [np.ndarray, np.dtype, type(np.dtype(np.uint32)), core.multiarray._reconstruct]
    try:
        with torch.serialization.safe_globals(numpy_rng):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise TrainError(
            f"{path.name} in checkpoint {path.parent.name} holds objects other than tensors and plain values, "
            "so it is not loaded (unpickling them could run any code)",
            "resume only from checkpoints Hearth wrote; otherwise start the run again",
        ) from None


def _set_rng(saved: dict[str, Any]) -> None:
    import numpy as np

    random.setstate(saved["python"])
    np.random.set_state(saved["numpy"])
    torch.set_rng_state(saved["torch"])
    if saved.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["cuda"])
