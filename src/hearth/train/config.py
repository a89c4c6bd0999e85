"""``TrainingConfig``: the ``training:`` section every recipe shares (from scratch and fine-tuning alike)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from hearth.config import Section


class TrainingConfig(Section):
    """How the one loop trains: optimizer, schedule, batches, evaluation, checkpoints."""

    seed: int = Field(1337, description="seed for weight init, data order and dropout: same seed, same run")
    max_steps: int = Field(1000, ge=1, description="optimizer steps to train for")
    batch_size: int = Field(
        16, ge=1, description="examples per forward pass, per process (global = × processes × grad_accum_steps)"
    )
    grad_accum_steps: int = Field(
        1, ge=1, description="forward/backward passes summed into one optimizer step (a bigger batch in less memory)"
    )
    learning_rate: float = Field(1e-3, gt=0, description="peak step size of the optimizer")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="cosine/linear schedules decay to learning_rate × this")
    schedule: Literal["cosine", "linear", "constant"] = Field(
        "cosine", description="how the learning rate falls after warmup"
    )
    warmup_steps: int = Field(50, ge=0, description="steps over which the learning rate rises linearly from 0")
    optimizer: Literal["adamw", "adam", "sgd"] = Field(
        "adamw", description="adamw (decoupled weight decay), adam, or sgd with momentum"
    )
    weight_decay: float = Field(
        0.1, ge=0, description="pull weights toward zero each step (matrices only, not biases/norms)"
    )
    beta1: float = Field(0.9, ge=0, lt=1, description="adam/adamw: momentum of the gradient average")
    beta2: float = Field(0.99, ge=0, lt=1, description="adam/adamw: momentum of the squared-gradient average")
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd: momentum")
    max_grad_norm: float = Field(1.0, ge=0, description="clip the gradient to this norm (0 = no clipping)")
    eval_every: int = Field(100, ge=1, description="evaluate on the validation split every N steps")
    eval_batches: int = Field(
        20, ge=1, description="most validation batches per evaluation (the test evaluation reads all)"
    )
    log_every: int = Field(10, ge=1, description="write train loss / lr / tokens per second every N steps")
    save_every: int = Field(200, ge=1, description="write a checkpoint every N steps (and always at the end)")
    keep_last: int = Field(2, ge=1, description="checkpoints kept; older ones are deleted")
    early_stop_patience: int = Field(
        0, ge=0, description="stop after this many evaluations without a better validation loss (0 = off)"
    )
    mixed_precision: Literal["no", "bf16", "fp16"] = Field(
        "no", description="compute in lower precision on GPUs (Accelerate)"
    )
    deterministic: bool = Field(
        True, description="deterministic kernels, so a resumed run matches an uninterrupted one bit for bit on CPU"
    )
    progress: bool = Field(True, description="show a progress bar")
    grad_stats_every: int = Field(
        0, ge=0, description="log gradient norm and update/weight ratio per layer group every N steps (0 = off)"
    )
